"""The graph pieces every consumer must compute identically: uint8 <-> network range, latents."""
from __future__ import annotations

import tensorflow as tf


def to_uint8(images) -> tf.Tensor:
    """float [-1, 1] network output -> uint8 [0, 255] (round to nearest, clipped)."""
    x = tf.cast(images, tf.float32)
    return tf.cast(tf.round(tf.clip_by_value((x + 1.0) * 127.5, 0.0, 255.0)), tf.uint8)


def from_uint8(images) -> tf.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1] (the network range)."""
    return tf.cast(images, tf.float32) / 127.5 - 1.0


def sample_latents(seed, start, num, z_dim: int) -> tf.Tensor:
    """float32 [num, z_dim]: rows [start, start + num) of the seed's latent stream.

    Row i is stateless_normal([z_dim], seed=[seed, i]), so it depends only on (seed, i):
    prefix-stable and batch-split-stable. The `sample` signature runs exactly this in its graph;
    clients run it eagerly to reproduce a seed through `serving_default`.
    """
    seed = tf.cast(seed, tf.int64)
    start = tf.cast(start, tf.int64)
    rows = tf.range(start, start + tf.cast(num, tf.int64), dtype=tf.int64)
    return tf.map_fn(lambda i: tf.random.stateless_normal([z_dim], seed=tf.stack([seed, i])),
                     rows, fn_output_signature=tf.TensorSpec([z_dim], tf.float32),
                     parallel_iterations=None if tf.executing_eagerly() else 32)
