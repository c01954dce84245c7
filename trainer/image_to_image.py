"""Image-to-image models trained by the one training loop (trainer/train_lib.py).

`ImageToImage` is the small GAN base (trainer/gan_base.py: state, optimizers, EMA, the phase
runner) with a translator's networks and nothing of the latent GAN (no z, lens, W space,
augmentation or progressive stages). The registry names `Pix2Pix` / `CycleGAN` as the
architecture's `model` and the family's loss object (`Pix2PixLoss`, `CycleGANLoss`) as its `step`;
the loop feeds paired batches: float32 [B, R, R, 6], the input's three channels then the
target's (trainer/data.py, `input_key`), or for CycleGAN an image of each domain.

pix2pix (Isola et al. 2017, sec. 3.3: "alternate between one gradient descent step on D, then one
step on G"): Dmain on (x, y) vs (x, G(x)) with its loss halved, then Gmain on the non-saturating
cGAN loss plus loss.l1_weight (lambda = 100) times L1(y, G(x)); losses from
trainer/image_to_image_losses.py. Dropout in G is the only noise (Keras dropout: its random draws
depend on the replica layout, unlike the z-based GAN's stateless draws).
"""
from __future__ import annotations


import tensorflow as tf

from facegan.trainer import registry, replica
from facegan.trainer.data import from_network, to_network
from facegan.trainer.gan_base import GANBase, ema_pairs
from facegan.trainer.image_to_image_losses import cycle_loss, identity_loss, l1_per_example
from facegan.trainer.phases import Phase, StepState

PAIR_CHANNELS = 6       # input RGB then target RGB


def split_pair(batch):
    """[B, R, R, 6] paired batch -> (input, target), each [B, R, R, 3] float32."""
    x = tf.cast(batch, tf.float32)
    return x[..., :3], x[..., 3:]


class ImageToImage(GANBase):
    """A translator G (and its D) on the GAN base; the loss object comes from the family."""

    input_kind = "pairs"

    def __init__(self, cfg, networks, ema_networks=None, lens=None, *, global_batch_size: int):
        super().__init__(cfg, global_batch_size=global_batch_size)
        if lens is not None:
            raise ValueError(f"{cfg.network.architecture} has no lens (a z-based GAN trick)")
        self.nets, self.ema_nets = networks, ema_networks
        self.resolution = int(cfg.network.resolution)
        self.family_loss = registry.import_by_name(registry.loss_family(cfg.loss.family).step)(self)
        self.set_stage(self.resolution, self.global_batch_size)

    def all_stage_models(self):
        return [self.nets.generator], [self.nets.discriminator]

    def set_stage(self, resolution, global_batch_size):
        self.G, self.D = self.nets.generator, self.nets.discriminator
        self.G_ema = self.ema_nets.generator if self.ema_nets is not None else None
        self.global_batch_size = int(global_batch_size)
        self._ema_pairs = ema_pairs(self.G_ema, self.G) if self.G_ema is not None else []

    def ema_stage_pairs(self):
        return list(self._ema_pairs)

    def checkpoint_items(self):
        items = dict(super().checkpoint_items(), **self.nets.checkpoint_items())
        if self.ema_nets is not None:
            items["generator_ema"] = self.ema_nets.generator
        return items

    @property
    def sampling_generator(self) -> tf.keras.Model:
        return self.G_ema if self.G_ema is not None else self.G

    def call(self, images, training=False):
        return self.G(images, training=training)

    def begin_step(self, data) -> StepState:
        batch, key = self.split_key(data)
        x, y = split_pair(batch)
        return StepState(key, x=x, y=y)

    def end_step(self, state: StepState):
        """EMA, counters (one image shown per example), the learning rates, one all-reduce."""
        self._update_ema()
        return self.finish(state, self.global_batch_size)


class Pix2PixLoss:
    """pix2pix's loss object: Dmain, then Gmain (see the module docstring)."""

    lazy_intervals = {"g": 0, "d": 0}

    def __init__(self, model):
        self.m = model
        self.g_loss_fn, self.d_loss_fn = registry.loss_family(model.cfg.loss.family).bind(model.cfg.loss)
        self.phases = [Phase("Dmain", self.d_main), Phase("Gmain", self.g_main)]

    def build(self):
        pass

    def checkpoint_items(self):
        return {}

    def after_step(self, state):
        pass

    def d_logits(self, inp, out):
        return tf.cast(self.m.D(tf.concat([inp, out], -1), training=True)["logits"], tf.float32)

    def d_main(self, s: StepState):
        m, x = self.m, s.x
        with tf.GradientTape() as tape:
            fake = tf.stop_gradient(tf.cast(m.G(x, training=True), tf.float32))
            real_logits, fake_logits = self.d_logits(x, s.y), self.d_logits(x, fake)
            d_loss = m.avg(self.d_loss_fn(real_logits, fake_logits))
        n_rep = replica.num_replicas()
        s.sums["grad_norm/d"] = replica.apply(m.d_optimizer, tape, d_loss, m.D.trainable_variables) / n_rep
        s.sums["loss/d"] = d_loss
        s.sums["d/real_logit"] = m.avg(tf.reduce_mean(tf.reshape(real_logits, [tf.shape(x)[0], -1]), 1))
        s.sums["d/fake_logit"] = m.avg(tf.reduce_mean(tf.reshape(fake_logits, [tf.shape(x)[0], -1]), 1))

    def g_main(self, s: StepState):
        m, x = self.m, s.x
        with tf.GradientTape() as tape:
            fake = tf.cast(m.G(x, training=True), tf.float32)
            g_adv = m.avg(self.g_loss_fn(self.d_logits(x, fake)))
            l1 = m.avg(l1_per_example(s.y, fake))
            g_loss = g_adv + float(m.cfg.loss.l1_weight) * l1
        n_rep = replica.num_replicas()
        s.sums["grad_norm/g"] = replica.apply(m.g_optimizer, tape, g_loss, m.G.trainable_variables) / n_rep
        s.sums["loss/g"] = g_loss
        s.sums["loss/g_adv"] = g_adv
        s.sums["loss/l1"] = l1


