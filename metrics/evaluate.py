"""`evaluate()`: stream generated and real images once through every requested metric.

One pass over the generator (as many images as the hungriest metric needs), at most one pass over
the real images (skipped entirely when every real-side statistic is cached), one feature-extractor
forward per batch (per input view) shared by FID/KID/IS. Progress (images/s, ETA) is printed per
stream, and a real split smaller than the protocol says that all of its images are used.
"""
from __future__ import annotations

import inspect
import os
import sys
from typing import Callable, Dict, Iterator, Optional, Union

import numpy as np

from facegan.progress import Progress
from facegan.metrics import cache as cache_lib
from facegan.metrics.features import FeatureExtractor, downscale, get_extractor
from facegan.metrics.registry import MetricRequest, get_metric, validate_metric_names

Batches = Union[Iterator[np.ndarray], Callable[..., Iterator[np.ndarray]], np.ndarray]


def resolve_num_images(requests, num_images) -> Dict[MetricRequest, int]:
    """Per-request counts: None -> protocol defaults, int -> all, dict -> given ones + defaults.

    A dict is keyed by metric name ("fid") or full request ("fid:downscale=64"; wins)."""
    requests = validate_metric_names(requests)
    if isinstance(num_images, dict):
        from facegan.metrics.registry import METRICS
        unknown = sorted(k for k in num_images if k.split(":")[0] not in METRICS)
        if unknown:   # counts for unrequested (but known) metrics are fine
            raise ValueError(f"num_images names unknown metric(s) {unknown}; known: {sorted(METRICS)}")
    out = {}
    for r in requests:
        if num_images is None:
            out[r] = r.spec.default_num
        elif isinstance(num_images, dict):
            out[r] = int(num_images.get(r.label, num_images.get(r.name, r.spec.default_num)))
        else:
            out[r] = int(num_images)
        if out[r] < 2:
            raise ValueError(f"num_images for {r.label!r} must be >= 2, got {out[r]}")
    return out


def _as_iterator(batches, n: Optional[int] = None):
    if isinstance(batches, np.ndarray):
        if batches.ndim != 4:
            raise ValueError(f"an image array must be uint8 [N, H, W, 3], got shape {batches.shape}")
        return (batches[i:i + 64] for i in range(0, len(batches), 64))
    if callable(batches):
        try:
            takes_n = len(inspect.signature(batches).parameters) > 0
        except (TypeError, ValueError):
            takes_n = True
        return iter(batches(n) if takes_n else batches())
    return iter(batches)


def _check_batch(b, where: str) -> np.ndarray:
    b = np.asarray(b)
    if b.dtype != np.uint8 or b.ndim != 4 or b.shape[-1] != 3:
        raise ValueError(f"{where}: expected uint8 image batches [B, H, W, 3] (values 0..255), got "
                         f"{b.dtype} {b.shape}")
    return b


def stream(batches, accumulators: Dict, extractor: Optional[FeatureExtractor], total: int,
           label: str, progress: bool = True, views: Optional[Dict] = None) -> int:
    """Feed up to `total` images to every accumulator until all are full; returns images read.

    `views` maps an accumulator's key to its extractor input view (None: the images as they are;
    an int: downscaled to that size first); the extractor runs once per batch per view."""
    views = views or {}
    out = sys.stderr if progress else open(os.devnull, "w")
    bar = Progress(total=total, unit="images", label=label, stream=out)
    seen = 0
    try:
        for b in batches:
            b = _check_batch(b, label)[: total - seen]
            if not len(b):
                break
            feats = {}
            for key, a in accumulators.items():
                view = views.get(key)
                if a.needs_features and not a.full and view not in feats:
                    k = max(x.n - x.count for kk, x in accumulators.items()
                            if x.needs_features and not x.full and views.get(kk) == view)
                    feats[view] = extractor(b[:k] if view is None else downscale(b[:k], view))
            for key, a in accumulators.items():
                if not a.full:
                    a.add(b, feats.get(views.get(key)))
            seen += len(b)
            bar.update(len(b))
            if seen >= total or all(a.full for a in accumulators.values()):
                break
        if seen >= total or all(a.full for a in accumulators.values()):
            print(f"{label}: done, {seen} images ({bar.rate():.1f} images/s)", file=out, flush=True)
        else:
            print(f"{label}: the stream holds {seen} images, fewer than the {total} the protocol "
                  f"asks for at most; all {seen} are used", file=out, flush=True)
    finally:
        if not progress:
            out.close()
    return seen


