"""Progressive growing of GANs (Karras et al. 2018), as the Columbia report re-implements it.

Growth: training starts at `start_resolution` (>= 4) and doubles up to `resolution`. Each new
block fades in: G's output is lerp(upsample(toRGB_{r/2}(h_{r/2})), toRGB_r(block_r(h_{r/2})), alpha)
and D's input path is lerp(fromRGB_{r/2}(avgpool(x)), block_r(fromRGB_r(x)), alpha), alpha going
0 -> 1 over `fade_images` images, then `stable_images` at alpha = 1 (Karras §3, Fig. 2).
Nearest-neighbour upsampling, 2x2 average-pool downsampling, 1x1 toRGB / fromRGB, 3x3 convs,
LeakyReLU 0.2, equalized learning rate (`equalized_lr`), pixelwise feature normalization in G
(`pixelnorm`), minibatch stddev with group size 4 before D's last block (`minibatch_stddev`,
`mbstd_extra_stats` adds skewness and kurtosis maps), per-resolution batch sizes, schedule by
images shown.

Residual blocks (the Columbia report): "additional residual blocks within each resolution, before
upsampling in G and after downsampling in D, adding depth". With `residual_g` every G block r
starts with x + f(x) at resolution r/2 (f = two 3x3 convs at that width) before its upsampling;
with `residual_d` every D block r ends with one at r/2 after its downsampling. Each adds two
convolutions per resolution; the merge is (x + f(x)) / sqrt(2) (`layers.ScaledAdd`).

Widths: nf(r) = min(max_filters, filters * 32 / r) — with filters = max_filters = 512 this is
Karras' table (512 up to 32x32, 256 at 64, 128 at 128, ...).

Conditioning (`cprogan`): G takes [z, y]; z is concatenated with y (or a learned
embedding of y, `condition.embedding`) *before* the pixel norm, as PGGAN's own code does with its
labels ("combo_in = concat([latents_in, labels_in]); x = pixel_norm(combo_in)", networks.py
G_paper). D ends in the projection term on its final features (Miyato & Koyama 2018) or an AC-GAN
head (networks/conditional.py), built once and shared by every stage.

Output layer (`network.output_activation`): "linear" as the paper (PGGAN networks.py G_paper:
the toRGB 1x1 conv has no activation; images are clipped to [-1, 1] only when converted to uint8,
as `facegan.generator.to_uint8` does for every export and sample), or "tanh" (this repository's
earlier choice, kept as an option). Nearest-neighbour upsampling commutes with either, so alpha = 0
still equals the upsampled previous-stage output exactly.

Reals during a fade-in (`network.fade_reals`, `fade_reals`): blended with their 2x
down-then-up copy by the same alpha, as PGGAN's train.py `process_reals` ("FadeLOD"), so D sees
reals with the detail the fading G can make. Adam's state is reset at the start and the end of
each fade-in (`network.reset_optimizer_at_fade`, trainer/gan.py `enter_phase`).
"""
from __future__ import annotations

import math
from typing import Dict, Tuple

import tensorflow as tf

from facegan.trainer.networks import Networks, Stage, conditional, layers
from facegan.trainer.registry import doubling
from facegan.trainer.regularizers import MinibatchDiscrimination

SQRT2 = math.sqrt(2.0)


def progressive_schedule(images_shown: int, start: int, target: int, fade_images: int, stable_images: int,
                         batch_sizes: Dict[str, int], default_batch: int) -> Stage:
    """Stage after `images_shown` images: `start` stable for `stable_images`, then for each
    doubling a fade of `fade_images` (alpha = images into the fade / fade_images) and a stable
    phase of `stable_images`; the target resolution stays stable forever."""
    def bs(r):
        return int(batch_sizes.get(str(r), default_batch))

    res = doubling(start, target)
    t = max(0, int(images_shown))
    phase = 0
    if t < stable_images or len(res) == 1:
        return Stage(res[0], 1.0, bs(res[0]), False, 0)
    t -= stable_images
    for r in res[1:]:
        phase += 1
        if t < fade_images:
            return Stage(r, t / fade_images, bs(r), True, phase)
        t -= fade_images
        phase += 1
        if t < stable_images or r == res[-1]:
            return Stage(r, 1.0, bs(r), False, phase)
        t -= stable_images
    raise AssertionError("unreachable")


