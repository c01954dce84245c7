"""GAN tricks and regularizers (Salimans et al. 2016; Karras et al. 2018; Zhao et al. 2017).

* `feature_matching_loss`  ||E f(x) - E f(G(z))||^2 on an intermediate D layer (Salimans §3.1)
* `MinibatchDiscrimination` Keras layer: tensor T, L1 distances, negative exponential (Salimans §3.2)
* `minibatch_stddev`        ProGAN's per-group standard deviation feature map (Karras §3), with the
                            optional skewness and kurtosis maps of the Columbia report
* `HistoricalAveraging`     ||theta - mean of past theta||^2 (Salimans §3.3)
* `instance_noise_std` / `apply_instance_noise`   Gaussian noise on D's inputs, annealed to 0
                            (Sonderby et al. 2017; Arjovsky & Bottou 2017)
* `repelling_loss`          mean squared pairwise cosine similarity over a minibatch, i != j
                            (Zhao et al.'s pulling-away term, as the Columbia report uses it)
One-sided label smoothing lives in the losses (`real_label_smoothing`).
"""
from __future__ import annotations

from typing import Sequence

import tensorflow as tf


# -- feature matching -------------------------------------------------------------------------
def feature_matching_loss(real_features, fake_features) -> tf.Tensor:
    """Scalar ||mean_i f(x_i) - mean_i f(G(z_i))||_2^2 over the (per-replica) minibatch.

    Real features are treated as constants (the loss trains G only)."""
    r = tf.stop_gradient(tf.cast(tf.reshape(real_features, [tf.shape(real_features)[0], -1]), tf.float32))
    f = tf.cast(tf.reshape(fake_features, [tf.shape(fake_features)[0], -1]), tf.float32)
    return tf.reduce_sum(tf.square(tf.reduce_mean(r, axis=0) - tf.reduce_mean(f, axis=0)))


# -- minibatch discrimination -----------------------------------------------------------------
class MinibatchDiscrimination(tf.keras.layers.Layer):
    """Salimans et al. 2016 §3.2. f [N, A] -> concat(f, o) [N, A + B].

    M_i = f_i T reshaped [B, C]; c_b(i, j) = exp(-||M_{i,b} - M_{j,b}||_L1);
    o(x_i)_b = sum_j c_b(i, j), summed over the whole minibatch including j = i (as the paper
    writes it; the self term adds the constant 1)."""

    def __init__(self, kernels: int = 50, kernel_dim: int = 5, **kwargs):
        super().__init__(**kwargs)
        self.kernels, self.kernel_dim = int(kernels), int(kernel_dim)

    def build(self, input_shape):
        a = int(input_shape[-1])
        self.T = self.add_weight("T", shape=(a, self.kernels * self.kernel_dim),
                                 initializer=tf.keras.initializers.RandomNormal(stddev=0.02))
        super().build(input_shape)

    def call(self, f):
        m = tf.reshape(tf.matmul(f, self.T), [-1, self.kernels, self.kernel_dim])
        m32 = tf.cast(m, tf.float32)
        l1 = tf.reduce_sum(tf.abs(m32[:, None, :, :] - m32[None, :, :, :]), axis=-1)  # [N, N, B]
        o = tf.reduce_sum(tf.exp(-l1), axis=1)                                     # [N, B]
        return tf.concat([f, tf.cast(o, f.dtype)], axis=-1)

    def get_config(self):
        return dict(super().get_config(), kernels=self.kernels, kernel_dim=self.kernel_dim)


# -- minibatch standard deviation -------------------------------------------------------------
def _group_size(n, group_size):
    """Largest g <= group_size dividing n (Karras require n % g == 0; we degrade gracefully)."""
    cands = tf.range(tf.minimum(group_size, n), 0, -1)
    return cands[tf.argmax(tf.cast(tf.equal(n % cands, 0), tf.int32))]


