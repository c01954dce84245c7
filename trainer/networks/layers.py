"""Building blocks shared by every architecture (no network is copied per variant).

* `EqualizedDense`, `EqualizedConv2D`: Karras et al. 2018 §4.1 equalized learning rate — weights
  drawn from N(0, 1) and scaled at RUNTIME by gain / sqrt(fan_in) (He's constant). With
  `equalized=False` the same constant is folded into the initializer instead (plain He init).
* `PixelNorm`: Karras §4.2 pixelwise feature vector normalization.
* `MinibatchStddev`: Karras §3 (+ optional skewness/kurtosis), see `regularizers.minibatch_stddev`.
* `FadeIn`: lerp(old, new, alpha) reading a shared non-trainable `alpha` variable (progressive growing).
* `up_block`, `down_block`, `dense_block`: the conv / deconv / FC + norm + activation units of the
  DCGAN family (dcgan, hdcgan, facegan differ only in kernel, activation, init and layout).
* `to_float32`: final cast so outputs are float32 under mixed precision.
"""
from __future__ import annotations

import math

import tensorflow as tf

from facegan.trainer import regularizers


def leaky_relu(x, alpha=0.2):
    """LeakyReLU. In bfloat16 it is computed as alpha * x + (1 - alpha) * relu(x), the same
    function: TF 2.15's CPU LeakyReluGrad has no vectorised bf16 kernel (it took 15% of a
    mixed_bfloat16 DCGAN step, more than any op but the convolutions), while Relu/ReluGrad and
    elementwise mul/add do (forward + gradient measured 5.6x faster, [128, 32, 32, 64], on this project's CPU)."""
    if x.dtype == tf.bfloat16:
        return alpha * x + (1.0 - alpha) * tf.nn.relu(x)
    return tf.nn.leaky_relu(x, alpha)


def leaky_relu_f32(x, alpha=0.2):
    """LeakyReLU computed in float32 for a bfloat16 input and cast back (as `selu`): the result and
    its gradient are the float32 ones rounded once to bf16, and forward + gradient cost 10 ms of CPU
    on [64, 32, 32, 128] against 52 ms for TF 2.15's bf16 LeakyRelu/LeakyReluGrad and 17 ms for
    `leaky_relu`'s bf16 form (its forward alone costs 13 ms vs 7 ms: four elementwise passes).
    StyleGAN2 uses it; the DCGAN family keeps `leaky_relu`, whose bf16 form the committed
    study runs were trained with."""
    if x.dtype == tf.bfloat16:
        return tf.cast(tf.nn.leaky_relu(tf.cast(x, tf.float32), alpha), tf.bfloat16)
    return tf.nn.leaky_relu(x, alpha)


def selu(x):
    """SELU (Klambauer et al. 2017). A bfloat16 input is computed in float32 and cast back: TF
    2.15's CPU Selu/SeluGrad bf16 kernels are unvectorised (forward + gradient 20x slower than
    this form on [128, 32, 32, 64], on this project's CPU); the casts are vectorised."""
    if x.dtype == tf.bfloat16:
        return tf.cast(tf.nn.selu(tf.cast(x, tf.float32)), tf.bfloat16)
    return tf.nn.selu(x)


