"""One typed training config: dataclasses, named presets, validation at parse time.

The resolved config is written as `config.json` next to every run (stylegan3's
`training_options.json`). `Config.from_dict` / `to_dict` round-trip exactly; unknown keys and
bad values raise `ConfigError` naming the field. No TensorFlow import here.

Per-model settings: `cfg.network` is the chosen architecture's registered settings class and
`cfg.loss` the chosen loss family's (trainer/settings.py: `NetworkConfig` / `LossConfig` plus that
model's own fields and validator; trainer/registry.py names the class per entry), so the config
holds only the chosen models' fields under their usual names. `--set network.architecture=...`
(or `loss.family`) switches the class, carrying the fields both have; setting a field the chosen
model lacks is refused naming the models that have it. `validate` keeps the rules that cross
sections.

Ownership: the settings classes, `TricksConfig`, `LensConfig` and the presets describe the model
zoo (networks/losses/regularizers); `OptimConfig` and `RunConfig` describe the loop.
"""
from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from facegan.trainer import conditioning, registry


# The common bases and the built-in per-model settings live in trainer/settings.py (TF-free);
# re-exported here, where the rest of the config is.
from facegan.trainer.settings import (ConfigError, LossConfig, NetworkConfig,  # noqa: F401
                                      OUTPUT_ACTIVATIONS, field_default, field_names)

# The two sections whose class is chosen by one of their fields: section -> (that field, registry).
_CHOSEN_BY = {"network": ("architecture", registry.ARCHITECTURES), "loss": ("family", registry.LOSSES)}


def settings_class(section: str, name: str) -> type:
    """The registered settings class of architecture (`section="network"`) or loss family
    (`"loss"`) `name`; ConfigError naming the field for an unregistered name."""
    key, reg = _CHOSEN_BY[section]
    if not isinstance(name, str):
        raise ConfigError(f"{section}.{key} must be a string, got {name!r}")
    try:
        return reg.lookup(name).settings
    except registry.RegistryError as e:
        raise ConfigError(str(e)) from None


def network_settings(architecture: str = "dcgan", **fields) -> NetworkConfig:
    """`cfg.network` for `architecture` with `fields` (others at their defaults); a field the
    architecture does not have raises ConfigError naming it and the architectures that have it."""
    return _section_from_dict("network", dict(fields, architecture=architecture), "network.", strict=True)


def loss_settings(family: str = "ns", **fields) -> LossConfig:
    """`cfg.loss` for loss family `family` with `fields` (see `network_settings`)."""
    return _section_from_dict("loss", dict(fields, family=family), "loss.", strict=True)


def owners(section: str, name: str) -> List[str]:
    """The registered architectures / loss families whose settings have the field `name`."""
    return [e.name for e in _CHOSEN_BY[section][1].values() if name in field_names(e.settings)]


def not_a_setting(section: str, chosen: str, name: str) -> ConfigError:
    """The one-line refusal of field `name` set for `chosen`, which lacks it: the owner's hint
    (settings `refusal_hints`) when it has one, and which models have the field."""
    where, have = f"{section}.{name}", owners(section, name)
    if not have:
        return ConfigError(f"unknown config field {where!r}")
    reg = _CHOSEN_BY[section][1]
    hint = next((reg[o].settings.refusal_hints[name] for o in have if name in reg[o].settings.refusal_hints), "")
    if hint:
        return ConfigError(f"{where}{hint.format(name=chosen)} (a setting of {', '.join(have)})")
    return ConfigError(f"{where}: {chosen} has no such setting (a setting of {', '.join(have)})")


def switch_model(section: str, current: Dict[str, Any], name: Any) -> Dict[str, Any]:
    """The dict of `section` after its architecture / family changes to `name`: the fields the
    new model's settings also have (the common ones, and same-named ones such as progan's and
    stylegan2's mbstd_group_size) carry over, the old model's others go, the new one's others
    take their defaults. An unregistered name is kept for validation to name."""
    key, reg = _CHOSEN_BY[section]
    if not isinstance(name, str) or name not in reg:
        return {**current, key: name}
    klass = reg[name].settings
    return {**{k: field_default(klass, k) for k in field_names(klass)},
            **{k: v for k, v in current.items() if k in field_names(klass)}, key: name}


@dataclass
class LensConfig:
    enabled: bool = False
    blocks: int = 8
    filters: int = 32
    # K in lambda = 1 - sin(t*pi/(2K)). Sajjadi et al. give K = 10^5 in the text (their figure
    # captions say 10k); we follow the text.
    anneal_steps: int = 100_000
    learning_rate: float = 2e-4


@dataclass
class AugmentConfig:
    """Discriminator-input augmentation (trainer/augment.py), any architecture. mode: none | ada
    (Karras et al. 2020: p tuned toward r_t = target every `interval` minibatches) | fixed (p
    constant) | diffaugment (Zhao et al. 2020: `policy` always on)."""
    mode: str = "none"
    p: float = 0.0                     # initial (ada) or constant (fixed) probability
    target: float = 0.6                # ADA sec. 3: r_t target
    interval: int = 4                  # ADA: adjust p every 4 minibatches
    speed_images: int = 500_000        # images for p to move 0 -> 1 (NVlabs ada_kimg = 500)
    pipeline: str = "bgc"              # trainer/augment.py PIPELINES
    policy: str = "color,translation,cutout"   # diffaugment mode