def minibatch_stddev(x, group_size: int = 4, extra_stats: bool = False, epsilon: float = 1e-8):
    """Karras et al. 2018 §3: append the average per-group standard deviation as a feature map.

    x [N, H, W, C] -> [N, H, W, C + 1] (C + 3 with `extra_stats`: standardized skewness
    E[(x-mu)^3]/sigma^3 and kurtosis E[(x-mu)^4]/sigma^4, each averaged over H, W, C like the
    stddev, as in the Columbia report). Groups are consecutive blocks of g examples
    (x reshaped [g, N/g, ...] as in Karras' code); statistics in float32."""
    dt = x.dtype
    x32 = tf.cast(x, tf.float32)
    s = tf.shape(x32)
    n, h, w, c = s[0], s[1], s[2], s[3]
    if x.shape[0] is not None:    # static batch: plain python (XLA-friendly reshape)
        g = next(k for k in range(min(group_size, x.shape[0]), 0, -1) if x.shape[0] % k == 0)
    else:
        g = _group_size(n, group_size)
    y = tf.reshape(x32, [g, -1, h, w, c])                      # [G, M, H, W, C]
    y = y - tf.reduce_mean(y, axis=0, keepdims=True)
    var = tf.reduce_mean(tf.square(y), axis=0)                 # [M, H, W, C]
    std = tf.sqrt(var + epsilon)
    stats = [tf.reduce_mean(std, axis=[1, 2, 3])]              # [M]
    if extra_stats:
        skew = tf.reduce_mean(y ** 3, axis=0) / std ** 3
        kurt = tf.reduce_mean(y ** 4, axis=0) / std ** 4
        stats += [tf.reduce_mean(skew, axis=[1, 2, 3]), tf.reduce_mean(kurt, axis=[1, 2, 3])]
    st = tf.stack(stats, axis=-1)                              # [M, S]
    st = tf.tile(st, [g, 1])                                   # [N, S]: example i uses group i % M
    maps = tf.tile(st[:, None, None, :], [1, h, w, 1])
    return tf.concat([x, tf.cast(maps, dt)], axis=-1)


# -- historical averaging ---------------------------------------------------------------------
class HistoricalAveraging(tf.Module):
    """Salimans et al. 2016 §3.3: penalty ||theta - (1/t) sum_{i<=t} theta[i]||^2 summed over the
    given variables; the average covers the parameters seen at past `update` calls.

    Create under the strategy scope (averages are variables, checkpointable as a tf.Module),
    call `loss(vars)` inside the step (0 before the first `update`) and `update(vars)` after the
    optimizer step."""

    def __init__(self, variables: Sequence[tf.Variable], name: str = "historical_averaging"):
        super().__init__(name=name)
        agg = dict(synchronization=tf.VariableSynchronization.ON_WRITE,
                   aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        with self.name_scope:
            self.averages = [tf.Variable(tf.zeros(v.shape, tf.float32), trainable=False,
                                         name=f"avg_{i}", **agg) for i, v in enumerate(variables)]
            self.count = tf.Variable(0.0, trainable=False, name="count", **agg)

    def _check(self, variables):
        if len(variables) != len(self.averages):
            raise ValueError(f"HistoricalAveraging tracks {len(self.averages)} variables, got {len(variables)}")

    def loss(self, variables) -> tf.Tensor:
        self._check(variables)
        total = tf.add_n([tf.reduce_sum(tf.square(tf.cast(v, tf.float32) - a))
                          for v, a in zip(variables, self.averages)])
        return tf.where(self.count > 0, total, tf.zeros_like(total))

    def update(self, variables):
        self._check(variables)
        t = self.count + 1.0
        for v, a in zip(variables, self.averages):
            a.assign_add((tf.cast(v, tf.float32) - a) / t)
        self.count.assign(t)


# -- instance noise ---------------------------------------------------------------------------
def instance_noise_std(step, initial: float, anneal_steps: int):
    """initial * max(0, 1 - step / anneal_steps): linear annealing to 0 (0 if anneal_steps <= 0)."""
    if anneal_steps <= 0 or initial == 0:
        return 0.0 if not tf.is_tensor(step) else tf.zeros([], tf.float32)
    if tf.is_tensor(step):
        frac = tf.cast(step, tf.float32) / float(anneal_steps)
        return float(initial) * tf.maximum(0.0, 1.0 - frac)
    return float(initial) * max(0.0, 1.0 - float(step) / anneal_steps)


def apply_instance_noise(images, std, seed_or_generator=None):
    """images + N(0, std^2) i.i.d. per pixel; seed: tf.random.Generator, stateless [2] seed, or None."""
    shape = tf.shape(images)
    if isinstance(seed_or_generator, tf.random.Generator):
        noise = seed_or_generator.normal(shape, dtype=tf.float32)
    elif seed_or_generator is None:
        noise = tf.random.normal(shape, dtype=tf.float32)
    else:
        noise = tf.random.stateless_normal(shape, seed=seed_or_generator, dtype=tf.float32)
    return images + tf.cast(tf.cast(std, tf.float32) * noise, images.dtype)


# -- repelling regularizer --------------------------------------------------------------------
def repelling_loss(features, epsilon: float = 1e-8) -> tf.Tensor:
    """Scalar 1/(N(N-1)) sum_{i != j} cos(f_i, f_j)^2 (Zhao et al. 2017, pulling-away term)."""
    f = tf.cast(tf.reshape(features, [tf.shape(features)[0], -1]), tf.float32)
    f = f / (tf.norm(f, axis=1, keepdims=True) + epsilon)
    sim = tf.matmul(f, f, transpose_b=True)
    n = tf.cast(tf.shape(f)[0], tf.float32)
    off = tf.reduce_sum(tf.square(sim)) - tf.reduce_sum(tf.square(tf.linalg.diag_part(sim)))
    return off / tf.maximum(n * (n - 1.0), 1.0)
