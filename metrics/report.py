"""What every evaluation writes: metrics.json, decision.json, TensorBoard, and the `Evaluation`.

Shared by the latent evaluation (evaluation.py) and the image-to-image one (translation_eval.py):
the model directory lookup, metric-name parsing, the diversity statistics, the scalars worth a
curve, and the report writer. No TFX import; TensorFlow only where a function needs it.
"""
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np

from facegan.jsonable import jsonable
from facegan.metrics import blessing

METRICS_FILE = "metrics.json"
DECISION_FILE = "decision.json"
SAMPLE_GRID_FILE = "sample_grid.png"
MEMORIZATION_FILE = "memorization.png"
TB_SUBDIR = "evaluation"


@dataclass
class Evaluation:
    results: Dict[str, Any]
    decision: blessing.Decision
    baseline_results: Optional[Dict[str, Any]] = None
    files: Dict[str, str] = field(default_factory=dict)
    scalars: Dict[str, float] = field(default_factory=dict)


def resolve_model_dir(path: str) -> str:
    """A generator SavedModel directory from: the SavedModel itself, a TFX Model artifact
    (`<uri>/Format-Serving`), or a serving base directory of numbered versions (the newest)."""
    import tensorflow as tf
    exists = tf.io.gfile.exists
    if exists(os.path.join(path, "saved_model.pb")):
        return path
    fmt = os.path.join(path, "Format-Serving")
    if exists(os.path.join(fmt, "saved_model.pb")):
        return fmt
    if tf.io.gfile.isdir(path):
        versions = [d.rstrip("/") for d in tf.io.gfile.listdir(path) if d.rstrip("/").isdigit()]
        versions = [v for v in versions if exists(os.path.join(path, v, "saved_model.pb"))]
        if versions:
            return os.path.join(path, max(versions, key=int))
    raise FileNotFoundError(f"{path}: no generator SavedModel here (looked for saved_model.pb, "
                            f"Format-Serving/saved_model.pb and numbered version directories)")


def parse_metric_names(metrics) -> List[str]:
    """'swd,ms_ssim' (or a JSON list, or a list) -> validated, de-duplicated metric request labels
    (registry names, optionally with options: 'fid:downscale=64')."""
    from facegan.metrics.registry import validate_metric_names
    if isinstance(metrics, str):
        s = metrics.strip()
        metrics = json.loads(s) if s.startswith("[") else s
    try:
        return [r.label for r in validate_metric_names(metrics)]
    except ValueError as e:
        raise ValueError(f"metrics: {e}") from None


def diversity_stats(images: np.ndarray) -> Dict[str, float]:
    """Pixel std across samples (mean over pixels) and within images (mean over images), uint8 units.

    A constant generator scores between_std = 0; a generator of flat images within_std = 0.
    """
    x = np.asarray(images, np.float64)
    if x.ndim != 4 or len(x) < 2:
        raise ValueError(f"diversity needs >= 2 images [N, H, W, C], got shape {x.shape}")
    return {"between_std": float(x.std(axis=0).mean()),
            "within_std": float(x.reshape(len(x), -1).std(axis=1).mean()),
            "num_images": int(len(x))}


def flat_scalars(results: Dict[str, Any], prefix: str = "") -> Dict[str, float]:
    """Nested results -> {"swd16k": x, "ms_ssim10k_pairs/generated": y, ...} (finite numbers only)."""
    out = {}
    for k, v in results.items():
        name = f"{prefix}{k}"
        if isinstance(v, bool):
            continue
        if isinstance(v, (int, float, np.integer, np.floating)):
            if math.isfinite(float(v)):
                out[name] = float(v)
        elif isinstance(v, dict):
            out.update(flat_scalars(v, name + "/"))
    return out


# Result entries that describe the protocol rather than measure the model.
_NOT_SCALARS = {"protocols", "cache", "comparable", "extractor", "memorization"}
_COUNT_PARTS = {"num_images", "pairs", "real_pairs", "resolution", "num_subsets", "subset_size",
                "splits", "num_generated", "num_reference", "num_train"}
_MEMORIZATION_SCORES = ("score", "copy_fraction", "nn_ratio", "exact_copy_fraction")


def headline_scalars(results: Dict[str, Any]) -> Dict[str, float]:
    """The numbers worth a TensorBoard curve / an MLMD property: metrics, diversity, references,
    memorization scores; not protocol parameters or counts."""
    out = {k: v for k, v in flat_scalars({k: v for k, v in results.items()
                                          if k not in _NOT_SCALARS}).items()
           if k.rsplit("/", 1)[-1] not in _COUNT_PARTS}
    mem = results.get("memorization")
    if isinstance(mem, dict):
        out.update({f"memorization/{k}": float(mem[k]) for k in _MEMORIZATION_SCORES
                    if isinstance(mem.get(k), (int, float)) and math.isfinite(float(mem[k]))})
    return out


def write_tensorboard(log_dir: str, scalars: Dict[str, float], grid_png: Optional[str],
                      decision: blessing.Decision, step: int) -> str:
    import tensorflow as tf
    path = os.path.join(log_dir, TB_SUBDIR)
    writer = tf.summary.create_file_writer(path)
    with writer.as_default(step=int(step)):
        for name, v in sorted(scalars.items()):
            tf.summary.scalar(f"eval/{name}", v)
        tf.summary.scalar("eval/blessed", 1.0 if decision.blessed else 0.0)
        tf.summary.text("eval/decision", "\n\n".join(
            f"**{'pass' if r.passed else 'FAIL'}** {r.reason}" for r in decision.rules))
        if grid_png and os.path.exists(grid_png):
            with open(grid_png, "rb") as f:
                img = tf.io.decode_png(f.read(), channels=3)
            tf.summary.image("eval/samples", img[None])
    writer.flush()
    writer.close()
    return path


def write_report(out_dir: str, report: Dict[str, Any], decision: blessing.Decision, files: Dict[str, str],
                 log_dir: Optional[str], steps: int, log=print) -> Evaluation:
    """metrics.json (the report), decision.json, TensorBoard (with log_dir); the Evaluation."""
    results, baseline_results = report["results"], report["baseline_results"]
    files["metrics"] = os.path.join(out_dir, METRICS_FILE)
    with open(files["metrics"], "w") as f:
        json.dump(jsonable(report), f, indent=2, sort_keys=True)
    files["decision"] = os.path.join(out_dir, DECISION_FILE)
    with open(files["decision"], "w") as f:
        json.dump(jsonable(decision.to_dict()), f, indent=2)
    scalars = headline_scalars(results)
    if log_dir:
        files["tensorboard"] = write_tensorboard(log_dir, scalars, files.get("sample_grid"), decision, steps)
    log(decision.summary())
    return Evaluation(results=results, decision=decision, baseline_results=baseline_results,
                      files=files, scalars=scalars)