class Pix2Pix(ImageToImage):
    """pix2pix: conditional PatchGAN + L1 (see the module docstring)."""

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


class CycleGAN(ImageToImage):
    """CycleGAN (Zhu et al. 2017) on the one loop: batches [B, R, R, 6] = (image of A, image of B),
    G (A -> B), F (B -> A), D_B (`D`), D_A, and a history pool of fakes for each D."""

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
            self._ema_pairs = self._ema_pairs + ema_pairs(self.F_ema, self.F)

    def ema_trainable(self) -> set:
        """Both directions' trainable weights are averaged (F's were only copied before)."""
        return super().ema_trainable() | {v.ref() for v in self.F.trainable_weights}

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

    def begin_step(self, data) -> StepState:
        batch, key = self.split_key(data)
        a, b = split_pair(batch)
        return StepState(key, a=a, b=b)

    def pooled(self, pool: HistoryPool, fakes, uniform, index):
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


class CycleGANLoss(Pix2PixLoss):
    """CycleGAN's loss object, as the authors' code orders a step: Gmain (G and F together on the
    LSGAN terms of D_B(G(a)) and D_A(F(b)) + cycle_weight * (|F(G(a)) - a| + |G(F(b)) - b|) +
    identity_weight * cycle_weight * (|G(b) - b| + |F(a) - a|)), then Dmain (D_B on b vs a pooled
    G(a) and D_A on a vs a pooled F(b), halved). One Adam for both generators and one for both
    discriminators (their itertools.chain)."""

    def __init__(self, model):
        super().__init__(model)
        self.phases = [Phase("Gmain", self.g_main), Phase("Dmain", self.d_main)]

    @staticmethod
    def logits(d, x):
        return tf.cast(d(x, training=True)["logits"], tf.float32)

    def g_main(self, s: StepState):
        m, a, b = self.m, s.a, s.b
        lam = float(m.cfg.loss.cycle_weight)
        lam_id = float(m.cfg.loss.identity_weight) * lam
        with tf.GradientTape() as tape:
            s.fake_b = fake_b = tf.cast(m.G(a, training=True), tf.float32)
            s.fake_a = fake_a = tf.cast(m.F(b, training=True), tf.float32)
            rec_a = tf.cast(m.F(fake_b, training=True), tf.float32)
            rec_b = tf.cast(m.G(fake_a, training=True), tf.float32)
            g_adv = m.avg(self.g_loss_fn(self.logits(m.D, fake_b)) + self.g_loss_fn(self.logits(m.D_A, fake_a)))
            cycle = m.avg(cycle_loss(a, rec_a, b, rec_b))
            g_loss = g_adv + lam * cycle
            if lam_id > 0:
                idt = m.avg(identity_loss(a, tf.cast(m.F(a, training=True), tf.float32),
                                          b, tf.cast(m.G(b, training=True), tf.float32)))
                g_loss += lam_id * idt
                s.sums["loss/identity"] = idt
        s.sums["grad_norm/g"] = replica.apply(m.g_optimizer, tape, g_loss, m.g_variables) / replica.num_replicas()
        s.sums.update({"loss/g": g_loss, "loss/g_adv": g_adv, "loss/cycle": cycle})

    def d_main(self, s: StepState):
        m, a, b = self.m, s.a, s.b
        # the pools' draws: from the step key, one per image of the GLOBAL batch (see HistoryPool)
        n_global = int(a.shape[0]) * replica.num_replicas()
        fold = tf.random.experimental.stateless_fold_in
        u = tf.random.stateless_uniform([2, n_global], seed=fold(s.key, 600))
        idx = tf.random.stateless_uniform([2, n_global], seed=fold(s.key, 601), maxval=max(1, m.pool_b.size),
                                          dtype=tf.int64) if m.pool_b.size else None
        pooled_b = m.pooled(m.pool_b, s.fake_b, u[0], idx[0] if idx is not None else None)
        pooled_a = m.pooled(m.pool_a, s.fake_a, u[1], idx[1] if idx is not None else None)
        with tf.GradientTape() as tape:
            d_b = m.avg(self.d_loss_fn(self.logits(m.D, b), self.logits(m.D, tf.stop_gradient(pooled_b))))
            d_a = m.avg(self.d_loss_fn(self.logits(m.D_A, a), self.logits(m.D_A, tf.stop_gradient(pooled_a))))
            d_loss = d_a + d_b
        s.sums["grad_norm/d"] = replica.apply(m.d_optimizer, tape, d_loss, m.d_variables) / replica.num_replicas()
        s.sums.update({"loss/d": d_loss, "loss/d_a": d_a, "loss/d_b": d_b})
