"""Image-to-image networks: pix2pix's U-Net and PatchGAN, CycleGAN's ResNet generator.

Contract for kind `image_to_image` (see trainer/networks/__init__.py for the z -> image one):
G maps float32 images [N, R, R, 3] in [-1, 1] to images of the same size in [-1, 1] (tanh); D maps
images [N, R, R, C] (C = 6 for pix2pix's conditional D: input and output concatenated; 3 for
CycleGAN) to {"logits": float32 [N, P, P, 1]}, one logit per patch. Weights start from
N(0, 0.02), as in both papers.

pix2pix (Isola et al. 2017, "Image-to-Image Translation with Conditional Adversarial Networks"):
- U-Net G, "an encoder-decoder with skip connections between mirrored layers": encoder
  C64-C128-C256-C512-C512-... of 4x4 stride-2 convolutions, LeakyReLU 0.2, BatchNorm except on
  the first layer (and the innermost one, as the authors' code does), down to 1x1 (log2 R layers:
  8 at 256 px, 5 at 32 px); decoder of 4x4 stride-2 transposed convolutions, BatchNorm, ReLU,
  each concatenated with its mirrored encoder layer; "dropout, applied on several layers of our
  generator": 0.5 on the first three decoder layers (CD512). The paper keeps dropout on at test
  time as its only noise; here the exported G runs with training=False (deterministic, so served
  output equals the direct SavedModel's): dropout is noise during training only.
- PatchGAN D: C64-C128-C256-C512, 4x4, stride 2 except the last (stride 1), then a 1-channel
  4x4 convolution: the 70x70 receptive field at 256 px. Scaled to the resolution: the number of
  stride-2 layers is clip(log2 R - 5, 1, 3), so the receptive field stays about a quarter of the
  image side (70 px at 256, 34 at 128, 16 at 64 and at 32).
CycleGAN (Zhu et al. 2017): G "c7s1-64, d128, d256, R256 x n, u128, u64, c7s1-3" with instance
normalization and reflection padding, n = 6 residual blocks at 128 px, 9 at 256 px
(`network.resnet_blocks`); D is the 70x70 PatchGAN with instance normalization.
"""
from __future__ import annotations

import math

import tensorflow as tf

import dataclasses
from typing import Dict, Optional

from facegan.trainer.networks import Networks



def _init():
    """A fresh N(0, 0.02) initializer per layer (one shared unseeded instance would give every
    layer of a shape the same weights)."""
    return tf.keras.initializers.RandomNormal(stddev=0.02)


def patch_layers(resolution: int) -> int:
    """Stride-2 layers of the PatchGAN at a resolution: 3 at 256 (70x70 patches), 2 at 128, 1 below."""
    return int(min(3, max(1, round(math.log2(resolution)) - 5)))


def patch_receptive_field(n_stride2: int) -> int:
    """Receptive field (pixels) of n stride-2 4x4 convs + a stride-1 4x4 conv + the 4x4 output conv."""
    rf, jump = 1, 1
    for stride in [2] * n_stride2 + [1, 1]:
        rf += (4 - 1) * jump
        jump *= stride
    return rf


class InstanceNorm(tf.keras.layers.Layer):
    """Per-image, per-channel normalization over H, W (Ulyanov et al. 2016), as CycleGAN uses it
    (no learned scale/offset, PyTorch InstanceNorm2d's default)."""

    def __init__(self, epsilon: float = 1e-5, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def call(self, x):
        mean, var = tf.nn.moments(x, axes=[1, 2], keepdims=True)
        return (x - mean) * tf.math.rsqrt(var + tf.cast(self.epsilon, x.dtype))

    def get_config(self):
        return dict(super().get_config(), epsilon=self.epsilon)


class ReflectPad(tf.keras.layers.Layer):
    def __init__(self, pad: int, **kwargs):
        super().__init__(**kwargs)
        self.pad = int(pad)

    def call(self, x):
        p = self.pad
        return tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], mode="REFLECT")

    def get_config(self):
        return dict(super().get_config(), pad=self.pad)


def _norm(kind: str, name: str):
    if kind == "batch":
        return tf.keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name)
    if kind == "instance":
        return InstanceNorm(name=name)
    raise ValueError(f"norm {kind!r} is not batch or instance")


def _widths(resolution: int, filters: int, max_filters: int):
    depth = int(round(math.log2(resolution)))
    return [min(filters * 2 ** i, max_filters) for i in range(depth)]


def unet_generator(resolution: int, filters: int = 64, max_filters: int = 512, dropout: float = 0.5,
                   name: str = "unet_generator") -> tf.keras.Model:
    """pix2pix's U-Net, encoder down to 1x1 (see the module docstring)."""
    widths = _widths(resolution, filters, max_filters)
    depth = len(widths)
    inp = tf.keras.Input([resolution, resolution, 3], name="images")
    x, skips = inp, []
    for i, f in enumerate(widths):
        x = tf.keras.layers.Conv2D(f, 4, 2, "same", use_bias=i in (0, depth - 1), kernel_initializer=_init(),
                                   name=f"down{i}")(x)
        if 0 < i < depth - 1:
            x = _norm("batch", f"down{i}_bn")(x)
        x = tf.keras.layers.LeakyReLU(0.2, name=f"down{i}_act")(x) if i < depth - 1 else \
            tf.keras.layers.ReLU(name=f"down{i}_act")(x)
        skips.append(x)
    for j, i in enumerate(range(depth - 2, -1, -1)):       # mirrored encoder layer i
        x = tf.keras.layers.Conv2DTranspose(widths[i], 4, 2, "same", use_bias=False, kernel_initializer=_init(),
                                            name=f"up{i}")(x)
        x = _norm("batch", f"up{i}_bn")(x)
        if j < 3 and dropout > 0:
            x = tf.keras.layers.Dropout(dropout, name=f"up{i}_dropout")(x)
        x = tf.keras.layers.ReLU(name=f"up{i}_act")(x)
        x = tf.keras.layers.Concatenate(name=f"skip{i}")([x, skips[i]])
    x = tf.keras.layers.Conv2DTranspose(3, 4, 2, "same", kernel_initializer=_init(), name="to_rgb")(x)
    out = tf.keras.layers.Activation("tanh", dtype="float32", name="tanh")(x)
    return tf.keras.Model(inp, out, name=name)


