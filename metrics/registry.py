"""The metric registry: every fact the system needs about a metric, registered once, TF-free.

Each metric registers one `MetricSpec` (the idiom of stylegan3's `metric_main.register_metric`):
its direction (lower/higher is better, or none), the headline sub-key of its result, what it
consumes (images, extractor features or classifier logits), the blessing rule keys it accepts, its
default protocol size, and where its implementation lives ("module:Class", imported by name on
first use, so this module, the blessing rules and the CLI help never import TensorFlow).

One contract for every metric: `Metric.calc(G, data, num, opts)` computes it from a generator G
(what it provides: facegan.generator.stream, e.g. the seed's samples, their conditioning requests,
or translations) and evaluation data (metrics/calc.py `EvalData`: real images, the Examples
artifact), as stylegan3's `metric_main` functions (`calc_metric(metric, G=..., dataset_kwargs=...)`)
do; `metrics.calc.calc_metrics` computes a list of requests. `MetricSpec.inputs` says what the
metric reads from the generator, `needs_real` / `needs_examples` what it reads from the data, and
`metric_names(...)` answers "which metrics need what".

Implementations subclass `metrics.base.Metric` (this module imports none of them: "module:Class"
is imported by name on first use). The *streaming* implementation (the default `calc`) splits it into
- an *accumulator* per side ("generated", "real") that consumes uint8 image batches and/or their
  extractor features as they stream past and keeps only what the distance needs (running moments,
  descriptors, per-pair scores); its `result()` is a dict of numpy arrays (the real side's result
  is what the statistics cache stores), and
- `compute(generated_result, real_result)`: the distance on those features.

`evaluate()` (metrics/evaluate.py) drives them: one pass over the generator, at most one pass over
the real images, one feature-extractor forward per batch (and per input view) shared by every
feature metric; `calc_metrics` hands every streaming request of a call to one `evaluate()`.
A metric that is not a function of the shared image stream (attribute control reads the requests
behind each image; paired scores read translations of held-out inputs) sets `streaming = False` and
implements `calc` itself.

A metric is requested by name, optionally with options: `fid:downscale=64` (HDCGAN's protocol:
images downscaled to 64x64 before the extractor). Options are labelled in the result key
(`fid10k_downscale64`).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Collection, Dict, FrozenSet, List, Optional, Tuple, Union

LOWER, HIGHER = "lower", "higher"
NEEDS = ("images", "features", "logits")
# What a metric can read from a generator (facegan.generator.stream: `G.provides`)
INPUTS = ("samples", "conditioning", "translations")
# Options a metric may accept (name -> parser); a spec lists the ones it supports.
OPTION_TYPES = {"downscale": int}


def protocol_count(n: int) -> str:
    """10000 -> '10k', 16384 -> '16k' (PGGAN's binary k), 50000 -> '50k', 500 -> '500'."""
    n = int(n)
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024}k"
    return str(n)


@dataclass(frozen=True)
class MetricSpec:
    """What the rest of the system knows about a metric, without importing it."""

    name: str
    impl: Union[str, type]                # "package.module:Class" (imported lazily) or the class
    direction: Optional[str]              # LOWER | HIGHER | None (no better direction, e.g. MS-SSIM)
    headline: Optional[str]               # result sub-key of the headline number; None: a number
    needs: str                            # "images" | "features" | "logits"
    rule_keys: FrozenSet[str]             # blessing rule keys accepted for this metric
    default_num: int                      # protocol size (images, or pairs when unit == "pairs")
    needs_real: bool = True
    cacheable: bool = True                # real-side result small enough to store as npz
    unit: str = "images"                  # what `num_images` counts: "images" | "pairs"
    options: Tuple[str, ...] = ()         # accepted request options (OPTION_TYPES keys)
    description: str = ""
    inputs: FrozenSet[str] = frozenset({"samples"})   # what it reads from the generator (INPUTS)
    needs_examples: bool = False          # reads the Examples artifact itself (labels, held-out pairs)
    # periodic evaluation during training scores it, requested or not, for a generator that
    # provides all of these (empty: only when requested)
    auto_when: FrozenSet[str] = frozenset()

    def __post_init__(self):
        if self.direction not in (LOWER, HIGHER, None):
            raise ValueError(f"metric {self.name!r}: direction must be {LOWER!r}, {HIGHER!r} or None")
        if self.needs not in NEEDS:
            raise ValueError(f"metric {self.name!r}: needs must be one of {NEEDS}, got {self.needs!r}")
        unknown = set(self.options) - set(OPTION_TYPES)
        if unknown:
            raise ValueError(f"metric {self.name!r}: unknown options {sorted(unknown)}")
        unknown = set(self.inputs) - set(INPUTS)
        if unknown or not self.inputs:
            raise ValueError(f"metric {self.name!r}: inputs must be a non-empty subset of {INPUTS}, "
                             f"got {sorted(self.inputs)}")

    @property
    def uses_extractor(self) -> bool:
        return self.needs in ("features", "logits")

    def key(self, n: int, comparable: bool = True, options: Optional[Dict] = None) -> str:
        """The protocol-named result key, e.g. `fid10k`, `ms_ssim10k_pairs`, `fid10k_downscale64`;
        `_random` marks a non-comparable extractor."""
        k = f"{self.name}{protocol_count(n)}" + ("_pairs" if self.unit == "pairs" else "")
        k += "".join(f"_{o}{v}" for o, v in sorted((options or {}).items()))
        return k if comparable or not self.uses_extractor else k + "_random"

    def headline_value(self, value) -> Optional[float]:
        """The headline float of a result value (None when absent or not a number)."""
        if self.headline is not None:
            value = value.get(self.headline) if isinstance(value, dict) else None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        return float(value)


