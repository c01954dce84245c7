"""Small stand-in generators for serving tests (no training code needed).

`tiny_generator`: z -> tanh images in a few ms. `tiny_conditional_generator`: [z, attributes] ->
images (the conditional kind). `tiny_translator`: images -> images, optionally upsampled (the
image_to_image kind).
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


def tiny_conditional_generator(z_dim: int = 8, num_attributes: int = 3, resolution: int = 16, seed: int = 0):
    import tensorflow as tf
    tf.keras.utils.set_random_seed(seed)
    z, a = tf.keras.Input([z_dim]), tf.keras.Input([num_attributes])
    # Attributes scaled up so that they visibly change the image.
    x = tf.keras.layers.Concatenate()([z, tf.keras.layers.Rescaling(3.0)(a)])
    x = tf.keras.layers.Dense(resolution * resolution * 3, activation="tanh")(x)
    return tf.keras.Model([z, a], tf.keras.layers.Reshape([resolution, resolution, 3])(x),
                          name="tiny_conditional_generator")


def tiny_translator(resolution: int = 16, upsample: int = 1, seed: int = 0):
    import tensorflow as tf
    tf.keras.utils.set_random_seed(seed)
    x = inp = tf.keras.Input([resolution, resolution, 3])
    if upsample > 1:
        x = tf.keras.layers.UpSampling2D(upsample)(x)
    x = tf.keras.layers.Conv2D(3, 3, padding="same", activation="tanh")(x)
    return tf.keras.Model(inp, x, name="tiny_translator")
