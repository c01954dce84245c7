"""The evaluator as a library: generator SavedModel + Examples -> metrics, pictures, a decision.

Used unchanged by the TFX component (executor.py) and by `facegan evaluate` (cli.py); no TFX
import here. The generator is loaded only through `facegan.generator.load_generator`, i.e. through
its SavedModel signatures exactly as a server would; real images come from the Examples
artifact's eval split (`facegan.examples_io.iterate_images`); the numbers come from the metrics
library (`metrics.evaluate`, `metrics.memorization`).

Outputs written to `out_dir`:
- `metrics.json`     the metric results named by protocol, the diversity statistics, noise
                     references, the baseline's results (same protocol, same real images) if any,
                     and model/data provenance;
- `decision.json`    the blessing decision, one pass/fail reason per rule (blessing.py);
- `sample_grid.png`  64 samples for a fixed seed (generated images only);
- `memorization.png` generated samples next to their nearest training images (feature and pixel
                     space; HDCGAN's nearest-neighbour figure), when the train split is available;
and, when `log_dir` is given, TensorBoard scalars/images/text under `<log_dir>/evaluation`.
"""
import json
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence

import numpy as np

from facegan.components.gan_evaluator import blessing
from facegan import examples_io, schema
from facegan.images import save_grid
from facegan.jsonable import jsonable

METRICS_FILE = "metrics.json"
DECISION_FILE = "decision.json"
SAMPLE_GRID_FILE = "sample_grid.png"
MEMORIZATION_FILE = "memorization.png"
TB_SUBDIR = "evaluation"

GRID_SAMPLES = 64
DIVERSITY_SAMPLES = 64
MEMORIZATION_SAMPLES = 8
DEFAULT_METRICS = ("swd", "ms_ssim")  # need no Inception weights (see metrics/ for fid/kid/is)


@dataclass
class Evaluation:
    results: Dict[str, Any]
    decision: blessing.Decision
    baseline_results: Optional[Dict[str, Any]] = None
    files: Dict[str, str] = field(default_factory=dict)
    scalars: Dict[str, float] = field(default_factory=dict)


# -- inputs -----------------------------------------------------------------------------------
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


def _real_batches(examples_uri: str, batch_size: int, limit: Optional[int] = None,
                  split: str = schema.EVAL_SPLIT) -> Iterator[np.ndarray]:
    return examples_io.iterate_images(examples_uri, split, batch_size=batch_size, limit=limit,
                                      include_mirrored=False)


def _peek_resolution(examples_uri: str) -> int:
    first = next(_real_batches(examples_uri, batch_size=1, limit=1), None)
    if first is None:
        raise ValueError(f"{examples_uri}: the eval split holds no images")
    return int(first.shape[1])


# -- statistics -------------------------------------------------------------------------------
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


def noise_batches(total: int, batch_size: int, resolution: int, seed: int) -> Iterator[np.ndarray]:
    """Uniform uint8 noise images: the 'knows nothing' reference for noise-relative thresholds."""
    rng = np.random.default_rng(seed)
    for start in range(0, total, batch_size):
        n = min(batch_size, total - start)
        yield rng.integers(0, 256, size=(n, resolution, resolution, 3), dtype=np.uint8)


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


# -- metrics ----------------------------------------------------------------------------------
def _real_key(examples_uri: str, cache_dir: Optional[str]) -> Optional[str]:
    if not cache_dir:
        return None
    from facegan.metrics.cache import examples_split_key
    return examples_split_key(examples_uri, schema.EVAL_SPLIT, include_mirrored=False)


