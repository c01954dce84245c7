"""StyleGAN2 losses and lazy regularizers as pure functions returning PER-EXAMPLE values [N].

* Non-saturating logistic loss (StyleGAN2 §2 / Appendix B): D: softplus(-D(x)) + softplus(D(G(z))),
  G: softplus(-D(G(z))). That is the project's `ns` family; `ns_logistic_*` below delegate to
  `trainer.losses` (one implementation).
* R1 (Mescheder et al. 2018): (gamma / 2) ||grad_x D(x)||^2 on reals. Lazy regularization
  (StyleGAN2 §3.1: lazy regularization every 16 minibatches): evaluated once every
  `interval` minibatches and multiplied by `interval` so its expected strength is unchanged.
* Path-length regularization (StyleGAN2 §3.2, Eq. 4): E_{w,y}(||J_w^T y||_2 - a)^2, y ~ N(0, I)
  images scaled by 1/sqrt(H W), a the running mean of the lengths (NVlabs: a <- lerp(a,
  mean ||J^T y||, 0.01), weight 2, interval 4; the lengths average the squared gradient over the
  num_ws copies of w: sqrt(mean_layers sum_wdim g^2), as NVlabs' code does).
  The running mean is state: `path_length_penalty` returns the new value and the caller assigns
  it (`PathLengthMean` holds the checkpointed variable).
* `StyleGAN2Loss`: the `nsgan_r1` family's loss object (phases Dmain, Dreg, Gmain, Greg as data).
* `lazy_optimizer_params` (trainer/optimizers.py): lazy regularization also rescales Adam (StyleGAN2 Appendix B: "c =
  interval / (interval + 1); lr' = c lr, beta' = beta^c").
"""
from __future__ import annotations

from typing import Callable, Tuple

import tensorflow as tf

from facegan.trainer import keys, replica
from facegan.trainer import losses as _losses
from facegan.trainer.adversarial import AdversarialLoss
from facegan.trainer.phases import Phase
from facegan.trainer.optimizers import lazy_optimizer_params  # noqa: F401  (re-exported: StyleGAN2's Adam rescaling)


def ns_logistic_discriminator_loss(real_logits, fake_logits):
    return _losses.ns_discriminator_loss(real_logits, fake_logits)


def ns_logistic_generator_loss(fake_logits):
    return _losses.ns_generator_loss(fake_logits)


def _check_interval(interval, what):
    if int(interval) < 1:
        raise ValueError(f"{what}: lazy regularization interval must be >= 1, got {interval}")


