"""`evaluate()`: stream generated and real images once through every requested metric.

One pass over the generator (as many images as the hungriest metric needs), at most one pass over
the real images (skipped entirely when every real-side statistic is cached), one feature-extractor
forward per batch shared by FID/KID/IS. Progress (images/s, ETA) is printed per stream.
"""
from __future__ import annotations

import inspect
import os
import sys
from typing import Callable, Dict, Iterator, Optional, Union

import numpy as np

from facegan.progress import Progress
from facegan.metrics import cache as cache_lib
from facegan.metrics.features import FeatureExtractor, get_extractor
from facegan.metrics.registry import METRICS, validate_metric_names

Batches = Union[Iterator[np.ndarray], Callable[..., Iterator[np.ndarray]], np.ndarray]


def resolve_num_images(names, num_images) -> Dict[str, int]:
    """Per-metric counts: None -> protocol defaults, int -> all, dict -> given ones + defaults."""
    if num_images is None:
        out = {n: METRICS[n].default_num for n in names}
    elif isinstance(num_images, dict):
        unknown = sorted(set(num_images) - set(METRICS))   # counts for unrequested metrics are fine
        if unknown:
            raise ValueError(f"num_images names unknown metric(s) {unknown}; known: {sorted(METRICS)}")
        out = {n: int(num_images.get(n, METRICS[n].default_num)) for n in names}
    else:
        out = {n: int(num_images) for n in names}
    for n, v in out.items():
        if v < 2:
            raise ValueError(f"num_images for {n!r} must be >= 2, got {v}")
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
           label: str, progress: bool = True) -> int:
    """Feed up to `total` images to every accumulator until all are full; returns images read."""
    out = sys.stderr if progress else open(os.devnull, "w")
    bar = Progress(total=total, unit="images", label=label, stream=out)
    seen = 0
    try:
        for b in batches:
            b = _check_batch(b, label)[: total - seen]
            if not len(b):
                break
            feats = None
            want = [a for a in accumulators.values() if a.needs_features and not a.full]
            if want:
                k = max(a.n - a.count for a in want)
                feats = extractor(b[:k])
            for a in accumulators.values():
                if not a.full:
                    a.add(b, feats)
            seen += len(b)
            bar.update(len(b))
            if seen >= total or all(a.full for a in accumulators.values()):
                break
        if progress:
            bar.close()
    finally:
        if not progress:
            out.close()
    return seen


def evaluate(metric_names, generated_batches: Batches, real_batches: Optional[Batches] = None, *,
             num_images: Union[int, Dict[str, int], None] = None, extractor="inception",
             cache_dir: Optional[str] = None, real_cache_key: Optional[str] = None,
             progress: bool = True, seed: int = 0) -> Dict:
    """Compute `metric_names` (see metrics/__init__.py for the contract and result layout)."""
    names = validate_metric_names(metric_names)
    nums = resolve_num_images(names, num_images)
    metrics = [METRICS[n] for n in names]
    ext = None
    if any(m.uses_extractor for m in metrics):
        ext = get_extractor(extractor)  # fails here, before any image is generated
        if "is" in names and not ext.has_logits:
            raise ValueError("the Inception Score needs the include-top InceptionV3 weights "
                             "(inception_v3_weights_tf_dim_ordering_tf_kernels.h5); the given "
                             "weights have no classifier head")
    comparable = ext.comparable if ext is not None else True
    needs_real = [m for m in metrics if m.needs_real]
    if needs_real and real_batches is None:
        raise ValueError(f"metrics {[m.name for m in needs_real]} need real_batches")

    # -- real side: statistics cache -----------------------------------------------------------
    real_results, cache_status, cache_files = {}, {}, {}
    n_real_max = max([m.images_needed(nums[m.name]) for m in needs_real], default=0)
    content_key = None
    if cache_dir and needs_real:
        if real_cache_key:
            content_key = str(real_cache_key)
        elif callable(real_batches):
            content_key = cache_lib.hash_batches(_as_iterator(real_batches, n_real_max), n_real_max)
    for m in needs_real:
        if not cache_dir:
            continue
        if not m.cacheable:
            cache_status[m.name] = "not cached (recomputed)"
            continue
        if content_key is None:
            cache_status[m.name] = "disabled (real_batches is a one-shot iterator and no real_cache_key)"
            continue
        key = cache_lib.stats_key(content_key, m.protocol(nums[m.name]),
                                  ext.fingerprint if m.uses_extractor else None)
        path = cache_lib.cache_path(cache_dir, m.name, key)
        cache_files[m.name] = path
        hit = cache_lib.load(path)
        if hit is not None:
            real_results[m.name] = hit
            cache_status[m.name] = "hit"
        else:
            cache_status[m.name] = "miss"

    gen_accs = {m.name: m.accumulator(nums[m.name], "generated", seed) for m in metrics}
    real_accs = {m.name: m.accumulator(nums[m.name], "real", seed) for m in needs_real
                 if m.name not in real_results}
    try:
        # -- generated side: one pass --------------------------------------------------------------
        n_gen = max(m.images_needed(nums[m.name]) for m in metrics)
        got = stream(_as_iterator(generated_batches, n_gen), gen_accs, ext, n_gen, "generated", progress)
        short = [f"{m.key(nums[m.name], comparable)} needs {m.images_needed(nums[m.name])}"
                 for m in metrics if not gen_accs[m.name].full]
        if short:
            raise ValueError(f"the generated stream ended after {got} images: {', '.join(short)}")
        gen_results = {k: a.result() for k, a in gen_accs.items()}

        # -- real side: one pass for whatever is not cached -------------------------------------------
        real_counts = {}
        if real_accs:
            n_real = max(a.n for a in real_accs.values())
            stream(_as_iterator(real_batches, n_real), real_accs, ext, n_real, "real", progress)
            for name, a in real_accs.items():
                if a.count < 2:
                    raise ValueError(f"{name}: the real stream gave {a.count} images; need at least 2")
                real_results[name] = a.result()
                real_counts[name] = a.count
                if name in cache_files:
                    cache_lib.save(cache_files[name], real_results[name])

        # -- distances ---------------------------------------------------------------------------
        out: Dict = {}
        protocols = {}
        for m in metrics:
            key = m.key(nums[m.name], comparable)
            out[key] = m.compute(gen_results[m.name], real_results.get(m.name), seed)
            p = dict(m.protocol(nums[m.name]))
            p["num_generated"] = m.images_needed(nums[m.name])
            if m.needs_real:
                p["num_real"] = int(real_counts.get(m.name, _cached_count(real_results[m.name])))
            if m.uses_extractor:
                p["extractor"] = ext.fingerprint
            protocols[key] = p
    finally:
        for a in list(gen_accs.values()) + list(real_accs.values()):
            a.close()
    out["comparable"] = comparable
    out["extractor"] = ext.name if ext is not None else None
    out["protocols"] = protocols
    if cache_dir:
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
