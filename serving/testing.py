"""Small stand-in generators for serving tests and benchmarks (no training code needed).

`tiny_generator`: z -> tanh images in a few ms (tests). `dcgan_generator`: the DCGAN generator
shape (Radford et al. 2016: project to 4x4x8f, stride-2 5x5 transposed convs with BN + ReLU,
tanh) for benchmarks, used only if trainer.networks is unavailable.
"""
from __future__ import annotations


def tiny_generator(z_dim: int = 8, resolution: int = 16, seed: int = 0):
    import tensorflow as tf
    tf.keras.utils.set_random_seed(seed)
    z = tf.keras.Input([z_dim])
    x = tf.keras.layers.Dense(4 * 4 * 8)(z)
    x = tf.keras.layers.Reshape([4, 4, 8])(x)
    x = tf.keras.layers.BatchNormalization()(x)   # so inference mode (training=False) matters
    x = tf.keras.layers.Conv2DTranspose(3, 4, strides=resolution // 4, padding="same", activation="tanh")(x)
    return tf.keras.Model(z, x, name="tiny_generator")


def dcgan_generator(z_dim: int = 100, resolution: int = 64, filters: int = 64, seed: int = 0):
    import math

    import tensorflow as tf
    tf.keras.utils.set_random_seed(seed)
    n = int(math.log2(resolution // 4))
    z = tf.keras.Input([z_dim])
    x = tf.keras.layers.Dense(4 * 4 * filters * 2 ** (n - 1), use_bias=False)(z)
    x = tf.keras.layers.Reshape([4, 4, filters * 2 ** (n - 1)])(x)
    x = tf.keras.layers.ReLU()(tf.keras.layers.BatchNormalization()(x))
    for i in range(n - 1):
        x = tf.keras.layers.Conv2DTranspose(filters * 2 ** (n - 2 - i), 5, 2, "same", use_bias=False)(x)
        x = tf.keras.layers.ReLU()(tf.keras.layers.BatchNormalization()(x))
    x = tf.keras.layers.Conv2DTranspose(3, 5, 2, "same", activation="tanh")(x)
    return tf.keras.Model(z, x, name="dcgan_generator")


def bench_generator(z_dim: int = 100, resolution: int = 64):
    """(generator, cfg or None, source): trainer.networks' DCGAN if it is there, else the stand-in."""
    try:
        from facegan.trainer.config import get_preset
        from facegan.trainer.networks import build_networks
        cfg = get_preset("dcgan", {"network.z_dim": z_dim, "network.resolution": resolution})
        return build_networks(cfg).generator, cfg, "facegan.trainer.networks (dcgan preset)"
    except ImportError:
        return dcgan_generator(z_dim, resolution), None, "facegan.serving.testing.dcgan_generator"
