"""Blessing rules: metric results -> a decision with a pass/fail reason for every rule.

Pure Python (no TensorFlow, no TFX) so the rules are unit-tested on hand-written numbers and the
same code decides inside the TFX component and in `facegan evaluate`.

Rules come from a thresholds mapping (JSON in the component and the CLI), keyed by metric request
(a registry name, optionally with options such as `fid:downscale=64`) or `degenerate`:

    {
      "fid":        {"max": 50.0},                 # absolute bound (lower is better)
      "swd":        {"max_noise_fraction": 0.8},   # <= 0.8 x the same metric on uniform noise
      "ms_ssim":    {"max_above_real": 0.05},      # samples' MS-SSIM <= real pairs' figure + margin
      "is":         {"min": 2.0},                  # absolute bound (higher is better)
      "face_detection": {"min": 0.5},              # half the samples hold a detectable face
      "degenerate": {"min_between_std": 2.0, "min_within_std": 1.0}
    }

and "must beat the baseline" from `min_improvement`, e.g. {"swd": 1.0} (absolute, in the
metric's units) or {"fid": "5%"} (relative to the baseline's value). With no baseline (the first
model) improvement rules pass as TFX's Evaluator "rubber stamps" them, and say so.

The degenerate-output check is always on (defaults below): a generator whose samples are all the
same image, or whose images are flat, is refused whatever its other numbers are.

Everything about a metric (its direction, headline number, allowed rule keys) comes from the
metric registry (`facegan.metrics.registry`); a rule names a metric request (`fid`, or
`fid:downscale=64`), and its result is found through `results["protocols"]`, which records the
request behind every protocol-named key (`fid10k`, `swd16k`, `ms_ssim10k_pairs`). A rule whose
metric was not computed fails (it never passes silently).

Each rule is parsed once, by `parse_rules`, into a typed `Rule`; `decide` takes the parsed rules.
"""
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

from facegan.metrics.registry import HIGHER, LOWER, MetricRequest, parse_request

DEGENERATE = "degenerate"
DIVERSITY_KEY = "diversity"          # results[DIVERSITY_KEY] = {"between_std":..., "within_std":...}
REFERENCES_KEY = "noise_reference"   # results[REFERENCES_KEY] = {"swd": value on noise images, ...}
PROTOCOLS_KEY = "protocols"          # results[PROTOCOLS_KEY] = {result key: {"request": "fid", ...}}
INPUT_BASELINE_KEY = "input_baseline"  # image-to-image: results[...] = {"psnr": the input's own score, ...}

# Pixel standard deviations in uint8 units. Between: per-pixel std across samples, averaged over
# pixels (0 when every sample is the same image). Within: per-image std over its pixels, averaged
# over images (0 for flat images). Real face crops score tens on both.
DEFAULT_DEGENERATE = {"min_between_std": 2.0, "min_within_std": 2.0}
_DIVERSITY_WORDS = {"between_std": ("samples differ from each other", "samples are (nearly) identical"),
                    "within_std": ("images are not flat", "images are (nearly) flat")}
IMPROVEMENT = "min_improvement"


@dataclass(frozen=True)
class Rule:
    """One parsed rule: `metric` is a request label ("fid", "fid:downscale=64") or "degenerate";
    `kind` a threshold key (max, min, max_noise_fraction, max_above_real, min_between_std,
    min_within_std) or "min_improvement" (then `relative`: a fraction of the baseline's value)."""

    metric: str
    kind: str
    value: float
    relative: bool = False

    @property
    def request(self) -> Optional[MetricRequest]:
        return None if self.metric == DEGENERATE else parse_request(self.metric)