class EqualizedDense(tf.keras.layers.Layer):
    def __init__(self, units, gain=math.sqrt(2.0), equalized=True, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self.units, self.gain, self.equalized, self.use_bias = int(units), float(gain), bool(equalized), use_bias

    def build(self, input_shape):
        fan_in = int(input_shape[-1])
        self.scale = self.gain / math.sqrt(fan_in)
        std = 1.0 if self.equalized else self.scale
        self.kernel = self.add_weight("kernel", shape=(fan_in, self.units),
                                      initializer=tf.keras.initializers.RandomNormal(stddev=std))
        self.bias = self.add_weight("bias", shape=(self.units,), initializer="zeros") if self.use_bias else None
        super().build(input_shape)

    def call(self, x):
        w = self.kernel * self.scale if self.equalized else self.kernel
        y = tf.matmul(x, w)
        return y + self.bias if self.use_bias else y

    def get_config(self):
        return dict(super().get_config(), units=self.units, gain=self.gain, equalized=self.equalized,
                    use_bias=self.use_bias)


class EqualizedConv2D(tf.keras.layers.Layer):
    """Stride-1 'same' convolution with (optionally) equalized learning rate."""

    def __init__(self, filters, kernel_size=3, gain=math.sqrt(2.0), equalized=True, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.kernel_size = int(filters), int(kernel_size)
        self.gain, self.equalized, self.use_bias = float(gain), bool(equalized), use_bias

    def build(self, input_shape):
        cin = int(input_shape[-1])
        k = self.kernel_size
        self.scale = self.gain / math.sqrt(k * k * cin)
        std = 1.0 if self.equalized else self.scale
        self.kernel = self.add_weight("kernel", shape=(k, k, cin, self.filters),
                                      initializer=tf.keras.initializers.RandomNormal(stddev=std))
        self.bias = self.add_weight("bias", shape=(self.filters,), initializer="zeros") if self.use_bias else None
        super().build(input_shape)

    def call(self, x):
        w = self.kernel * self.scale if self.equalized else self.kernel
        y = tf.nn.conv2d(x, w, strides=1, padding="SAME")
        return tf.nn.bias_add(y, self.bias) if self.use_bias else y

    def get_config(self):
        return dict(super().get_config(), filters=self.filters, kernel_size=self.kernel_size, gain=self.gain,
                    equalized=self.equalized, use_bias=self.use_bias)


class PixelNorm(tf.keras.layers.Layer):
    """b = a / sqrt(mean_c a^2 + eps) at every pixel (Karras §4.2); in float32 for stability."""

    def __init__(self, epsilon=1e-8, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def call(self, x):
        x32 = tf.cast(x, tf.float32)
        y = x32 * tf.math.rsqrt(tf.reduce_mean(tf.square(x32), axis=-1, keepdims=True) + self.epsilon)
        return tf.cast(y, x.dtype)

    def get_config(self):
        return dict(super().get_config(), epsilon=self.epsilon)


class LeakyReLU(tf.keras.layers.Layer):
    def __init__(self, alpha=0.2, **kwargs):
        super().__init__(**kwargs)
        self.alpha = float(alpha)

    def call(self, x):
        return leaky_relu(x, self.alpha)

    def get_config(self):
        return dict(super().get_config(), alpha=self.alpha)


class LeakyReLUF32(LeakyReLU):
    """`leaky_relu_f32` as a layer (StyleGAN2's discriminator)."""

    def call(self, x):
        return leaky_relu_f32(x, self.alpha)


class MinibatchStddev(tf.keras.layers.Layer):
    def __init__(self, group_size=4, extra_stats=False, **kwargs):
        super().__init__(**kwargs)
        self.group_size, self.extra_stats = int(group_size), bool(extra_stats)

    def call(self, x):
        return regularizers.minibatch_stddev(x, self.group_size, self.extra_stats)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (input_shape[-1] + (3 if self.extra_stats else 1),)

    def get_config(self):
        return dict(super().get_config(), group_size=self.group_size, extra_stats=self.extra_stats)


class FadeIn(tf.keras.layers.Layer):
    """old + alpha (new - old); `alpha` is a shared non-trainable tf.Variable (tracked, so a
    SavedModel of the generator captures it)."""

    def __init__(self, alpha: tf.Variable, **kwargs):
        super().__init__(**kwargs)
        self.alpha = alpha

    def call(self, inputs):
        old, new = inputs
        a = tf.cast(self.alpha, new.dtype)
        return old + a * (new - old)


class ScaledAdd(tf.keras.layers.Layer):
    """(a + b) * scale — residual merge (scale 1/sqrt(2) keeps the variance of two unit inputs)."""

    def __init__(self, scale=1.0 / math.sqrt(2.0), **kwargs):
        super().__init__(**kwargs)
        self.scale = float(scale)

    def call(self, inputs):
        a, b = inputs
        return (a + b) * tf.cast(self.scale, a.dtype)

    def get_config(self):
        return dict(super().get_config(), scale=self.scale)


class Clip(tf.keras.layers.Layer):
    def __init__(self, lo=-1.0, hi=1.0, **kwargs):
        super().__init__(**kwargs)
        self.lo, self.hi = float(lo), float(hi)

    def call(self, x):
        return tf.clip_by_value(x, tf.cast(self.lo, x.dtype), tf.cast(self.hi, x.dtype))

    def get_config(self):
        return dict(super().get_config(), lo=self.lo, hi=self.hi)


def to_float32(x, name=None):
    """Identity that casts to float32 (network outputs are float32 under mixed precision)."""
    return tf.keras.layers.Activation("linear", dtype="float32", name=name)(x)


# -- DCGAN-family units -----------------------------------------------------------------------
def activation(kind: str, name=None):
    if kind == "relu":
        return tf.keras.layers.ReLU(name=name)
    if kind == "lrelu":
        return LeakyReLU(0.2, name=name)
    if kind == "selu":
        return tf.keras.layers.Activation(selu, name=name)
    raise ValueError(f"unknown activation {kind!r}")


def _strided_block(conv, suffix, x, filters, kernel, act, init, norm, name):
    x = conv(filters, kernel, strides=2, padding="same", use_bias=not norm,
             kernel_initializer=init, name=f"{name}_{suffix}")(x)
    if norm:
        x = tf.keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{name}_bn")(x)
    return activation(act, name=f"{name}_act")(x)


def up_block(x, filters, kernel, act, init, norm=True, name=""):
    """Fractionally strided (transposed) conv, stride 2, then BatchNorm and activation."""
    return _strided_block(tf.keras.layers.Conv2DTranspose, "deconv", x, filters, kernel, act, init, norm, name)


def down_block(x, filters, kernel, act, init, norm=True, name=""):
    """Strided conv, stride 2, then (optional) BatchNorm and activation."""
    return _strided_block(tf.keras.layers.Conv2D, "conv", x, filters, kernel, act, init, norm, name)


def dense_block(x, units, act, init, norm=True, name=""):
    x = tf.keras.layers.Dense(units, use_bias=not norm, kernel_initializer=init, name=f"{name}_fc")(x)
    if norm:
        x = tf.keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{name}_bn")(x)
    return activation(act, name=f"{name}_act")(x)
