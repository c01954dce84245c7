"""Cache of real-data statistics (npz files in a cache directory).

A file's name is a sha256 over everything the statistics depend on:
- the eval split's content: `real_cache_key` given by the caller (e.g. `examples_split_key`, a
  hash of the split's TFRecord bytes), or, when `real_batches` is a re-iterable factory, a hash of
  every image streamed (shape + bytes) computed in a cheap pre-pass;
- the metric's protocol (name, image count, its parameters);
- for feature metrics the extractor fingerprint (name + weights sha256) and its preprocessing.
So a changed eval split, preprocessing, extractor or protocol can never reuse stale statistics.

`RealMemo` holds, in memory for the life of a run, the real-side results too large for an npz
file (SWD's descriptors: `cacheable=False` in the registry), under the same kind of key plus the
evaluation seed (SWD draws the real side's neighbourhood positions from it). The trainer's metrics
during training pass one, so the real side of every metric is computed once per run.
Reusing a held result gives exactly the uncached numbers: an accumulator's result depends only on
the real images, the protocol and the seed, and `compute()` only reads it.
"""
from __future__ import annotations

import hashlib
import json
import os
import weakref
from collections import OrderedDict
from typing import Dict, Iterable, Optional

import numpy as np

CACHE_VERSION = 1


def stats_key(content_key: str, protocol: Dict, extractor_fingerprint: Optional[str]) -> str:
    payload = json.dumps({"v": CACHE_VERSION, "content": content_key, "protocol": protocol,
                          "extractor": extractor_fingerprint}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def cache_path(cache_dir: str, metric: str, key: str) -> str:
    return os.path.join(cache_dir, f"real-{metric}-{key}.npz")


def load(path: str) -> Optional[Dict]:
    if not os.path.isfile(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception:  # a truncated/corrupt cache file is a miss, and gets rewritten
        return None


def save(path: str, arrays: Dict) -> str:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp.npz"
    np.savez(tmp, **{k: np.asarray(v) for k, v in arrays.items()})
    os.replace(tmp, path)
    return path


def hash_batches(batches: Iterable[np.ndarray], limit: Optional[int] = None) -> str:
    """sha256 over the shapes and bytes of the first `limit` images of a stream."""
    h = hashlib.sha256()
    seen = 0
    for b in batches:
        b = np.ascontiguousarray(b)
        if limit is not None:
            b = b[: limit - seen]
        h.update(repr(b.shape[1:]).encode() + str(b.dtype).encode())
        h.update(b.tobytes())
        seen += len(b)
        if limit is not None and seen >= limit:
            break
    return f"stream:{seen}:{h.hexdigest()}"


def examples_split_key(examples_uri: str, split: str, image_key: str = "image",
                       include_mirrored: bool = True) -> str:
    """Content key of one Examples split: sha256 of its files' base names, sizes and bytes.

    Any changed record changes the key; a copied artifact keeps it. (Re-ingesting identical
    images may still change it: tf.Example map order is not canonical, so a miss, never a stale
    hit.) Reads the split once, no decoding (~1 s per 300 MB).
    """
    from facegan.examples_io import split_files
    # "real-only": the real side leaves synthetic provenance out (synthetic training sets), so statistics cached
    # before that rule are not reused for a split that may hold synthetic Examples.
    h = hashlib.sha256(f"{split}|{image_key}|mirrored={include_mirrored}|real-only".encode())
    for path in split_files(examples_uri, split):
        if "://" in path:
            import tensorflow as tf
            f = tf.io.gfile.GFile(path, "rb")
        else:
            f = open(path, "rb")
        with f:
            h.update(os.path.basename(path).encode() + b"\0")
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
    return "examples:" + h.hexdigest()


class RealMemo:
    """Real-side accumulator results held in memory (see the module doc), at most `max_entries`
    (the oldest is released first). Held accumulators are closed (SWD's disk-spilled descriptor
    stores removed) when released, by `close()`, or when the memo is garbage-collected."""

    def __init__(self, max_entries: int = 4):
        self.max_entries = int(max_entries)
        self._held: "OrderedDict[str, tuple]" = OrderedDict()
        self._finalizer = weakref.finalize(self, RealMemo._close_all, self._held)

    @staticmethod
    def key(content_key: str, protocol: Dict, extractor_fingerprint: Optional[str], seed) -> str:
        return stats_key(content_key, {"protocol": protocol, "seed": np.atleast_1d(seed).tolist()},
                         extractor_fingerprint)

    def get(self, key: str) -> Optional[Dict]:
        held = self._held.get(key)
        if held is None:
            return None
        self._held.move_to_end(key)
        return held[0]

    def put(self, key: str, result: Dict, accumulator) -> None:
        """Hold `result`; the memo now owns (and later closes) `accumulator`."""
        old = self._held.pop(key, None)
        if old is not None and old[1] is not accumulator:
            old[1].close()
        self._held[key] = (result, accumulator)
        while len(self._held) > self.max_entries:
            self._held.popitem(last=False)[1][1].close()

    def holds(self, accumulator) -> bool:
        return any(a is accumulator for _, a in self._held.values())

    def __len__(self) -> int:
        return len(self._held)

    def close(self) -> None:
        self._finalizer()

    @staticmethod
    def _close_all(held) -> None:
        for _, acc in held.values():
            acc.close()
        held.clear()
