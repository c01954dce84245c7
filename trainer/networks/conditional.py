"""Conditioning pieces any architecture can use: G's attribute input, the projection
discriminator's term, the AC-GAN head and its loss. Config and rules: trainer/conditioning.py.

* Generator: y (float [N, A], values in [0, 1]) is concatenated to z, raw or through a learned
  dense embedding (`condition.embedding`), as in Mirza & Osindero 2014 (conditional GANs).
* Projection discriminator (Miyato & Koyama 2018, eq. 3): f(x, y) = y^T V phi(x) + psi(phi(x)),
  phi = D's features (the input of its last dense layer), psi = the unconditional logit. Their y
  is one categorical label; our y is A binary attributes, so each attribute a is a 2-class label
  with one embedding per value (v_a^1, v_a^0) and the class terms add up:
  sum_a [y_a v_a^1 + (1 - y_a) v_a^0] . phi(x) = [y, 1 - y]^T V phi(x) with V [2A, F].
* AC-GAN (Odena et al. 2017): D also predicts the attributes from phi(x); D minimizes the
  classification loss on real and fake examples, G on fake ones. AC-GAN's class is categorical
  (softmax cross-entropy, TF-GAN's `acgan_discriminator_loss`); with A independent binary
  attributes it is the sum of A two-class softmax cross-entropies, i.e. sigmoid cross-entropy per
  attribute (a test checks it against TF-GAN's loss on [0, logit] pairs).
"""
from __future__ import annotations

import tensorflow as tf

ATTRIBUTES = "attributes"


def attribute_input(num_attributes: int) -> tf.keras.Input:
    return tf.keras.Input((int(num_attributes),), name=ATTRIBUTES)


def _unshared(key, factory):
    return factory()


def generator_input(z, attributes, embedding: int = 0, initializer=None, shared=_unshared):
    """concat(z, y) or concat(z, dense_embedding(y)) (the first layer of a conditional G).
    `shared(key, factory)` returns the layer for `key` (ProGAN passes its layer store, so every
    stage model reuses one embedding)."""
    y = attributes
    if embedding:
        y = shared("g_attribute_embedding", lambda: tf.keras.layers.Dense(
            int(embedding), kernel_initializer=initializer or "glorot_uniform", name="g_attribute_embedding"))(y)
    return tf.keras.layers.Concatenate(name="g_condition")([z, tf.cast(y, z.dtype)])


def discriminator_head(features, logits, num_attributes: int, discriminator: str, initializer=None,
                       shared=_unshared):
    """The conditional end of any D, on its final features phi(x) and unconditional logit psi:
    (attribute input or None, logits, extra outputs). "projection": logits + [y, 1 - y]^T V phi and
    D takes [images, y]; "acgan": a `class_logits` [N, A] head on phi (D takes images only)."""
    from facegan.trainer.networks import layers
    if discriminator == "projection":
        y = attribute_input(num_attributes)
        proj = shared("d_projection", lambda: Projection(initializer, name="d_projection"))([features, y])
        return y, tf.keras.layers.Add()([logits, proj]), {}
    cls = shared("d_class", lambda: tf.keras.layers.Dense(num_attributes, kernel_initializer=initializer,
                                                          name="d_class"))(features)
    return None, logits, {"class_logits": layers.to_float32(cls, "class_logits")}


class Projection(tf.keras.layers.Layer):
    """[y, 1 - y]^T V phi -> [N, 1] (the class term of the projection discriminator; see module)."""

    def __init__(self, initializer=None, **kwargs):
        super().__init__(**kwargs)
        self.initializer = initializer or tf.keras.initializers.RandomNormal(stddev=0.02)

    def build(self, input_shape):
        features_shape, attributes_shape = input_shape
        self.embedding = self.add_weight("embedding", shape=(2 * int(attributes_shape[-1]), int(features_shape[-1])),
                                         initializer=self.initializer)
        super().build(input_shape)

    def call(self, inputs):
        features, y = inputs
        y = tf.cast(y, features.dtype)
        onehot = tf.concat([y, 1.0 - y], axis=-1)                    # [N, 2A]
        class_embedding = tf.matmul(onehot, tf.cast(self.embedding, features.dtype))   # [N, F]
        return tf.reduce_sum(class_embedding * features, axis=-1, keepdims=True)


def acgan_loss(class_logits, attributes):
    """Per-example AC-GAN classification loss [N]: sum over attributes of the two-class
    cross-entropy of the attribute's logit against its label (see module docstring)."""
    ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.cast(attributes, tf.float32),
                                                 logits=tf.cast(class_logits, tf.float32))
    return tf.reduce_sum(ce, axis=-1)