def evaluate(metric_names, generated_batches: Batches, real_batches: Optional[Batches] = None, *,
             num_images: Union[int, Dict[str, int], None] = None, extractor="inception",
             cache_dir: Optional[str] = None, real_cache_key: Optional[str] = None,
             progress: bool = True, seed: int = 0, label: str = "generated",
             real_memo: Optional[cache_lib.RealMemo] = None) -> Dict:
    """Compute `metric_names` (see metrics/__init__.py for the contract and result layout).

    `label` names the generated stream in progress lines (e.g. "baseline", "noise reference").
    `real_memo` (metrics/cache.py) holds the real side of the metrics the npz cache does not
    store (SWD) for the next call with the same real content, protocol and seed (status
    "hit (memory)"); it needs `real_cache_key` or re-iterable `real_batches`."""
    requests = validate_metric_names(metric_names)
    nums = resolve_num_images(requests, num_images)
    metrics = {r: get_metric(r) for r in requests}
    ext = None
    if any(m.uses_extractor for m in metrics.values()):
        ext = get_extractor(extractor)  # fails here, before any image is generated
        no_logits = [r.label for r in requests if r.spec.needs == "logits"]
        if no_logits and not ext.has_logits:
            raise ValueError(f"{', '.join(no_logits)} need(s) classifier logits; the extractor "
                             f"{ext.name} ({ext.fingerprint}) has no classifier head (e.g. the "
                             f"notop InceptionV3 weights)")
    comparable = ext.comparable if ext is not None else True
    needs_real = [r for r in requests if r.spec.needs_real]
    if needs_real and real_batches is None:
        raise ValueError(f"metrics {[r.label for r in needs_real]} need real_batches")
    views = {r: m.view for r, m in metrics.items()}

    # -- real side: statistics cache -----------------------------------------------------------
    real_results, cache_status, cache_files = {}, {}, {}
    n_real_max = max([metrics[r].images_needed(nums[r]) for r in needs_real], default=0)
    content_key = None
    memo_keys = {}
    if (cache_dir or real_memo is not None) and needs_real:
        if real_cache_key:
            content_key = str(real_cache_key)
        elif callable(real_batches):
            content_key = cache_lib.hash_batches(_as_iterator(real_batches, n_real_max), n_real_max)
    for r in needs_real:
        m = metrics[r]
        if not m.cacheable and real_memo is not None and content_key is not None:
            memo_keys[r] = real_memo.key(content_key, m.base_protocol(nums[r]),
                                         ext.fingerprint if m.uses_extractor else None, seed)
            hit = real_memo.get(memo_keys[r])
            if hit is not None:
                real_results[r] = hit
            cache_status[r.label] = "miss (held in memory)" if hit is None else "hit (memory)"
            continue
        if not cache_dir:
            continue
        if not m.cacheable:
            cache_status[r.label] = "not cached (recomputed)"
            continue
        if content_key is None:
            cache_status[r.label] = "disabled (real_batches is a one-shot iterator and no real_cache_key)"
            continue
        key = cache_lib.stats_key(content_key, m.base_protocol(nums[r]),
                                  ext.fingerprint if m.uses_extractor else None)
        path = cache_lib.cache_path(cache_dir, r.label.replace(":", "_").replace("=", ""), key)
        cache_files[r] = path
        hit = cache_lib.load(path)
        if hit is not None:
            real_results[r] = hit
            cache_status[r.label] = "hit"
        else:
            cache_status[r.label] = "miss"

    gen_accs = {r: m.accumulator(nums[r], "generated", seed) for r, m in metrics.items()}
    real_accs = {r: metrics[r].accumulator(nums[r], "real", seed) for r in needs_real
                 if r not in real_results}
    try:
        # -- generated side: one pass --------------------------------------------------------------
        n_gen = max(m.images_needed(nums[r]) for r, m in metrics.items())
        got = stream(_as_iterator(generated_batches, n_gen), gen_accs, ext, n_gen, label,
                     progress, views)
        short = [f"{m.key(nums[r], comparable)} needs {m.images_needed(nums[r])}"
                 for r, m in metrics.items() if not gen_accs[r].full]
        if short:
            raise ValueError(f"the {label} stream ended after {got} images: {', '.join(short)}")
        gen_results = {k: a.result() for k, a in gen_accs.items()}

        # -- real side: one pass for whatever is not cached -------------------------------------------
        real_counts = {}
        if real_accs:
            n_real = max(a.n for a in real_accs.values())
            stream(_as_iterator(real_batches, n_real), real_accs, ext, n_real, "real" if label == "generated" else f"real, for the {label}",
                   progress, views)
            for r, a in real_accs.items():
                if a.count < 2:
                    raise ValueError(f"{r.label}: the real stream gave {a.count} images; need at least 2")
                real_results[r] = a.result()
                real_counts[r] = a.count
                if r in cache_files:
                    cache_lib.save(cache_files[r], real_results[r])
                if r in memo_keys:
                    real_memo.put(memo_keys[r], real_results[r], a)

        # -- distances ---------------------------------------------------------------------------
        out: Dict = {}
        protocols = {}
        for r, m in metrics.items():
            key = m.key(nums[r], comparable)
            out[key] = m.compute(gen_results[r], real_results.get(r), seed)
            p = dict(m.base_protocol(nums[r]))
            p["metric"], p["request"] = r.name, r.label
            p["num_generated"] = m.images_needed(nums[r])
            if m.needs_real:
                p["num_real"] = int(real_counts.get(r, _cached_count(real_results[r])))
            if m.uses_extractor:
                p["extractor"] = ext.fingerprint
                p["extractor_name"] = ext.name
                p["resize"] = ext.resize_label(m.view)
            protocols[key] = p
    finally:
        for a in list(gen_accs.values()) + list(real_accs.values()):
            if real_memo is None or not real_memo.holds(a):
                a.close()
    out["comparable"] = comparable
    out["extractor"] = ext.name if ext is not None else None
    if ext is not None:
        out["preprocessing"] = ext.preprocessing
    out["protocols"] = protocols
    if cache_dir or real_memo is not None:
        out["cache"] = cache_status
    return out


def _cached_count(result: Dict) -> int:
    for k in ("n", "pairs"):
        if k in result:
            v = int(np.asarray(result[k]))
            return 2 * v if k == "pairs" else v
    if "features" in result:
        return len(result["features"])
    return -1
