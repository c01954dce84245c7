"""The two model-zoo registries, TensorFlow-free: architectures and loss families.

Each entry registers ONCE, here, with everything the rest of the system needs to know before
TensorFlow loads (config validation, `facegan train --help`, the pipeline's stored resolutions);
the implementation is named as "module:attribute" and imported only when it is used (stylegan3's
`metric_main.register_metric`, big_vision's import-by-name). Nothing else lists these names.

    arch = architecture("progan")          # -> Architecture (raises ConfigError naming the field)
    arch.stage_resolutions(cfg.network)    # (4, 8, ..., R): the one place that knows the stages
    arch.load()(cfg, alpha=None)           # imports facegan.trainer.networks.progan, builds Networks
    family = loss_family("wgan_gp")
    g_loss, d_loss = family.bind(cfg.loss) # imports facegan.trainer.losses lazily

Each entry also names its settings class (trainer/settings.py): the dataclass of its own fields
that `cfg.network` / `cfg.loss` holds when it is chosen, with its validator.

    architecture("progan").settings        # -> ProGANSettings (NetworkConfig + progan's fields)
    loss_family("lsgan").settings          # -> LSGANSettings (LossConfig + lsgan_a/b/c)

Adding an architecture = one module with `build(cfg, alpha=None) -> Networks` and, if it has
settings of its own, a `NetworkConfig` subclass (fields with defaults + `validate(cfg, arch,
family)`), plus one `register_architecture(Architecture(name, "module:build", summary,
settings=MySettings))`. A loss family = its functions in a module and, if it has parameters, a
`LossConfig` subclass, plus one `register_loss(LossFamily(..., settings=MySettings,
g_params=..., d_params=...))`. Register before the config is parsed (import the module first);
`unregister` removes an entry (tests). Fields of the same name in two settings classes should
have the same meaning and default (switching models carries them over; see trainer/config.py).
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Callable, Dict, List, Tuple

from facegan.trainer import settings as S

# Kinds of generator the serving contract knows: z -> image; (z, attributes) -> image;
# image -> image.
GENERATOR_KINDS = ("unconditional", "conditional", "image_to_image")


class RegistryError(ValueError):
    """An unknown name; the message lists the registered ones."""


class Registry(dict):
    """name -> entry (anything with a `.name`), in registration order; `field` is the config
    field that names an entry, used in error messages."""

    def __init__(self, field: str):
        super().__init__()
        self.field = field

    def register(self, entry):
        if entry.name in self:
            raise ValueError(f"{self.field} {entry.name!r} registered twice")
        self[entry.name] = entry
        return entry

    def unregister(self, name: str):
        """Remove an entry (a test's throwaway model); returns it."""
        return self.pop(name)

    def lookup(self, name: str):
        if name not in self:
            raise RegistryError(f"{self.field} {name!r} is not one of {', '.join(self)}")
        return self[name]


def import_by_name(path: str):
    """Resolve "package.module:attr" to the attribute (imports the module on first use)."""
    module, _, attr = path.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def doubling(start: int, target: int) -> List[int]:
    """[start, 2 start, ..., target] (powers of two in between)."""
    out, r = [], int(start)
    while r <= int(target):
        out.append(r)
        r *= 2
    return out


# -- architectures -------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Architecture:
    """What the system knows about an architecture without building it.

    `builder`: "module:function", `function(cfg, alpha=None) -> trainer.networks.Networks`.
    `checkpoints`: the objects its `Networks.checkpoint_items()` returns (tested to agree).
    `batchnorm_critic`: D normalizes over the batch, so per-example gradient penalties are
    meaningless (losses with `refuses_batchnorm_critic` are refused at config time).
    `min_resolution` / `max_resolution` + `resolution_reason`: the range config validation allows.
    `input_noise`: honours `network.input_noise_std`.
    `batchnorm_optional`: honours `network.batch_norm = false` (no BatchNorm anywhere, so a
    `batchnorm_critic` architecture then has an example-independent critic).
    `w_space`: G maps z to an intermediate latent W (StyleGAN): it tracks w_avg, truncates and
    mixes styles in W, exports `style_mix`, and path length regularization applies.
    `model`: "module:Class", the `keras.Model` whose `train_step` the one training loop runs
    (trainer/gan.py's GAN for z -> image; trainer/image_to_image.py's models for kind
    image_to_image, which the loop feeds paired batches).
    `settings`: the `settings.NetworkConfig` subclass `cfg.network` is when this is chosen (its
    own fields and validator; the base when it has none)."""
    name: str
    builder: str
    summary: str
    kind: str = "unconditional"
    progressive: bool = False
    batchnorm_critic: bool = False
    input_noise: bool = False
    batchnorm_optional: bool = False
    min_resolution: int = 8
    max_resolution: int = 1024
    resolution_reason: str = ""
    checkpoints: Tuple[str, ...] = ("generator", "discriminator")
    w_space: bool = False
    model: str = "facegan.trainer.gan:GAN"
    settings: type = S.NetworkConfig

    def __post_init__(self):
        if self.kind not in GENERATOR_KINDS:
            raise ValueError(f"architecture {self.name!r}: kind {self.kind!r} is not one of {GENERATOR_KINDS}")
        if not (isinstance(self.settings, type) and issubclass(self.settings, S.NetworkConfig)):
            raise ValueError(f"architecture {self.name!r}: settings must be a NetworkConfig subclass")

    def stage_resolutions(self, network) -> Tuple[int, ...]:
        """Resolutions trained, in order: start_resolution doubling to resolution when
        progressive, else just `network.resolution` (`network` is a NetworkConfig)."""
        if self.progressive:
            return tuple(doubling(network.start_resolution, network.resolution))
        return (int(network.resolution),)

    def load(self) -> Callable:
        return import_by_name(self.builder)


ARCHITECTURES: Registry = Registry("network.architecture")
register_architecture = ARCHITECTURES.register
architecture = ARCHITECTURES.lookup


def stage_resolutions(network) -> Tuple[int, ...]:
    """The stage resolutions of a NetworkConfig (see Architecture.stage_resolutions)."""
    return architecture(network.architecture).stage_resolutions(network)


_CONV = "facegan.trainer.networks.convnets"
register_architecture(Architecture(
    "dcgan", f"{_CONV}:build_dcgan", "Radford et al. 2016: strided (de)convolutions, BatchNorm",
    batchnorm_critic=True, batchnorm_optional=True, settings=S.ConvNetSettings))
register_architecture(Architecture(
    "hdcgan", f"{_CONV}:build_hdcgan", "Curto et al.: BatchNorm + SELU, noise on G and D inputs",
    batchnorm_critic=True, batchnorm_optional=True, settings=S.ConvNetSettings, input_noise=True, min_resolution=32, max_resolution=512,
    resolution_reason="hdcgan works from 32x32 up to 512x512 (the paper's range)"))
register_architecture(Architecture(
    "facegan", f"{_CONV}:build_facegan", "Li et al. (FaceGANs): two FC + four deconvolutions",
    batchnorm_critic=True, batchnorm_optional=True, settings=S.ConvNetSettings, min_resolution=16,
    resolution_reason="facegan has four stride-2 deconvolutions, so it needs at least 16x16"))
# The same three networks conditioned on attributes (trainer/networks/convnets.py; G
# concatenates the attribute vector to z, D is a projection or AC-GAN discriminator).
register_architecture(Architecture(
    "cdcgan", f"{_CONV}:build_cdcgan", "conditional dcgan: G(z, y); projection or AC-GAN D (condition.*)",
    kind="conditional", batchnorm_critic=True, batchnorm_optional=True, settings=S.ConvNetSettings))
register_architecture(Architecture(
    "chdcgan", f"{_CONV}:build_chdcgan", "conditional hdcgan: G(z, y); projection or AC-GAN D (condition.*)",
    kind="conditional", batchnorm_critic=True, batchnorm_optional=True, settings=S.ConvNetSettings, input_noise=True, min_resolution=32, max_resolution=512,
    resolution_reason="hdcgan works from 32x32 up to 512x512 (the paper's range)"))
register_architecture(Architecture(
    "cfacegan", f"{_CONV}:build_cfacegan", "conditional facegan: G(z, y); projection or AC-GAN D (condition.*)",
    kind="conditional", batchnorm_critic=True, batchnorm_optional=True, settings=S.ConvNetSettings, min_resolution=16,
    resolution_reason="facegan has four stride-2 deconvolutions, so it needs at least 16x16"))
register_architecture(Architecture(
    "tan", f"{_CONV}:build_tan", "Sajjadi et al. 2018 (TAN): DCGAN-style, 4x4 kernels, Xavier init",
    batchnorm_critic=True, batchnorm_optional=True, settings=S.ConvNetSettings))
register_architecture(Architecture(
    "progan", "facegan.trainer.networks.progan:build_progan",
    "Karras et al. 2018: progressive growing, equalized lr, pixel norm, minibatch stddev",
    progressive=True, checkpoints=("generator", "discriminator", "g_stages", "d_stages", "alpha"),
    settings=S.ProGANSettings))
register_architecture(Architecture(
    "cprogan", "facegan.trainer.networks.progan:build_cprogan",
    "conditional progan: [z, y] before pixel norm; projection or AC-GAN D (condition.*)",
    kind="conditional", progressive=True, checkpoints=("generator", "discriminator", "g_stages", "d_stages", "alpha"),
    settings=S.ProGANSettings))
_STYLE = "facegan.trainer.networks.stylegan2"
register_architecture(Architecture(
    "stylegan2", f"{_STYLE}:build", "Karras et al. 2020: mapping to W, modulated/demodulated convs, "
    "noise, skip G, residual D", w_space=True, settings=S.StyleGANSettings))
register_architecture(Architecture(
    "cstylegan2", f"{_STYLE}:build", "conditional stylegan2: attributes embedded into the mapping "
    "network's input (StyleGAN2-ADA); projection or AC-GAN D (condition.*)", kind="conditional", w_space=True,
    settings=S.StyleGANSettings))
register_architecture(Architecture(
    "stylegan", f"{_STYLE}:build_adain", "Karras et al. 2019: StyleGAN2's topology with AdaIN styles",
    w_space=True, settings=S.StyleGANSettings))
register_architecture(Architecture(
    "pix2pix", "facegan.trainer.networks.image_to_image:build_pix2pix",
    "Isola et al. 2017: U-Net G with skips, PatchGAN D on (input, output), needs --paired data",
    kind="image_to_image", batchnorm_critic=True, min_resolution=16,
    resolution_reason="pix2pix's U-Net and PatchGAN need at least 16x16",
    model="facegan.trainer.image_to_image:Pix2Pix", settings=S.Pix2PixSettings))
register_architecture(Architecture(
    "cyclegan", "facegan.trainer.networks.image_to_image:build_cyclegan",
    "Zhu et al. 2017: two ResNet Gs, two PatchGAN Ds, unpaired domains from an attribute",
    kind="image_to_image", min_resolution=16, resolution_reason="cyclegan's PatchGAN needs at least 16x16",
    checkpoints=("generator", "discriminator", "generator_ba", "discriminator_a"),
    model="facegan.trainer.image_to_image:CycleGAN", settings=S.CycleGANSettings))


# -- loss families -------------------------------------------------------------------------------
_LOSSES_MODULE = "facegan.trainer.losses"


@dataclasses.dataclass(frozen=True)
class LossFamily:
    """A loss family. Functions are "module:function" (default module: trainer.losses):
    `generator_loss(fake_logits, **g_params) -> [N]`,
    `discriminator_loss(real_logits, fake_logits, real_label_smoothing, **d_params) -> [N]`,
    `lens_loss(lensed_real_logits, fake_logits=None, **d_params) -> [N]` (the lens' adversarial
    term, Sajjadi et al. 2018). `g_params` / `d_params`: (keyword, LossConfig field) pairs.
    `kind`: the generator kind it trains ("unconditional" covers z-based conditional ones too;
    "image_to_image" families take patch logits [N, P, P, 1]).
    `settings`: the `settings.LossConfig` subclass `cfg.loss` is when this family is chosen (the
    fields `g_params` / `d_params` name live there); the base when it has no parameters.
    `step`: "module:Class", the loss object owning the family's training phases (Dmain, Dreg,
    Gmain, Greg, ... with their intervals; trainer/adversarial.py, trainer/gan_base.py)."""
    name: str
    generator_loss: str
    discriminator_loss: str
    lens_loss: str
    summary: str
    needs_gradient_penalty: bool = False
    supports_label_smoothing: bool = True
    refuses_batchnorm_critic: bool = False
    lazy_r1: bool = False
    clips_weights: bool = False        # critic weights clipped to [-loss.clip_value, c] after each update
    optimizer: str = "adam"            # the paper's optimizer, used when optim.optimizer = "auto"
    g_params: Tuple[Tuple[str, str], ...] = ()
    d_params: Tuple[Tuple[str, str], ...] = ()
    kind: str = "unconditional"
    # "module:Class": the loss object that owns the family's training phases (trainer/gan_base.py)
    step: str = "facegan.trainer.adversarial:AdversarialLoss"
    settings: type = S.LossConfig

    def __post_init__(self):
        if not (isinstance(self.settings, type) and issubclass(self.settings, S.LossConfig)):
            raise ValueError(f"loss family {self.name!r}: settings must be a LossConfig subclass")
        missing = [f for _, f in self.g_params + self.d_params if f not in S.field_names(self.settings)]
        if missing:
            raise ValueError(f"loss family {self.name!r}: g_params/d_params name {missing}, "
                             f"not fields of {self.settings.__name__}")

    @staticmethod
    def _fn(path: str) -> Callable:
        return import_by_name(path if ":" in path else f"{_LOSSES_MODULE}:{path}")

    @staticmethod
    def _params(pairs, loss_cfg) -> Dict[str, float]:
        return {k: float(getattr(loss_cfg, field)) for k, field in pairs}

    def bind(self, loss_cfg) -> Tuple[Callable, Callable]:
        """-> (g_loss(fake_logits), d_loss(real_logits, fake_logits, real_label_smoothing=0.0))
        with the config's parameters filled in."""
        g, d = self._fn(self.generator_loss), self._fn(self.discriminator_loss)
        gp, dp = self._params(self.g_params, loss_cfg), self._params(self.d_params, loss_cfg)

        def g_loss(fake_logits):
            return g(fake_logits, **gp)

        def d_loss(real_logits, fake_logits, real_label_smoothing: float = 0.0):
            return d(real_logits, fake_logits, real_label_smoothing, **dp)

        return g_loss, d_loss

    def bind_lens(self, loss_cfg) -> Callable:
        """-> lens_adv(lensed_real_logits, fake_logits=None) for this family and config."""
        fn, dp = self._fn(self.lens_loss), self._params(self.d_params, loss_cfg)
        return lambda lensed, fake=None: fn(lensed, fake, **dp)


LOSSES: Registry = Registry("loss.family")
register_loss = LOSSES.register
loss_family = LOSSES.lookup


register_loss(LossFamily("minimax", "minimax_generator_loss", "minimax_discriminator_loss",
                         "minimax_lens_loss", "Goodfellow et al. 2014, saturating G loss"))
register_loss(LossFamily("ns", "ns_generator_loss", "ns_discriminator_loss", "softplus_lens_loss",
                         "non-saturating: G minimizes -log D(G(z))"))
register_loss(LossFamily("lsgan", "lsgan_generator_loss", "lsgan_discriminator_loss", "lsgan_lens_loss",
                         "Mao et al. 2017: least squares with labels a, b, c",
                         g_params=(("c", "lsgan_c"),), d_params=(("a", "lsgan_a"), ("b", "lsgan_b")), settings=S.LSGANSettings))
register_loss(LossFamily("wgan_gp", "wgan_gp_generator_loss", "wgan_gp_discriminator_loss", "critic_lens_loss",
                         "Gulrajani et al. 2017: Wasserstein + gradient penalty (+ drift, Karras et al.)",
                         needs_gradient_penalty=True, supports_label_smoothing=False,
                         refuses_batchnorm_critic=True, d_params=(("drift", "drift"),), settings=S.WGANGPSettings,
                         step="facegan.trainer.adversarial:WGANGPLoss"))
register_loss(LossFamily("wgan", "wgan_generator_loss", "wgan_discriminator_loss", "critic_lens_loss",
                         "Arjovsky et al. 2017: Wasserstein with weight clipping (RMSProp)",
                         supports_label_smoothing=False, refuses_batchnorm_critic=True,
                         clips_weights=True, optimizer="rmsprop", settings=S.WGANSettings,
                         step="facegan.trainer.adversarial:WGANClipLoss"))
register_loss(LossFamily("hinge", "hinge_generator_loss", "hinge_discriminator_loss", "critic_lens_loss",
                         "Lim & Ye 2017 / Miyato et al. 2018: hinge", supports_label_smoothing=False))
register_loss(LossFamily("facegan", "facegan_generator_loss", "facegan_discriminator_loss",
                         "softplus_lens_loss",
                         "Li et al. (FaceGANs) eq. 1-2: -log sig(D(x)) - log sig(1 - D(G(z)))"))
register_loss(LossFamily("nsgan_r1", "ns_generator_loss", "ns_discriminator_loss", "softplus_lens_loss",
                         "StyleGAN2: non-saturating logistic + lazy R1 (every 16) + lazy path length (every 4)",
                         supports_label_smoothing=False, refuses_batchnorm_critic=True, lazy_r1=True,
                         settings=S.NSGANR1Settings, step="facegan.trainer.stylegan_losses:StyleGAN2Loss"))
# Image-to-image families take patch logits (trainer/image_to_image_losses.py). The lens is refused for
# image-to-image architectures at config time; their lens entries name the matching z-family's term.
_I2I = "facegan.trainer.image_to_image_losses:"
register_loss(LossFamily("pix2pix", _I2I + "patch_ns_generator_loss", _I2I + "patch_ns_discriminator_loss",
                         "softplus_lens_loss",
                         "Isola et al. 2017: patch cross-entropy cGAN (D halved) + loss.l1_weight * L1",
                         supports_label_smoothing=False, kind="image_to_image", settings=S.Pix2PixLossSettings,
                         step="facegan.trainer.image_to_image:Pix2PixLoss"))
register_loss(LossFamily("cyclegan", _I2I + "patch_lsgan_generator_loss", _I2I + "patch_lsgan_discriminator_loss",
                         "lsgan_lens_loss",
                         "Zhu et al. 2017: patch LSGAN (D halved) + cycle + identity (loss.cycle_weight, "
                         "loss.identity_weight)", supports_label_smoothing=False, kind="image_to_image",
                         settings=S.CycleGANLossSettings, step="facegan.trainer.image_to_image:CycleGANLoss"))


def describe() -> str:
    """Architectures and loss families, one line each (for `facegan train --help`)."""
    lines = ["architectures (network.architecture):"]
    for a in ARCHITECTURES.values():
        flags = ", ".join(f for f, on in (("progressive", a.progressive), (a.kind, True)) if on)
        lines.append(f"  {a.name:<10} {a.summary} [{flags}]")
    lines.append("loss families (loss.family):")
    for f in LOSSES.values():
        flags = [] if f.supports_label_smoothing else ["no label smoothing"]
        if f.refuses_batchnorm_critic:
            flags.append("no BatchNorm critics")
        lines.append(f"  {f.name:<10} {f.summary}" + (f" [{', '.join(flags)}]" if flags else ""))
    return "\n".join(lines)