@dataclass(frozen=True)
class BlessingRules:
    """Every rule of a blessing, parsed once (`parse_rules`); the degenerate check always included."""

    rules: Tuple[Rule, ...] = ()

    def __len__(self) -> int:
        return len(self.rules)

    def __iter__(self):
        return iter(self.rules)

    @property
    def thresholds(self) -> List[Rule]:
        return [r for r in self.rules if r.kind != IMPROVEMENT]

    @property
    def improvements(self) -> List[Rule]:
        return [r for r in self.rules if r.kind == IMPROVEMENT]

    def metrics(self) -> List[str]:
        """Metric requests named by any rule (the evaluator must compute them)."""
        return list(dict.fromkeys(r.metric for r in self.rules if r.metric != DEGENERATE))

    def noise_reference_metrics(self) -> List[str]:
        """Metric requests whose rules need the metric computed on noise images too."""
        return sorted({r.metric for r in self.rules if r.kind == "max_noise_fraction"})

    def thresholds_json(self) -> str:
        out: Dict[str, Dict[str, float]] = {}
        for r in self.thresholds:
            out.setdefault(r.metric, {})[r.kind] = r.value
        return json.dumps(out, sort_keys=True)

    def min_improvement_json(self) -> str:
        return json.dumps({r.metric: (f"{r.value * 100:g}%" if r.relative else r.value)
                           for r in self.improvements}, sort_keys=True)


@dataclass
class RuleResult:
    rule: str                 # e.g. "swd <= 0.8 x noise"
    passed: bool
    reason: str               # human-readable, with the numbers
    metric: Optional[str] = None
    value: Optional[float] = None
    threshold: Optional[float] = None


@dataclass
class Decision:
    blessed: bool
    rules: List[RuleResult] = field(default_factory=list)
    has_baseline: bool = False

    def to_dict(self) -> Dict[str, Any]:
        return {"blessed": self.blessed, "has_baseline": self.has_baseline,
                "rules": [asdict(r) for r in self.rules],
                "failed": [r.rule for r in self.rules if not r.passed]}

    def summary(self) -> str:
        head = "BLESSED" if self.blessed else "NOT BLESSED"
        lines = [head] + [f"  [{'pass' if r.passed else 'FAIL'}] {r.reason}" for r in self.rules]
        return "\n".join(lines)


# -- parsing ----------------------------------------------------------------------------------
def _as_mapping(obj, name) -> Dict[str, Any]:
    if obj is None or obj == "":
        return {}
    if isinstance(obj, str):
        try:
            obj = json.loads(obj)
        except json.JSONDecodeError as e:
            raise ValueError(f"{name} is not valid JSON ({e}): {obj!r}") from None
    if not isinstance(obj, Mapping):
        raise ValueError(f"{name} must be a JSON object, got {type(obj).__name__}: {obj!r}")
    return dict(obj)


def _number(v, name) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {v!r}")
    return float(v)


def _request(metric: str, where: str) -> MetricRequest:
    try:
        return parse_request(metric)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