def patch_discriminator(resolution: int, channels: int, filters: int = 64, max_filters: int = 512,
                        norm: str = "batch", name: str = "patch_discriminator") -> tf.keras.Model:
    """PatchGAN (see the module docstring): {"logits": [N, P, P, 1]}."""
    n = patch_layers(resolution)
    inp = tf.keras.Input([resolution, resolution, channels], name="images")
    x = inp
    for i in range(n + 1):
        stride = 2 if i < n else 1
        x = tf.keras.layers.Conv2D(min(filters * 2 ** i, max_filters), 4, stride, "same", use_bias=i == 0,
                                   kernel_initializer=_init(), name=f"conv{i}")(x)
        if i > 0:
            x = _norm(norm, f"conv{i}_norm")(x)
        x = tf.keras.layers.LeakyReLU(0.2, name=f"conv{i}_act")(x)
    x = tf.keras.layers.Conv2D(1, 4, 1, "same", kernel_initializer=_init(), name="patch_logits")(x)
    logits = tf.keras.layers.Activation("linear", dtype="float32", name="logits")(x)
    return tf.keras.Model(inp, {"logits": logits}, name=name)


def resnet_generator(resolution: int, filters: int = 64, blocks: int = 9,
                     name: str = "resnet_generator") -> tf.keras.Model:
    """CycleGAN's generator: c7s1-f, d2f, d4f, R4f x blocks, u2f, uf, c7s1-3 (instance norm)."""
    inp = tf.keras.Input([resolution, resolution, 3], name="images")

    def conv(x, f, k, stride, nm, pad=0, act=True):
        if pad:
            x = ReflectPad(pad, name=f"{nm}_pad")(x)
        x = tf.keras.layers.Conv2D(f, k, stride, "valid" if pad else "same", kernel_initializer=_init(),
                                   name=nm)(x)
        x = InstanceNorm(name=f"{nm}_in")(x)
        return tf.keras.layers.ReLU(name=f"{nm}_act")(x) if act else x

    x = conv(inp, filters, 7, 1, "c7s1", pad=3)
    x = conv(x, 2 * filters, 3, 2, "d1")
    x = conv(x, 4 * filters, 3, 2, "d2")
    for b in range(blocks):
        y = conv(x, 4 * filters, 3, 1, f"res{b}_a", pad=1)
        y = conv(y, 4 * filters, 3, 1, f"res{b}_b", pad=1, act=False)
        x = tf.keras.layers.Add(name=f"res{b}")([x, y])
    for i, f in enumerate((2 * filters, filters)):
        x = tf.keras.layers.Conv2DTranspose(f, 3, 2, "same", kernel_initializer=_init(), name=f"u{i}")(x)
        x = InstanceNorm(name=f"u{i}_in")(x)
        x = tf.keras.layers.ReLU(name=f"u{i}_act")(x)
    x = ReflectPad(3, name="out_pad")(x)
    x = tf.keras.layers.Conv2D(3, 7, 1, "valid", kernel_initializer=_init(), name="to_rgb")(x)
    out = tf.keras.layers.Activation("tanh", dtype="float32", name="tanh")(x)
    return tf.keras.Model(inp, out, name=name)


# -- registered builders -------------------------------------------------------------------------
def build_pix2pix(cfg, alpha=None) -> Networks:
    n = cfg.network
    g = unet_generator(n.resolution, n.filters, n.max_filters, n.dropout)
    d = patch_discriminator(n.resolution, 6, n.filters, n.max_filters, norm="batch")
    return Networks(g, d, resolution=n.resolution, default_batch_size=cfg.optim.batch_size)


@dataclasses.dataclass
class CycleNetworks(Networks):
    """CycleGAN's four networks: `generator` G (A -> B) and `discriminator` D_B (on B), as the
    contract names them, plus `generator_ba` F (B -> A) and `discriminator_a` D_A (on A)."""
    generator_ba: Optional[tf.keras.Model] = None
    discriminator_a: Optional[tf.keras.Model] = None

    def checkpoint_items(self) -> Dict[str, object]:
        return dict(super().checkpoint_items(), generator_ba=self.generator_ba, discriminator_a=self.discriminator_a)


def build_cyclegan(cfg, alpha=None) -> CycleNetworks:
    n = cfg.network
    g = resnet_generator(n.resolution, n.filters, n.resnet_blocks, name="generator_ab")
    f = resnet_generator(n.resolution, n.filters, n.resnet_blocks, name="generator_ba")
    d_b = patch_discriminator(n.resolution, 3, n.filters, n.max_filters, norm="instance", name="discriminator_b")
    d_a = patch_discriminator(n.resolution, 3, n.filters, n.max_filters, norm="instance", name="discriminator_a")
    return CycleNetworks(g, d_b, resolution=n.resolution, default_batch_size=cfg.optim.batch_size,
                         generator_ba=f, discriminator_a=d_a)