def compute_metrics(gen, examples_uri: str, metric_names: Sequence[str], *, num_images: int,
                    extractor: str, seed: int, batch_size: int, cache_dir: Optional[str],
                    noise_metrics: Sequence[str] = (), progress: bool = True,
                    label: str = "generated") -> Dict[str, Any]:
    """The metrics for one loaded generator, plus diversity stats and noise references.

    Real images are the eval split without mirrored copies (a mirrored pair would count one face
    twice); the generator is read through its `sample` stream for `seed`.
    """
    import facegan.metrics as M
    from facegan.metrics import attributes as A   # issue 11: conditional generators
    real = lambda: _real_batches(examples_uri, batch_size)  # noqa: E731 - fresh iterator per call
    common = dict(num_images=num_images, extractor=extractor, cache_dir=cache_dir,
                  real_cache_key=_real_key(examples_uri, cache_dir), progress=progress, seed=seed)
    streamed = [m for m in metric_names if m != A.METRIC]
    results = dict(M.evaluate(streamed, lambda n: A.generated_batches(gen, n, batch_size, seed), real,
                              label=label, **common)) if streamed else {"protocols": {}}
    if A.METRIC in metric_names:
        control = A.evaluate_attribute_control(gen, examples_uri, num=num_images, seed=seed,
                                               batch_size=batch_size, cache_dir=cache_dir)
        results["protocols"] = {**results.get("protocols", {}), **control.pop("protocols")}
        results.update(control)
    results[blessing.DIVERSITY_KEY] = diversity_stats(A.sample_images(gen, DIVERSITY_SAMPLES, seed))
    refs = {}
    for metric in noise_metrics:
        ref = M.evaluate([metric], lambda n: noise_batches(n, batch_size, gen.resolution, seed + 1),
                         real, label=f"uniform noise ({metric} reference)", **common)
        refs[metric] = blessing.headline(ref, metric)[1]
    if refs:
        results[blessing.REFERENCES_KEY] = refs
    return results


def write_memorization(gen_images: np.ndarray, examples_uri: str, path: str, *, extractor: str,
                       batch_size: int, progress: bool = True) -> Optional[Dict[str, Any]]:
    """Nearest training images of each sample, as a PNG sheet; returns the metric's summary."""
    import facegan.metrics as M
    try:
        examples_io.split_files(examples_uri, schema.TRAIN_SPLIT)
    except FileNotFoundError:
        return None  # an eval-only artifact: nothing to compare against
    train = _real_batches(examples_uri, batch_size, split=schema.TRAIN_SPLIT)
    return M.memorization(gen_images, train, path, extractor=extractor,
                          reference_batches=_real_batches(examples_uri, batch_size),
                          progress=progress)


# -- TensorBoard -------------------------------------------------------------------------------
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


