"""Blessing rules: metric results -> a decision with a pass/fail reason for every rule.

Pure Python (no TensorFlow, no TFX) so the rules are unit-tested on hand-written numbers and the
same code decides inside the TFX component and in `facegan evaluate`.

Rules come from a thresholds mapping (JSON in the component and the CLI), keyed by metric family:

    {
      "fid":        {"max": 50.0},                 # absolute bound (lower is better)
      "swd":        {"max_noise_fraction": 0.8},   # <= 0.8 x the same metric on uniform noise
      "ms_ssim":    {"max_above_real": 0.05},      # samples' MS-SSIM <= real pairs' figure + margin
      "is":         {"min": 2.0},                  # absolute bound (higher is better)
      "degenerate": {"min_between_std": 2.0, "min_within_std": 1.0}
    }

and "must beat the baseline" from `min_improvement`, e.g. {"swd": 1.0} (absolute, in the
metric's units) or {"fid": "5%"} (relative to the baseline's value). With no baseline (the first
model) improvement rules pass as TFX's Evaluator "rubber stamps" them, and say so.

The degenerate-output check is always on (defaults below): a generator whose samples are all the
same image, or whose images are flat, is refused whatever its other numbers are.

Metric results are named by protocol (`fid10k`, `swd16k`, `ms_ssim10k_pairs`); a rule for family
`fid` applies to the result whose name is `fid` followed by its protocol suffix. A rule whose
metric was not computed fails (it never passes silently).
"""
import json
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

# Direction per metric family: True = lower is better.
LOWER_IS_BETTER = {"fid": True, "kid": True, "swd": True, "is": False,
                   "l1": True, "psnr": False, "ssim": False}           # the last three: paired tasks
FAMILIES = ("fid", "kid", "swd", "ms_ssim", "is", "l1", "psnr", "ssim")
INPUT_BASELINE_KEY = "input_baseline"  # paired tasks: results[...] = the scores of the input itself

DEGENERATE = "degenerate"
DIVERSITY_KEY = "diversity"          # results[DIVERSITY_KEY] = {"between_std":..., "within_std":...}
REFERENCES_KEY = "noise_reference"   # results[REFERENCES_KEY] = {"swd": value on noise images, ...}

# Pixel standard deviations in uint8 units. Between: per-pixel std across samples, averaged over
# pixels (0 when every sample is the same image). Within: per-image std over its pixels, averaged
# over images (0 for flat images). Real face crops score tens on both.
DEFAULT_DEGENERATE = {"min_between_std": 2.0, "min_within_std": 2.0}
_DIVERSITY_WORDS = {"between_std": ("samples differ from each other", "samples are (nearly) identical"),
                    "within_std": ("images are not flat", "images are (nearly) flat")}

_ALLOWED_KEYS = {
    "fid": {"max", "min", "max_noise_fraction"},
    "kid": {"max", "min", "max_noise_fraction"},
    "swd": {"max", "min", "max_noise_fraction"},
    "is": {"max", "min"},
    "ms_ssim": {"max", "min", "max_above_real"},
    # image-to-image (metrics/paired.py): min_gain_over_input = must beat the input used as the
    # output (for lowres pairs: bicubic upscaling) by at least this much, in the metric's units
    "l1": {"max", "min", "min_gain_over_input"},
    "psnr": {"max", "min", "min_gain_over_input"},
    "ssim": {"max", "min", "min_gain_over_input"},
    DEGENERATE: {"min_between_std", "min_within_std"},
}


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


def parse_thresholds(obj) -> Dict[str, Dict[str, float]]:
    """Validate a thresholds mapping (dict or JSON string); raises ValueError naming the field."""
    spec = _as_mapping(obj, "thresholds")
    out: Dict[str, Dict[str, float]] = {}
    for family, rules in spec.items():
        if family not in _ALLOWED_KEYS:
            raise ValueError(f"thresholds: unknown metric {family!r}; "
                             f"choose from {', '.join(sorted(_ALLOWED_KEYS))}")
        rules = _as_mapping(rules, f"thresholds.{family}")
        for k, v in rules.items():
            if k not in _ALLOWED_KEYS[family]:
                raise ValueError(f"thresholds.{family}: unknown rule {k!r}; "
                                 f"choose from {', '.join(sorted(_ALLOWED_KEYS[family]))}")
            rules[k] = _number(v, f"thresholds.{family}.{k}")
            if k == "max_noise_fraction" and rules[k] <= 0:
                raise ValueError(f"thresholds.{family}.max_noise_fraction must be > 0, got {v!r}")
        out[family] = rules
    return out


def parse_min_improvement(obj) -> Dict[str, Tuple[float, bool]]:
    """{"fid": 1.0, "swd": "5%"} -> {family: (amount, is_relative)}; validated."""
    spec = _as_mapping(obj, "min_improvement")
    out = {}
    for family, v in spec.items():
        if family not in LOWER_IS_BETTER:
            raise ValueError(f"min_improvement: {family!r} has no better direction; "
                             f"choose from {', '.join(sorted(LOWER_IS_BETTER))}")
        if isinstance(v, str) and v.strip().endswith("%"):
            try:
                amount = float(v.strip()[:-1]) / 100.0
            except ValueError:
                raise ValueError(f"min_improvement.{family}: bad percentage {v!r}") from None
            out[family] = (_number(amount, f"min_improvement.{family}"), True)
        else:
            out[family] = (_number(v, f"min_improvement.{family}"), False)
    return out


def noise_reference_families(thresholds) -> List[str]:
    """Metric families whose rules need the metric computed on noise images too."""
    return sorted(f for f, r in parse_thresholds(thresholds).items() if "max_noise_fraction" in r)


