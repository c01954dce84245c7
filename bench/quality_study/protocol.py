"""The evaluation protocol every row is scored with, as the trainer's `eval.*` block, and the
fingerprint that says whether a finished run was made with the same config and protocol."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Dict, List, Tuple


# -- protocol ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Protocol:
    """One evaluation protocol for every run (metrics/registry.py requests)."""
    metrics: Tuple[str, ...]
    num_images: int            # per metric (pairs for ms_ssim, as the trainer's eval.num_images)
    every_images: int
    seed: int = 0              # latent stream of the evaluated samples
    extractor: str = "inception"
    batch_size: int = 64

    def to_dict(self):
        return dataclasses.asdict(self)


def default_metrics() -> List[str]:
    """SWD, MS-SSIM, face detection; FID and KID too when Inception weights are on this machine."""
    names = ["swd", "ms_ssim", "face_detection"]
    try:
        from facegan.metrics.features import resolve_inception_weights
        resolve_inception_weights(download=False)
        names += ["fid", "kid"]
    except Exception:   # WeightsUnavailableError or a broken file: FID/KID left out, said in the report
        pass
    return names


def trainer_eval_overrides(p: Protocol) -> Dict[str, Any]:
    """The protocol as the trainer's `eval.*` fields (trainer/periodic_eval.py)."""
    return {"eval.every_images": p.every_images, "eval.metrics": ",".join(p.metrics),
            "eval.num_images": p.num_images, "eval.seed": p.seed, "eval.extractor": p.extractor,
            "eval.batch_size": p.batch_size, "eval.memorization": 0, "eval.export": "last"}


def fingerprint(cfg_dict: Dict[str, Any], protocol: Protocol) -> Tuple[str, Dict[str, Any]]:
    """(sha256, what it covers): the config without run.steps (the budget decides them) + protocol."""
    cfg = json.loads(json.dumps(cfg_dict))
    cfg.get("run", {}).pop("steps", None)
    what = {"config": cfg, "protocol": protocol.to_dict()}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16], what


def diff_fields(a: Dict[str, Any], b: Dict[str, Any], prefix: str = "") -> List[str]:
    """Dotted names of the leaves that differ between two nested dicts."""
    out = []
    for k in sorted(set(a) | set(b)):
        x, y = a.get(k), b.get(k)
        if isinstance(x, dict) and isinstance(y, dict):
            out += diff_fields(x, y, f"{prefix}{k}.")
        elif x != y:
            out.append(f"{prefix}{k}")
    return out


def run_differences(stored: Dict[str, Any], current: Dict[str, Any], config_defaults: Dict[str, Any]) -> List[str]:
    """The fields where a run made earlier (`stored`: its study_run.json `covers`) differs from the
    request (`current`). A config field the stored run does not have (added to the config since)
    counts only when the request moves it off its default: a new field's default keeps the behaviour
    from before it existed, so older runs stay resumable and reportable."""
    stored, current = json.loads(json.dumps(stored)), json.loads(json.dumps(current))  # tuples == lists

    def get(d, dotted):
        for k in dotted.split("."):
            if not isinstance(d, dict) or k not in d:
                return _MISSING
            d = d[k]
        return d

    defaults = {"config": json.loads(json.dumps(config_defaults))}
    return [name for name in diff_fields(stored, current)
            if name != "config.notes"     # what an override replaced, said in words: not a setting
            and not (get(stored, name) is _MISSING and get(current, name) == get(defaults, name))]


_MISSING = object()