# -- the whole evaluation ---------------------------------------------------------------------
def evaluate_model(model_dir: str, examples_uri: str, out_dir: str, *,
                   metrics: Iterable[str] = DEFAULT_METRICS, num_images: int = 1000,
                   extractor: str = "random", thresholds=None, min_improvement=None,
                   baseline_dir: Optional[str] = None, log_dir: Optional[str] = None,
                   seed: int = 0, batch_size: int = 64, cache_dir: Optional[str] = None,
                   memorization: bool = True, log=print) -> Evaluation:
    """Evaluate the generator at `model_dir` against `examples_uri`'s eval split; write outputs."""
    from facegan.generator import IMAGE_TO_IMAGE, load_generator, read_metadata

    if read_metadata(resolve_model_dir(model_dir)).get("kind") == IMAGE_TO_IMAGE:   # paired tasks (issue 12)
        from facegan.components.gan_evaluator.paired_eval import evaluate_translation
        return evaluate_translation(model_dir, examples_uri, out_dir, num_images=num_images, thresholds=thresholds,
                                    min_improvement=min_improvement, baseline_dir=baseline_dir, log_dir=log_dir,
                                    seed=seed, batch_size=batch_size, metrics=metrics, cache_dir=cache_dir, log=log)

    if num_images < 2:
        raise ValueError(f"num_images must be >= 2, got {num_images}")
    names = parse_metric_names(metrics)
    rules = blessing.parse_rules(thresholds, min_improvement)   # once, before any expensive work
    missing = [m for m in rules.metrics() if m not in names]
    if missing:
        raise ValueError(f"thresholds/min_improvement name metric(s) {', '.join(missing)} that are "
                         f"not computed (metrics: {', '.join(names)})")
    os.makedirs(out_dir, exist_ok=True)
    t0 = time.monotonic()

    model_dir = resolve_model_dir(model_dir)
    gen = load_generator(model_dir)
    real_res = _peek_resolution(examples_uri)
    if real_res != gen.resolution:
        raise ValueError(f"resolution mismatch: the generator at {model_dir} makes "
                         f"{gen.resolution}x{gen.resolution} images but {examples_uri}'s eval split "
                         f"holds {real_res}x{real_res}")
    kw = dict(num_images=num_images, extractor=extractor, seed=seed, batch_size=batch_size,
              cache_dir=cache_dir)
    # issue 11: synthetic provenance never counts as real (examples_io.image_dataset leaves it out)
    excluded = examples_io.count_synthetic(examples_io.split_files(examples_uri, schema.EVAL_SPLIT))
    if excluded:
        log(f"real images: {excluded} Examples of synthetic provenance in the eval split are left out")
    log(f"evaluating {model_dir} on {examples_uri} ({', '.join(names)}; {num_images} images, "
        f"extractor {extractor})")
    results = compute_metrics(gen, examples_uri, names,
                              noise_metrics=rules.noise_reference_metrics(), **kw)

    baseline_results = None
    if baseline_dir:
        baseline_dir = resolve_model_dir(baseline_dir)
        base = load_generator(baseline_dir)
        if base.resolution != gen.resolution:
            log(f"baseline {baseline_dir} is {base.resolution}px, candidate {gen.resolution}px: "
                f"not comparable, evaluating without a baseline")
        else:
            log(f"evaluating baseline {baseline_dir} with the same protocol")
            baseline_results = compute_metrics(base, examples_uri, names, label="baseline", **kw)

    decision = blessing.decide(results, rules, baseline_results=baseline_results)
    files = {}
    from facegan.metrics.attributes import sample_images
    samples = sample_images(gen, GRID_SAMPLES, seed)
    files["sample_grid"] = save_grid(samples, os.path.join(out_dir, SAMPLE_GRID_FILE))
    mem = None
    if memorization:
        mem_path = os.path.join(out_dir, MEMORIZATION_FILE)
        try:
            mem = write_memorization(samples[:MEMORIZATION_SAMPLES], examples_uri, mem_path,
                                     extractor=extractor, batch_size=batch_size)
        except Exception as e:  # noqa: BLE001 - only WeightsUnavailableError is expected here
            import facegan.metrics as M
            if not isinstance(e, M.WeightsUnavailableError):
                raise
            # The sheet is an extra: report why it is missing (metrics.json and the log) rather
            # than fail an evaluation whose requested metrics need no weights.
            results["memorization"] = {"error": str(e)}
            log(f"memorization sheet skipped: {e}")
        if mem is not None and os.path.exists(mem_path):
            files["memorization"] = mem_path
            results["memorization"] = mem

    steps = int(gen.metadata.get("steps", 0) or 0)
    report = {
        "model": model_dir, "examples": examples_uri, "baseline_model": baseline_dir,
        "protocol": {"metrics": names, "num_images": num_images, "extractor": extractor,
                     "seed": seed, "batch_size": batch_size, "real_excluded_synthetic": excluded},
        "generator": {k: gen.metadata.get(k) for k in ("architecture", "preset", "resolution",
                                                         "z_dim", "steps", "exported_at")},
        "results": results, "baseline_results": baseline_results,
        "blessed": decision.blessed, "seconds": round(time.monotonic() - t0, 2),
    }
    return write_report(out_dir, report, decision, files, log_dir, steps, log)


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