METRICS: Dict[str, MetricSpec] = {}


def register_metric(spec: MetricSpec) -> MetricSpec:
    """Add `spec` to METRICS (once per name); returns it."""
    if not spec.name or not spec.name.replace("_", "").isalnum():
        raise ValueError(f"metric name {spec.name!r} must be a non-empty identifier")
    if spec.name in METRICS and METRICS[spec.name] != spec:
        raise ValueError(f"metric {spec.name!r} is already registered (impl {METRICS[spec.name].impl})")
    METRICS[spec.name] = spec
    return spec


@dataclass(frozen=True)
class MetricRequest:
    """A metric name plus its options, e.g. `fid:downscale=64`."""

    name: str
    options: Tuple[Tuple[str, int], ...] = field(default=())

    @property
    def spec(self) -> MetricSpec:
        return METRICS[self.name]

    @property
    def label(self) -> str:
        return self.name + "".join(f":{k}={v}" for k, v in self.options)

    def __str__(self) -> str:
        return self.label


def _known() -> str:
    return ", ".join(sorted(METRICS))


def parse_request(text: str) -> MetricRequest:
    """'fid' or 'fid:downscale=64' -> MetricRequest; ValueError naming the bad part."""
    parts = [p.strip() for p in str(text).strip().split(":")]
    name = parts[0].lower()
    if name not in METRICS:
        extra = " ('memorization' is its own function: metrics.memorization)" if name == "memorization" else ""
        raise ValueError(f"unknown metric {name!r}; known metrics: {_known()}{extra}")
    spec, opts = METRICS[name], {}
    for p in parts[1:]:
        k, eq, v = p.partition("=")
        k = k.strip()
        if not eq or k not in spec.options:
            allowed = ", ".join(f"{o}=N" for o in spec.options) or "none"
            raise ValueError(f"metric {text!r}: bad option {p!r}; {name} accepts: {allowed}")
        try:
            opts[k] = OPTION_TYPES[k](v.strip())
        except ValueError:
            raise ValueError(f"metric {text!r}: option {k} needs a {OPTION_TYPES[k].__name__}, "
                             f"got {v!r}") from None
        if opts[k] < 2:
            raise ValueError(f"metric {text!r}: option {k} must be >= 2, got {opts[k]}")
    return MetricRequest(name, tuple(sorted(opts.items())))


def validate_metric_names(names) -> list:
    """Metric requests (a list or comma string) -> de-duplicated list of MetricRequest.

    ValueError listing the known metrics on any unknown name."""
    if isinstance(names, str):
        names = [s for s in (p.strip() for p in names.split(",")) if s]
    names = [n if isinstance(n, MetricRequest) else parse_request(n) for n in names]
    if not names:
        raise ValueError(f"no metrics requested; known metrics: {_known()}")
    return list(dict.fromkeys(names))


_IMPLS: Dict[Tuple[str, Tuple], "Metric"] = {}   # metrics/base.py instances


def get_metric(request: Union[str, MetricRequest]) -> "Metric":
    """The implementation instance of a request, importing its module on first use."""
    req = request if isinstance(request, MetricRequest) else parse_request(request)
    spec = req.spec
    cached = _IMPLS.get((spec.name, req.options))
    if cached is not None and cached.spec is spec:
        return cached
    cls = spec.impl
    if isinstance(cls, str):
        module, _, attr = cls.partition(":")
        cls = getattr(importlib.import_module(module), attr)
    inst = cls(spec, dict(req.options))
    _IMPLS[(spec.name, req.options)] = inst
    return inst