@dataclass
class TricksConfig:
    feature_matching: float = 0.0      # weight of ||E f(x) - E f(G(z))||^2 in G's loss
    minibatch_discrimination: bool = False
    mbd_kernels: int = 50              # Salimans et al.: B
    mbd_kernel_dim: int = 5            # C
    historical_averaging: float = 0.0  # weight
    label_smoothing: float = 0.0       # one-sided: real targets 1 - s
    instance_noise: float = 0.0        # initial std, annealed linearly to 0
    instance_noise_steps: int = 0
    repelling: float = 0.0             # weight of the pulling-away / repelling term
    # Generator EMA (Karras et al. 2018). Off unless a preset's paper uses it (ProGAN); the
    # export metadata says which weights were exported ("generator_weights": "ema" | "raw").
    # Two ways to set its horizon (trainer/ema.py):
    # - ema_decay: a per-step decay beta (PGGAN's G_smoothing; the smoke presets' 0.999);
    # - ema_kimg: a half-life in thousands of images shown, StyleGAN's
    #   beta = 0.5 ** (images per step / (ema_kimg * 1000)), with the optional ramp-up of
    #   stylegan2-ada (training_loop.py): ema_nimg = min(ema_nimg, cur_nimg * ema_rampup), where
    #   cur_nimg counts the images since the weight's progressive block appeared (since the start
    #   for other networks). 0 = no ramp-up. Set one of ema_decay, ema_kimg.
    ema_decay: float = 0.0
    ema_kimg: float = 0.0
    ema_rampup: float = 0.0
    # Sampling temperature psi: z' = psi * z scales the N(0, I) prior's temperature (Kingma &
    # Dhariwal 2018). Not StyleGAN's truncation in W (that needs a mapping network); 1 = none.
    temperature: float = 1.0
    d_steps: int = 1                   # D updates per G update
    history_pool: int = 0              # cyclegan: D sees fakes from a pool of this many past ones
    lens: LensConfig = field(default_factory=LensConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    truncation_cutoff: int = 0         # W-space generators: truncate layers < cutoff (0 = all)


@dataclass
class OptimConfig:
    batch_size: int = 64               # global batch (all replicas)
    # adam | rmsprop | auto (= the loss family's paper optimizer: rmsprop for wgan, else adam) |
    # adam_fused (Adam's same update as one fused kernel per variable, trainer/fused_adam.py).
    # rmsprop uses the learning rates and epsilon, not beta1/beta2.
    optimizer: str = "auto"
    g_learning_rate: float = 2e-4
    d_learning_rate: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    epsilon: float = 1e-8
    lr_decay_start: float = 1.0        # fraction of run.steps after which lr decays linearly to 0 (1 = never)


@dataclass
class RunConfig:
    steps: int = 1000                  # generator steps (TFX: TrainArgs.num_steps overrides)
    seed: int = 0
    strategy: str = "mirrored"         # mirrored | multiworker | default
    # auto | float32 | mixed_float16 | mixed_bfloat16; auto is resolved by hardware when training
    # starts (facegan/machine.py) and config.json records the policy used + precision_reason.
    mixed_precision: str = "auto"
    precision_reason: str = ""         # written by the trainer: why this policy (not an input)
    xla: bool = False
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    log_every: int = 50
    image_every: int = 500
    max_nan_recoveries: int = 3
    nan_lr_factor: float = 0.5
    shuffle_buffer: int = 2048


# -- metrics during training (trainer/periodic_eval.py) --------------------------------------
@dataclass
class EvalConfig:
    every_images: int = 0              # evaluate every N images shown (0: off; see EVAL_EVERY_IMAGES)
    metrics: str = "swd,ms_ssim,fid,kid,face_detection"   # registry requests (metrics/registry.py)
    num_images: int = 1024             # bounded sample per metric (pairs for ms_ssim)
    batch_size: int = 64
    seed: int = 0                      # latent stream, as `facegan evaluate --seed`
    extractor: str = "inception"       # FID/KID/IS features; skipped (with the reason) if missing
    memorization: int = 16             # samples checked against the training images (0: off)
    best_metric: str = "swd"           # keeps best/ by it (direction from the registry); "": none
    export: str = "last"               # last | best: which generator the run exports
    also_raw: bool = False             # also score the raw generator (eval_raw/<metric>)
    cache_dir: str = ""                # real-statistics cache (default: <run_dir>/eval_cache)


EVAL_EXPORTS = ("last", "best")
EVAL_EVERY_IMAGES = 50_000             # paper presets; smoke presets keep it off


# -- conditioning (the rules are in trainer/conditioning.py) -------------------------------------
@dataclass
class ConditionConfig:
    attributes: str = ""               # "male,smiling": ingested attr/<name> features, vector order
    discriminator: str = "projection"  # projection (Miyato & Koyama 2018) | acgan (Odena et al. 2017)
    acgan_weight: float = 1.0          # auxiliary classification loss weight (acgan)
    embedding: int = 0                 # G: 0 = concatenate the vector to z; > 0 = dense embedding width
    unlabelled: str = "refuse"         # Examples lacking an attribute: refuse | skip
    balance: bool = False              # resample joint label cells toward positive rates of 0.5
    classifier_steps: int = 1500       # attribute_control's classifier during training (metrics/attributes.py)


# -- extra training data: synthetic sets (the stream is trainer/data.mixed_dataset) --------------
@dataclass
class DataConfig:
    synthetic: str = ""                # comma-separated synthetic Examples (artifact dirs / patterns)
    synthetic_ratio: float = 0.0       # P(a training example is drawn from `synthetic`), in [0, 1)


@dataclass
class Config:
    # The chosen architecture's and loss family's registered settings (trainer/settings.py).
    network: NetworkConfig = field(default_factory=lambda: network_settings())
    loss: LossConfig = field(default_factory=lambda: loss_settings())
    tricks: TricksConfig = field(default_factory=TricksConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    condition: ConditionConfig = field(default_factory=ConditionConfig)
    data: DataConfig = field(default_factory=DataConfig)
    preset: str = ""
    # What resolving the preset changed on the user's behalf (e.g. batch-size entries dropped
    # for resolutions the run never reaches); written to config.json and logged at start.
    notes: List[str] = field(default_factory=list)

    # -- serialization -------------------------------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "Config":
        """A config from its dict form (config.json). `network` / `loss` take the chosen model's
        settings class. A config.json written before per-model settings holds every model's
        fields: another model's field at its default is dropped; set to anything else, it is
        refused (one line naming the field and the models that have it)."""
        cfg = _from_dict(cls, d, "")
        validate(cfg)
        return cfg

    def override(self, overrides: Dict[str, Any]) -> "Config":
        """Apply dotted overrides, e.g. {"optim.batch_size": 32}; validates the result.
        `network.architecture` / `loss.family` are applied first (`switch_model`), so the other
        overrides address the new model's fields; a field it does not have is refused."""
        d, rest = self.to_dict(), dict(overrides)
        for section, (key, _) in _CHOSEN_BY.items():
            dotted = f"{section}.{key}"
            if dotted in rest and isinstance(d.get(section), dict):
                d[section] = switch_model(section, d[section], rest.pop(dotted))
        for key, value in rest.items():
            node, parts = d, key.split(".")
            for p in parts[:-1]:
                if not isinstance(node.get(p), dict):
                    raise ConfigError(f"unknown config field {key!r}")
                node = node[p]
            if parts[-1] not in node:
                if len(parts) == 2 and parts[0] in _CHOSEN_BY:
                    raise not_a_setting(parts[0], node[_CHOSEN_BY[parts[0]][0]], parts[1])
                raise ConfigError(f"unknown config field {key!r}")
            node[parts[-1]] = value
        return Config.from_dict(d)


def _from_dict(klass, d, prefix):
    if not isinstance(d, dict):
        raise ConfigError(f"{prefix or 'config'} must be a mapping, got {type(d).__name__}")
    fields = {f.name: f for f in dataclasses.fields(klass)}
    unknown = sorted(set(d) - set(fields))
    if unknown:
        raise ConfigError(f"unknown config field(s) {', '.join(prefix + u for u in unknown)}")
    kwargs = {}
    for name, value in d.items():
        f = fields[name]
        if klass is Config and name in _CHOSEN_BY:
            kwargs[name] = _section_from_dict(name, value, f"{prefix}{name}.")
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            kwargs[name] = _from_dict(type(default), value, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(value, default, prefix + name)
    return klass(**kwargs)


def _section_from_dict(section: str, d, prefix: str, strict: bool = False):
    """`network` / `loss` as the chosen model's settings. Not `strict` (a config.json): another
    model's field holding its default is dropped (a config written when one dataclass held every
    model's fields); `strict` (code asking for a model's settings): refused like any other."""
    if not isinstance(d, dict):
        raise ConfigError(f"{prefix[:-1]} must be a mapping, got {type(d).__name__}")
    key = _CHOSEN_BY[section][0]
    base = NetworkConfig if section == "network" else LossConfig
    name = d.get(key, field_default(base, key))
    klass = settings_class(section, name)
    mine = field_names(klass)
    kept = {}
    for k, v in d.items():
        if k in mine:
            kept[k] = v
            continue
        have = owners(section, k)
        if not have:
            raise ConfigError(f"unknown config field(s) {prefix}{k}")
        if strict:
            raise not_a_setting(section, name, k)
        if any(_same_value(v, field_default(_CHOSEN_BY[section][1][o].settings, k)) for o in have):
            continue
        raise ConfigError(f"{prefix}{k} = {json.dumps(v)}: {name} has no such setting (a setting of "
                          f"{', '.join(have)}); remove it from the config")
    return _from_dict(klass, dict(kept, **{key: name}), prefix)


def without_other_models_defaults(d: Dict[str, Any]) -> Dict[str, Any]:
    """A config dict (config.json / run.json) with the fields of `network` / `loss` that the
    chosen model's settings lack removed where they hold their default, as `Config.from_dict`
    drops them: a config written when one dataclass held every model's fields then compares
    field by field with today's (trainer/runs.py). Other values are kept, so a comparison still
    shows them; a bad name or shape is left for `from_dict` to name."""
    out = dict(d)
    for section, (key, reg) in _CHOSEN_BY.items():
        sec = d.get(section)
        base = NetworkConfig if section == "network" else LossConfig
        name = sec.get(key, field_default(base, key)) if isinstance(sec, dict) else None
        if not isinstance(name, str) or name not in reg:
            continue
        mine = field_names(reg[name].settings)
        out[section] = {k: v for k, v in sec.items() if k in mine or not any(
            _same_value(v, field_default(reg[o].settings, k)) for o in owners(section, k))}
    return out


def _same_value(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b


def _coerce(value, default, name):
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        return int(value)
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name} must be a number, got {value!r}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be a string, got {value!r}")
        return value
    if isinstance(default, list):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{name} must be a list of strings, got {value!r}")
        return list(value)
    if isinstance(default, dict):
        if not isinstance(value, dict):
            raise ConfigError(f"{name} must be a mapping, got {value!r}")
        return {str(k): v for k, v in value.items()}
    return value


# -- validation -------------------------------------------------------------------------------
# Architecture and loss names (and what each allows) come from trainer/registry.py, which is
# TensorFlow-free, so configs validate before TensorFlow loads.
STRATEGIES = ("mirrored", "multiworker", "default")
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
OPTIMIZERS = ("auto", "adam", "rmsprop", "adam_fused")


def ema_enabled(cfg: "Config") -> bool:
    """Does the config keep a generator EMA (a per-step decay or a half-life in images)?"""
    return cfg.tricks.ema_decay > 0 or cfg.tricks.ema_kimg > 0


def validate(cfg: Config) -> Config:
    """The rules that cross sections; each model's own fields are checked by its settings class
    (`cfg.network.validate`, `cfg.loss.validate`, trainer/settings.py)."""
    n, lo = cfg.network, cfg.loss
    arch, family = _chosen(cfg)
    _validate_common(cfg)
    res = n.resolution
    if not arch.min_resolution <= res <= arch.max_resolution:
        raise ConfigError("network.resolution: " + (arch.resolution_reason or (
            f"{n.architecture} works from {arch.min_resolution}x{arch.min_resolution} "
            f"up to {arch.max_resolution}x{arch.max_resolution}")))
    n.validate(cfg, arch, family)
    if cfg.tricks.label_smoothing and not family.supports_label_smoothing:
        raise ConfigError(f"tricks.label_smoothing has no meaning for {lo.family} (the critic has no labels)")
    validate_eval(cfg.eval)
    _validate_batchnorm_critic(cfg, arch, family)
    conditioning.validate(cfg, ConfigError)   # condition.* (trainer/conditioning.py)
    if (arch.kind == "image_to_image") != (family.kind == "image_to_image"):
        fitting = [f.name for f in registry.LOSSES.values() if (f.kind == "image_to_image") == (arch.kind == "image_to_image")]
        raise ConfigError(f"loss.family {lo.family} is for {family.kind} generators but {n.architecture} is "
                          f"{arch.kind}; use {' or '.join(fitting)}")
    if arch.kind == "image_to_image":
        _validate_image_to_image_tricks(cfg)
    lo.validate(cfg, arch, family)
    _validate_augment(cfg, arch)
    return cfg


def _chosen(cfg: Config):
    """(Architecture, LossFamily) of the config, checking that `network` / `loss` are their
    registered settings classes (a config built in code may hold another)."""
    n, lo = cfg.network, cfg.loss
    try:
        arch, family = registry.architecture(n.architecture), registry.loss_family(lo.family)
    except registry.RegistryError as e:
        raise ConfigError(str(e)) from None
    for section, obj, want in (("network", n, arch.settings), ("loss", lo, family.settings)):
        if type(obj) is not want:
            raise ConfigError(f"{section}: {type(obj).__name__} holds the settings of another model; "
                              f"{getattr(obj, _CHOSEN_BY[section][0])} registers {want.__name__} "
                              f"(build it with {section}_settings(...))")
    return arch, family


def _validate_common(cfg: Config) -> None:
    """The common network fields and the tricks / optim / run sections."""
    n, t, o, r = cfg.network, cfg.tricks, cfg.optim, cfg.run
    res = n.resolution
    if not isinstance(res, int) or res < 8 or res > 1024 or res & (res - 1):
        raise ConfigError(f"network.resolution must be a power of two in [8, 1024], got {res!r}")
    if n.z_dim < 1:
        raise ConfigError(f"network.z_dim must be >= 1, got {n.z_dim}")
    if r.strategy not in STRATEGIES:
        raise ConfigError(f"run.strategy {r.strategy!r} is not one of {STRATEGIES}")
    if r.mixed_precision not in PRECISIONS:
        raise ConfigError(f"run.mixed_precision {r.mixed_precision!r} is not one of {PRECISIONS}")
    if o.batch_size < 1:
        raise ConfigError(f"optim.batch_size must be >= 1, got {o.batch_size}")
    if r.steps < 0:
        raise ConfigError(f"run.steps must be >= 0, got {r.steps}")
    if not 0.0 <= t.label_smoothing < 0.5:
        raise ConfigError(f"tricks.label_smoothing must be in [0, 0.5), got {t.label_smoothing}")
    _validate_ema(t)
    if not 0.0 < t.temperature <= 1.0:
        raise ConfigError(f"tricks.temperature must be in (0, 1], got {t.temperature}")
    if o.optimizer not in OPTIMIZERS:
        raise ConfigError(f"optim.optimizer {o.optimizer!r} is not one of {OPTIMIZERS}")
    if t.d_steps < 1:
        raise ConfigError(f"tricks.d_steps must be >= 1, got {t.d_steps}")
    if n.max_filters < 1 or n.filters < 1:
        raise ConfigError(f"network.filters and network.max_filters must be >= 1, got {n.filters}, {n.max_filters}")
    if t.feature_matching < 0 or t.historical_averaging < 0 or t.repelling < 0:
        raise ConfigError("tricks.feature_matching, tricks.historical_averaging and tricks.repelling "
                          "are loss weights and must be >= 0")
    if t.mbd_kernels < 1 or t.mbd_kernel_dim < 1:
        raise ConfigError(f"tricks.mbd_kernels and tricks.mbd_kernel_dim must be >= 1, "
                          f"got {t.mbd_kernels}, {t.mbd_kernel_dim}")
    if t.instance_noise < 0:
        raise ConfigError(f"tricks.instance_noise must be >= 0, got {t.instance_noise}")
    if t.instance_noise > 0 and t.instance_noise_steps < 1:
        raise ConfigError("tricks.instance_noise_steps must be >= 1 when tricks.instance_noise > 0 "
                          "(the noise is annealed linearly to 0 over that many steps)")
    lens = t.lens
    if lens.enabled:
        if lens.blocks < 1 or lens.filters < 1:
            raise ConfigError(f"tricks.lens.blocks and tricks.lens.filters must be >= 1, got {lens.blocks}, {lens.filters}")
        if lens.anneal_steps < 0:
            raise ConfigError(f"tricks.lens.anneal_steps must be >= 0, got {lens.anneal_steps}")
        if lens.learning_rate <= 0:
            raise ConfigError(f"tricks.lens.learning_rate must be > 0, got {lens.learning_rate}")
    if t.history_pool < 0:
        raise ConfigError(f"tricks.history_pool must be >= 0, got {t.history_pool}")
    if not 0.0 <= o.lr_decay_start <= 1.0:
        raise ConfigError(f"optim.lr_decay_start must be in [0, 1] (a fraction of run.steps), got {o.lr_decay_start}")


def _validate_ema(t: TricksConfig) -> None:
    if not 0.0 <= t.ema_decay < 1.0:
        raise ConfigError(f"tricks.ema_decay must be in [0, 1), got {t.ema_decay}")
    if t.ema_kimg < 0 or t.ema_rampup < 0:
        raise ConfigError(f"tricks.ema_kimg and tricks.ema_rampup must be >= 0, got {t.ema_kimg}, {t.ema_rampup}")
    if t.ema_kimg > 0 and t.ema_decay > 0:
        raise ConfigError(f"tricks.ema_decay ({t.ema_decay}, per step) and tricks.ema_kimg ({t.ema_kimg}, "
                          "a half-life in kimg) both set the generator EMA's horizon; set one of them (the other 0)")
    if t.ema_rampup > 0 and t.ema_kimg <= 0:
        raise ConfigError("tricks.ema_rampup ramps the half-life tricks.ema_kimg, which is 0; set tricks.ema_kimg")


def _validate_batchnorm_critic(cfg: Config, arch, family) -> None:
    """A per-example loss (gradient penalty, R1, weight clipping's Lipschitz box) on a critic that
    normalizes over the batch is refused; architectures without a BatchNorm switch have it on."""
    n = cfg.network
    if not (family.refuses_batchnorm_critic and arch.batchnorm_critic and getattr(n, "batch_norm", True)):
        return
    others = [a.name for a in registry.ARCHITECTURES.values() if not a.batchnorm_critic]
    why = ("penalizes each example's gradient norm" if family.needs_gradient_penalty else
           "keeps the critic Lipschitz by clipping its weights (Arjovsky et al. 2017)")
    fix = "set network.batch_norm=false, " if arch.batchnorm_optional else ""
    raise ConfigError(f"loss.family {cfg.loss.family} {why}, but {n.architecture}'s "
                      "discriminator uses batch normalization, which couples the examples of a batch "
                      "(Gulrajani et al. 2017, sec. 4: no batch norm in the critic); "
                      f"{fix}use {' or '.join(others)} or another loss")


def _validate_image_to_image_tricks(cfg: Config) -> None:
    t = cfg.tricks
    unsupported = [name for name, on in (
        ("tricks.lens.enabled", t.lens.enabled), ("tricks.minibatch_discrimination", t.minibatch_discrimination),
        ("tricks.feature_matching", t.feature_matching), ("tricks.repelling", t.repelling),
        ("tricks.historical_averaging", t.historical_averaging), ("tricks.instance_noise", t.instance_noise),
        ("tricks.label_smoothing", t.label_smoothing), ("tricks.d_steps", t.d_steps != 1)) if on]
    if unsupported:
        raise ConfigError(f"{', '.join(unsupported)}: not implemented for the image-to-image "
                          f"architecture {cfg.network.architecture} (z-based GAN tricks)")


# names of trainer/augment.py (TensorFlow-free copies; a test checks they agree)
AUGMENT_MODES = ("ada", "fixed", "diffaugment", "none")
AUGMENT_PIPELINES = ("bgc", "bgcc", "blit", "geom", "color")
DIFFAUGMENT_POLICIES = ("color", "translation", "cutout")


def _validate_augment(cfg: Config, arch) -> None:
    """W-space truncation and the augmentation block."""
    n, a = cfg.network, cfg.tricks.augment
    if cfg.tricks.truncation_cutoff < 0:
        raise ConfigError(f"tricks.truncation_cutoff must be >= 0 (0 = every layer), got {cfg.tricks.truncation_cutoff}")
    if cfg.tricks.truncation_cutoff and not arch.w_space:
        raise ConfigError(f"tricks.truncation_cutoff truncates W per layer; {n.architecture} has no W space")
    if a.mode not in AUGMENT_MODES:
        raise ConfigError(f"tricks.augment.mode {a.mode!r} is not one of {', '.join(AUGMENT_MODES)}")
    if not 0.0 <= a.p <= 1.0:
        raise ConfigError(f"tricks.augment.p must be in [0, 1], got {a.p}")
    if a.interval < 1 or a.speed_images < 1:
        raise ConfigError(f"tricks.augment.interval and speed_images must be >= 1, got {a.interval}, {a.speed_images}")
    if a.pipeline not in AUGMENT_PIPELINES:
        raise ConfigError(f"tricks.augment.pipeline {a.pipeline!r} is not one of {', '.join(AUGMENT_PIPELINES)}")
    bad = [x for x in a.policy.split(",") if x.strip() not in DIFFAUGMENT_POLICIES]
    if bad:
        raise ConfigError(f"tricks.augment.policy: {bad} not in {', '.join(DIFFAUGMENT_POLICIES)} (comma list)")


def validate_eval(e: EvalConfig) -> None:
    """The eval block: metric requests and the best metric checked against the metric registry
    (TensorFlow-free), so a typo fails before training starts."""
    if e.every_images < 0:
        raise ConfigError(f"eval.every_images must be >= 0 (0: off), got {e.every_images}")
    if e.export not in EVAL_EXPORTS:
        raise ConfigError(f"eval.export {e.export!r} is not one of {EVAL_EXPORTS}")
    if e.num_images < 2 or e.batch_size < 1 or e.memorization < 0:
        raise ConfigError(f"eval.num_images must be >= 2, eval.batch_size >= 1 and eval.memorization "
                          f">= 0, got {e.num_images}, {e.batch_size}, {e.memorization}")
    from facegan.metrics.registry import validate_metric_names
    try:
        requests = validate_metric_names(e.metrics) if e.metrics.strip() else []
    except ValueError as err:
        raise ConfigError(f"eval.metrics: {err}") from None
    labels = [r.label for r in requests]
    if e.best_metric:
        if e.best_metric not in labels:
            raise ConfigError(f"eval.best_metric {e.best_metric!r} is not among eval.metrics ({e.metrics})")
        if requests[labels.index(e.best_metric)].spec.direction is None:
            with_dir = [r.label for r in requests if r.spec.direction]
            raise ConfigError(f"eval.best_metric {e.best_metric!r} has no better direction in the metric "
                              f"registry; choose one of {', '.join(with_dir) or 'swd, fid, kid'}")
    if e.export == "best" and not e.best_metric:
        raise ConfigError("eval.export 'best' needs eval.best_metric")
    if e.every_images and not labels and not e.memorization:
        raise ConfigError("eval.every_images is on but eval.metrics is empty and eval.memorization is 0")


# -- presets ----------------------------------------------------------------------------------
def _preset(**sections) -> Dict[str, Any]:
    return sections


PRESETS: Dict[str, Dict[str, Any]] = {
    # Radford et al. 2016: Adam 2e-4, beta1 0.5, batch 128, z 100.
    "dcgan": _preset(network=dict(architecture="dcgan", resolution=64, z_dim=100, filters=64),
                     loss=dict(family="ns"),
                     optim=dict(batch_size=128, g_learning_rate=2e-4, d_learning_rate=2e-4, beta1=0.5)),
    # Curto et al. (HDCGAN): SELU+BN, 4x4 stride 2, Adam 2e-4 fixed, batch 32, 64 filters, noise on
    # inputs, trained at 512x512 as the paper does.
    "hdcgan": _preset(network=dict(architecture="hdcgan", resolution=512, z_dim=100, filters=64,
                                   input_noise_std=0.1),
                      loss=dict(family="ns"),
                      optim=dict(batch_size=32, g_learning_rate=2e-4, d_learning_rate=2e-4, beta1=0.5)),
    # HDCGAN's settings at 64x64: small enough to train on a CPU (NOT the paper's resolution).
    "hdcgan_cpu": _preset(network=dict(architecture="hdcgan", resolution=64, z_dim=100, filters=64,
                                       input_noise_std=0.1),
                          loss=dict(family="ns"),
                          optim=dict(batch_size=32, g_learning_rate=2e-4, d_learning_rate=2e-4, beta1=0.5)),
    # Li et al. (FaceGANs): two FC + four deconvs / four convs + two FC, BN + LeakyReLU.
    "facegan": _preset(network=dict(architecture="facegan", resolution=64, z_dim=100, filters=64),
                       loss=dict(family="facegan"),
                       optim=dict(batch_size=64, g_learning_rate=2e-4, d_learning_rate=2e-4, beta1=0.5)),
    # Karras et al. 2018 as the Columbia report re-implements it: WGAN-GP + drift 0.001,
    # Adam 1e-3 beta1 0, beta2 0.99, eps 1e-8, per-resolution batch sizes, a linear output layer,
    # reals faded with the new block, Adam reset at each fade's start and end (PGGAN's code).
    # Generator EMA: PGGAN's 0.999 per step is a half-life of 11 kimg at its batch 16; here as
    # StyleGAN's 10 kimg half-life with stylegan2-ada's 0.05 ramp-up, restarted for each new block
    # (trainer/ema.py), so a schedule squeezed into a short budget never shows the init.
    "progan": _preset(network=dict(architecture="progan", resolution=128, z_dim=512, filters=512,
                                   max_filters=512, start_resolution=4, output_activation="linear",
                                   batch_sizes={"4": 64, "8": 64, "16": 64, "32": 32, "64": 16, "128": 16}),
                      loss=dict(family="wgan_gp", gp_weight=10.0, drift=0.001),
                      tricks=dict(ema_kimg=10.0, ema_rampup=0.05),
                      optim=dict(batch_size=16, g_learning_rate=1e-3, d_learning_rate=1e-3, beta1=0.0, beta2=0.99)),
    # Arjovsky et al. 2017 (Algorithm 1): WGAN with weight clipping c = 0.01, RMSProp lr 5e-5,
    # 5 critic updates per generator update, on a DCGAN without BatchNorm (refused with it).
    "wgan": _preset(network=dict(architecture="dcgan", resolution=64, z_dim=100, filters=64, batch_norm=False),
                    loss=dict(family="wgan", clip_value=0.01),
                    tricks=dict(d_steps=5),
                    optim=dict(batch_size=64, optimizer="rmsprop", g_learning_rate=5e-5, d_learning_rate=5e-5)),
    # Sajjadi et al. 2018: the lens (8 residual blocks, K from the text) on DCGAN.
    "dcgan_lens": _preset(network=dict(architecture="dcgan", resolution=64, z_dim=100, filters=64),
                          loss=dict(family="ns"),
                          tricks=dict(lens=dict(enabled=True, blocks=8, filters=32)),
                          optim=dict(batch_size=64, g_learning_rate=2e-4, d_learning_rate=2e-4, beta1=0.5)),
    # StyleGAN2-ADA's `paper256` setting (Karras et al. 2020b, train.py cfg_specs; 256x256 FFHQ):
    # batch 64, mbstd group 8, fmaps 0.5 (channel_base 16384), lr 0.0025, Adam (0, 0.99), R1 gamma
    # 1, EMA half-life 20 kimg (`ema=20, ramp=None`; 0.99778 per step at batch 64), 8 mapping
    # layers, ADA target 0.6. The horizon is in images, so another batch size keeps it.
    # Set network.resolution to the resolution of your Examples.
    "stylegan2": _preset(network=dict(architecture="stylegan2", resolution=256, z_dim=512, w_dim=512,
                                      mapping_layers=8, channel_base=16384, channel_max=512, mbstd_group_size=8),
                         loss=dict(family="nsgan_r1", r1_gamma=1.0),
                         tricks=dict(ema_kimg=20.0, augment=dict(mode="ada", target=0.6)),
                         optim=dict(batch_size=64, g_learning_rate=0.0025, d_learning_rate=0.0025,
                                    beta1=0.0, beta2=0.99)),
    # StyleGAN2-ADA's `auto` setting at 64x64 (train.py: batch 32, mbstd 4, lr 0.0025, gamma
    # 0.0002 R^2 / batch = 0.0256, EMA 10 kimg with ramp-up 0.05, 2 mapping layers; the ramp
    # keeps a short run's EMA off its random init: a per-step 0.99778 at batch 64 left 11% of
    # the init in G_ema after 64 kimg, issue 20) with CPU-practical widths
    # (channel_base 4096, channel_max 128: 128 channels up to 32x32, 64 at 64x64; z = w = 256).
    "stylegan2_small": _preset(network=dict(architecture="stylegan2", resolution=64, z_dim=256, w_dim=256,
                                            mapping_layers=2, channel_base=4096, channel_max=128,
                                            mbstd_group_size=4),
                               loss=dict(family="nsgan_r1", r1_gamma=0.0256),
                               tricks=dict(ema_kimg=10.0, ema_rampup=0.05, augment=dict(mode="ada", target=0.6)),
                               optim=dict(batch_size=32, g_learning_rate=0.0025, d_learning_rate=0.0025,
                                          beta1=0.0, beta2=0.99)),
    # Isola et al. 2017 (pix2pix): U-Net + 70x70 PatchGAN (at 256 px), cGAN + 100 * L1, Adam 2e-4
    # beta1 0.5, batch 1 in most of the paper's experiments; no EMA (not in the paper).
    "pix2pix": _preset(network=dict(architecture="pix2pix", resolution=256, filters=64, max_filters=512,
                                    dropout=0.5),
                       loss=dict(family="pix2pix", l1_weight=100.0),
                       tricks=dict(ema_decay=0.0),
                       optim=dict(batch_size=1, g_learning_rate=2e-4, d_learning_rate=2e-4, beta1=0.5)),
    # Zhu et al. 2017 (CycleGAN): ResNet G (9 blocks at 256 px), 70x70 PatchGAN, LSGAN, cycle lambda 10,
    # identity 0.5 lambda, history pool 50, Adam 2e-4 beta1 0.5, batch 1, lr constant for the first half
    # of training then linearly to 0 (their 100 + 100 epochs). Domains: Eyeglasses 0 (A) vs 1 (B).
    "cyclegan": _preset(network=dict(architecture="cyclegan", resolution=256, filters=64, resnet_blocks=9,
                                     domain_attribute="eyeglasses"),
                        loss=dict(family="cyclegan", cycle_weight=10.0, identity_weight=0.5),
                        tricks=dict(ema_decay=0.0, history_pool=50),
                        optim=dict(batch_size=1, g_learning_rate=2e-4, d_learning_rate=2e-4, beta1=0.5,
                                   lr_decay_start=0.5)),
    # Sajjadi et al. 2018, the paper's own setting: DCGAN-style network with 4x4 kernels and
    # Xavier init at 32x32, lr 1e-4, the lens on; then its two variants: LSGAN without BatchNorm,
    # and WGAN-GP with RMSProp on a DCGAN-style critic without BatchNorm.
    "tan": _preset(network=dict(architecture="tan", resolution=32, z_dim=100, filters=64),
                   loss=dict(family="ns"),
                   tricks=dict(lens=dict(enabled=True, blocks=8, filters=32, learning_rate=1e-4)),
                   optim=dict(batch_size=64, g_learning_rate=1e-4, d_learning_rate=1e-4, beta1=0.5)),
    "tan_lsgan": _preset(network=dict(architecture="tan", resolution=32, z_dim=100, filters=64, batch_norm=False),
                         loss=dict(family="lsgan"),
                         tricks=dict(lens=dict(enabled=True, blocks=8, filters=32, learning_rate=1e-4)),
                         optim=dict(batch_size=64, g_learning_rate=1e-4, d_learning_rate=1e-4, beta1=0.5)),
    "tan_wgan_gp": _preset(network=dict(architecture="tan", resolution=32, z_dim=100, filters=64, batch_norm=False),
                           loss=dict(family="wgan_gp", gp_weight=10.0),
                           tricks=dict(lens=dict(enabled=True, blocks=8, filters=32, learning_rate=1e-4)),
                           optim=dict(batch_size=64, optimizer="rmsprop", g_learning_rate=1e-4,
                                      d_learning_rate=1e-4)),
    # Tiny and fast: CI and `make demo`; one per architecture (+ the lens), same tricks as the paper presets.
    # `smoke` turns the generator EMA on (an option for DCGAN, not the paper's) so CI exercises it.
    "smoke": _preset(network=dict(architecture="dcgan", resolution=32, z_dim=32, filters=16),
                     loss=dict(family="ns"),
                     tricks=dict(ema_decay=0.999),
                     optim=dict(batch_size=16),
                     run=dict(steps=20, checkpoint_every=10, log_every=5, image_every=10)),
    "smoke_hdcgan": _preset(network=dict(architecture="hdcgan", resolution=32, z_dim=32, filters=8,
                                         input_noise_std=0.1),
                            loss=dict(family="ns"),
                            optim=dict(batch_size=16, beta1=0.5),
                            run=dict(steps=20, checkpoint_every=10, log_every=5, image_every=10)),
    "smoke_facegan": _preset(network=dict(architecture="facegan", resolution=32, z_dim=32, filters=8),
                             loss=dict(family="facegan"),
                             optim=dict(batch_size=16, beta1=0.5),
                             run=dict(steps=20, checkpoint_every=10, log_every=5, image_every=10)),
    "smoke_progan": _preset(network=dict(architecture="progan", resolution=16, z_dim=32, filters=8, max_filters=32,
                                         start_resolution=4, fade_images=64, stable_images=64,
                                         batch_sizes={"4": 16, "8": 16, "16": 8}),
                            loss=dict(family="wgan_gp", gp_weight=10.0, drift=0.001),
                            tricks=dict(ema_decay=0.999),
                            optim=dict(batch_size=8, g_learning_rate=1e-3, d_learning_rate=1e-3, beta1=0.0, beta2=0.99),
                            run=dict(steps=20, checkpoint_every=10, log_every=5, image_every=10)),
    "smoke_stylegan2": _preset(network=dict(architecture="stylegan2", resolution=32, z_dim=32, w_dim=32,
                                            mapping_layers=2, channel_base=256, channel_max=32,
                                            mbstd_group_size=4),
                               loss=dict(family="nsgan_r1", r1_gamma=0.0256),
                               tricks=dict(ema_decay=0.999, augment=dict(mode="ada", target=0.6, speed_images=1000)),
                               optim=dict(batch_size=8, g_learning_rate=0.0025, d_learning_rate=0.0025,
                                          beta1=0.0, beta2=0.99),
                               run=dict(steps=20, checkpoint_every=10, log_every=5, image_every=10)),
    "smoke_lens": _preset(network=dict(architecture="dcgan", resolution=32, z_dim=32, filters=16),
                          loss=dict(family="ns"),
                          tricks=dict(lens=dict(enabled=True, blocks=8, filters=8, anneal_steps=10)),
                          optim=dict(batch_size=16),
                          run=dict(steps=20, checkpoint_every=10, log_every=5, image_every=10)),
    # Conditional DCGAN on two CelebA attributes, projection discriminator.
    "smoke_conditional": _preset(network=dict(architecture="cdcgan", resolution=32, z_dim=32, filters=16),
                                 loss=dict(family="ns"),
                                 condition=dict(attributes="male,smiling", discriminator="projection"),
                                 optim=dict(batch_size=16),
                                 run=dict(steps=20, checkpoint_every=10, log_every=5, image_every=10)),

    "smoke_cyclegan": _preset(network=dict(architecture="cyclegan", resolution=32, filters=8, resnet_blocks=2,
                                           domain_attribute="eyeglasses"),
                              loss=dict(family="cyclegan", cycle_weight=10.0, identity_weight=0.5),
                              tricks=dict(ema_decay=0.0, history_pool=50),
                              optim=dict(batch_size=2, beta1=0.5, lr_decay_start=0.5),
                              run=dict(steps=10, checkpoint_every=5, log_every=5, image_every=5)),
    "smoke_pix2pix": _preset(network=dict(architecture="pix2pix", resolution=32, filters=8, max_filters=32),
                             loss=dict(family="pix2pix", l1_weight=100.0),
                             tricks=dict(ema_decay=0.0),
                             optim=dict(batch_size=4, beta1=0.5),
                             run=dict(steps=10, checkpoint_every=5, log_every=5, image_every=5)),
}


# Metrics during training: on for the paper presets, off for the smoke ones.
for _name, _p in PRESETS.items():
    _p.setdefault("eval", {"every_images": 0 if _name.startswith("smoke") else EVAL_EVERY_IMAGES})


# Smoke presets pin float32: CI losses must not depend on whether the machine has
# bf16 units; the paper presets keep `auto`.
for _name, _sections in PRESETS.items():
    if _name.startswith("smoke"):
        _sections.setdefault("run", {}).setdefault("mixed_precision", "float32")


def get_preset(name: str, overrides: Optional[Dict[str, Any]] = None) -> Config:
    """The preset `name` with dotted `overrides` applied (see `fit_preset_tables`)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(sorted(PRESETS))}")
    cfg = Config.from_dict(dict(copy.deepcopy(PRESETS[name]), preset=name))
    return cfg.override(fit_preset_tables(cfg, fit_ema_horizon(cfg, overrides))) if overrides else cfg


def fit_ema_horizon(cfg: Config, overrides: Dict[str, Any]) -> Dict[str, Any]:
    """`overrides`, plus the preset's other EMA horizon zeroed when they set one: a user's
    `tricks.ema_decay` on a preset that sets `tricks.ema_kimg` (or the reverse) replaces it."""
    t = cfg.tricks
    if overrides.get("tricks.ema_decay") and "tricks.ema_kimg" not in overrides and t.ema_kimg > 0:
        return {**overrides, "tricks.ema_kimg": 0.0, "tricks.ema_rampup": 0.0,
                "notes": [*cfg.notes, f"tricks.ema_decay replaces the {cfg.preset} preset's tricks.ema_kimg"]}
    if overrides.get("tricks.ema_kimg") and "tricks.ema_decay" not in overrides and t.ema_decay > 0:
        return {**overrides, "tricks.ema_decay": 0.0,
                "notes": [*cfg.notes, f"tricks.ema_kimg replaces the {cfg.preset} preset's tricks.ema_decay"]}
    return overrides


def fit_preset_tables(cfg: Config, overrides: Dict[str, Any]) -> Dict[str, Any]:
    """`overrides`, plus the preset's per-resolution batch-size table trimmed to what they leave.

    The table belongs to the preset, not the user: `--preset progan --set network.resolution=32`
    drops the preset's entries for 64 and 128 (and a non-progressive architecture drops the whole
    table) instead of refusing them, and records that in `notes`. A table the user sets
    (`network.batch_sizes`) is theirs and is validated as given.
    """
    return _fit_output_activation(cfg, _fit_batch_sizes(cfg, overrides))


def _fit_batch_sizes(cfg: Config, overrides: Dict[str, Any]) -> Dict[str, Any]:
    table = getattr(cfg.network, "batch_sizes", None)     # progressive architectures have a table
    if not table or "network.batch_sizes" in overrides or "network" in overrides:
        return overrides
    net = cfg.network
    res = overrides.get("network.resolution", net.resolution)
    start = overrides.get("network.start_resolution", net.start_resolution)
    arch_name = overrides.get("network.architecture", net.architecture)
    try:
        arch = registry.architecture(arch_name)
    except registry.RegistryError:
        return overrides                   # validation names the bad architecture
    progressive, has_table = arch.progressive, "batch_sizes" in field_names(arch.settings)
    if not (isinstance(res, int) and isinstance(start, int)):
        return overrides                   # validation names the bad value
    keep = {k: v for k, v in table.items() if progressive and str(k).isdigit() and start <= int(k) <= res}
    dropped = [k for k in table if k not in keep]
    if not dropped:
        return overrides
    why = (f"outside the grown range [{start}, {res}]" if progressive
           else f"{arch_name} is not progressive (optim.batch_size applies)")
    note = (f"network.batch_sizes: dropped the {cfg.preset or 'preset'} preset's entries for "
            f"{', '.join(sorted(dropped, key=lambda k: int(k) if str(k).isdigit() else 0))} ({why})")
    # an architecture without the table loses it with the switch (switch_model); only the note stays
    return {**overrides, **({"network.batch_sizes": keep} if has_table else {}),
            "notes": [*overrides.get("notes", cfg.notes), note]}


def _fit_output_activation(cfg: Config, overrides: Dict[str, Any]) -> Dict[str, Any]:
    """A progressive preset's linear output layer (PGGAN's G) belongs to the preset: switching the
    architecture to a non-progressive one (which always ends in tanh) resets it, with a note. An
    output activation the user sets is theirs and is validated as given."""
    current = getattr(cfg.network, "output_activation", "tanh")
    if current == "tanh" or "network.output_activation" in overrides \
            or "network" in overrides or "network.architecture" not in overrides:
        return overrides
    try:
        arch = registry.architecture(overrides["network.architecture"])
    except registry.RegistryError:
        return overrides                   # validation names the bad architecture
    if arch.progressive:
        return overrides
    note = (f"network.output_activation: the {cfg.preset or 'preset'} preset's "
            f"{current!r} dropped ({overrides['network.architecture']} ends in tanh)")
    fixed = {"network.output_activation": "tanh"} if "output_activation" in field_names(arch.settings) else {}
    return {**overrides, **fixed, "notes": [*overrides.get("notes", cfg.notes), note]}


def preset_names() -> List[str]:
    return sorted(PRESETS)
