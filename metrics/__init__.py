"""facegan metrics: FID, KID, IS, SWD, MS-SSIM, face detection and a memorization check, streamed
and cached.

API (what the GanEvaluator component and `facegan evaluate` use)::

    from facegan.metrics import METRICS, register_metric, evaluate, memorization

    result = evaluate(
        ["fid", "kid", "is", "swd", "ms_ssim"],   # registry names, validated first (ValueError
                               # lists known ones); options: "fid:downscale=64" (HDCGAN protocol)
        generated_batches,     # fn(n) -> iterator of uint8 [B,H,W,3] yielding >= n images, or an
                               # iterator, or a uint8 array [N,H,W,3]; read once, as far as needed
        real_batches,          # iterator of uint8 [B,H,W,3] (eval split, e.g.
                               # facegan.examples_io.iterate_images(uri, "eval", include_mirrored=False)),
                               # or fn() -> fresh iterator (lets the cache hash content itself)
        num_images={"fid": 10000, "swd": 16384},  # per metric (ms_ssim: pairs) or one int; defaults:
                               # fid/kid/is 10000, swd 16384, ms_ssim 10000 pairs
        extractor="inception", # "inception" (Keras ImageNet weights) | "random" | "random_tiny" |
                               # path to InceptionV3 .h5 weights | path to the 2015 FID graph .pb
        cache_dir=None,        # real-data statistics cache (npz)
        real_cache_key=None,   # content key of the real data, e.g.
                               # metrics.cache.examples_split_key(uri, "eval")
        progress=True, seed=0,
        real_memo=None)        # metrics.cache.RealMemo: hold SWD's real side for the next call

    result == {
        "fid10k": 12.3,                                     # float64 Frechet distance
        "kid10k": {"mean", "std", "stderr", "num_subsets", "subset_size"},
        "is10k": {"mean", "std", "splits"},
        "swd16k": {"per_level": {"128": .., "64": .., "32": .., "16": ..}, "avg": .., "num_images",
                   "scale": "x1e3"},
        "ms_ssim10k_pairs": {"generated": .., "real": .., "pairs", "real_pairs", "resolution": 128},
        "comparable": True,           # False with a random extractor; FID/KID/IS keys then end in
                                      # "_random" (e.g. "fid10k_random") and are never called FID
        "extractor": "inception",
        "preprocessing": "resize299-bilinear-antialias;x/127.5-1",
        "protocols": {key: {... parameters, "metric", "request", num_generated, num_real,
                            "extractor" fingerprint, "extractor_name", "resize"}},
        "cache": {"fid": "hit" | "miss" | ..., "swd": "hit (memory)" | ...},  # with cache_dir/real_memo
    }

    memorization(generated_uint8[K,H,W,3], train_batches, "sheet.png", extractor="inception",
                 reference_batches=eval_batches)  -> {"score", "copy_fraction", "nn_ratio",
                 "exact_copy_fraction", per-sample NN distances/indices, "sheet": path}

Every metric is registered once in metrics/registry.py (`MetricSpec`: direction, headline key,
needs images/features/logits, blessing rule keys, default size, "module:Class" imported lazily);
its implementation is a feature/statistics accumulator plus a distance; the modules document
their protocols and paper references: fid.py, kid.py, inception_score.py, swd.py, ms_ssim.py,
face_detection.py, memorization.py. The extractor registry and the InceptionV3 weights lookup
(Keras download, FACEGAN_INCEPTION_WEIGHTS, an explicit .h5 or 2015-graph .pb path; a clear
error otherwise) are in features.py; the
real-statistics cache in cache.py. Nothing here imports TensorFlow until a metric runs.

One contract for every registered metric (metrics/calc.py): `calc_metrics(requests, G, data, ...)`
computes them from a generator G (its seed's stream, with its conditioning requests, or its
translations: facegan.generator.stream) and `EvalData` (real images, the Examples artifact); the
streaming requests share one `evaluate()` pass, the others (attribute_control, l1/psnr/ssim,
target_attribute_rate) run their `Metric.calc`. `metric_names(generator=..., needs=...)` answers
which metrics need what.

Adding a metric: one module with a `metrics.base.Metric` subclass (streaming: `accumulator()` and
`compute()`; otherwise `streaming = False` and `calc()`) plus one `register_metric(MetricSpec(...))`
(see ARCHITECTURE.md, Evaluation); `calc_metrics`, the evaluator, metrics during training, the
blessing rules and the CLI help then know it.

The evaluation library (what the GanEvaluator component and `facegan evaluate` run) lives here too:
evaluation.py (generator SavedModel + Examples -> metrics.json, decision.json, pictures),
translation_eval.py (image-to-image generators), report.py (what both write), blessing.py (the
pure blessing rules).
"""
from facegan.metrics.registry import (  # noqa: F401
    METRICS, MetricSpec, get_metric, metric_names, register_metric, validate_metric_names)
from facegan.metrics.base import Metric  # noqa: F401
from facegan.metrics.evaluate import evaluate  # noqa: F401
from facegan.metrics.features import WeightsUnavailableError, get_extractor  # noqa: F401
from facegan.metrics.memorization import memorization  # noqa: F401

__all__ = ["METRICS", "Metric", "MetricSpec", "get_metric", "metric_names", "register_metric", "validate_metric_names",
           "evaluate", "memorization",
           "WeightsUnavailableError", "get_extractor"]