def parse_rules(thresholds=None, min_improvement=None) -> BlessingRules:
    """The one parser: thresholds and min_improvement (dicts or JSON strings) -> BlessingRules.

    Raises ValueError naming the field (`thresholds.fid.max must be a finite number ...`)."""
    if isinstance(thresholds, BlessingRules):
        return thresholds
    rules: List[Rule] = []
    degenerate = dict(DEFAULT_DEGENERATE)
    for metric, spec in _as_mapping(thresholds, "thresholds").items():
        if metric == DEGENERATE:
            allowed = set(DEFAULT_DEGENERATE)
        else:
            req = _request(metric, "thresholds")
            metric, allowed = req.label, req.spec.rule_keys
        for k, v in _as_mapping(spec, f"thresholds.{metric}").items():
            if k not in allowed:
                raise ValueError(f"thresholds.{metric}: unknown rule {k!r}; "
                                 f"choose from {', '.join(sorted(allowed))}")
            value = _number(v, f"thresholds.{metric}.{k}")
            if k == "max_noise_fraction" and value <= 0:
                raise ValueError(f"thresholds.{metric}.max_noise_fraction must be > 0, got {v!r}")
            if metric == DEGENERATE:
                degenerate[k] = value
            else:
                rules.append(Rule(metric, k, value))
    rules = [Rule(DEGENERATE, k, v) for k, v in degenerate.items()] + rules
    for metric, v in _as_mapping(min_improvement, IMPROVEMENT).items():
        req = _request(metric, IMPROVEMENT)
        if req.spec.direction is None:
            raise ValueError(f"min_improvement: {metric!r} has no better direction; choose from "
                             f"metrics with one (see `facegan evaluate --help`)")
        if isinstance(v, str) and v.strip().endswith("%"):
            try:
                amount = float(v.strip()[:-1]) / 100.0
            except ValueError:
                raise ValueError(f"min_improvement.{metric}: bad percentage {v!r}") from None
            rules.append(Rule(req.label, IMPROVEMENT, _number(amount, f"min_improvement.{metric}"), True))
        else:
            rules.append(Rule(req.label, IMPROVEMENT, _number(v, f"min_improvement.{metric}")))
    return BlessingRules(tuple(rules))


def parse_thresholds(obj) -> BlessingRules:
    """`parse_rules(thresholds=obj)`."""
    return parse_rules(thresholds=obj)


def parse_min_improvement(obj) -> BlessingRules:
    """`parse_rules(min_improvement=obj)`."""
    return parse_rules(min_improvement=obj)


# -- looking up results -----------------------------------------------------------------------
def find_metric(results: Mapping[str, Any], metric: str) -> Tuple[Optional[str], Any]:
    """(key, value) of the result computed for a metric request (`fid` -> `fid10k`), found through
    `results["protocols"]`; (None, None) if it was not computed."""
    label = parse_request(metric).label
    for key, proto in sorted((results.get(PROTOCOLS_KEY) or {}).items()):
        if isinstance(proto, Mapping) and proto.get("request", proto.get("metric")) == label \
                and key in results:
            return key, results[key]
    return None, None


def headline(results: Mapping[str, Any], metric: str) -> Tuple[Optional[str], Optional[float]]:
    """(key, headline number) of a metric request's result, the number its registry entry names."""
    key, raw = find_metric(results, metric)
    return key, (parse_request(metric).spec.headline_value(raw) if key is not None else None)


def _finite(v) -> bool:
    return v is not None and math.isfinite(v)


def _as_float(v) -> Optional[float]:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


# -- deciding ---------------------------------------------------------------------------------
def _bound_rule(family, name, value, op, bound, label=None) -> RuleResult:
    label = label or f"{family} {op} {bound:g}"
    if name is None:
        return RuleResult(label, False, f"{label}: metric {family!r} was not computed", family)
    if not _finite(value):
        return RuleResult(label, False, f"{label}: {name} is not a finite number ({value})", name,
                          value, bound)
    ok = value <= bound if op == "<=" else value >= bound
    return RuleResult(label, ok, f"{label}: {name} = {value:.4g} {'meets' if ok else 'violates'} "
                                 f"{op} {bound:.4g}", name, value, bound)