def metric_names(*, generator: Optional[Collection[str]] = None, needs=None,
                 needs_real: Optional[bool] = None, needs_examples: Optional[bool] = None,
                 streaming: Optional[bool] = None) -> List[str]:
    """Registered metric names (registration order) filtered by what they need: `generator` (what a
    generator provides, e.g. {"samples"}): the metrics it can be scored on; `needs`: one of NEEDS
    ("images", "features", "logits") or a collection of them; `needs_real` / `needs_examples`: what
    they read from the data; `streaming`: computed from the shared image stream (imports the
    implementation, so TensorFlow-free only where those modules are)."""
    kinds = None if needs is None else ({needs} if isinstance(needs, str) else set(needs))
    out = []
    for s in METRICS.values():
        if generator is not None and not set(s.inputs) <= set(generator):
            continue
        if kinds is not None and s.needs not in kinds:
            continue
        if needs_real is not None and s.needs_real != needs_real:
            continue
        if needs_examples is not None and s.needs_examples != needs_examples:
            continue
        if streaming is not None and get_metric(s.name).streaming != streaming:
            continue
        out.append(s.name)
    return out


def help_text() -> str:
    """One line per registered metric, for CLI help."""
    return "; ".join(f"{s.name} ({s.description or s.needs}"
                     + (f", {s.direction} is better" if s.direction else "") + ")"
                     for s in METRICS.values())


# -- the built-in metrics: one registration each --------------------------------------------------
_BOUNDS = frozenset({"max", "min"})
_NOISE = frozenset({"max_noise_fraction"})

register_metric(MetricSpec(
    "fid", "facegan.metrics.fid:FID", LOWER, None, "features", _BOUNDS | _NOISE, 10_000,
    options=("downscale",), description="Frechet Inception Distance"))
register_metric(MetricSpec(
    "kid", "facegan.metrics.kid:KID", LOWER, "mean", "features", _BOUNDS | _NOISE, 10_000,
    options=("downscale",), description="Kernel Inception Distance"))
register_metric(MetricSpec(
    "is", "facegan.metrics.inception_score:InceptionScore", HIGHER, "mean", "logits", _BOUNDS,
    10_000, needs_real=False, cacheable=False, options=("downscale",), description="Inception Score"))
register_metric(MetricSpec(
    "swd", "facegan.metrics.swd:SWD", LOWER, "avg", "images", _BOUNDS | _NOISE, 16_384,
    cacheable=False,   # GBs of descriptors at the protocol's size: recomputed from the images
    description="PGGAN sliced Wasserstein distance, x1e3"))
register_metric(MetricSpec(
    "ms_ssim", "facegan.metrics.ms_ssim:MSSSIM", None, "generated", "images",
    _BOUNDS | frozenset({"max_above_real"}), 10_000, unit="pairs",
    description="MS-SSIM of sample pairs (diversity; compared with real pairs)"))
register_metric(MetricSpec(
    "face_detection", "facegan.metrics.face_detection:FaceDetection", HIGHER, "detected_fraction",
    "images", _BOUNDS, 2_000, description="fraction of images with a face found by scikit-image's "
    "bundled LBP cascade (no download; never a stand-in for FID)"))
# Conditional generators (metrics/attributes.py): not a function of the shared image stream, it reads
# the requests behind each image and its own classifier trained on the Examples' labels; metrics
# during training add it to every conditional run.
register_metric(MetricSpec(
    "attribute_control", "facegan.metrics.attributes:AttributeControl", HIGHER, "control", "images",
    _BOUNDS, 1_000, needs_real=False, cacheable=False, inputs=frozenset({"samples", "conditioning"}),
    needs_examples=True, auto_when=frozenset({"conditioning"}),
    description="conditional generators: balanced accuracy of an attribute classifier (trained on the "
                "real train split) against the requested attributes"))

# Image-to-image: scores of a translation against its held-out target (metrics/paired.py: the eval
# split's pairs through the generator's `translate`); `min_gain_over_input` = beat the input used
# as the output.
_GAIN = frozenset({"min_gain_over_input"})
for _name, _dir, _what in (("l1", LOWER, "mean |output - target|, uint8 units"),
                           ("psnr", HIGHER, "PSNR of output vs target, dB"),
                           ("ssim", HIGHER, "SSIM of output vs target")):
    register_metric(MetricSpec(_name, "facegan.metrics.paired:PairedScore", _dir, None, "images", _BOUNDS | _GAIN,
                               10_000, unit="pairs", description=f"image-to-image: {_what}",
                               inputs=frozenset({"translations"}), needs_examples=True))
del _name, _dir, _what
# CycleGAN with attribute domains: the share of a->b translations the attribute classifier of
# metrics/attributes.py reads as domain b (and b->a as a), mean of both directions.
register_metric(MetricSpec(
    "target_attribute_rate", "facegan.metrics.paired:TargetAttributeRate", HIGHER, "avg", "images", _BOUNDS,
    1_000, needs_real=False, cacheable=False, inputs=frozenset({"translations"}), needs_examples=True,
    description="CycleGAN: share of translations an attribute classifier reads as the target domain"))
