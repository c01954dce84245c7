"""Per-model settings, TensorFlow-free: the common base of `network` and `loss`, and the settings
class each built-in architecture and loss family registers (trainer/registry.py).

A run config holds the chosen architecture's settings in `cfg.network` and the chosen loss
family's in `cfg.loss` (big_vision's per-model `config.model`, stylegan3's `G_kwargs` /
`loss_kwargs`): a subclass of `NetworkConfig` / `LossConfig` that adds only its own fields, so
`cfg.network.fade_images` reads for progan, `--set network.mapping_layers=4` works for
stylegan2, and `config.json` keeps its `{"network": {...}, "loss": {...}}` shape with only the
fields the chosen model has.

Each class validates itself: `validate(cfg, arch, family)` raises `ConfigError` naming the field
(`cfg` the whole Config, `arch` / `family` the registry entries chosen); trainer/config.py's
`validate` keeps only the rules that cross sections. `refusal_hints` says, per field, why an
architecture (or family) without the field has no such setting: the rest of the sentence after
the field's name (": ..." or " is ..."), "{name}" standing for the chosen model; trainer/config.py
shows it when the field is set on another model.

A new model's settings: subclass `NetworkConfig` (or `LossConfig`) with its fields (defaults
required), override `validate`, and name the class in its registration
(`Architecture(..., settings=MySettings)` / `LossFamily(..., settings=MySettings)`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar, Dict


class ConfigError(ValueError):
    """A config value is invalid; the message names the field (e.g. `loss.family`)."""


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


# -- networks ------------------------------------------------------------------------------------
@dataclass
class NetworkConfig:
    """What every architecture has. `filters` / `max_filters` are the base and largest widths of
    the convolutional families (their meaning per architecture is in each builder; the StyleGAN
    widths are channel_base / channel_max)."""
    architecture: str = "dcgan"        # trainer/registry.py ARCHITECTURES key
    resolution: int = 64               # output side, power of two
    z_dim: int = 100
    # Base width. dcgan/hdcgan/facegan: channels of the layer nearest the image, doubling per
    # stride-2 layer; progan: nf(r) = filters * 32 / r (Karras' table with filters = 512).
    filters: int = 64
    max_filters: int = 512

    refusal_hints: ClassVar[Dict[str, str]] = {}

    def validate(self, cfg, arch, family) -> None:
        """The architecture's own rules (the common fields are checked by config.validate)."""


@dataclass
class ConvNetSettings(NetworkConfig):
    """dcgan, hdcgan, facegan, tan and their conditional forms (trainer/networks/convnets.py)."""
    input_noise_std: float = 0.0       # HDCGAN: additive Gaussian noise on G and D inputs (training)
    batch_norm: bool = True            # false drops every BatchNorm

    refusal_hints: ClassVar[Dict[str, str]] = {
        "batch_norm": ": {name} has no BatchNorm switch (the DCGAN family honours network.batch_norm=false)",
        "input_noise_std": " is HDCGAN's input noise and {name} has none; use tricks.instance_noise for "
                           "annealed noise on D's inputs",
    }

    def validate(self, cfg, arch, family) -> None:
        _need(self.input_noise_std >= 0, f"network.input_noise_std must be >= 0, got {self.input_noise_std}")
        _need(not self.input_noise_std or arch.input_noise,
              "network.input_noise_std" + self.refusal_hints["input_noise_std"].format(name=arch.name))


OUTPUT_ACTIVATIONS = ("tanh", "linear")