def _threshold_rule(rule: Rule, results: Mapping[str, Any]) -> RuleResult:
    m, bound = rule.metric, rule.value
    name, value = headline(results, m)
    if rule.kind == "max":
        return _bound_rule(m, name, value, "<=", bound)
    if rule.kind == "min":
        return _bound_rule(m, name, value, ">=", bound)
    if rule.kind == "max_above_real":
        raw = results.get(name) if name else None
        real = _as_float(raw.get("real")) if isinstance(raw, Mapping) else None
        label = f"{m} <= real pairs + {bound:g}"
        if name is None or real is None:
            return RuleResult(label, False, f"{label}: {m} of generated and real pairs was not "
                              f"computed", m)
        r = _bound_rule(m, name, value, "<=", real + bound, label)
        r.reason += f" (real pairs {real:.4g} + margin {bound:g})"
        return r
    if rule.kind == "min_gain_over_input":   # image-to-image: beat the input used as the output
        ref = _as_float((results.get(INPUT_BASELINE_KEY) or {}).get(m))
        lower = rule.request.spec.direction == LOWER
        label = f"{m} beats the input by >= {bound:g}"
        if ref is None:
            return RuleResult(label, False, f"{label}: the input's {m} was not computed", m)
        r = _bound_rule(m, name, value, "<=" if lower else ">=", ref - bound if lower else ref + bound, label)
        r.reason += f" (the input scores {ref:.4g})"
        return r
    # max_noise_fraction
    ref = _as_float((results.get(REFERENCES_KEY) or {}).get(m))
    label = f"{m} <= {bound:g} x noise"
    if ref is None:
        return RuleResult(label, False, f"{label}: the noise reference for {m} was not computed", m)
    r = _bound_rule(m, name, value, "<=", bound * ref, label)
    r.reason += f" (uniform noise scores {ref:.4g})"
    return r


def _degenerate_rule(rule: Rule, results: Mapping[str, Any]) -> RuleResult:
    stat = rule.kind[len("min_"):]
    v = _as_float((results.get(DIVERSITY_KEY) or {}).get(stat))
    label = f"not degenerate: {stat} >= {rule.value:g}"
    if v is None:
        return RuleResult(label, False, f"{label}: diversity statistics missing", DIVERSITY_KEY)
    ok = _finite(v) and v >= rule.value
    return RuleResult(label, ok, f"{label}: {stat} = {v:.3g} ({_DIVERSITY_WORDS[stat][0 if ok else 1]})",
                      f"{DIVERSITY_KEY}.{stat}", v, rule.value)


def _improvement_rule(rule: Rule, results, baseline_results) -> RuleResult:
    m, amount = rule.metric, rule.value
    label = f"{m} beats baseline by >= {amount * 100:g}%" if rule.relative else \
        f"{m} beats baseline by >= {amount:g}"
    if baseline_results is None:
        return RuleResult(label, True, f"{label}: no baseline model yet (first blessed model); "
                          f"rule not applied", m)
    name, value = headline(results, m)
    bname, base = headline(baseline_results, m)
    if name is None or bname is None or not _finite(value) or not _finite(base):
        return RuleResult(label, False, f"{label}: {m} missing or not finite for candidate "
                          f"({value}) or baseline ({base})", m)
    margin = amount * abs(base) if rule.relative else amount
    if rule.request.spec.direction == LOWER:
        bound, ok, op = base - margin, value <= base - margin, "<="
    else:
        assert rule.request.spec.direction == HIGHER
        bound, ok, op = base + margin, value >= base + margin, ">="
    return RuleResult(label, ok, f"{label}: candidate {name} = {value:.4g}, baseline {base:.4g}; "
                      f"needs {op} {bound:.4g}", name, value, bound)


def decide(results: Mapping[str, Any], rules=None, min_improvement=None,
           baseline_results: Optional[Mapping[str, Any]] = None) -> Decision:
    """Apply every rule to `results` (and `baseline_results` when a baseline exists).

    `rules` is a BlessingRules from `parse_rules` (or a raw thresholds mapping, then parsed
    together with `min_improvement`)."""
    parsed = rules if isinstance(rules, BlessingRules) else parse_rules(rules, min_improvement)
    out: List[RuleResult] = []
    for rule in parsed:
        if rule.metric == DEGENERATE:
            out.append(_degenerate_rule(rule, results))
        elif rule.kind == IMPROVEMENT:
            out.append(_improvement_rule(rule, results, baseline_results))
        else:
            out.append(_threshold_rule(rule, results))
    return Decision(blessed=all(r.passed for r in out) and bool(out), rules=out,
                    has_baseline=baseline_results is not None)
