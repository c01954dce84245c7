"""Sliced Wasserstein Distance, the PGGAN protocol (Karras et al. 2018, arXiv:1710.10196, sec. 5).

Exactly their `metrics/sliced_wasserstein.py`, re-implemented in batched numpy:
- a Laplacian pyramid of each image from full resolution down to 16x16 (cv2.pyrDown/pyrUp with
  the 5x5 binomial filter [1,4,6,4,1]^2/256 and mirror (reflect-101) borders); levels are named
  by their resolution, the last one is the 16x16 Gaussian level;
- 128 random 7x7 neighbourhoods per image per level (centres uniformly in the interior), each a
  147-d descriptor (7x7x3), drawn at random positions *independently for each set*: the two sides
  never share positions (PGGAN calls `get_descriptors_for_minibatch` with a fresh
  `np.random.randint` per minibatch of each set);
- descriptors normalized per colour channel with the mean and std of that side's whole
  descriptor set (sums kept in float64 as descriptors arrive, so they are never re-read for it);
- 4 repeats of 128 random unit directions; projections sorted; mean absolute difference between
  the two sorted sets (= the 1-D Wasserstein-1 distance), averaged over directions and repeats;
- reported x1e3 per level and averaged over levels; 16,384 images per side by default.

Positions. Under the protocol two identical image sets do not score 0: each side sees a different
random subset of neighbourhoods, so the estimator has a positive floor (it shrinks as the image
count grows). `shared_positions=True` (off by default; `SWD.shared_positions`, or the argument of
`swd_of_images`) instead gives image i of both sides the same centres (common random numbers):
positions are independent of image content, so the expectation over positions of each side's
descriptor distribution is unchanged, the variance between two evaluations is lower, and identical
sets give exactly 0; its numbers are then not PGGAN's (measured on 1,000 vs 1,000 real
CelebA faces, disjoint real sets 7.6% low at the 64px level and 11.6% low at 32px against an
independent PGGAN-protocol implementation). The result's protocol records which was used.

Speed (bench/metrics.py measures it against the previous implementation in one run). Each pyramid
step is linear along each image axis, so it is one precomputed [out, in] matrix per axis (the
5-tap filter, the border mirroring and the 2x subsampling/zero insertion folded in) applied with
BLAS to planar [B, C, H, W] batches; descriptor sums are two small matmuls; the per-channel
normalization is folded into the projection matrix; projections come out of one GEMM per
direction chunk in the [direction, descriptor] layout that is sorted in place (`sort_float32`: a
two-pass 16-bit radix sort up to 4,096 images per side, 1.3-2x numpy's quicksort on this
project's AMD EPYC (Zen 4), identical order; numpy's sort for longer rows), and the sorts and the |a - b| sums run on all
cores (numpy's sorts release the GIL).

Descriptors are the one thing that must be kept (sorting needs them all): 16,384 images give
2.1M descriptors per level (1.2 GB float32); above `SPILL_BYTES` they are spilled to a
disk-backed np.memmap in a temporary directory and projected in direction chunks that fit
`WORK_BYTES`, so memory stays bounded whatever the image count.
Random numbers come from `np.random.default_rng(seed)` streams, so a result is reproducible for a
given seed. Directions are shared by both sides, as in PGGAN.

Difference to TF-GAN's `sliced_wasserstein_distance`: it normalizes each patch by its own mean/std
(over the patch's 147 values) instead of per channel over the set, and it compares against a
second draw of real patches as well; its numbers are therefore not the PGGAN numbers.
"""
from __future__ import annotations

import functools
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional, Sequence

import numpy as np

from facegan.metrics.base import Accumulator, Metric

NHOOD_SIZE = 7
NHOODS_PER_IMAGE = 128
DIR_REPEATS = 4
DIRS_PER_REPEAT = 128
MIN_RESOLUTION = 16
SPILL_BYTES = 256 << 20   # descriptor stores larger than this go to a disk-backed memmap
WORK_BYTES = 512 << 20    # budget for the projection buffers of both sides together
ROLES = ("generated", "real")

_BINOMIAL = np.float64([1, 4, 6, 4, 1]) / 16.0


