"""The DCGAN family: dcgan, hdcgan and facegan from ONE builder, parameterized by `ConvSpec`.

G: z -> [noise] -> FC blocks -> FC projection to [s, s, C0] (BN + act) -> n stride-2
   transposed convs (BN + act; the last one to 3 channels, no BN) -> tanh.
D: x -> [noise] -> n stride-2 convs (no BN on the first, Radford et al.) -> flatten -> FC blocks
   -> features -> [minibatch discrimination] -> dense 1 = logits (the sigmoid lives in the loss).
Widths double per layer away from the image: filters, 2 filters, ... capped at max_filters.

* dcgan (Radford et al. 2016): 5x5 kernels (their Fig. 1), ReLU in G, LeakyReLU 0.2 in D,
  BatchNorm, N(0, 0.02) init; n = log2(R / 4) so the first/last feature map is 4x4.
* hdcgan (Curto et al., HDCGAN): 4x4 kernels stride 2, BatchNorm + SELU ("BS") blocks in G and D,
  LeCun-normal init (SELU's self-normalizing init), additive Gaussian noise (training only) on
  the inputs of G (z) and D (images) with `network.input_noise_std`; 32x32 up to 512x512.
* facegan (Li et al., FaceGANs): G = two FC layers then four deconvolutions; D = four convolutions
  then two FC layers; BatchNorm + LeakyReLU between layers, no BN after D's first conv. As in the
  paper, G's first FC layer EXPANDS the latent to a large size (`FACEGAN_G_FC` = 4096) and the
  second SHRINKS it to the deconvolution input [R/16, R/16, C0]; C0 is the usual width
  (8 filters, capped at max_filters) capped again so the deconvolution input is at most half the
  first FC layer (`ConvSpec.project_ratio`): 64px, 64 filters -> 100 -> 4096 -> 2048 = 4x4x128.
  D's hidden FC width is `FACEGAN_FC` (1024).
* tan (Sajjadi et al. 2018, Tempered Adversarial Networks): their DCGAN-style setting, 4x4
  kernels and Xavier (Glorot uniform) init, ReLU in G, LeakyReLU 0.2 in D, trained at 32x32.

`network.batch_norm = false` drops every BatchNorm (layers get biases instead): TAN's LSGAN and
WGAN-GP variants use a DCGAN-style critic without BatchNorm, which is also what lets a
per-example gradient penalty be used with this family.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Tuple

import tensorflow as tf

from facegan.trainer.networks import Networks, conditional, layers
from facegan.trainer.regularizers import MinibatchDiscrimination

FACEGAN_FC = 1024       # D: flatten -> 1024 -> 1
FACEGAN_G_FC = 4096     # G: z -> 4096 -> deconvolution input (smaller)


@dataclasses.dataclass(frozen=True)
class ConvSpec:
    name: str
    kernel: int
    g_act: str
    d_act: str
    init: Callable[[], tf.keras.initializers.Initializer]
    g_fc: Tuple[int, ...] = ()       # hidden FC widths in G before the projection
    d_fc: Tuple[int, ...] = ()       # hidden FC widths in D after flatten
    n_layers: int = 0                # fixed number of stride-2 layers (0: log2(R / 4))
    input_noise: bool = False
    # > 0: the projection to the deconvolution input has at most g_fc[-1] * project_ratio units,
    # so G's FC layers expand then shrink (FaceGANs); 0: no cap.
    project_ratio: float = 0.0


def _normal002():
    return tf.keras.initializers.RandomNormal(stddev=0.02)


DCGAN = ConvSpec("dcgan", kernel=5, g_act="relu", d_act="lrelu", init=_normal002)
HDCGAN = ConvSpec("hdcgan", kernel=4, g_act="selu", d_act="selu", init=tf.keras.initializers.LecunNormal,
                  input_noise=True)
TAN = ConvSpec("tan", kernel=4, g_act="relu", d_act="lrelu", init=tf.keras.initializers.GlorotUniform)
FACEGAN = ConvSpec("facegan", kernel=5, g_act="lrelu", d_act="lrelu", init=_normal002,
                   g_fc=(FACEGAN_G_FC,), d_fc=(FACEGAN_FC,), n_layers=4, project_ratio=0.5)


def _n_layers(spec: ConvSpec, resolution: int) -> int:
    n = spec.n_layers or int(math.log2(resolution // 4))
    if resolution % (2 ** n) or resolution // (2 ** n) < 1:
        raise ValueError(f"network.resolution {resolution} too small for {spec.name} ({n} stride-2 layers)")
    return n


def _width(cfg, i):
    return min(cfg.network.max_filters, cfg.network.filters * 2 ** i)


def build_generator(spec: ConvSpec, cfg, num_attributes: int = 0) -> tf.keras.Model:
    """z -> images, or [z, attributes] -> images when num_attributes > 0."""
    net = cfg.network
    R = net.resolution
    n = _n_layers(spec, R)
    s = R // 2 ** n
    z = tf.keras.Input((net.z_dim,), name="z")
    x = z
    if spec.input_noise and net.input_noise_std > 0:
        x = tf.keras.layers.GaussianNoise(net.input_noise_std, name="g_input_noise")(x)
    if num_attributes:
        y = conditional.attribute_input(num_attributes)
        x = conditional.generator_input(x, y, cfg.condition.embedding, spec.init())
    bn = net.batch_norm
    for i, units in enumerate(spec.g_fc):
        x = layers.dense_block(x, units, spec.g_act, spec.init(), norm=bn, name=f"g_fc{i}")
    c0 = _width(cfg, n - 1)
    if spec.project_ratio and spec.g_fc:
        c0 = max(1, min(c0, int(spec.g_fc[-1] * spec.project_ratio) // (s * s)))
    x = layers.dense_block(x, s * s * c0, spec.g_act, spec.init(), norm=bn, name="g_project")
    x = tf.keras.layers.Reshape((s, s, c0), name="g_reshape")(x)
    for i in range(1, n):
        x = layers.up_block(x, _width(cfg, n - 1 - i), spec.kernel, spec.g_act, spec.init(), norm=bn,
                            name=f"g_up{i}")
    x = tf.keras.layers.Conv2DTranspose(3, spec.kernel, strides=2, padding="same",
                                        kernel_initializer=spec.init(), name="g_to_rgb")(x)
    out = tf.keras.layers.Activation("tanh", dtype="float32", name="images")(x)
    return tf.keras.Model([z, y] if num_attributes else z, out, name=f"{spec.name}_generator_{R}")


def build_discriminator(spec: ConvSpec, cfg, num_attributes: int = 0) -> tf.keras.Model:
    """images -> {logits, features}; conditional (num_attributes > 0): projection D takes
    [images, attributes]; AC-GAN D takes images and adds `class_logits` [N, A]."""
    net, tricks = cfg.network, cfg.tricks
    R = net.resolution
    n = _n_layers(spec, R)
    img = tf.keras.Input((R, R, 3), name="images")
    x = img
    if spec.input_noise and net.input_noise_std > 0:
        x = tf.keras.layers.GaussianNoise(net.input_noise_std, name="d_input_noise")(x)
    for i in range(n):
        x = layers.down_block(x, _width(cfg, i), spec.kernel, spec.d_act, spec.init(), norm=net.batch_norm and i > 0,
                              name=f"d_down{i}")
    x = tf.keras.layers.Flatten(name="d_flatten")(x)
    for i, units in enumerate(spec.d_fc):
        x = layers.dense_block(x, units, spec.d_act, spec.init(), norm=net.batch_norm, name=f"d_fc{i}")
    features = x
    if tricks.minibatch_discrimination:
        x = MinibatchDiscrimination(tricks.mbd_kernels, tricks.mbd_kernel_dim, name="d_mbd")(x)
    logits = tf.keras.layers.Dense(1, kernel_initializer=spec.init(), name="d_logits")(x)
    inputs, extra = img, {}
    if num_attributes:   # projection or AC-GAN (networks/conditional.py)
        y, logits, extra = conditional.discriminator_head(features, logits, num_attributes,
                                                          cfg.condition.discriminator, spec.init())
        inputs = [img, y] if y is not None else img
    outputs = {"logits": layers.to_float32(logits, "logits"), "features": layers.to_float32(features, "features"),
               **extra}
    return tf.keras.Model(inputs, outputs, name=f"{spec.name}_discriminator_{R}")


def _build(spec: ConvSpec, cfg, alpha=None, num_attributes: int = 0) -> Networks:
    return Networks(build_generator(spec, cfg, num_attributes), build_discriminator(spec, cfg, num_attributes),
                    progressive=False, alpha=None, resolution=cfg.network.resolution,
                    default_batch_size=cfg.optim.batch_size)


def build_dcgan(cfg, alpha=None) -> Networks:
    return _build(DCGAN, cfg)


def build_hdcgan(cfg, alpha=None) -> Networks:
    return _build(HDCGAN, cfg)


def build_facegan(cfg, alpha=None) -> Networks:
    return _build(FACEGAN, cfg)


# Conditional variants: the attributes come from cfg.condition (trainer/conditioning.py).
def _build_conditional(spec: ConvSpec, cfg) -> Networks:
    from facegan.conditioning import attribute_names
    return _build(spec, cfg, num_attributes=len(attribute_names(cfg)))


def build_cdcgan(cfg, alpha=None) -> Networks:
    return _build_conditional(DCGAN, cfg)


def build_chdcgan(cfg, alpha=None) -> Networks:
    return _build_conditional(HDCGAN, cfg)


def build_cfacegan(cfg, alpha=None) -> Networks:
    return _build_conditional(FACEGAN, cfg)


def build_tan(cfg, alpha=None) -> Networks:
    return _build(TAN, cfg)
