"""Image-to-image losses as pure functions returning PER-EXAMPLE values [N] (see trainer/losses.py).

Patch logits [N, P, P, 1] are averaged over the patches of each example (the PatchGAN "averages
all responses to provide the ultimate output of D", Isola et al. 2017, sec. 3.2.2).

pix2pix (Isola et al. 2017, eq. 4): G* = arg min_G max_D L_cGAN(G, D) + lambda L_L1(G), lambda = 100,
with L_L1 = E ||y - G(x)||_1; "we divide the objective by 2 while optimizing D"; G uses the
non-saturating form, "maximize log D(x, G(x))":
    D: 0.5 * [softplus(-D(x, y)) + softplus(D(x, G(x)))]      G: softplus(-D(x, G(x)))
CycleGAN (Zhu et al. 2017, eqs. 2-3, sec. 4 "Training details"): least-squares GAN loss
    D: 0.5 * [(D(y) - 1)^2 + D(G(x))^2]      G: (D(G(x)) - 1)^2
cycle loss ||F(G(x)) - x||_1 + ||G(F(y)) - y||_1 weighted by lambda = 10, identity loss
||G(y) - y||_1 + ||F(x) - x||_1 weighted by 0.5 * lambda. Here L1 terms are the per-example MEAN
absolute difference over pixels and channels (the papers' implementations use nn.L1Loss, a mean).
"""
from __future__ import annotations

import tensorflow as tf


def _patches(logits) -> tf.Tensor:
    """[N, ...] logits of any float dtype -> float32 [N, P] (every patch of an example)."""
    x = tf.cast(tf.convert_to_tensor(logits), tf.float32)
    return tf.reshape(x, [tf.shape(x)[0], -1])


def _no_smoothing(s):
    if s:
        raise ValueError(f"image-to-image losses take no label smoothing, got {s}")


def patch_ns_discriminator_loss(real_logits, fake_logits, real_label_smoothing: float = 0.0):
    """0.5 * mean over patches of [softplus(-D(x, y)) + softplus(D(x, G(x)))]: pix2pix's D."""
    _no_smoothing(real_label_smoothing)
    r, f = _patches(real_logits), _patches(fake_logits)
    return 0.5 * (tf.reduce_mean(tf.nn.softplus(-r), 1) + tf.reduce_mean(tf.nn.softplus(f), 1))


def patch_ns_generator_loss(fake_logits, fake_unused=None):
    """mean over patches of softplus(-D(x, G(x))) = -log sigmoid: pix2pix's non-saturating G."""
    return tf.reduce_mean(tf.nn.softplus(-_patches(fake_logits)), 1)


def patch_lsgan_discriminator_loss(real_logits, fake_logits, real_label_smoothing: float = 0.0):
    """0.5 * mean over patches of [(D(y) - 1)^2 + D(G(x))^2]: CycleGAN's D."""
    _no_smoothing(real_label_smoothing)
    r, f = _patches(real_logits), _patches(fake_logits)
    return 0.5 * (tf.reduce_mean(tf.square(r - 1.0), 1) + tf.reduce_mean(tf.square(f), 1))


def patch_lsgan_generator_loss(fake_logits, fake_unused=None):
    """mean over patches of (D(G(x)) - 1)^2: CycleGAN's G."""
    return tf.reduce_mean(tf.square(_patches(fake_logits) - 1.0), 1)


def l1_per_example(a, b) -> tf.Tensor:
    """[N]: mean |a - b| over each example's pixels and channels (float32)."""
    d = tf.abs(tf.cast(a, tf.float32) - tf.cast(b, tf.float32))
    return tf.reduce_mean(tf.reshape(d, [tf.shape(d)[0], -1]), 1)


def cycle_loss(x, x_cycled, y, y_cycled) -> tf.Tensor:
    """[N]: ||F(G(x)) - x||_1 + ||G(F(y)) - y||_1 (per-example means), Zhu et al. eq. 2."""
    return l1_per_example(x_cycled, x) + l1_per_example(y_cycled, y)


def identity_loss(x, f_of_x, y, g_of_y) -> tf.Tensor:
    """[N]: ||G(y) - y||_1 + ||F(x) - x||_1 (per-example means), Zhu et al. sec. 5.2."""
    return l1_per_example(g_of_y, y) + l1_per_example(f_of_x, x)
