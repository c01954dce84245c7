"""Image-to-image models trained by the one training loop (trainer/train_lib.py).

`Pix2Pix` is trainer/gan.py's GAN with its own `train_step`: it inherits the state (checkpoint
items, optimizers, counters, EMA, NaN check, learning-rate scale), the distribution rules
(per-example losses over the GLOBAL batch, gradients all-reduced by hand, metrics reduced in one
collective) and the export hook; only the step differs. The registry names it as the
architecture's `model`, and the loop feeds it paired batches: float32 [B, R, R, 6], the input's
three channels then the target's (trainer/data.py, `input_key`).

One step (Isola et al. 2017, sec. 3.3: "alternate between one gradient descent step on D, then one
step on G"): D on (x, y) vs (x, G(x)) with its loss halved, then G on the non-saturating cGAN loss
plus loss.l1_weight (lambda = 100) times L1(y, G(x)); losses from trainer/image_to_image_losses.py.
Dropout in G is the only noise (Keras dropout: its random draws depend on the replica layout,
unlike the z-based GAN's stateless draws).
"""
from __future__ import annotations

from typing import Dict

import tensorflow as tf

from facegan.trainer.data import from_network, to_network
from facegan.trainer.gan import GAN
from facegan.trainer.image_to_image_losses import cycle_loss, identity_loss, l1_per_example

PAIR_CHANNELS = 6       # input RGB then target RGB


def split_pair(batch):
    """[B, R, R, 6] paired batch -> (input, target), each [B, R, R, 3] float32."""
    x = tf.cast(batch, tf.float32)
    return x[..., :3], x[..., 3:]


def finish_step(gan: GAN, sums: Dict[str, tf.Tensor]):
    """The end of every image-to-image step: EMA, counters (one image shown per example), the
    learning rates, one all-reduce of the metrics (GAN._reduce)."""
    gan._update_ema()
    gan.step.assign_add(1)
    gan.images_shown.assign_add(gan.global_batch_size)
    shared = {"lr/g": tf.cast(gan.g_optimizer.learning_rate, tf.float32),
              "lr/d": tf.cast(gan.d_optimizer.learning_rate, tf.float32)}
    return gan._reduce(sums, shared)


class Pix2Pix(GAN):
    """pix2pix: conditional PatchGAN + L1 (see the module docstring)."""

    input_kind = "pairs"

    def call(self, images, training=False):
        return self.G(images, training=training)

    def train_step(self, data):
        batch = data[0] if isinstance(data, (tuple, list)) else data
        x, y = split_pair(batch)
        n_rep = tf.distribute.get_replica_context().num_replicas_in_sync
        sums: Dict[str, tf.Tensor] = {}

        def d_logits(inp, out):
            return tf.cast(self.D(tf.concat([inp, out], -1), training=True)["logits"], tf.float32)

        with tf.GradientTape() as tape:
            fake = tf.stop_gradient(tf.cast(self.G(x, training=True), tf.float32))
            real_logits, fake_logits = d_logits(x, y), d_logits(x, fake)
            d_loss = self._avg(self.d_loss_fn(real_logits, fake_logits))
        sums["grad_norm/d"] = self._apply(self.d_optimizer, tape, d_loss, self.D.trainable_variables) / n_rep
        sums["loss/d"] = d_loss
        sums["d/real_logit"] = self._avg(tf.reduce_mean(tf.reshape(real_logits, [tf.shape(x)[0], -1]), 1))
        sums["d/fake_logit"] = self._avg(tf.reduce_mean(tf.reshape(fake_logits, [tf.shape(x)[0], -1]), 1))

        with tf.GradientTape() as tape:
            fake = tf.cast(self.G(x, training=True), tf.float32)
            g_adv = self._avg(self.g_loss_fn(d_logits(x, fake)))
            l1 = self._avg(l1_per_example(y, fake))
            g_loss = g_adv + float(self.cfg.loss.l1_weight) * l1
        sums["grad_norm/g"] = self._apply(self.g_optimizer, tape, g_loss, self.G.trainable_variables) / n_rep
        sums["loss/g"] = g_loss
        sums["loss/g_adv"] = g_adv
        sums["loss/l1"] = l1

        return finish_step(self, sums)

    def translate(self, images, ema=True):
        """uint8 outputs for float [-1, 1] inputs [N, R, R, 3] (deterministic: training=False)."""
        g = self.sampling_generator if ema else self.G
        return from_network(g(tf.convert_to_tensor(images, tf.float32), training=False))

    def preview(self, pairs):
        """(uint8 rows for the sample grid: inputs, outputs, targets of pairs [B, R, R, 6]; columns)."""
        x, y = split_pair(pairs)
        return tf.concat([from_network(x), self.translate(x), from_network(y)], 0), int(x.shape[0])

    def export_models(self):
        """What the contract's image_to_image kind exports: one direction."""
        return self.sampling_generator