def r1_penalty(discriminator_logits_fn: Callable, reals, gamma: float = 10.0, interval: int = 16) -> tf.Tensor:
    """interval * (gamma / 2) * ||grad_x sum_i D(x_i)||^2 per example [N] (float32).

    `discriminator_logits_fn(images) -> logits [N] / [N, 1]`. Differentiable w.r.t. D's weights
    (call it inside the outer tape). The gradient is of the batch sum, as in NVlabs' code (with
    minibatch stddev an example's logit also depends slightly on the others)."""
    _check_interval(interval, "r1")
    x = tf.cast(reals, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        total = tf.reduce_sum(_losses._flat(discriminator_logits_fn(x)))
    g = tf.cast(tape.gradient(total, x), tf.float32)
    sq = tf.reduce_sum(tf.square(tf.reshape(g, [tf.shape(g)[0], -1])), axis=1)
    return sq * (0.5 * float(gamma) * int(interval))


def path_length_noise(image_shape, seed, rows=None) -> tf.Tensor:
    """y ~ N(0, I) / sqrt(H W) for images [N, H, W, C] from a stateless seed (StyleGAN2 Eq. 4 code).
    `rows = (global_batch, offset)`: draw the global batch's noise and take rows [offset, offset + N)
    (replica independence, as trainer/augment.py)."""
    shape = tf.convert_to_tensor(image_shape, tf.int32)
    if rows is None:
        y = tf.random.stateless_normal(shape, seed=seed)
    else:
        total, offset = rows
        y = tf.random.stateless_normal(tf.concat([[total], shape[1:]], 0), seed=seed)[offset:offset + shape[0]]
    return y / tf.sqrt(tf.cast(shape[1] * shape[2], tf.float32))


def path_length_penalty(synthesis_fn: Callable, ws, pl_mean, seed, decay: float = 0.01,
                        weight: float = 2.0, interval: int = 4, rows=None,
                        mean_fn: Callable = tf.reduce_mean) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """(penalty [N], new_pl_mean scalar, lengths [N]).

    `synthesis_fn(ws [N, L, w_dim]) -> images [N, H, W, C]`; lengths_i = sqrt(mean_l sum_d
    g_ild^2) with g = grad_ws sum(images * y); new_pl_mean = pl_mean + decay (mean(lengths) -
    pl_mean) (not differentiated); penalty_i = interval * weight * (lengths_i - new_pl_mean)^2.
    Distributed: `rows` slices the global batch's y, `mean_fn` is the global mean of the lengths
    (the GAN passes an all-reduce), so every replica uses the same new_pl_mean."""
    _check_interval(interval, "path length")
    ws = tf.cast(ws, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(ws)
        images = tf.cast(synthesis_fn(ws), tf.float32)
        y = path_length_noise(tf.shape(images), seed, rows)
        total = tf.reduce_sum(images * y)
    g = tf.cast(tape.gradient(total, ws), tf.float32)
    lengths = tf.sqrt(tf.reduce_mean(tf.reduce_sum(tf.square(g), axis=2), axis=1))
    pl_mean = tf.cast(pl_mean, tf.float32)
    new_mean = tf.stop_gradient(pl_mean + decay * (mean_fn(tf.stop_gradient(lengths)) - pl_mean))
    penalty = tf.square(lengths - new_mean) * (float(weight) * int(interval))
    return penalty, new_mean, lengths


class PathLengthMean(tf.Module):
    """The running mean `a` of the path lengths as a checkpointed variable (MEAN across replicas:
    each replica assigns its update, the mirrored value is their average)."""

    def __init__(self, name="path_length_mean"):
        super().__init__(name=name)
        self.value = tf.Variable(0.0, trainable=False, dtype=tf.float32, name="pl_mean",
                                 synchronization=tf.VariableSynchronization.ON_WRITE,
                                 aggregation=tf.VariableAggregation.MEAN)


class StyleGAN2Loss(AdversarialLoss):
    """StyleGAN2's loss object (`nsgan_r1`, NVlabs' StyleGAN2Loss): the non-saturating logistic
    Dmain / Gmain, plus lazy R1 on the (augmented) reals as its own D optimizer step (Dreg, every
    `loss.r1_interval` minibatches) and lazy path length as its own G step (Greg, every
    `loss.pl_interval`, W-space generators with `loss.pl_weight` > 0), with Adam rescaled for
    each lazy phase (`lazy_optimizer_params`)."""

    def __init__(self, gan):
        super().__init__(gan)
        lo = gan.cfg.loss
        self.use_pl = gan.w_space and lo.pl_weight > 0
        self.pl_mean = PathLengthMean() if self.use_pl else None
        self.lazy_intervals = {"g": lo.pl_interval if self.use_pl else 0, "d": lo.r1_interval}

    @property
    def phases(self):
        lo, main = self.gan.cfg.loss, super().phases
        reg = [Phase("Dreg", self.d_reg, lo.r1_interval)]
        if self.use_pl:
            reg.append(Phase("Greg", self.g_reg, lo.pl_interval))
        return main[:1] + reg[:1] + main[1:2] + reg[1:] + main[2:]

    def checkpoint_items(self):
        items = super().checkpoint_items()
        if self.pl_mean is not None:
            items["path_length_mean"] = self.pl_mean
        return items

    def d_reg(self, s):
        """Dreg: lazy R1 on D's last (augmented) real input."""
        gan, lo = self.gan, self.gan.cfg.loss
        with tf.GradientTape() as tape:
            r1 = gan.avg(r1_penalty(lambda x: gan.disc_out(x, s.a)["logits"], s.x_in, lo.r1_gamma, lo.r1_interval))
        replica.apply(gan.d_optimizer, tape, r1, gan.D.trainable_variables)
        s.sums["loss/r1"] = r1

    def g_reg(self, s):
        """Greg: lazy path length on batch / pl_batch_shrink examples as its own G optimizer step;
        the running mean uses the global mean length (all-reduced) and is then assigned."""
        gan, lo, G, key = self.gan, self.gan.cfg.loss, self.gan.G, s.key
        n_pl = gan.global_batch_size // lo.pl_batch_shrink
        rows = replica.rows(n_pl)
        fold = tf.random.experimental.stateless_fold_in
        z = replica.global_slice(key, keys.Z_PL, [gan.cfg.network.z_dim], n_pl)
        z2 = replica.global_slice(key, keys.Z_PL + keys.W_MIX_Z, [gan.cfg.network.z_dim], n_pl)
        a = s.labels[-1]
        with tf.GradientTape() as tape:
            cross = G.mixing_crossover(fold(key, keys.Z_PL + keys.W_MIX_CUT), tf.shape(z)[0], rows=rows)
            a = None if a is None else a[:tf.shape(z)[0]]   # conditional: the batch's first labels
            ws = G.mix(G.map(z, attributes=a), G.map(z2, attributes=a), cross)
            penalty, new_mean, _ = path_length_penalty(
                lambda w: G.synthesis(w, noise_seed=fold(key, keys.Z_PL + keys.W_NOISE), rows=rows), ws,
                self.pl_mean.value, fold(key, keys.PL_NOISE), lo.pl_decay, lo.pl_weight, lo.pl_interval,
                rows=rows, mean_fn=lambda x: replica.global_mean(x, n_pl))
            pl = tf.nn.compute_average_loss(penalty, global_batch_size=n_pl)
        replica.apply(gan.g_optimizer, tape, pl, G.trainable_variables)
        self.pl_mean.value.assign(new_mean)
        s.sums["loss/pl"] = pl
        s.shared["pl/mean"] = new_mean
