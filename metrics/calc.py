"""`calc_metrics`: every registered metric computed from a generator and evaluation data.

The one contract (stylegan3's `metric_main.calc_metric(metric, G=..., dataset_kwargs=...)`)::

    calc_metrics(["swd", "fid", "attribute_control"], G, EvalData(real_batches=..., examples_uri=...),
                 num_images=1000, opts=CalcOptions(seed=0, batch_size=64, extractor="inception"))
    -> {"swd1k": {...}, "fid1k": ..., "attribute_control1k": {...}, "protocols": {key: {...}},
        "comparable": ..., "extractor": ..., "cache": {...}}      (metrics.evaluate's layout)

G is anything with the generator contract's stream (facegan.generator.stream: a loaded SavedModel,
or `SampledGenerator` over the networks being trained) or, for image-to-image scores, `translate`.
Every request is checked first (`Metric.unavailable`: ValueError naming the metric and what is
missing, before any image is generated). The streaming requests share one `metrics.evaluate` pass
(one pass over G's stream, at most one over the real images); each other request runs its own
`Metric.calc` (metrics/attributes.py, metrics/paired.py). `opts.shared` carries work one call's
metrics share (a paired pass, a trained classifier), so asking for l1, psnr and ssim translates the
held-out inputs once.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Optional, Union

from facegan.metrics.registry import get_metric, validate_metric_names


@dataclass
class EvalData:
    """What a metric compares a generator with."""

    real_batches: Optional[Union[Callable, Iterable]] = None   # fn() -> fresh iterator of uint8
                                            # [B, H, W, 3] (or an iterable): the real side
    real_cache_key: Optional[str] = None    # content key of the real images (statistics cache)
    examples_uri: Optional[str] = None      # the Examples artifact: labelled splits, held-out pairs


@dataclass
class CalcOptions:
    """How metrics are computed (the protocol beyond the sizes)."""

    seed: int = 0                           # the generator's stream, metric randomness
    batch_size: int = 64
    extractor: str = "inception"            # feature metrics (metrics/features.py)
    cache_dir: Optional[str] = None         # real statistics and trained classifiers, by content
    progress: bool = True
    label: str = "generated"                # names the generated stream in progress lines
    real_memo: Any = None                   # metrics.cache.RealMemo (SWD's real side, in memory)
    classifier_steps: Optional[int] = None  # attribute classifiers (None: metrics.attributes default)
    direction: Optional[str] = None         # image-to-image: the direction scored (None: default)
    shared: Dict = field(default_factory=dict)   # work shared by one call's metrics


def check_available(requests, G, data) -> None:
    """ValueError naming the first request that cannot be computed from G and `data`, and why."""
    for r in validate_metric_names(requests):
        why = get_metric(r).unavailable(G, data)
        if why:
            raise ValueError(f"{r.label}: {why}")


def calc_metrics(requests, G, data: EvalData, *, num_images=None,
                 opts: Optional[CalcOptions] = None) -> Dict:
    """The requested metrics of generator G against `data` (see the module docstring);
    `num_images`: None (protocol defaults), one int, or {name or request label: count}."""
    from facegan.metrics.evaluate import evaluate, resolve_num_images
    opts = opts or CalcOptions()
    requests = validate_metric_names(requests)
    nums = resolve_num_images(requests, num_images)
    check_available(requests, G, data)
    metrics = {r: get_metric(r) for r in requests}
    streamed = [r for r in requests if metrics[r].streaming]
    out: Dict = {"protocols": {}}
    if streamed:
        out = dict(evaluate(streamed, lambda n: G.generated_batches(n, opts.batch_size, opts.seed),
                            data.real_batches, num_images={r.label: nums[r] for r in streamed},
                            extractor=opts.extractor, cache_dir=opts.cache_dir,
                            real_cache_key=data.real_cache_key, progress=opts.progress, seed=opts.seed,
                            label=opts.label, real_memo=opts.real_memo))
    for r in requests:
        if not metrics[r].streaming:
            res = dict(metrics[r].calc(G, data, nums[r], opts))
            out["protocols"] = {**out.get("protocols", {}), **res.pop("protocols", {})}
            out.update(res)
    return out