# -- CycleGAN --------------------------------------------------------------------------------------
def history_pool_query(pool, count, images, uniform, index):
    """One query of the image history pool (Shrivastava et al. 2017, as CycleGAN uses it), pure.

    pool [P, ...], count (images stored so far, <= P), images [n, ...], uniform [n] in [0, 1),
    index [n] in [0, P). Image by image, as the reference ImagePool: while the pool is not full,
    store the image and return it; once full, with probability 1/2 (uniform > 0.5) return a stored
    image chosen by `index` and store the new one in its place, else return the new image.
    Returns (returned [n, ...], pool', count').
    """
    size = int(pool.shape[0])
    out = []
    for i in range(int(images.shape[0])):
        img = images[i]
        full = count >= size
        swap = tf.logical_and(full, uniform[i] > 0.5)
        slot = tf.where(full, tf.cast(index[i], count.dtype), tf.minimum(count, size - 1))
        out.append(tf.where(swap, pool[slot], img))
        written = tf.tensor_scatter_nd_update(pool, tf.reshape(slot, [1, 1]), img[None])
        pool = tf.where(tf.logical_or(tf.logical_not(full), swap), written, pool)
        count = tf.where(full, count, count + 1)
    return tf.stack(out), pool, count


class HistoryPool(tf.Module):
    """A pool of past generated images, global across replicas: `CycleGAN.train_step` queries it
    with the whole global batch's fakes (all-gathered in replica order, the order of the
    single-process batch) and the same draws on every replica, so every replica makes the same
    assignments (plain replica-context assigns, like the EMA weights), the pool holds the last 50
    images of the whole run as the reference pool does at batch 1, checkpoints hold it exactly, and
    N replicas train like one process with the same global batch."""

    def __init__(self, size: int, shape, name: str):
        super().__init__(name=name)
        self.size = int(size)
        self.images = tf.Variable(tf.zeros([self.size, *shape]), trainable=False, name=f"{name}_images")
        self.count = tf.Variable(0, dtype=tf.int64, trainable=False, name=f"{name}_count")

    def query(self, images, uniform, index):
        if self.size == 0:
            return images
        out, pool, count = history_pool_query(self.images, self.count, images, uniform, index)
        self.images.assign(pool)
        self.count.assign(count)
        return out


def linear_decay(step, total: int, start_fraction: float) -> float:
    """lr multiplier: 1 until start_fraction * total steps, then linearly to 0 at `total`
    (CycleGAN: constant for 100 epochs, then linearly to zero over the next 100)."""
    start = start_fraction * total
    if total <= 0 or step <= start or start_fraction >= 1.0:
        return 1.0
    return max(0.0, 1.0 - (step - start) / max(total - start, 1e-9))