def fade_reals(x, alpha):
    """PGGAN train.py `process_reals`, "FadeLOD": "Smooth crossfade between consecutive
    levels-of-detail": y = x box-averaged 2x2 then repeated 2x2; x = lerp(x, y, lod - floor(lod)),
    where lod - floor(lod) = 1 - alpha during a fade. Written as x + (y - x) * (1 - alpha), so
    alpha = 1 returns x exactly."""
    x = tf.convert_to_tensor(x)
    y = tf.nn.avg_pool2d(x, 2, 2, "VALID")
    y = tf.repeat(tf.repeat(y, 2, axis=1), 2, axis=2)
    t = 1.0 - tf.cast(alpha, x.dtype)
    return x + (y - x) * t


class ProGAN:
    """Owns every layer once; `generator(r)` / `discriminator(r)` wire the stage models from them."""

    def __init__(self, cfg, alpha: tf.Variable, num_attributes: int = 0):
        self.cfg, self.net, self.alpha = cfg, cfg.network, alpha
        self.num_attributes = int(num_attributes)
        self.eq = self.net.equalized_lr
        self._g: Dict[int, tf.keras.Model] = {}
        self._d: Dict[int, tf.keras.Model] = {}
        self._layers: Dict[str, tf.keras.layers.Layer] = {}
        self._io: Dict[tuple, tuple] = {}     # symbolic (inputs, outputs) per stage model

    # -- helpers -------------------------------------------------------------------------------
    def nf(self, r: int) -> int:
        return max(1, min(self.net.max_filters, self.net.filters * 32 // r))

    def _layer(self, key, factory):
        if key not in self._layers:
            self._layers[key] = factory()
        return self._layers[key]

    def _conv(self, key, filters, k=3, gain=SQRT2, use_bias=True):
        return self._layer(key, lambda: layers.EqualizedConv2D(filters, k, gain=gain, equalized=self.eq,
                                                               use_bias=use_bias, name=key))

    def _dense(self, key, units, gain=SQRT2):
        return self._layer(key, lambda: layers.EqualizedDense(units, gain=gain, equalized=self.eq, name=key))

    def _pn(self, x):
        return layers.PixelNorm()(x) if self.net.pixelnorm else x

    @staticmethod
    def _act(x):
        return layers.LeakyReLU(0.2)(x)

    # -- generator -----------------------------------------------------------------------------
    def _g_base(self, z, y=None):
        nf = self.nf(4)
        if y is not None:   # PGGAN: labels join the latent before its pixel norm (module docstring)
            z = conditional.generator_input(z, y, self.cfg.condition.embedding, shared=self._layer)
        x = self._pn(z)   # Karras normalize the latent too
        x = self._dense("g_base_dense", 16 * nf, gain=SQRT2 / 4)(x)
        x = tf.keras.layers.Reshape((4, 4, nf))(x)
        x = self._pn(self._act(x))
        return self._pn(self._act(self._conv("g_base_conv", nf)(x)))

    def _res_block(self, prefix, x, pn: bool):
        """x + f(x) (scaled by 1/sqrt 2), f = two 3x3 convs at x's width and resolution: the
        Columbia report's "additional residual blocks within each resolution", which add depth."""
        nf = x.shape[-1]
        h = self._act(self._conv(f"{prefix}_res_conv0", nf)(x))
        h = self._pn(h) if pn else h
        h = self._act(self._conv(f"{prefix}_res_conv1", nf)(h))
        h = self._layer(f"{prefix}_res_add", lambda: layers.ScaledAdd(name=f"{prefix}_res_add"))([x, h])
        return self._pn(h) if pn else h

    def _g_block(self, r, x):
        """Block r: [residual block at r/2, before upsampling (`residual_g`)] -> upsample ->
        conv 3x3 -> conv 3x3 (Karras). The residual block belongs to block r, so it fades in with it."""
        nf = self.nf(r)
        if self.net.residual_g:
            x = self._res_block(f"g_{r}", x, pn=True)
        up = tf.keras.layers.UpSampling2D(2, interpolation="nearest")(x)
        h = self._pn(self._act(self._conv(f"g_{r}_conv0", nf)(up)))
        return self._pn(self._act(self._conv(f"g_{r}_conv1", nf)(h)))

    def _to_rgb(self, r, x):
        return self._conv(f"g_{r}_to_rgb", 3, k=1, gain=1.0)(x)

    def generator(self, res: int) -> tf.keras.Model:
        if res not in self._g:
            z = tf.keras.Input((self.net.z_dim,), name="z")
            y = conditional.attribute_input(self.num_attributes) if self.num_attributes else None
            x = self._g_base(z, y)
            rgb = None
            for r in doubling(8, res):
                if r == res and res > self.net.start_resolution:
                    old = tf.keras.layers.UpSampling2D(2, interpolation="nearest")(self._to_rgb(r // 2, x))
                    x = self._g_block(r, x)
                    rgb = layers.FadeIn(self.alpha, name=f"g_fade_{r}")([old, self._to_rgb(r, x)])
                else:
                    x = self._g_block(r, x)
            if rgb is None:
                rgb = self._to_rgb(res, x)
            out = tf.keras.layers.Activation(self.net.output_activation, dtype="float32", name="images")(rgb)
            inputs = [z, y] if y is not None else z
            self._io[("g", res)] = (inputs, out)
            self._g[res] = tf.keras.Model(inputs, out, name=f"progan_generator_{res}")
        return self._g[res]

    # -- discriminator -------------------------------------------------------------------------
    def _from_rgb(self, r, x):
        return self._act(self._conv(f"d_{r}_from_rgb", self.nf(r), k=1)(x))

    def _d_block(self, r, x):
        """Block r: conv 3x3 -> conv 3x3 -> downsample (Karras) -> [residual block at r/2, after
        downsampling (`residual_d`)], the mirror image of G's block."""
        h = self._act(self._conv(f"d_{r}_conv0", self.nf(r))(x))
        h = self._act(self._conv(f"d_{r}_conv1", self.nf(r // 2))(h))
        h = tf.keras.layers.AveragePooling2D(2)(h)
        if self.net.residual_d:
            h = self._res_block(f"d_{r}", h, pn=False)
        return h

    def _d_final(self, x):
        net, tricks = self.net, self.cfg.tricks
        nf = self.nf(4)
        if net.minibatch_stddev:
            x = layers.MinibatchStddev(net.mbstd_group_size, net.mbstd_extra_stats, name="d_mbstd")(x)
        x = self._act(self._conv("d_final_conv", nf)(x))
        x = tf.keras.layers.Flatten()(x)
        features = self._act(self._dense("d_final_dense", nf)(x))
        x = features
        if tricks.minibatch_discrimination:
            x = self._layer("d_mbd", lambda: MinibatchDiscrimination(tricks.mbd_kernels, tricks.mbd_kernel_dim,
                                                                     name="d_mbd"))(x)
        logits = self._dense("d_logits", 1, gain=1.0)(x)
        return logits, features

    def discriminator(self, res: int) -> tf.keras.Model:
        if res not in self._d:
            img = tf.keras.Input((res, res, 3), name="images")
            x = self._from_rgb(res, img)
            if res > 4:
                x = self._d_block(res, x)
                if res > self.net.start_resolution:
                    old = self._from_rgb(res // 2, tf.keras.layers.AveragePooling2D(2)(img))
                    x = layers.FadeIn(self.alpha, name=f"d_fade_{res}")([old, x])
            for r in reversed(doubling(8, res // 2)):
                x = self._d_block(r, x)
            logits, features = self._d_final(x)
            inputs, extra = img, {}
            if self.num_attributes:
                y, logits, extra = conditional.discriminator_head(features, logits, self.num_attributes,
                                                                  self.cfg.condition.discriminator, shared=self._layer)
                inputs = [img, y] if y is not None else img
            outputs = {"logits": layers.to_float32(logits, "logits"),
                       "features": layers.to_float32(features, "features"), **extra}
            self._io[("d", res)] = (inputs, outputs)
            self._d[res] = tf.keras.Model(inputs, outputs, name=f"progan_discriminator_{res}")
        return self._d[res]

    def full_models(self) -> Tuple[tf.keras.Model, tf.keras.Model]:
        """The target-resolution models, as distinct Model objects over the same graph as stage R
        that ALSO track every lower stage's layers (toRGB/fromRGB of earlier resolutions), so
        checkpoints, EMA copies and weight lists of `nets.generator` / `nets.discriminator` cover
        every weight. Train with `stage_models(r)` (only the variables that stage uses)."""
        R = self.net.resolution
        self.stage(R)
        G = tf.keras.Model(*self._io[("g", R)], name="progan_generator")
        D = tf.keras.Model(*self._io[("d", R)], name="progan_discriminator")
        G.stage_layers = [l for k, l in sorted(self._layers.items()) if k.startswith("g_")]
        D.stage_layers = [l for k, l in sorted(self._layers.items()) if k.startswith("d_")]
        return G, D

    def stage(self, res: int) -> Tuple[tf.keras.Model, tf.keras.Model]:
        lo, hi = self.net.start_resolution, self.net.resolution
        if res < lo or res & (res - 1) or res > hi:
            raise ValueError(f"progan stage resolution must be a power of two in [{lo}, {hi}] "
                             f"(network.start_resolution .. network.resolution), got {res}")
        return self.generator(res), self.discriminator(res)


def upsampled_generator(stage_generator: tf.keras.Model, resolution: int) -> tf.keras.Model:
    """z -> the stage generator's images upsampled (nearest) to `resolution`: the export of a run
    stopped before its last stage. PGGAN's snapshots do the same: G's output at a lower level of
    detail is `upscale2d`'d (nearest-neighbour repeat) to the full resolution (Karras et al.
    2018, networks.py `grow`), so early and interrupted runs keep the served shape."""
    r = int(stage_generator.outputs[0].shape[1])
    if resolution % r or (resolution // r) & (resolution // r - 1):
        raise ValueError(f"cannot upsample {r}x{r} images to {resolution}x{resolution} by a power of two")
    inputs = [tf.keras.Input(t.shape[1:], name=n) for t, n in zip(stage_generator.inputs, ("z", "attributes"))]
    z = inputs if len(inputs) > 1 else inputs[0]   # conditional stages take [z, attributes]
    x = stage_generator(z, training=False)
    # float32 layer: under a mixed policy the repeat must not round the float32 output
    x = tf.keras.layers.UpSampling2D(resolution // r, interpolation="nearest", dtype="float32")(x)
    return tf.keras.Model(z, x, name=f"{stage_generator.name}_upsampled_{resolution}")


def build_progan(cfg, alpha=None, num_attributes: int = 0) -> Networks:
    net = cfg.network
    if alpha is None:
        alpha = tf.Variable(1.0, trainable=False, dtype=tf.float32, name="progan_alpha",
                            synchronization=tf.VariableSynchronization.ON_WRITE,
                            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    pg = ProGAN(cfg, alpha, num_attributes)
    # Build every stage from the start resolution up, so all weights exist from the beginning
    # (optimizer slots and checkpoints then have a fixed variable set).
    for r in doubling(net.start_resolution, net.resolution):
        pg.stage(r)
    G, D = pg.full_models()

    def schedule(images_shown: int) -> Stage:
        return progressive_schedule(images_shown, net.start_resolution, net.resolution, net.fade_images,
                                    net.stable_images, net.batch_sizes, cfg.optim.batch_size)

    return Networks(G, D, progressive=True, alpha=alpha, resolution=net.resolution,
                    default_batch_size=cfg.optim.batch_size, stage_fn=pg.stage, schedule_fn=schedule)


def build_cprogan(cfg, alpha=None) -> Networks:
    """Conditional ProGAN: the attributes of cfg.condition (see the module docstring)."""
    from facegan.conditioning import attribute_names
    return build_progan(cfg, alpha, num_attributes=len(attribute_names(cfg)))
