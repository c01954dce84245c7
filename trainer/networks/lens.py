"""The lens of Tempered Adversarial Networks (Sajjadi et al. 2018), combinable with any architecture.

L: images [N, H, W, 3] in [-1, 1] -> images in [-1, 1], applied to REAL images before D.
A 3x3 conv to `lens.filters` channels, `lens.blocks` (8 in the paper) residual blocks of two 3x3
convs, a 3x3 conv back to RGB, plus an input-to-output skip: L(x) = clip(x + r(x), -1, 1).
Each block's last conv starts at zero and the output conv tiny (N(0, 1e-3)), so L is
near-identity at initialization and the output conv and every block already receive gradients. Fully convolutional (any H, W), so one lens serves every progressive
stage.

Lens loss (losses.py): L_L = lambda(t) * <family>_lens_loss + lens_reconstruction_loss, with
lambda(t) = 1 - sin(t pi / (2K)) for t <= K, else 0 (`lens_lambda`, K = lens.anneal_steps).
"""
from __future__ import annotations

import math

import tensorflow as tf

from facegan.trainer.networks import layers


def build_lens(cfg) -> tf.keras.Model:
    lc = cfg.tricks.lens
    f = int(lc.filters)
    init = tf.keras.initializers.HeNormal

    def conv(n, name, kernel_initializer=None):
        return tf.keras.layers.Conv2D(n, 3, padding="same", name=name,
                                      kernel_initializer=kernel_initializer or init())

    x_in = tf.keras.Input((None, None, 3), name="images")
    h = tf.keras.layers.ReLU(name="lens_in_act")(conv(f, "lens_in")(x_in))
    for i in range(int(lc.blocks)):
        r = tf.keras.layers.ReLU(name=f"lens_b{i}_act0")(conv(f, f"lens_b{i}_conv0")(h))
        # Zero-initialized last conv per residual branch (Fixup-style): without it 8 un-normalized
        # blocks grow the activation variance ~2^8 and the lens would not start near identity.
        r = conv(f, f"lens_b{i}_conv1", tf.keras.initializers.Zeros())(r)
        h = tf.keras.layers.Add(name=f"lens_b{i}_add")([h, r])
    r = conv(3, "lens_out", tf.keras.initializers.RandomNormal(stddev=1e-3))(h)
    r = layers.to_float32(r, "lens_residual")
    out = tf.keras.layers.Add(dtype="float32", name="lens_skip")([x_in, r])
    out = layers.Clip(-1.0, 1.0, dtype="float32", name="lensed")(out)
    return tf.keras.Model(x_in, out, name="lens")


def lens_lambda(step, anneal_steps: int):
    """1 - sin(t pi / (2K)) for t <= K, else 0 (K <= 0: always 0). Python number or tensor."""
    K = int(anneal_steps)
    if tf.is_tensor(step):
        if K <= 0:
            return tf.zeros([], tf.float32)
        t = tf.cast(step, tf.float32)
        return tf.where(t <= K, 1.0 - tf.sin(t * math.pi / (2.0 * K)), 0.0)
    if K <= 0 or step > K:
        return 0.0
    return 1.0 - math.sin(float(step) * math.pi / (2.0 * K))