class CycleGAN(GAN):
    """CycleGAN (Zhu et al. 2017) on the one loop: batches [B, R, R, 6] = (image of A, image of B).

    One step, as the authors' code: G (A -> B) and F (B -> A) together on the LSGAN terms of D_B(G(a))
    and D_A(F(b)) + cycle_weight * (|F(G(a)) - a| + |G(F(b)) - b|) + identity_weight * cycle_weight *
    (|G(b) - b| + |F(a) - a|); then D_B on b vs a pooled G(a) and D_A on a vs a pooled F(b), halved.
    One Adam for both generators and one for both discriminators (their itertools.chain).
    """

    input_kind = "domains"
    directions = ("a_to_b", "b_to_a")

    def __init__(self, cfg, networks, ema_networks=None, lens=None, *, global_batch_size: int):
        super().__init__(cfg, networks, ema_networks, lens, global_batch_size=global_batch_size)
        shape = [cfg.network.resolution, cfg.network.resolution, 3]
        self.pool_b = HistoryPool(cfg.tricks.history_pool, shape, "pool_fake_b")
        self.pool_a = HistoryPool(cfg.tricks.history_pool, shape, "pool_fake_a")

    def all_stage_models(self):
        return [self.nets.generator, self.nets.generator_ba], [self.nets.discriminator, self.nets.discriminator_a]

    def set_stage(self, resolution, global_batch_size):
        super().set_stage(resolution, global_batch_size)
        self.F, self.D_A = self.nets.generator_ba, self.nets.discriminator_a
        self.F_ema = self.ema_nets.generator_ba if self.ema_nets is not None else None
        if self.F_ema is not None:
            from facegan.trainer.gan import _ema_pairs
            self._ema_pairs = self._ema_pairs + _ema_pairs(self.F_ema, self.F)

    def copy_to_ema(self):
        super().copy_to_ema()
        if self.ema_nets is not None:
            for e, v in zip(self.ema_nets.generator_ba.weights, self.nets.generator_ba.weights):
                e.assign(v)

    def checkpoint_items(self):
        items = dict(super().checkpoint_items(), pool_b=self.pool_b, pool_a=self.pool_a)
        if self.ema_nets is not None:
            items["generator_ba_ema"] = self.ema_nets.generator_ba
        return items

    def lr_multiplier(self) -> float:
        return linear_decay(int(self.step.numpy()), self.cfg.run.steps, self.cfg.optim.lr_decay_start)

    @property
    def decays_lr(self) -> bool:
        return self.cfg.optim.lr_decay_start < 1.0

    def train_step(self, data):
        batch, key = (data if isinstance(data, (tuple, list)) else
                      (data, tf.stack([tf.constant(self.seed, tf.int64), tf.identity(self.step)])))
        a, b = split_pair(batch)
        key = tf.cast(key, tf.int64)
        n_rep = tf.distribute.get_replica_context().num_replicas_in_sync
        lam = float(self.cfg.loss.cycle_weight)
        lam_id = float(self.cfg.loss.identity_weight) * lam
        sums: Dict[str, tf.Tensor] = {}

        def logits(d, x):
            return tf.cast(d(x, training=True)["logits"], tf.float32)

        g_vars = self.g_variables
        with tf.GradientTape() as tape:
            fake_b = tf.cast(self.G(a, training=True), tf.float32)
            fake_a = tf.cast(self.F(b, training=True), tf.float32)
            rec_a = tf.cast(self.F(fake_b, training=True), tf.float32)
            rec_b = tf.cast(self.G(fake_a, training=True), tf.float32)
            g_adv = self._avg(self.g_loss_fn(logits(self.D, fake_b)) + self.g_loss_fn(logits(self.D_A, fake_a)))
            cycle = self._avg(cycle_loss(a, rec_a, b, rec_b))
            g_loss = g_adv + lam * cycle
            if lam_id > 0:
                idt = self._avg(identity_loss(a, tf.cast(self.F(a, training=True), tf.float32),
                                              b, tf.cast(self.G(b, training=True), tf.float32)))
                g_loss += lam_id * idt
                sums["loss/identity"] = idt
        sums["grad_norm/g"] = self._apply(self.g_optimizer, tape, g_loss, g_vars) / n_rep
        sums.update({"loss/g": g_loss, "loss/g_adv": g_adv, "loss/cycle": cycle})

        # the pools' draws: from the step key, one per image of the GLOBAL batch (see HistoryPool)
        n_global = int(a.shape[0]) * n_rep
        u = tf.random.stateless_uniform([2, n_global], seed=tf.random.experimental.stateless_fold_in(key, 600))
        idx = tf.random.stateless_uniform([2, n_global], seed=tf.random.experimental.stateless_fold_in(key, 601),
                                          maxval=max(1, self.pool_b.size), dtype=tf.int64) if self.pool_b.size else None
        pooled_b = self._pooled(self.pool_b, fake_b, u[0], idx[0] if idx is not None else None)
        pooled_a = self._pooled(self.pool_a, fake_a, u[1], idx[1] if idx is not None else None)
        d_vars = self.d_variables
        with tf.GradientTape() as tape:
            d_b = self._avg(self.d_loss_fn(logits(self.D, b), logits(self.D, tf.stop_gradient(pooled_b))))
            d_a = self._avg(self.d_loss_fn(logits(self.D_A, a), logits(self.D_A, tf.stop_gradient(pooled_a))))
            d_loss = d_a + d_b
        sums["grad_norm/d"] = self._apply(self.d_optimizer, tape, d_loss, d_vars) / n_rep
        sums.update({"loss/d": d_loss, "loss/d_a": d_a, "loss/d_b": d_b})

        return finish_step(self, sums)

    @staticmethod
    def _pooled(pool: HistoryPool, fakes, uniform, index):
        """This replica's images of the pool's answer to the whole global batch (HistoryPool)."""
        if pool.size == 0:
            return fakes
        ctx = tf.distribute.get_replica_context()
        n_rep, n = ctx.num_replicas_in_sync, int(fakes.shape[0])
        if n_rep == 1:
            return pool.query(fakes, uniform, index)
        everyone = tf.reshape(ctx.all_gather(fakes, axis=0), [n * n_rep, *fakes.shape[1:]])
        answer = pool.query(everyone, uniform, index)
        return tf.reshape(answer[ctx.replica_id_in_sync_group * n:][:n], fakes.shape)

    def translate(self, images, direction: str = "a_to_b"):
        g = self.export_models()[direction]
        return from_network(g(tf.convert_to_tensor(images, tf.float32), training=False))

    def preview(self, batch):
        """(rows: A, G(A), F(G(A)), B, F(B), G(F(B)); columns)."""
        a, b = split_pair(batch)
        fb, fa = self.translate(a, "a_to_b"), self.translate(b, "b_to_a")
        rows = [from_network(a), fb, self.translate(to_network(fb), "b_to_a"),
                from_network(b), fa, self.translate(to_network(fa), "a_to_b")]
        return tf.concat(rows, 0), int(a.shape[0])

    def export_models(self):
        """Both directions, named (the contract's CycleGAN export)."""
        return {"a_to_b": self.G if self.G_ema is None else self.G_ema,
                "b_to_a": self.F if self.F_ema is None else self.F_ema}