@dataclass
class ProGANSettings(NetworkConfig):
    """progan and cprogan (trainer/networks/progan.py), Karras et al. 2018."""
    architecture: str = "progan"
    start_resolution: int = 4
    fade_images: int = 600_000         # images shown while a new block fades in
    stable_images: int = 600_000       # images shown at a resolution after its fade-in
    equalized_lr: bool = True
    pixelnorm: bool = True
    minibatch_stddev: bool = True
    mbstd_group_size: int = 4
    mbstd_extra_stats: bool = False    # also skewness and kurtosis (Columbia report)
    residual_g: bool = False
    residual_d: bool = False
    # Karras et al. 2018 blend the reals during a fade like the fakes: lerp(2x down-then-up copy,
    # x, alpha) (PGGAN train.py `process_reals`, "FadeLOD").
    fade_reals: bool = True
    # Reset Adam's moments and step count at the start and at the end of each fade-in (PGGAN
    # train.py `reset_opt_for_new_lod = True`).
    reset_optimizer_at_fade: bool = True
    # G's output layer: "linear" as the paper (PGGAN networks.py G_paper: the toRGB conv has no
    # activation), or "tanh" (this repository's earlier default, kept as an option). Either way
    # exports and samples are clipped to [-1, 1] before uint8.
    output_activation: str = "tanh"
    batch_sizes: Dict[str, int] = field(default_factory=dict)  # {"4": 64, ..., "128": 16}

    refusal_hints: ClassVar[Dict[str, str]] = {
        "batch_sizes": " is per progressive stage; {name} is not progressive (use optim.batch_size)",
        "output_activation": ": only progressive architectures have the switch; {name} ends in tanh",
    }

    def validate(self, cfg, arch, family) -> None:
        s, res = self.start_resolution, self.resolution
        _need(s >= 4 and not s & (s - 1) and s <= res,
              f"network.start_resolution must be a power of two in [4, resolution], got {s}")
        _need(self.mbstd_group_size >= 1, f"network.mbstd_group_size must be >= 1, got {self.mbstd_group_size}")
        _need(self.fade_images >= 0 and self.stable_images >= 1,
              f"network.fade_images must be >= 0 and network.stable_images >= 1, "
              f"got {self.fade_images}, {self.stable_images}")
        _need(self.output_activation in OUTPUT_ACTIVATIONS,
              f"network.output_activation {self.output_activation!r} is not one of {', '.join(OUTPUT_ACTIVATIONS)}")
        _need(not (self.mbstd_extra_stats and not self.minibatch_stddev),
              "network.mbstd_extra_stats adds skewness/kurtosis to the minibatch stddev "
              "layer, which network.minibatch_stddev = false removes")
        for k, v in self.batch_sizes.items():
            _need(str(k).isdigit() and not int(k) & (int(k) - 1) and isinstance(v, int) and v >= 1,
                  f"network.batch_sizes[{k!r}] must map a power-of-two resolution to a positive int")
            _need(s <= int(k) <= res, f"network.batch_sizes[{k!r}]: resolution outside the grown range [{s}, {res}]")


@dataclass
class StyleGANSettings(NetworkConfig):
    """stylegan2, cstylegan2 and stylegan (trainer/networks/stylegan2.py). Widths
    nf(r) = min(channel_max, channel_base // r); mbstd_group_size is D's group."""
    architecture: str = "stylegan2"
    w_dim: int = 512
    mapping_layers: int = 8            # the GAN-tricks survey: "8 FC layers by default"
    mapping_lr_mul: float = 0.01       # the survey: "learning-rate multiplier 0.01"
    channel_base: int = 32768          # NVlabs config-f
    channel_max: int = 512
    w_avg_beta: float = 0.995          # w_avg EMA (NVlabs)
    mixing_prob: float = 0.9           # style mixing regularization (StyleGAN sec. 3.1)
    mbstd_group_size: int = 4

    def check_fields(self) -> None:
        """The rules that need no other section (also run by StyleGANConfig on construction)."""
        _need(min(self.w_dim, self.mapping_layers, self.channel_base, self.channel_max) >= 1,
              "network.w_dim, network.mapping_layers, network.channel_base and network.channel_max must be >= 1")
        _need(0.0 < self.mapping_lr_mul <= 1.0, f"network.mapping_lr_mul must be in (0, 1], got {self.mapping_lr_mul}")
        _need(0.0 <= self.w_avg_beta < 1.0, f"network.w_avg_beta must be in [0, 1), got {self.w_avg_beta}")
        _need(0.0 <= self.mixing_prob <= 1.0, f"network.mixing_prob must be in [0, 1], got {self.mixing_prob}")
        _need(self.mbstd_group_size >= 1, f"network.mbstd_group_size must be >= 1, got {self.mbstd_group_size}")

    def validate(self, cfg, arch, family) -> None:
        self.check_fields()
        # The trainer jit-compiles the replica step (train_lib._step_fn), which must hold no
        # merge_call (gan.py); w_avg and the path-length mean are MEAN-aggregated mirrored
        # variables whose in-step updates are such a cross-replica sync.
        _need(not cfg.run.xla,
              f"run.xla: {arch.name} cannot be XLA-compiled: its running averages (w_avg, "
              "the path-length mean) are MEAN-aggregated across replicas, a cross-replica sync "
              "(merge_call) that an XLA-compiled replica step cannot contain; set run.xla false")


@dataclass
class Pix2PixSettings(NetworkConfig):
    """pix2pix (trainer/networks/image_to_image.py), Isola et al. 2017."""
    architecture: str = "pix2pix"
    dropout: float = 0.5               # U-Net decoder dropout, the paper's only noise

    def validate(self, cfg, arch, family) -> None:
        _need(0.0 <= self.dropout < 1.0, f"network.dropout must be in [0, 1), got {self.dropout}")


@dataclass
class CycleGANSettings(NetworkConfig):
    """cyclegan (trainer/networks/image_to_image.py), Zhu et al. 2017."""
    architecture: str = "cyclegan"
    resnet_blocks: int = 9             # residual blocks (paper: 6 at 128 px, 9 at 256)
    domain_attribute: str = "eyeglasses"   # domain A = attr/<name> 0, domain B = 1

    def validate(self, cfg, arch, family) -> None:
        _need(bool(self.domain_attribute), "network.domain_attribute must name an ingested attribute (e.g. eyeglasses)")
        _need(self.resnet_blocks >= 0, f"network.resnet_blocks must be >= 0, got {self.resnet_blocks}")