def _threads() -> int:
    return max(1, os.cpu_count() or 1)


# -- Laplacian pyramid ------------------------------------------------------------------------------
def _reflect101(j: int, n: int) -> int:
    """Mirror index without repeating the edge (cv2 BORDER_REFLECT_101, scipy 'mirror')."""
    if n == 1:
        return 0
    period = 2 * (n - 1)
    j = abs(j) % period
    return j if j < n else period - j


@functools.lru_cache(maxsize=None)
def _blur_matrix(n: int, gain: float) -> np.ndarray:
    """[n, n] matrix of the 5-tap binomial correlation with reflect-101 borders, times gain."""
    m = np.zeros((n, n))
    for i in range(n):
        for k, w in enumerate(_BINOMIAL):
            m[i, _reflect101(i + k - 2, n)] += w * gain
    return m


@functools.lru_cache(maxsize=None)
def _down_matrix(n: int) -> np.ndarray:
    """cv2.pyrDown along one axis: blur then keep even samples -> [ceil(n/2), n] float32."""
    return np.ascontiguousarray(_blur_matrix(n, 1.0)[::2], np.float32)


@functools.lru_cache(maxsize=None)
def _up_matrix(n: int) -> np.ndarray:
    """cv2.pyrUp along one axis to n samples: zero-insert then blur with gain 2 -> [n, ceil(n/2)]."""
    zero_insert = np.zeros((n, (n + 1) // 2))
    zero_insert[np.arange(0, n, 2), np.arange((n + 1) // 2)] = 1.0
    return np.ascontiguousarray(_blur_matrix(n, 2.0) @ zero_insert, np.float32)


def _along_h(m: np.ndarray, x: np.ndarray) -> np.ndarray:
    """m [h', H] applied to axis 2 of planar x [B, C, H, W] (one GEMM per plane)."""
    b, c, h, w = x.shape
    return np.matmul(m, x.reshape(b * c, h, w)).reshape(b, c, m.shape[0], w)


def _along_w(m: np.ndarray, x: np.ndarray) -> np.ndarray:
    """m [w', W] applied to axis 3 of planar x [B, C, H, W] (one GEMM for the whole batch)."""
    b, c, h, w = x.shape
    return (x.reshape(-1, w) @ m.T).reshape(b, c, h, m.shape[0])


def _down_planar(x: np.ndarray) -> np.ndarray:
    return _along_w(_down_matrix(x.shape[3]), _along_h(_down_matrix(x.shape[2]), x))


def _up_planar(x: np.ndarray, h: int, w: int) -> np.ndarray:
    return _along_w(_up_matrix(w), _along_h(_up_matrix(h), x))


def _laplacian_planar(x: np.ndarray, num_levels: int) -> List[np.ndarray]:
    """Planar float32 [B, C, H, W] -> levels, finest (band-pass) first, last = Gaussian low-pass."""
    pyr = [x]
    for _ in range(1, num_levels):
        low = _down_planar(pyr[-1])
        pyr[-1] = pyr[-1] - _up_planar(low, pyr[-1].shape[2], pyr[-1].shape[3])
        pyr.append(low)
    return pyr


def _planar(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(x, np.float32).transpose(0, 3, 1, 2))


def _nhwc(x: np.ndarray) -> np.ndarray:
    return x.transpose(0, 2, 3, 1)


def pyr_down(x: np.ndarray) -> np.ndarray:
    """cv2.pyrDown: binomial blur then keep even rows/cols ([B, H, W, C] float32)."""
    return _nhwc(_down_planar(_planar(x)))


def pyr_up(x: np.ndarray) -> np.ndarray:
    """cv2.pyrUp: zero-insert to 2H x 2W then binomial blur with gain 4."""
    return _nhwc(_up_planar(_planar(x), 2 * x.shape[1], 2 * x.shape[2]))


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
    """[B, H, W, 3] -> list of float32 [B, h, w, 3] levels, finest (band-pass) first, last = low-pass."""
    return [_nhwc(p) for p in _laplacian_planar(_planar(images), num_levels)]


# -- descriptors ----------------------------------------------------------------------------------
def sample_descriptors(level: np.ndarray, rng: np.random.Generator,
                       nhoods_per_image: int = NHOODS_PER_IMAGE, size: int = NHOOD_SIZE) -> np.ndarray:
    """Random size x size neighbourhoods of [B, H, W, C] -> [B * nhoods, size*size*C] float32.

    Each descriptor is laid out (y, x, c). `level` may be any axis-permuted view of contiguous
    memory (the accumulator passes a planar level seen as [B, H, W, C]); centres draw rows first,
    then columns, from `rng`.
    """
    b, h, w, c = level.shape
    r = size // 2
    n = b * nhoods_per_image
    img = np.repeat(np.arange(b), nhoods_per_image)
    ys = rng.integers(r, h - r, size=n)
    xs = rng.integers(r, w - r, size=n)
    # one flat np.take over the level's memory (any axis order): base index + (y, x, c) offsets
    st = np.array(level.strides) // level.itemsize
    mem = level.transpose(np.argsort(-st, kind="stable"))
    if not mem.flags.c_contiguous:
        level = np.ascontiguousarray(level)
        st = np.array(level.strides) // level.itemsize
        mem = level
    d = np.arange(-r, r + 1)
    off = (d[:, None, None] * st[1] + d[None, :, None] * st[2] + np.arange(c)[None, None, :] * st[3]).reshape(-1)
    base = img * st[0] + ys * st[1] + xs * st[2]
    return np.take(mem.reshape(-1), base[:, None] + off[None, :])


@functools.lru_cache(maxsize=None)
def _channel_selector(dim: int, channels: int) -> np.ndarray:
    """[dim, channels] 0/1 matrix summing a (y, x, c) descriptor's entries per channel."""
    s = np.zeros((dim, channels), np.float32)
    s[np.arange(dim), np.arange(dim) % channels] = 1.0
    return s


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
        desc = np.ascontiguousarray(desc[:k], np.float32)
        self.data[self.count:self.count + k] = desc
        self.count += k
        if self.sum is None:
            self.channels, self.sum, self.sumsq = channels, np.zeros(channels), np.zeros(channels)
        # per-descriptor channel sums (49 terms, float32) via one small GEMM, then float64 over rows
        sel = _channel_selector(desc.shape[1], channels)
        self.sum += (desc @ sel).sum(axis=0, dtype=np.float64)
        self.sumsq += (np.square(desc) @ sel).sum(axis=0, dtype=np.float64)

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


# -- the distance -----------------------------------------------------------------------------------
def _projections(store: DescriptorStore, rows: int, dirs: np.ndarray) -> np.ndarray:
    """Projections [k, rows] (unsorted) of the per-channel-normalized descriptors onto dirs [D, k]."""
    mean, std = store.channel_stats(rows)
    c = store.channels
    dim = store.data.shape[1]
    inv = np.tile(1.0 / np.where(std > 0, std, 1.0), dim // c)        # [D] in (y, x, c) layout
    shift = np.tile(mean, dim // c) * inv
    w = np.ascontiguousarray((dirs * inv[:, None]).T, np.float32)      # normalization folded into w
    out = w @ store.data[:rows].T                                      # one GEMM, [k, rows]
    out -= (shift @ dirs).astype(np.float32)[:, None]
    return out


_SIGN = np.uint32(0x80000000)
_LOW31 = np.uint32(0x7FFFFFFF)
# Longer rows are sorted by np.sort: the radix passes' gathers leave the caches (measured on the
# project's 2-core AMD EPYC, float32 rows: 14 vs 30 ns per element at 65,536, 25 vs 39 at 524,288,
# 54 vs 42 at 1,280,000 = 10,000 images x 128 neighbourhoods).
RADIX_MAX = 1 << 19


def sort_float32(row: np.ndarray) -> None:
    """Sort a contiguous 1-D float32 array in place, exactly as `row.sort()` orders its values,
    by two stable 16-bit radix passes over the float's order-preserving integer key.

    The key flips the sign bit of non-negative floats and every bit of negative ones, so unsigned
    key order is numeric order (-0.0 just before +0.0, which compare equal). numpy's stable sort
    of 16-bit keys is a linear radix sort; its quicksort of float32 is comparison-based, and on
    AMD Zen 4 (family 25) its AVX-512 path gains nothing, because the memory-destination compress
    stores it relies on are microcoded there. The sort of the projections is most of SWD's cost:
    bench/metrics.py measures both sorts (`numpy_sort` in its JSON). Rows longer than `RADIX_MAX`
    use `row.sort()`."""
    if len(row) > RADIX_MAX:
        row.sort()
        return
    u = row.view(np.uint32)
    key = u ^ (((u >> 31) * _LOW31) | _SIGN)
    first = np.argsort(key.astype(np.uint16), kind="stable")            # low 16 bits
    order = first[np.argsort((key >> 16).astype(np.uint16)[first], kind="stable")]   # then high
    row[:] = row[order]


def _sorted_abs_diff_sum(pa: np.ndarray, pb: np.ndarray, threads: int = 0) -> float:
    """Sort every row of pa and pb in place, then sum |pa - pb|; row blocks run on all cores."""
    threads = threads or min(len(pa), _threads())

    def block(lo_hi):
        lo, hi = lo_hi
        total = 0.0
        for i in range(lo, hi):
            sort_float32(pa[i])
            sort_float32(pb[i])
            total += float(np.abs(pa[i] - pb[i]).sum(dtype=np.float64))
        return total

    bounds = np.linspace(0, len(pa), threads + 1).astype(int)
    parts = list(zip(bounds[:-1], bounds[1:]))
    if threads <= 1:
        return block((0, len(pa)))
    with ThreadPoolExecutor(threads) as ex:
        return float(sum(ex.map(block, parts)))


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
            total += _sorted_abs_diff_sum(_projections(a, rows, d), _projections(b, rows, d))
        results.append(total / (rows * dirs_per_repeat))
    return float(np.mean(results))


def position_seed(seed, role: str, shared_positions: bool = False) -> list:
    """The neighbourhood-position stream of one side: per side (the protocol) or shared by both."""
    if role not in ROLES:
        raise ValueError(f"SWD: role must be one of {ROLES}, got {role!r}")
    base = list(np.atleast_1d(seed).tolist()) + [1]
    return base if shared_positions else base + [ROLES.index(role)]


class SWDAccumulator(Accumulator):
    needs_images = True

    def __init__(self, n: int, seed, nhoods_per_image: int = NHOODS_PER_IMAGE):
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
        for store, level in zip(self.stores, _laplacian_planar(_planar(images), len(self.resolutions))):
            store.append(sample_descriptors(_nhwc(level), self.rng, self.nhoods), images.shape[3])
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


def swd_of_images(generated: np.ndarray, real: np.ndarray, seed: int = 0, shared_positions: bool = False,
                  batch_size: int = 64, nhoods_per_image: int = NHOODS_PER_IMAGE) -> Dict:
    """SWD between two uint8 image arrays [N, H, W, 3] (all of both), as the registry computes it."""
    n = min(len(generated), len(real))
    accs = [SWDAccumulator(n, position_seed(seed, role, shared_positions), nhoods_per_image)
            for role in ROLES]
    try:
        for acc, images in zip(accs, (generated, real)):
            for i in range(0, n, batch_size):
                acc.add(images[i:min(n, i + batch_size)], None)
        return swd_from_results(accs[0].result(), accs[1].result(), seed)
    finally:
        for acc in accs:
            acc.close()


class SWD(Metric):
    """Registered in metrics/registry.py (direction, headline, rule keys, default size)."""
    shared_positions = False   # True: common random positions on both sides (see module doc)

    def protocol(self, n):
        return {"metric": "swd", "n": int(n), "nhood": NHOOD_SIZE, "per_image": NHOODS_PER_IMAGE,
                "repeats": DIR_REPEATS, "dirs": DIRS_PER_REPEAT, "min_res": MIN_RESOLUTION,
                "positions": "shared" if self.shared_positions else "independent"}

    def accumulator(self, n, role, seed=0):
        return SWDAccumulator(n, seed=position_seed(seed, role, self.shared_positions))

    def compute(self, generated, real, seed=0):
        return swd_from_results(generated, real, seed)
