"""Sliced Wasserstein Distance, the PGGAN protocol (Karras et al. 2018, arXiv:1710.10196, sec. 5).

Exactly their `metrics/sliced_wasserstein.py`, re-implemented in streaming numpy:
- a Laplacian pyramid of each image from full resolution down to 16x16 (cv2.pyrDown/pyrUp with
  the 5x5 binomial filter [1,4,6,4,1]^2/256 and mirror (reflect-101) borders); levels are named
  by their resolution, the last one is the 16x16 Gaussian level;
- 128 random 7x7 neighbourhoods per image per level (centres uniformly in the interior), each a
  147-d descriptor (7x7x3);
- descriptors normalized per colour channel with the mean and std of that side's whole
  descriptor set (computed in float64 from running sums, so descriptors are never re-read for
  it);
- 4 repeats of 128 random unit directions; projections sorted; mean absolute difference between
  the two sorted sets (= the 1-D Wasserstein-1 distance), averaged over directions and repeats;
- reported x1e3 per level and averaged over levels; 16,384 images per side by default.

Descriptors are the one thing that must be kept (sorting needs them all): 16,384 images give
2.1M descriptors per level (1.2 GB float32); above `SPILL_BYTES` they are spilled to a
disk-backed np.memmap in a temporary directory and projected in direction chunks that fit
`WORK_BYTES`, so memory stays bounded whatever the image count.
Random numbers come from `np.random.default_rng(seed)` streams, so a result is reproducible for a
given seed. Neighbourhood positions use the same stream on both sides (image i of each side gets
the same centres; common random numbers): positions are independent of image content, so the
estimator's expectation is PGGAN's (which draws them independently) while its variance is lower,
and identical sets give exactly 0. Directions are shared by both sides, as in PGGAN.

Difference to TF-GAN's `sliced_wasserstein_distance`: it normalizes each patch by its own mean/std
(over the patch's 147 values) instead of per channel over the set, and it compares against a
second draw of real patches as well; its numbers are therefore not the PGGAN numbers.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from typing import Dict, List

import numpy as np

from facegan.metrics.registry import Accumulator, Metric

NHOOD_SIZE = 7
NHOODS_PER_IMAGE = 128
DIR_REPEATS = 4
DIRS_PER_REPEAT = 128
MIN_RESOLUTION = 16
SPILL_BYTES = 256 << 20   # descriptor stores larger than this go to a disk-backed memmap
WORK_BYTES = 512 << 20    # budget for the projection buffers of both sides together

_BINOMIAL = np.float32([1, 4, 6, 4, 1]) / 16.0


def _conv1d_reflect(x: np.ndarray, axis: int, gain: float = 1.0) -> np.ndarray:
    """Correlate axis 1 or 2 of [B, H, W, C] with the binomial filter, mirror borders, same size."""
    pad = [(0, 0)] * x.ndim
    pad[axis] = (2, 2)
    xp = np.pad(x, pad, mode="reflect")
    n = x.shape[axis]
    k = _BINOMIAL * np.float32(gain)

    def sl(i):
        s = [slice(None)] * x.ndim
        s[axis] = slice(i, i + n)
        return xp[tuple(s)]

    out = sl(0) * k[0]
    for i in range(1, 5):
        out += sl(i) * k[i]
    return out


def pyr_down(x: np.ndarray) -> np.ndarray:
    """cv2.pyrDown: binomial blur then keep even rows/cols ([B, H, W, C] float32)."""
    y = _conv1d_reflect(x, 1)[:, ::2]
    return _conv1d_reflect(y, 2)[:, :, ::2]


def pyr_up(x: np.ndarray) -> np.ndarray:
    """cv2.pyrUp: zero-insert to 2H x 2W then binomial blur with gain 4."""
    b, h, w, c = x.shape
    up = np.zeros((b, 2 * h, 2 * w, c), np.float32)
    up[:, ::2, ::2] = x
    return _conv1d_reflect(_conv1d_reflect(up, 1, 2.0), 2, 2.0)


def pyramid_resolutions(height: int, min_resolution: int = MIN_RESOLUTION) -> List[int]:
    """Level heights from full resolution down to min_resolution (>= 1 level)."""
    res, out = int(height), []
    while res >= min(min_resolution, height) and res >= NHOOD_SIZE:
        out.append(res)
        res //= 2
    if not out:
        raise ValueError(f"SWD needs images of at least {NHOOD_SIZE}x{NHOOD_SIZE}, got height {height}")
    return out


def laplacian_pyramid(images: np.ndarray, num_levels: int) -> List[np.ndarray]:
    """[B, H, W, 3] -> list of float32 levels, finest (band-pass) first, last = Gaussian low-pass."""
    pyr = [np.asarray(images, np.float32)]
    for _ in range(1, num_levels):
        pyr.append(pyr_down(pyr[-1]))
        pyr[-2] = pyr[-2] - pyr_up(pyr[-1])
    return pyr


def sample_descriptors(level: np.ndarray, rng: np.random.Generator,
                       nhoods_per_image: int = NHOODS_PER_IMAGE, size: int = NHOOD_SIZE) -> np.ndarray:
    """Random size x size neighbourhoods of [B, H, W, C] -> [B * nhoods, size*size*C] float32."""
    b, h, w, c = level.shape
    r = size // 2
    n = b * nhoods_per_image
    img = np.repeat(np.arange(b), nhoods_per_image)
    ys = rng.integers(r, h - r, size=n)
    xs = rng.integers(r, w - r, size=n)
    off = np.arange(-r, r + 1)
    patches = level[img[:, None, None], (ys[:, None] + off)[:, :, None], (xs[:, None] + off)[:, None, :]]
    return patches.reshape(n, size * size * c)


class DescriptorStore:
    """Preallocated float32 [N, D] rows in RAM, or in a disk memmap when larger than SPILL_BYTES."""

    def __init__(self, rows: int, dim: int, spill_bytes: int = SPILL_BYTES):
        self.tmpdir = None
        if rows * dim * 4 > spill_bytes:
            self.tmpdir = tempfile.mkdtemp(prefix="facegan-swd-")
            self.data = np.lib.format.open_memmap(os.path.join(self.tmpdir, "desc.npy"), "w+",
                                                  np.float32, (rows, dim))
        else:
            self.data = np.empty((rows, dim), np.float32)
        self.count = 0
        self.channels = None
        self.sum = None
        self.sumsq = None

    def append(self, desc: np.ndarray, channels: int) -> None:
        k = min(len(desc), len(self.data) - self.count)
        desc = desc[:k]
        self.data[self.count:self.count + k] = desc
        self.count += k
        per_ch = desc.reshape(k, -1, channels).astype(np.float64)
        if self.sum is None:
            self.channels, self.sum, self.sumsq = channels, np.zeros(channels), np.zeros(channels)
        self.sum += per_ch.sum(axis=(0, 1))
        self.sumsq += (per_ch * per_ch).sum(axis=(0, 1))

    def channel_stats(self, rows=None):
        """Per-channel mean/std (ddof 0) over all stored descriptors, as PGGAN's finalize."""
        rows = self.count if rows is None else rows
        if rows != self.count:  # truncated (sides of unequal size): recompute over the kept rows
            x = self.data[:rows].reshape(rows, -1, self.channels).astype(np.float64)
            mean = x.mean(axis=(0, 1))
            return mean, x.std(axis=(0, 1))
        cnt = self.count * (self.data.shape[1] // self.channels)
        mean = self.sum / cnt
        return mean, np.sqrt(np.maximum(self.sumsq / cnt - mean * mean, 0))

    def close(self):
        if self.tmpdir:
            del self.data
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None


def _projections(store: DescriptorStore, rows: int, dirs: np.ndarray, chunk_rows: int = 1 << 16) -> np.ndarray:
    """Sorted projections [k, rows] of the per-channel-normalized descriptors onto dirs [D, k]."""
    mean, std = store.channel_stats(rows)
    c = store.channels
    dim = store.data.shape[1]
    inv = np.tile(1.0 / np.where(std > 0, std, 1.0), dim // c)        # [D] in (y, x, c) layout
    shift = np.tile(mean, dim // c) * inv
    w = (dirs * inv[:, None]).astype(np.float32)                        # fold normalization into w
    offset = (shift @ dirs).astype(np.float32)
    out = np.empty((dirs.shape[1], rows), np.float32)
    for i in range(0, rows, chunk_rows):
        blk = np.asarray(store.data[i:min(rows, i + chunk_rows)])
        out[:, i:i + len(blk)] = (blk @ w).T
    out -= offset[:, None]
    _parallel_sort_rows(out)
    return out


def _parallel_sort_rows(a: np.ndarray, threads: int = 0) -> None:
    """In-place row sort; np.sort releases the GIL, so row blocks sort on all cores."""
    threads = threads or min(len(a), os.cpu_count() or 1)
    if threads <= 1 or a.size < (1 << 16):
        a.sort(axis=1)
        return
    from concurrent.futures import ThreadPoolExecutor
    bounds = np.linspace(0, len(a), threads + 1).astype(int)
    with ThreadPoolExecutor(threads) as ex:
        list(ex.map(lambda i: a[bounds[i]:bounds[i + 1]].sort(axis=1), range(threads)))


def sliced_wasserstein(a: DescriptorStore, b: DescriptorStore, rng: np.random.Generator,
                       dir_repeats: int = DIR_REPEATS, dirs_per_repeat: int = DIRS_PER_REPEAT,
                       work_bytes: int = WORK_BYTES) -> float:
    """PGGAN's sliced_wasserstein(finalize(a), finalize(b)) over equal numbers of descriptors."""
    rows = min(a.count, b.count)
    dim = a.data.shape[1]
    chunk = max(1, min(dirs_per_repeat, work_bytes // max(1, rows * 4 * 2)))
    results = []
    for _ in range(dir_repeats):
        dirs = rng.standard_normal((dim, dirs_per_repeat))
        dirs /= np.sqrt((dirs * dirs).sum(axis=0, keepdims=True))
        total = 0.0
        for j in range(0, dirs_per_repeat, chunk):
            d = dirs[:, j:j + chunk]
            pa, pb = _projections(a, rows, d), _projections(b, rows, d)
            total += float(np.abs(pa - pb).sum(dtype=np.float64))
        results.append(total / (rows * dirs_per_repeat))
    return float(np.mean(results))


class SWDAccumulator(Accumulator):
    needs_images = True

    def __init__(self, n: int, seed: int, nhoods_per_image: int = NHOODS_PER_IMAGE):
        super().__init__(n)
        self.rng = np.random.default_rng(seed)
        self.nhoods = nhoods_per_image
        self.resolutions = None
        self.stores = None
        self.shape = None

    def add(self, images, features):
        images = np.asarray(images)[: self.n - self.count]
        if not len(images):
            return
        if self.shape is None:
            self.shape = images.shape[1:]
            self.resolutions = pyramid_resolutions(images.shape[1])
            dim = NHOOD_SIZE * NHOOD_SIZE * images.shape[3]
            self.stores = [DescriptorStore(self.n * self.nhoods, dim) for _ in self.resolutions]
        elif images.shape[1:] != self.shape:
            raise ValueError(f"SWD: image shape changed within a stream: {images.shape[1:]} vs {self.shape}")
        for store, level in zip(self.stores, laplacian_pyramid(images, len(self.resolutions))):
            store.append(sample_descriptors(level, self.rng, self.nhoods), images.shape[3])
        self.count += len(images)

    def result(self) -> Dict:
        return {"stores": self.stores, "resolutions": self.resolutions, "shape": self.shape, "n": self.count}

    def close(self):
        for s in self.stores or []:
            s.close()


def swd_from_results(generated: Dict, real: Dict, seed: int = 0) -> Dict:
    if generated["shape"] != real["shape"]:
        raise ValueError(f"SWD compares images of one size: generated {generated['shape']} vs real "
                         f"{real['shape']}; evaluate against an eval split at the generator's resolution")
    rng = np.random.default_rng([seed, 2])
    per_level = {}
    for res, ga, ra in zip(generated["resolutions"], generated["stores"], real["stores"]):
        per_level[str(res)] = sliced_wasserstein(ra, ga, rng) * 1e3
    return {"per_level": per_level, "avg": float(np.mean(list(per_level.values()))),
            "num_images": int(min(generated["n"], real["n"])), "scale": "x1e3"}


class SWD(Metric):
    """Registered in metrics/registry.py (direction, headline, rule keys, default size)."""

    def protocol(self, n):
        return {"metric": "swd", "n": int(n), "nhood": NHOOD_SIZE, "per_image": NHOODS_PER_IMAGE,
                "repeats": DIR_REPEATS, "dirs": DIRS_PER_REPEAT, "min_res": MIN_RESOLUTION}

    def accumulator(self, n, role, seed=0):
        return SWDAccumulator(n, seed=[seed, 1])   # same positions for both roles (see module doc)

    def compute(self, generated, real, seed=0):
        return swd_from_results(generated, real, seed)
