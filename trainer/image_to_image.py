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

from facegan.trainer.data import from_network
from facegan.trainer.gan import GAN
from facegan.trainer.image_to_image_losses import l1_per_example

PAIR_CHANNELS = 6       # input RGB then target RGB


def split_pair(batch):
    """[B, R, R, 6] paired batch -> (input, target), each [B, R, R, 3] float32."""
    x = tf.cast(batch, tf.float32)
    return x[..., :3], x[..., 3:]


class Pix2Pix(GAN):
    """pix2pix: conditional PatchGAN + L1 (see the module docstring)."""

    paired_input = True

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

        self._update_ema()
        self.step.assign_add(1)
        self.images_shown.assign_add(self.global_batch_size)
        shared = {"lr/g": tf.cast(self.g_optimizer.learning_rate, tf.float32),
                  "lr/d": tf.cast(self.d_optimizer.learning_rate, tf.float32)}
        return self._reduce(sums, shared)

    def translate(self, images, ema=True):
        """uint8 outputs for float [-1, 1] inputs [N, R, R, 3] (deterministic: training=False)."""
        g = self.sampling_generator if ema else self.G
        return from_network(g(tf.convert_to_tensor(images, tf.float32), training=False))

    def preview(self, pairs):
        """uint8 rows for the sample grid: input, output, target of each pair [B, R, R, 6]."""
        x, y = split_pair(pairs)
        return tf.concat([from_network(x), self.translate(x), from_network(y)], 0)

    def export_models(self):
        """What the contract's image_to_image kind exports: one direction."""
        return self.sampling_generator