# -- looking up results -----------------------------------------------------------------------
def find_metric(results: Mapping[str, Any], family: str) -> Tuple[Optional[str], Any]:
    """The (name, value) of the result for a metric family: `fid` -> `fid10k`; (None, None) if absent."""
    if family in results:
        return family, results[family]
    pat = re.compile(rf"^{re.escape(family)}(\d+k?)?(_[a-z0-9_]+)?$")
    for name in sorted(results):
        if pat.match(name):
            return name, results[name]
    return None, None


def scalar(value, part: str = "") -> Optional[float]:
    """A float from a metric value: a number, or a dict's `part`/"mean"/"avg"/"value"/"generated"."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, Mapping):
        for k in ([part] if part else []) + ["mean", "avg", "value", "generated"]:
            if k in value and isinstance(value[k], (int, float)) and not isinstance(value[k], bool):
                return float(value[k])
    return None


def _finite(v) -> bool:
    return v is not None and math.isfinite(v)


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


def decide(results: Mapping[str, Any], thresholds=None, min_improvement=None,
           baseline_results: Optional[Mapping[str, Any]] = None) -> Decision:
    """Apply every rule to `results` (and `baseline_results` when a baseline exists)."""
    th = parse_thresholds(thresholds)
    imp = parse_min_improvement(min_improvement)
    rules: List[RuleResult] = []

    # Degenerate output: always checked.
    deg = dict(DEFAULT_DEGENERATE, **th.get(DEGENERATE, {}))
    div = results.get(DIVERSITY_KEY) or {}
    for key, stat in (("min_between_std", "between_std"), ("min_within_std", "within_std")):
        v = scalar(div.get(stat))
        label = f"not degenerate: {stat} >= {deg[key]:g}"
        if v is None:
            rules.append(RuleResult(label, False, f"{label}: diversity statistics missing",
                                    DIVERSITY_KEY))
        else:
            ok = _finite(v) and v >= deg[key]
            rules.append(RuleResult(label, ok, f"{label}: {stat} = {v:.3g} "
                                    f"({_DIVERSITY_WORDS[stat][0 if ok else 1]})",
                                    f"{DIVERSITY_KEY}.{stat}", v, deg[key]))

    for family, spec in th.items():
        if family == DEGENERATE:
            continue
        name, raw = find_metric(results, family)
        is_ms_ssim = family == "ms_ssim"   # its value is the generated-pairs figure
        value = scalar(raw, "generated") if is_ms_ssim else scalar(raw)
        for k, bound in spec.items():
            if k == "max":
                rules.append(_bound_rule(family, name, value, "<=", bound))
            elif k == "min":
                rules.append(_bound_rule(family, name, value, ">=", bound))
            elif k == "max_above_real" and is_ms_ssim:
                real = scalar(raw, "real") if isinstance(raw, Mapping) and "real" in raw else None
                label = f"ms_ssim <= real pairs + {bound:g}"
                if name is None or real is None:
                    rules.append(RuleResult(label, False, f"{label}: MS-SSIM of generated and "
                                            f"real pairs was not computed", family))
                else:
                    rules.append(_bound_rule(family, name, value, "<=", real + bound, label))
                    rules[-1].reason += f" (real pairs {real:.4g} + margin {bound:g})"
            elif k == "min_gain_over_input":
                ref = scalar((results.get(INPUT_BASELINE_KEY) or {}).get(family))
                lower = LOWER_IS_BETTER[family]
                label = f"{family} beats the input by >= {bound:g}"
                if ref is None:
                    rules.append(RuleResult(label, False, f"{label}: the input's {family} was not computed", family))
                else:
                    rules.append(_bound_rule(family, name, value, "<=" if lower else ">=",
                                             ref - bound if lower else ref + bound, label))
                    rules[-1].reason += f" (the input scores {ref:.4g})"
            elif k == "max_noise_fraction" and not is_ms_ssim:
                ref = scalar((results.get(REFERENCES_KEY) or {}).get(family))
                label = f"{family} <= {bound:g} x noise"
                if ref is None:
                    rules.append(RuleResult(label, False, f"{label}: the noise reference for "
                                            f"{family} was not computed", family))
                else:
                    rules.append(_bound_rule(family, name, value, "<=", bound * ref, label))
                    rules[-1].reason += f" (uniform noise scores {ref:.4g})"

    has_baseline = baseline_results is not None
    for family, (amount, relative) in imp.items():
        label = f"{family} beats baseline by >= {amount * 100:g}%" if relative else \
            f"{family} beats baseline by >= {amount:g}"
        if not has_baseline:
            rules.append(RuleResult(label, True, f"{label}: no baseline model yet (first blessed "
                                    f"model); rule not applied", family))
            continue
        name, raw = find_metric(results, family)
        bname, braw = find_metric(baseline_results, family)
        value, base = scalar(raw), scalar(braw)
        if name is None or bname is None or not _finite(value) or not _finite(base):
            rules.append(RuleResult(label, False, f"{label}: {family} missing or not finite for "
                                    f"candidate ({value}) or baseline ({base})", family))
            continue
        margin = amount * abs(base) if relative else amount
        if LOWER_IS_BETTER[family]:
            bound, ok = base - margin, value <= base - margin
            op = "<="
        else:
            bound, ok = base + margin, value >= base + margin
            op = ">="
        rules.append(RuleResult(label, ok, f"{label}: candidate {name} = {value:.4g}, baseline "
                                f"{base:.4g}; needs {op} {bound:.4g}", name, value, bound))

    return Decision(blessed=all(r.passed for r in rules) and bool(rules), rules=rules,
                    has_baseline=has_baseline)
