"""The evaluator as a library: generator SavedModel + Examples -> metrics, pictures, a decision.

Used unchanged by the TFX component (components/gan_evaluator/executor.py) and by `facegan
evaluate` (facegan/evaluate_cli.py); no TFX import here. The generator is loaded only through
`facegan.generator.load_generator`, i.e. through its SavedModel signatures exactly as a server
would; real images come from the Examples artifact's eval split
(`facegan.examples_io.iterate_images`); every requested metric is computed through the metric
contract (`metrics.calc.calc_metrics`: the generator's own stream, with its requests for a
conditional one), plus `metrics.memorization`. What the generator makes picks the evaluation: the
seed's samples are scored here, translations of images by translation_eval.py (its held-out pairs or
domains); both write through report.py.

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
import os
import time
from typing import Any, Dict, Iterable, Iterator, Optional, Sequence

import numpy as np

from facegan import examples_io, schema
from facegan.images import save_grid
from facegan.metrics import blessing, translation_eval
from facegan.metrics.report import (  # noqa: F401  (the library's names, in one place)
    DECISION_FILE, MEMORIZATION_FILE, METRICS_FILE, SAMPLE_GRID_FILE, TB_SUBDIR, Evaluation, diversity_stats,
    flat_scalars, headline_scalars, parse_metric_names, resolve_model_dir, write_report, write_tensorboard)

GRID_SAMPLES = 64
DIVERSITY_SAMPLES = 64
MEMORIZATION_SAMPLES = 8
DEFAULT_METRICS = ("swd", "ms_ssim")  # need no Inception weights (see metrics/ for fid/kid/is)


def _real_batches(examples_uri: str, batch_size: int, limit: Optional[int] = None,
                  split: str = schema.EVAL_SPLIT) -> Iterator[np.ndarray]:
    return examples_io.iterate_images(examples_uri, split, batch_size=batch_size, limit=limit,
                                      include_mirrored=False)


def _peek_resolution(examples_uri: str) -> int:
    first = next(_real_batches(examples_uri, batch_size=1, limit=1), None)
    if first is None:
        raise ValueError(f"{examples_uri}: the eval split holds no images")
    return int(first.shape[1])


def noise_batches(total: int, batch_size: int, resolution: int, seed: int) -> Iterator[np.ndarray]:
    """Uniform uint8 noise images: the 'knows nothing' reference for noise-relative thresholds."""
    rng = np.random.default_rng(seed)
    for start in range(0, total, batch_size):
        n = min(batch_size, total - start)
        yield rng.integers(0, 256, size=(n, resolution, resolution, 3), dtype=np.uint8)


# -- metrics ----------------------------------------------------------------------------------
class UniformNoise:
    """Uniform noise as a generator of samples (its own stream, from `seed`): the 'knows nothing'
    reference of noise-relative thresholds."""

    provides = frozenset({"samples"})

    def __init__(self, resolution: int, seed: int):
        self.resolution, self.seed = int(resolution), int(seed)

    def generated_batches(self, total: int, batch_size: int, seed: int = 0) -> Iterator[np.ndarray]:
        return noise_batches(total, batch_size, self.resolution, self.seed)


def _real_key(examples_uri: str, cache_dir: Optional[str]) -> Optional[str]:
    if not cache_dir:
        return None
    from facegan.metrics.cache import examples_split_key
    return examples_split_key(examples_uri, schema.EVAL_SPLIT, include_mirrored=False)


def eval_data(examples_uri: str, batch_size: int, cache_dir: Optional[str]):
    """The evaluation data of an Examples artifact: its eval split without mirrored copies (a
    mirrored pair would count one face twice) as the real side, the artifact for labelled splits."""
    from facegan.metrics.calc import EvalData
    return EvalData(real_batches=lambda: _real_batches(examples_uri, batch_size),   # fresh per call
                    real_cache_key=_real_key(examples_uri, cache_dir), examples_uri=examples_uri)


def compute_metrics(gen, examples_uri: str, metric_names: Sequence[str], *, num_images: int,
                    extractor: str, seed: int, batch_size: int, cache_dir: Optional[str],
                    noise_metrics: Sequence[str] = (), progress: bool = True,
                    label: str = "generated") -> Dict[str, Any]:
    """The metrics for one loaded generator, plus diversity stats and noise references.

    Every metric through `calc_metrics` from the generator's own stream for `seed` (with its
    requests, for a conditional generator) and the eval split (`eval_data`)."""
    from facegan.metrics.calc import CalcOptions, calc_metrics
    data = eval_data(examples_uri, batch_size, cache_dir)
    opts = dict(seed=seed, batch_size=batch_size, extractor=extractor, cache_dir=cache_dir, progress=progress)
    results = calc_metrics(metric_names, gen, data, num_images=num_images, opts=CalcOptions(label=label, **opts))
    results[blessing.DIVERSITY_KEY] = diversity_stats(gen.sample_stream(DIVERSITY_SAMPLES, seed))
    refs = {}
    for metric in noise_metrics:
        ref = calc_metrics([metric], UniformNoise(gen.resolution, seed + 1), data, num_images=num_images,
                           opts=CalcOptions(label=f"uniform noise ({metric} reference)", **opts))
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


# -- the whole evaluation ---------------------------------------------------------------------
def evaluate_model(model_dir: str, examples_uri: str, out_dir: str, *,
                   metrics: Iterable[str] = DEFAULT_METRICS, num_images: int = 1000,
                   extractor: str = "random", thresholds=None, min_improvement=None,
                   baseline_dir: Optional[str] = None, log_dir: Optional[str] = None,
                   seed: int = 0, batch_size: int = 64, cache_dir: Optional[str] = None,
                   memorization: bool = True, log=print) -> Evaluation:
    """Evaluate the generator at `model_dir` against `examples_uri`'s eval split; write outputs.
    What the generator makes (its contract class, facegan.generator) picks the evaluation:
    `evaluate_samples` or translation_eval.evaluate_translation."""
    from facegan.generator import generator_class, read_metadata
    makes = generator_class(read_metadata(resolve_model_dir(model_dir))).makes
    return EVALUATIONS[makes](model_dir, examples_uri, out_dir, metrics=metrics, num_images=num_images,
                              extractor=extractor, thresholds=thresholds, min_improvement=min_improvement,
                              baseline_dir=baseline_dir, log_dir=log_dir, seed=seed, batch_size=batch_size,
                              cache_dir=cache_dir, memorization=memorization, log=log)


def evaluate_samples(model_dir: str, examples_uri: str, out_dir: str, *,
                     metrics: Iterable[str] = DEFAULT_METRICS, num_images: int = 1000,
                     extractor: str = "random", thresholds=None, min_improvement=None,
                     baseline_dir: Optional[str] = None, log_dir: Optional[str] = None,
                     seed: int = 0, batch_size: int = 64, cache_dir: Optional[str] = None,
                     memorization: bool = True, log=print) -> Evaluation:
    """`evaluate_model` of a generator of samples (the seed's stream, with its requests when it
    conditions on attributes)."""
    from facegan.generator import load_generator
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
    # synthetic provenance never counts as real (examples_io.image_dataset leaves it out)
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
    samples = gen.sample_stream(GRID_SAMPLES, seed)
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


# what a generator makes (facegan.generator: its class's `makes`) -> the evaluation that scores it
EVALUATIONS = {"samples": evaluate_samples, "translations": translation_eval.evaluate_translation}
