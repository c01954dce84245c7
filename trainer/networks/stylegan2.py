"""StyleGAN2 (Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN") and the
StyleGAN AdaIN variant (Karras et al. 2019), as the GAN-tricks survey describes them.

Generator (`StyleGenerator`, a subclassed Keras model)
* mapping network: z -> pixel norm -> `mapping_layers` FC layers (8 by default) with learning-rate
  multiplier 0.01 -> w (the survey: "8 FC layers by default, learning-rate multiplier 0.01, pixel
  norm of z");
* synthesis network: a learned 4x4 constant, then per resolution two 3x3 styled convolutions (the
  first after a 2x [1,3,3,1] upsample), each followed by per-layer noise with a learned strength,
  bias and LeakyReLU(0.2) * sqrt(2); skip-connection toRGB: rgb_r = upsample(rgb_{r/2}) +
  toRGB_r(x_r) (StyleGAN2 Fig. 7, "skip" generator);
* styles: `style_mode="modulated"` (StyleGAN2 Eq. 1-3): w'_ijk = s_i w_ijk,
  w''_ijk = w'_ijk / sqrt(sum_{i,k} w'_ijk^2 + eps), implemented as conv(x * s, w) * d (the
  non-fused form, same function); `style_mode="adain"` (StyleGAN): after conv/noise/bias/act,
  AdaIN(x, y) = y_s * (x - mu(x)) / sigma(x) + y_b with y = affine(w) (survey's formula);
* W-space truncation: w' = w_avg + psi (w - w_avg) on the layers < `cutoff` (all by default);
  w_avg is a non-trainable variable, an EMA of the batch mean of w updated in every training call
  (w_avg <- lerp(mean w, w_avg, beta), beta = 0.995 as in NVlabs' code), with an update counter
  `w_avg_updates` (exported "w_avg step");
* style mixing: `style_mix(z1, z2, crossover)` uses w(z1) on layers < crossover and w(z2) on the
  rest (crossover 0 = z2's image); `mixing_crossover` draws the training-time crossovers
  (mixing regularization, probability 0.9, StyleGAN §3.1);
* equalized learning rate everywhere (Karras et al. 2018 §4.1): weights ~ N(0, 1/lr_mul), scaled
  at runtime by gain * lr_mul / sqrt(fan_in).
* noise: `noise_seed` (a stateless [2] int key) draws fresh per-layer noise (training; with
  `rows = (global_batch, offset)` a replica draws the global batch's noise and takes its rows, so
  results do not depend on the replica count, like trainer/augment.py); without
  it the per-layer constant noise buffers are used (deterministic sampling and export, NVlabs'
  noise_mode="const").

Discriminator (`build_discriminator`): StyleGAN2's residual D (Fig. 7c): fromRGB 1x1, per
resolution conv3x3 -> conv3x3 -> 2x2 average pool plus a 1x1 average-pooled shortcut, summed and
scaled by 1/sqrt(2); at 4x4 minibatch stddev (group 4), conv 3x3, FC -> `features`, FC -> logits.

Widths: nf(r) = min(channel_max, channel_base // r) (NVlabs: channel_base 32768, channel_max 512).

Deviations (all noted where they happen): 2x upsampling with the [1,3,3,1] filter but edge
replication (NVlabs zero-pads) and 2x2 box downsampling in D (NVlabs: [1,3,3,1]); the generator ends in tanh (NVlabs' G is linear) so it meets the project's [-1, 1]
contract (progan.py does the same); the AdaIN variant shares StyleGAN2's topology (skip toRGB,
const followed by a conv) and differs only in how styles are applied.

Conditioning (`cstylegan2`): the attributes enter through the mapping network, as
StyleGAN2-ADA does with its label c ("embed = FC(c); x = normalize_2nd_moment(z); y =
normalize_2nd_moment(embed(c)); x = concat([x, y])", NVlabs stylegan2-ada networks.py
MappingNetwork): here the embedding is an equalized dense layer of width w_dim and the
normalization is the pixel norm (the same second-moment normalization). The same attributes map
z2 for style mixing; w_avg tracks conditional w's, as in ADA. D ends in the projection term on its
final features (Miyato & Koyama 2018) or an AC-GAN head (networks/conditional.py). The export
wraps G as a functional [z, attributes] model (`conditional_model`), so truncation there is the
conditional kind's psi-scaling of z, not W-space truncation (follow-up).

Contract (trainer/networks/__init__.py): G(z float32 [N, z_dim]) -> float32 [N, R, R, 3] in
[-1, 1]; D(images) -> {"logits": float32 [N, 1], "features": float32 [N, F]}.
Registered as the `stylegan2` (modulated) and `stylegan` (AdaIN) architectures (trainer/registry.py);
`build(cfg)` / `build_adain(cfg)` build from the registered settings (`cfg.network`, a
StyleGANSettings) extended to a StyleGANConfig (`style_config`).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Dict, Optional, Tuple

import numpy as np
import tensorflow as tf

from facegan.trainer.networks import layers
from facegan.trainer.settings import StyleGANSettings

SQRT2 = math.sqrt(2.0)
# The code below has no data-dependent python control flow: skip autograph (tracing is several
# times faster, which matters for the nested tapes of R1 / path length).
_plain = tf.autograph.experimental.do_not_convert   # (Keras then passes `training` to every call)
STYLE_MODES = ("modulated", "adain")


@dataclasses.dataclass
class StyleGANConfig(StyleGANSettings):
    """What the networks are built from: the registered `stylegan2` settings (trainer/settings.py:
    resolution, z_dim, w_dim, mapping, widths, w_avg_beta, mixing_prob, mbstd_group_size) plus
    what the architecture and the condition section decide (`style_config` fills them)."""
    style_mode: str = "modulated"        # "modulated" = StyleGAN2, "adain" = StyleGAN
    num_attributes: int = 0              # conditional (cstylegan2) when > 0
    discriminator: str = "projection"    # its D head: projection | acgan

    def __post_init__(self):
        r = self.resolution
        if r < 8 or r & (r - 1):
            raise ValueError(f"stylegan: resolution must be a power of two >= 8, got {r}")
        if self.style_mode not in STYLE_MODES:
            raise ValueError(f"stylegan: style_mode must be one of {STYLE_MODES}, got {self.style_mode!r}")
        self.check_fields()              # the settings' own rules (ConfigError is a ValueError)

    def nf(self, r: int) -> int:
        return max(1, min(self.channel_max, self.channel_base // r))

    @property
    def num_ws(self) -> int:
        """One w per styled conv plus one for the last toRGB: 2 log2(R) - 2 (NVlabs)."""
        return 2 * int(math.log2(self.resolution)) - 2


# Width presets: `stylegan2` = NVlabs config-f widths; `stylegan2_small` = CPU-practical
# (64px: 128 channels up to 32x32, 64 at 64x64; w_dim 256, 4 mapping layers).
WIDTHS: Dict[str, Dict] = {
    "stylegan2": dict(z_dim=512, w_dim=512, mapping_layers=8, channel_base=32768, channel_max=512),
    "stylegan2_small": dict(z_dim=256, w_dim=256, mapping_layers=4, channel_base=4096, channel_max=128),
}


# -- layers -----------------------------------------------------------------------------------
class StyleDense(tf.keras.layers.Layer):
    """Equalized-LR dense with a learning-rate multiplier (StyleGAN §C: mapping lr x 0.01):
    kernel ~ N(0, 1/lr_mul^2), used as kernel * gain * lr_mul / sqrt(fan_in); bias * lr_mul.
    `activate`: LeakyReLU(0.2) * sqrt(2) (NVlabs bias_act gain)."""

    def __init__(self, units, lr_mul=1.0, bias_init=0.0, activate=False, **kwargs):
        super().__init__(**kwargs)
        self.units, self.lr_mul, self.bias_init, self.activate = int(units), float(lr_mul), bias_init, bool(activate)

    def build(self, input_shape):
        fan_in = int(input_shape[-1])
        self.scale = self.lr_mul / math.sqrt(fan_in)
        self.kernel = self.add_weight("kernel", shape=(fan_in, self.units),
                                      initializer=tf.keras.initializers.RandomNormal(stddev=1.0 / self.lr_mul))
        self.bias = self.add_weight("bias", shape=(self.units,),
                                    initializer=tf.keras.initializers.Constant(
                                        np.broadcast_to(np.asarray(self.bias_init, np.float32) / self.lr_mul,
                                                        (self.units,))))
        super().build(input_shape)

    @_plain
    def call(self, x, training=None):
        y = tf.matmul(x, tf.cast(self.kernel * self.scale, x.dtype)) + tf.cast(self.bias * self.lr_mul, x.dtype)
        return layers.leaky_relu_f32(y, 0.2) * tf.cast(SQRT2, y.dtype) if self.activate else y


class MappingNetwork(tf.keras.layers.Layer):
    """z -> pixel norm -> n x StyleDense(w_dim, lr_mul, LeakyReLU) -> w."""

    def __init__(self, w_dim, n_layers=8, lr_mul=0.01, num_attributes=0, **kwargs):
        super().__init__(**kwargs)
        self.norm = layers.PixelNorm()
        self.fcs = [StyleDense(w_dim, lr_mul=lr_mul, activate=True, name=f"fc{i}") for i in range(n_layers)]
        # the attributes' embedding, joined to z (see the module docstring)
        self.embed = StyleDense(w_dim, name="embed") if num_attributes else None

    @_plain
    def call(self, z, attributes=None, training=None):
        x = self.norm(z)
        if self.embed is not None:
            x = tf.concat([x, self.norm(self.embed(tf.cast(attributes, x.dtype)))], axis=-1)
        for fc in self.fcs:
            x = fc(x)
        return x


def modulated_conv2d(x, weight, styles, demodulate=True, eps=1e-8):
    """StyleGAN2 Eq. 1-3 for a batch: x [N, H, W, Cin], weight [k, k, Cin, Cout] (already scaled),
    styles [N, Cin]. Equals conv(x, w * s) per example, with w''= w' / sqrt(sum_{i,k} w'^2 + eps)
    when `demodulate`; computed as conv(x * s, w) * d (same function, one shared-weight conv)."""
    s = tf.cast(styles, x.dtype)
    w = tf.cast(weight, x.dtype)
    y = tf.nn.conv2d(x * s[:, None, None, :], w, strides=1, padding="SAME")
    if demodulate:
        s32, w32 = tf.cast(styles, tf.float32), tf.cast(weight, tf.float32)
        wsq = tf.reduce_sum(tf.square(w32), axis=[0, 1])                       # [Cin, Cout]
        d = tf.math.rsqrt(tf.matmul(tf.square(s32), wsq) + eps)               # [N, Cout]
        y = y * tf.cast(d, y.dtype)[:, None, None, :]
    return y


def _up_axis(x, axis):
    """2x along `axis` with the [1, 3, 3, 1] / 4 filter, edges replicated: out[2i] = 3/4 x[i] +
    1/4 x[i-1], out[2i+1] = 3/4 x[i] + 1/4 x[i+1] (= half-pixel bilinear resize). Written with
    slices so it has gradients of every order (path length and R1 differentiate twice; TF has no
    gradient for ResizeBilinearGrad)."""
    n = x.shape[axis]
    first = tf.gather(x, [0], axis=axis)
    last = tf.gather(x, [n - 1], axis=axis)
    prev = tf.concat([first, tf.gather(x, list(range(n - 1)), axis=axis)], axis=axis)
    nxt = tf.concat([tf.gather(x, list(range(1, n)), axis=axis), last], axis=axis)
    even, odd = 0.75 * x + 0.25 * prev, 0.75 * x + 0.25 * nxt
    out = tf.stack([even, odd], axis=axis + 1)                 # [..., n, 2, ...]
    shape = tf.unstack(tf.shape(x))
    shape[axis] = 2 * n
    return tf.reshape(out, tf.stack(shape))


def upsample2x(x):
    """[N, H, W, C] -> [N, 2H, 2W, C]: separable [1, 3, 3, 1] upsampling (the FIR filter of
    StyleGAN2's code, here with edge replication instead of zero padding)."""
    y = _up_axis(_up_axis(x, 1), 2)
    return tf.ensure_shape(y, [None, 2 * x.shape[1], 2 * x.shape[2], x.shape[3]])


class StyledConv(tf.keras.layers.Layer):
    """One synthesis layer: [2x upsample] -> styled kxk conv -> + strength * noise -> + bias ->
    LeakyReLU * sqrt(2) [-> AdaIN in "adain" mode]. `to_rgb=True`: 1x1, modulated without
    demodulation, no noise, no activation (StyleGAN2 toRGB)."""

    def __init__(self, filters, resolution, kernel=3, up=False, style_mode="modulated", to_rgb=False, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.resolution, self.kernel = int(filters), int(resolution), int(kernel)
        self.up, self.style_mode, self.to_rgb = bool(up), style_mode, bool(to_rgb)

    def build(self, input_shape):
        cin, k = int(input_shape[-1]), self.kernel
        self.w_scale = 1.0 / math.sqrt(k * k * cin)
        self.weight = self.add_weight("weight", shape=(k, k, cin, self.filters),
                                      initializer=tf.keras.initializers.RandomNormal(stddev=1.0))
        self.bias = self.add_weight("bias", shape=(self.filters,), initializer="zeros")
        if self.style_mode == "modulated" or self.to_rgb:
            self.affine = StyleDense(cin, bias_init=1.0, name="affine")           # s_i, bias 1 (NVlabs)
        else:   # AdaIN: y_s (bias 1) and y_b (bias 0)
            init = np.concatenate([np.ones(self.filters), np.zeros(self.filters)])
            self.affine = StyleDense(2 * self.filters, bias_init=init, name="affine")
        if not self.to_rgb:
            self.noise_strength = self.add_weight("noise_strength", shape=(), initializer="zeros")
            self.noise_const = self.add_weight(
                "noise_const", shape=(1, self.resolution, self.resolution, 1), trainable=False,
                initializer=tf.keras.initializers.RandomNormal(stddev=1.0, seed=2 * self.resolution + int(self.up)))
        super().build(input_shape)

    @_plain
    def call(self, x, w=None, noise_seed=None, rows=None, training=None):
        if self.up:
            x = upsample2x(x)
        weight = self.weight * self.w_scale
        styles = self.affine(w)
        if self.to_rgb:
            return tf.nn.bias_add(modulated_conv2d(x, weight, styles, demodulate=False),
                                  tf.cast(self.bias, x.dtype))
        if self.style_mode == "modulated":
            y = modulated_conv2d(x, weight, styles, demodulate=True)
        else:
            y = tf.nn.conv2d(x, tf.cast(weight, x.dtype), strides=1, padding="SAME")
        if noise_seed is not None:
            n = tf.shape(y)[0]
            total, offset = (n, 0) if rows is None else rows
            noise = tf.random.stateless_normal([total, self.resolution, self.resolution, 1], seed=noise_seed)
            noise = noise[offset:offset + n]
        else:
            noise = self.noise_const
        y = y + tf.cast(noise, y.dtype) * tf.cast(self.noise_strength, y.dtype)
        y = layers.leaky_relu_f32(tf.nn.bias_add(y, tf.cast(self.bias, y.dtype)), 0.2) * tf.cast(SQRT2, y.dtype)
        if self.style_mode == "adain":
            y32 = tf.cast(y, tf.float32)
            mu, var = tf.nn.moments(y32, axes=[1, 2], keepdims=True)
            ys, yb = tf.split(tf.cast(styles, tf.float32), 2, axis=-1)
            y = tf.cast(ys[:, None, None, :] * (y32 - mu) * tf.math.rsqrt(var + 1e-8) + yb[:, None, None, :],
                        y.dtype)
        return y


class ConstInput(tf.keras.layers.Layer):
    """The learned 4x4 constant, tiled over the batch."""

    def __init__(self, channels, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)

    def build(self, input_shape):
        self.const = self.add_weight("const", shape=(1, 4, 4, self.channels),
                                     initializer=tf.keras.initializers.RandomNormal(stddev=1.0))
        super().build(input_shape)

    @_plain
    def call(self, ws, training=None):
        return tf.cast(tf.tile(self.const, [tf.shape(ws)[0], 1, 1, 1]), self.compute_dtype)


# -- generator --------------------------------------------------------------------------------
class StyleGenerator(tf.keras.Model):
    def __init__(self, cfg: StyleGANConfig, **kwargs):
        super().__init__(name=kwargs.pop("name", f"stylegan_{cfg.style_mode}_generator"), **kwargs)
        self.cfg = cfg
        self.num_ws = cfg.num_ws
        self.mapping = MappingNetwork(cfg.w_dim, cfg.mapping_layers, cfg.mapping_lr_mul, cfg.num_attributes,
                                      name="mapping")
        self.const = ConstInput(cfg.nf(4), name="const")
        # (layer, index of the w it reads); toRGB reads the same w as the next block's first conv.
        self.convs, self.to_rgbs = [], []
        r, i = 4, 0
        self.convs.append((StyledConv(cfg.nf(4), 4, style_mode=cfg.style_mode, name="conv_4"), 0))
        self.to_rgbs.append((StyledConv(3, 4, kernel=1, to_rgb=True, name="to_rgb_4"), 1))
        while r < cfg.resolution:
            r, i = r * 2, i + 1
            self.convs.append((StyledConv(cfg.nf(r), r, up=True, style_mode=cfg.style_mode, name=f"conv{r}_0"), i))
            i += 1
            self.convs.append((StyledConv(cfg.nf(r), r, style_mode=cfg.style_mode, name=f"conv{r}_1"), i))
            self.to_rgbs.append((StyledConv(3, r, kernel=1, to_rgb=True, name=f"to_rgb_{r}"), i + 1))
        assert i + 1 == self.num_ws - 1, (i, self.num_ws)
        # Replicas each assign their batch's EMA; MEAN aggregation = the global-batch EMA.
        # experimental_autocast=False: w_avg stays float32 under mixed precision (EMA precision).
        self.w_avg = self.add_weight("w_avg", shape=(cfg.w_dim,), initializer="zeros", trainable=False,
                                     experimental_autocast=False,
                                     synchronization=tf.VariableSynchronization.ON_WRITE,
                                     aggregation=tf.VariableAggregation.MEAN)
        self.w_avg_updates = self.add_weight("w_avg_updates", shape=(), dtype=tf.int64, initializer="zeros",
                                             trainable=False,
                                             synchronization=tf.VariableSynchronization.ON_WRITE,
                                             aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)

    # -- W space ------------------------------------------------------------------------------
    @_plain
    def map(self, z, update_w_avg=False, attributes=None):
        """z [N, z_dim] (+ attributes [N, A] when conditional) -> w float32 [N, w_dim]; with
        `update_w_avg`, EMA-update w_avg."""
        w = tf.cast(self.mapping(tf.cast(z, self.compute_dtype), attributes=attributes), tf.float32)
        if update_w_avg:
            beta = self.cfg.w_avg_beta
            self.w_avg.assign(tf.reduce_mean(w, axis=0) + beta * (self.w_avg - tf.reduce_mean(w, axis=0)))
            self.w_avg_updates.assign_add(1)
        return w

    def truncate(self, w, psi=1.0, cutoff=None):
        """w [N, w_dim] or ws [N, num_ws, w_dim] -> ws [N, num_ws, w_dim] with
        w_avg + psi (w - w_avg) on the layers < cutoff (None: every layer)."""
        if w.shape.rank == 2:
            w = tf.tile(w[:, None, :], [1, self.num_ws, 1])
        psi = tf.cast(psi, tf.float32)
        trunc = self.w_avg + psi * (w - self.w_avg)
        if cutoff is None:
            return trunc
        mask = tf.range(self.num_ws) < tf.cast(cutoff, tf.int32)
        return tf.where(mask[None, :, None], trunc, w)

    def mix(self, w1, w2, crossover):
        """ws from w1 on layers < crossover and from w2 on the rest; crossover scalar or [N]."""
        c = tf.cast(crossover, tf.int32)
        c = tf.reshape(c, [-1, 1]) if c.shape.rank == 1 else c
        mask = tf.range(self.num_ws)[None, :] < c                                # [N or 1, num_ws]
        return tf.where(mask[..., None], _as_ws(w1, self.num_ws), _as_ws(w2, self.num_ws))

    def mixing_crossover(self, seed, n, rows=None):
        """Training-time crossovers [n]: with probability mixing_prob uniform in [1, num_ws), else
        num_ws (no mixing) (StyleGAN §3.1 mixing regularization; NVlabs draws the cut the same way)."""
        k1, k2 = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        total, offset = (n, 0) if rows is None else rows
        cut = tf.random.stateless_uniform([total], seed=k1, minval=1, maxval=self.num_ws, dtype=tf.int32)
        mix = tf.random.stateless_uniform([total], seed=k2) < self.cfg.mixing_prob
        return tf.where(mix, cut, self.num_ws)[offset:offset + n]

    # -- synthesis ----------------------------------------------------------------------------
    @_plain
    def synthesis(self, ws, noise_seed=None, rows=None):
        """ws float32 [N, num_ws, w_dim] -> images float32 [N, R, R, 3] in [-1, 1]."""
        ws = tf.cast(ws, self.compute_dtype)

        def seed(j):
            return None if noise_seed is None else tf.random.experimental.stateless_fold_in(noise_seed, j)

        x = self.const(ws)
        rgb = None
        conv_iter = iter(enumerate(self.convs))
        for b, (to_rgb, ri) in enumerate(self.to_rgbs):
            for _ in range(1 if b == 0 else 2):
                j, (conv, wi) = next(conv_iter)
                x = conv(x, w=ws[:, wi], noise_seed=seed(j), rows=rows)
            y = to_rgb(x, w=ws[:, ri])
            if rgb is not None:
                y = y + tf.cast(upsample2x(rgb), y.dtype)
            rgb = y
        # deviation: tanh for the [-1, 1] contract (NVlabs' G is linear)
        return tf.tanh(tf.cast(rgb, tf.float32))

    @_plain
    def call(self, z, training=False, psi=1.0, cutoff=None, noise_seed=None, z2=None, crossover=None, rows=None,
             attributes=None):
        """G(z): training=True updates w_avg; psi/cutoff truncate in W; z2 + crossover mix styles;
        `attributes` [N, A] condition both (cstylegan2)."""
        update = tf.get_static_value(training) if tf.is_tensor(training) else bool(training)
        if update is None:
            raise ValueError("StyleGenerator: `training` must be a python bool (or a constant tensor): "
                             "it decides whether w_avg is updated")
        w = self.map(z, update_w_avg=bool(update), attributes=attributes)
        ws = _as_ws(w, self.num_ws)
        if z2 is not None:
            ws = self.mix(w, self.map(z2, update_w_avg=False, attributes=attributes), crossover)
        return self.synthesis(self.truncate(ws, psi, cutoff), noise_seed=noise_seed, rows=rows)

    def style_mix(self, z1, z2, crossover, psi=1.0, cutoff=None):
        """Images with w(z1) on layers < crossover, w(z2) on the rest (crossover 0 = z2's image)."""
        return self(z1, z2=z2, crossover=crossover, psi=psi, cutoff=cutoff)


def conditional_model(G: StyleGenerator) -> tf.keras.Model:
    """[z, attributes] -> G(z, attributes=...) as a functional model (the contract's conditional kind)."""
    from facegan.trainer.networks.conditional import attribute_input
    z, y = tf.keras.Input((G.cfg.z_dim,), name="z"), attribute_input(G.cfg.num_attributes)
    return tf.keras.Model([z, y], G(z, training=False, attributes=y), name=f"{G.name}_conditional")


def _as_ws(w, num_ws):
    return w if w.shape.rank == 3 else tf.tile(w[:, None, :], [1, num_ws, 1])


# -- discriminator ----------------------------------------------------------------------------
def build_discriminator(cfg: StyleGANConfig, name="stylegan_discriminator") -> tf.keras.Model:
    """Residual D with minibatch stddev; {"logits": [N, 1], "features": [N, nf(4)]} in float32."""
    R = cfg.resolution
    img = tf.keras.Input((R, R, 3), name="images")
    # lrelu after a sqrt(2)-gain equalized conv = NVlabs bias_act; in float32 for a bf16 input: TF's
    # bf16 LeakyReluGrad is unvectorised on CPU (layers.leaky_relu_f32)
    act = layers.LeakyReLUF32
    x = act(0.2)(layers.EqualizedConv2D(cfg.nf(R), 1, name=f"d_from_rgb_{R}")(img))
    r = R
    while r > 4:
        h = act(0.2)(layers.EqualizedConv2D(cfg.nf(r), 3, name=f"d_{r}_conv0")(x))
        h = act(0.2)(layers.EqualizedConv2D(cfg.nf(r // 2), 3, name=f"d_{r}_conv1")(h))
        h = tf.keras.layers.AveragePooling2D(2)(h)   # deviation: 2x2 box filter, not FIR
        sc = tf.keras.layers.AveragePooling2D(2)(x)
        sc = layers.EqualizedConv2D(cfg.nf(r // 2), 1, gain=1.0, use_bias=False, name=f"d_{r}_skip")(sc)
        x = layers.ScaledAdd()([h, sc])
        r //= 2
    x = layers.MinibatchStddev(cfg.mbstd_group_size, name="d_mbstd")(x)
    x = act(0.2)(layers.EqualizedConv2D(cfg.nf(4), 3, name="d_4_conv")(x))
    x = tf.keras.layers.Flatten()(x)
    features = act(0.2)(layers.EqualizedDense(cfg.nf(4), name="d_4_fc")(x))
    logits = layers.EqualizedDense(1, gain=1.0, name="d_logits")(features)
    inputs, extra = img, {}
    if cfg.num_attributes:   # projection or AC-GAN head (networks/conditional.py)
        from facegan.trainer.networks import conditional
        y, logits, extra = conditional.discriminator_head(features, logits, cfg.num_attributes, cfg.discriminator)
        inputs = [img, y] if y is not None else img
    return tf.keras.Model(inputs, {"logits": layers.to_float32(logits, "logits"),
                                   "features": layers.to_float32(features, "features"), **extra}, name=name)


def build_stylegan(cfg: StyleGANConfig) -> Tuple[StyleGenerator, tf.keras.Model]:
    """(G, D), both built (variables exist). Call under strategy.scope() and after setting the
    mixed-precision policy, like the registry's builders."""
    G = StyleGenerator(cfg)
    G(tf.zeros([1, cfg.z_dim]), attributes=tf.zeros([1, cfg.num_attributes]) if cfg.num_attributes else None)
    return G, build_discriminator(cfg)


def config_from(widths: str = "stylegan2", **overrides) -> StyleGANConfig:
    if widths not in WIDTHS:
        raise ValueError(f"stylegan widths {widths!r} is not one of {', '.join(sorted(WIDTHS))}")
    return StyleGANConfig(**dict(WIDTHS[widths], **overrides))


def style_config(cfg, style_mode: str = "modulated") -> StyleGANConfig:
    """The StyleGANConfig of a trainer Config: its registered settings (`cfg.network`, a
    StyleGANSettings) as they are, plus the style mode and the attributes of cfg.condition for a
    conditional architecture."""
    from facegan.conditioning import attribute_names
    return StyleGANConfig(**dataclasses.asdict(cfg.network), style_mode=style_mode,
                          num_attributes=len(attribute_names(cfg)), discriminator=cfg.condition.discriminator)


def build(cfg, alpha=None, style_mode: str = "modulated"):
    """Registry builder (`stylegan2`): Networks of a StyleGenerator and the residual D."""
    from facegan.trainer.networks import Networks
    G, D = build_stylegan(style_config(cfg, style_mode))
    return Networks(G, D, resolution=cfg.network.resolution, default_batch_size=cfg.optim.batch_size)


def build_adain(cfg, alpha=None):
    """Registry builder (`stylegan`): the AdaIN variant."""
    return build(cfg, alpha, style_mode="adain")