# -- loss families ---------------------------------------------------------------------------------
@dataclass
class LossConfig:
    """What every loss family has (minimax, ns, hinge and facegan have nothing more)."""
    family: str = "ns"                 # trainer/registry.py LOSSES key

    refusal_hints: ClassVar[Dict[str, str]] = {}

    def validate(self, cfg, arch, family) -> None:
        """The family's own rules."""


@dataclass
class LSGANSettings(LossConfig):
    family: str = "lsgan"
    lsgan_a: float = 0.0               # LSGAN labels: fake a, real b, G's target c
    lsgan_b: float = 1.0
    lsgan_c: float = 1.0

    def validate(self, cfg, arch, family) -> None:
        _need(self.lsgan_a != self.lsgan_b,
              f"loss.lsgan_a and loss.lsgan_b must differ (fake and real labels), both {self.lsgan_a}")


@dataclass
class WGANSettings(LossConfig):
    family: str = "wgan"
    clip_value: float = 0.01           # critic weights clipped to [-c, c] (Arjovsky et al.: 0.01)

    def validate(self, cfg, arch, family) -> None:
        _need(self.clip_value > 0, f"loss.clip_value must be > 0 (the WGAN critic's weight box), got {self.clip_value}")


@dataclass
class WGANGPSettings(LossConfig):
    family: str = "wgan_gp"
    gp_weight: float = 10.0            # WGAN-GP lambda
    drift: float = 0.0                 # epsilon drift (ProGAN: 0.001)

    def validate(self, cfg, arch, family) -> None:
        _need(self.gp_weight >= 0 and self.drift >= 0,
              f"loss.gp_weight and loss.drift must be >= 0, got {self.gp_weight}, {self.drift}")


@dataclass
class NSGANR1Settings(LossConfig):
    """StyleGAN2's non-saturating loss with lazy R1 and lazy path length (trainer/stylegan_losses.py)."""
    family: str = "nsgan_r1"
    r1_gamma: float = 10.0             # R1 gamma (Mescheder et al. 2018)
    r1_interval: int = 16              # the GAN-tricks survey: "lazy regularization every 16 minibatches"
    pl_weight: float = 2.0             # path length weight (StyleGAN2 sec. 3.2); 0 disables
    pl_interval: int = 4               # the survey: "path length regularization (lazy, every 4)"
    pl_decay: float = 0.01             # running-mean rate of the path lengths (NVlabs)
    pl_batch_shrink: int = 2           # path length on batch / shrink examples (NVlabs: 2)

    def validate(self, cfg, arch, family) -> None:
        _need(self.r1_gamma >= 0 and self.r1_interval >= 1 and self.pl_interval >= 1 and self.pl_weight >= 0,
              "loss.r1_gamma and loss.pl_weight must be >= 0, loss.r1_interval and loss.pl_interval >= 1")
        batch = cfg.optim.batch_size
        _need(self.pl_batch_shrink >= 1 and not batch % self.pl_batch_shrink,
              f"loss.pl_batch_shrink must be >= 1 and divide optim.batch_size ({batch}), got {self.pl_batch_shrink}")
        _need(not (self.pl_weight > 0 and not arch.w_space),
              f"loss.pl_weight: path length regularization differentiates G through W, and {arch.name} has "
              "no W space; set loss.pl_weight 0 (R1 alone) or use an architecture with a W space (stylegan2, ...)")
        _need(0.0 < self.pl_decay <= 1.0, f"loss.pl_decay must be in (0, 1], got {self.pl_decay}")
        _need(cfg.tricks.d_steps == 1, f"tricks.d_steps: {family.name} counts lazy R1 intervals in D steps of "
              "one per G step (StyleGAN2); use tricks.d_steps 1")


@dataclass
class Pix2PixLossSettings(LossConfig):
    family: str = "pix2pix"
    l1_weight: float = 100.0           # lambda of the L1 term (Isola et al. 2017)

    def validate(self, cfg, arch, family) -> None:
        _need(self.l1_weight >= 0, f"loss.l1_weight is a loss weight and must be >= 0, got {self.l1_weight}")


@dataclass
class CycleGANLossSettings(LossConfig):
    family: str = "cyclegan"
    cycle_weight: float = 10.0         # lambda of the cycle loss (Zhu et al. 2017)
    identity_weight: float = 0.5       # identity loss weight as a fraction of cycle_weight

    def validate(self, cfg, arch, family) -> None:
        _need(self.cycle_weight >= 0 and self.identity_weight >= 0,
              "loss.cycle_weight and loss.identity_weight are loss weights and must be >= 0")


def field_names(klass) -> tuple:
    """The dataclass fields of a settings class, in order."""
    return tuple(f.name for f in dataclasses.fields(klass))


def field_default(klass, name: str):
    """The default of `klass`'s field `name` (default_factory called)."""
    f = {f.name: f for f in dataclasses.fields(klass)}[name]
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
