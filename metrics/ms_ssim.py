"""MS-SSIM (Wang, Simoncelli, Bovik 2003) and the sample-diversity protocol of HDCGAN / PGGAN.

MS-SSIM: Gaussian window 11x11, sigma 1.5, K1 0.01, K2 0.03, dynamic range 255, five scales
weighted [0.0448, 0.2856, 0.3001, 0.2363, 0.1333], 2x2 average-pool between scales, 'valid'
filtering; contrast-structure (cs) at scales 1-4 and full SSIM at scale 5, each clipped at 0.

This follows the PGGAN reference (`metrics/ms_ssim.py` of progressive_growing_of_gans, itself
from tensorflow/models' compression/image_encoder/msssim.py), which differs from
`tf.image.ssim_multiscale` in two documented ways:
1. Filter shrinking: at each scale the window is min(11, H, W) wide with sigma scaled by the same
   factor (sigma = size * 1.5 / 11), so 128x128 images work with five scales (the coarsest scale
   is 8x8: an 8x8 window, sigma 1.09). `tf.image.ssim_multiscale` keeps 11x11 and refuses images
   smaller than 11 * 2^4 = 176 pixels.
2. Channel averaging: the reference averages SSIM and cs over pixels AND channels at each scale,
   then takes the weighted product per image; `tf.image.ssim_multiscale` averages over pixels
   only, takes the weighted product per channel and averages channels at the very end. The two
   differ by a few percent on real faces (bench/metrics.py measures it on 256px FFHQ pairs).

Diversity protocol (Odena et al. 2017; HDCGAN, Curto et al. 2017; PGGAN): the mean MS-SSIM over
10,000 pairs of generated images at 128x128 (lower = more diverse), reported with the same figure
for pairs of real images as the reference a healthy model should not exceed by much. Pairs are
consecutive images of the stream (0,1), (2,3), ... (independent samples for a generator; for real
images the eval split's content-hash order, so pass the split without mirrored copies). Images
not at 128x128 are resized first (bilinear, antialiased), recorded in the result.

How it is computed fast (algebraically the same quantities; float32 results within 2e-6 of the
previous depthwise-convolution implementation, which bench/metrics.py times against this one in
the same run). With u = x + y and d = x - y per channel,
    2 mu_x mu_y = (mu_u^2 - mu_d^2) / 2,   mu_x^2 + mu_y^2 = (mu_u^2 + mu_d^2) / 2,
    2 s_xy = (s_u^2 - s_d^2) / 2,          s_x^2 + s_y^2 = (s_u^2 + s_d^2) / 2,
so  l = (mu_u^2 - mu_d^2 + 2 C1) / (mu_u^2 + mu_d^2 + 2 C1),  cs = (s_u^2 - s_d^2 + 2 C2) / (s_u^2 + s_d^2 + 2 C2):
four Gaussian-filtered maps per channel (u, d, u^2, d^2) instead of five, and the 2x2 average
pooling acts on u and d directly (it is linear). u is centred (x + y - 255) so the float32
variances E[u^2] - mu_u^2 lose no precision. The whole five-scale computation is one XLA-compiled
function (the 11-tap separable filter as shifted multiply-adds fused with the SSIM arithmetic and
the means; planar [B, C, H, W] so filtering runs along contiguous rows), compiled once per image
shape (inputs are cut into chunks of `CHUNK` pairs, the last one padded), and chunks run on all
cores.
"""
from __future__ import annotations

import os
import threading
from typing import Dict

import numpy as np

from facegan.metrics.base import Accumulator, Metric

WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
FILTER_SIZE = 11
FILTER_SIGMA = 1.5
K1, K2 = 0.01, 0.03
MAX_VAL = 255.0
RESOLUTION = 128


def gaussian_1d(size: int, sigma: float) -> np.ndarray:
    """1-D factor of MATLAB's fspecial('gaussian', size, sigma) (even sizes centred between taps)."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-x * x / (2.0 * sigma * sigma))
    return g / g.sum()


def _filter_valid(tf, x, taps, axis: int):
    """'valid' correlation of one axis of x with the 1-D taps, as shifted multiply-adds (fused by XLA)."""
    m = x.shape[axis] - len(taps) + 1
    begin, size = [0] * len(x.shape), [-1] * len(x.shape)

    def shifted(i):
        begin[axis], size[axis] = i, m
        return tf.slice(x, list(begin), list(size))

    acc = float(taps[0]) * shifted(0)
    for i in range(1, len(taps)):
        acc = acc + float(taps[i]) * shifted(i)
    return acc


def _scale_mean(tf, u, d, last: bool):
    """Per-image mean cs (or SSIM at the last scale) over pixels and channels; u, d [B, C, H, W]."""
    size = min(FILTER_SIZE, u.shape[2], u.shape[3])
    taps = gaussian_1d(size, size * FILTER_SIGMA / FILTER_SIZE)       # filter shrunk with the image
    maps = tf.stack([u, d, u * u, d * d], axis=1)                       # [B, 4, C, H, W]
    mu_u, mu_d, e_uu, e_dd = tf.unstack(_filter_valid(tf, _filter_valid(tf, maps, taps, 3), taps, 4), axis=1)
    var_u, var_d = e_uu - mu_u * mu_u, e_dd - mu_d * mu_d
    c2 = 2.0 * (K2 * MAX_VAL) ** 2
    cs = (var_u - var_d + c2) / (var_u + var_d + c2)
    if not last:
        return tf.reduce_mean(cs, axis=[1, 2, 3])
    c1 = 2.0 * (K1 * MAX_VAL) ** 2
    mu_u = mu_u + 2.0 * _CENTRE
    lum = (mu_u * mu_u - mu_d * mu_d + c1) / (mu_u * mu_u + mu_d * mu_d + c1)
    return tf.reduce_mean(lum * cs, axis=[1, 2, 3])


def _avg_pool2(tf, x):
    """2x2 average pooling ('valid') of [B, C, H, W]."""
    h, w = x.shape[2] // 2, x.shape[3] // 2
    x = x[:, :, :2 * h, :2 * w]
    return tf.reduce_mean(tf.reshape(x, [-1, x.shape[1], h, 2, w, 2]), axis=[3, 5])


_CENTRE = MAX_VAL / 2.0
CHUNK = 16   # pairs per compiled call
_FN = {}
_FN_LOCK = threading.Lock()


def _ms_ssim_fn(shape):
    """One XLA-compiled function per input shape (CHUNK, H, W, C)."""
    with _FN_LOCK:
        if shape not in _FN:
            _FN[shape] = _compile(shape)
    return _FN[shape]


def _compile(shape):
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32)] * 2, jit_compile=True)
    def fn(a, b):
        x = tf.transpose(a, [0, 3, 1, 2])
        y = tf.transpose(b, [0, 3, 1, 2])
        u, d = x + y - 2.0 * _CENTRE, x - y
        out = None
        for i, wt in enumerate(WEIGHTS):
            last = i == len(WEIGHTS) - 1
            v = tf.maximum(_scale_mean(tf, u, d, last), 0.0) ** wt
            out = v if out is None else out * v
            if not last:
                u, d = _avg_pool2(tf, u), _avg_pool2(tf, d)
        return out

    # Compile now (a zero batch), with native stderr silenced in quiet mode: XLA's first compile
    # in a process prints absl's pre-InitializeLog warning, which no environment variable mutes.
    from facegan.noise import native_stderr_silenced
    with native_stderr_silenced():
        zeros = tf.zeros(shape, tf.float32)
        fn(zeros, zeros)
    return fn


def ms_ssim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """MS-SSIM per pair of uint8 (or float in [0, 255]) images [B, H, W, C] -> float [B]."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"MS-SSIM needs two [B, H, W, C] batches of one shape, got {a.shape} and {b.shape}")
    if min(a.shape[1:3]) < 2 ** (len(WEIGHTS) - 1):
        raise ValueError(f"MS-SSIM with {len(WEIGHTS)} scales needs images of at least "
                         f"{2 ** (len(WEIGHTS) - 1)} pixels, got {a.shape[1:3]}")
    a, b = a.astype(np.float32, copy=False), b.astype(np.float32, copy=False)
    out = np.empty(len(a), np.float64)
    fn = _ms_ssim_fn((CHUNK,) + tuple(int(v) for v in a.shape[1:]))

    def run(lo):
        hi = min(len(a), lo + CHUNK)
        xa, xb = a[lo:hi], b[lo:hi]
        if hi - lo < CHUNK:   # one compiled shape: pad with copies of the first pair (results dropped)
            xa, xb = (np.concatenate([x, np.repeat(x[:1], CHUNK - (hi - lo), axis=0)]) for x in (xa, xb))
        out[lo:hi] = fn(xa, xb).numpy()[:hi - lo]

    starts = range(0, len(a), CHUNK)
    if len(starts) > 1:   # the compiled function is thread-safe; chunks run concurrently on all cores
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(min(len(starts), os.cpu_count() or 1)) as ex:
            list(ex.map(run, starts))
    elif len(starts):
        run(0)
    return out


def resize_to(images: np.ndarray, resolution: int) -> np.ndarray:
    """uint8 images resized to resolution x resolution (bilinear, antialiased); no-op if already."""
    if images.shape[1] == resolution and images.shape[2] == resolution:
        return images
    import tensorflow as tf
    out = tf.image.resize(tf.cast(images, tf.float32), (resolution, resolution), method="bilinear",
                          antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(out), 0, 255), tf.uint8).numpy()


class PairsAccumulator(Accumulator):
    """Mean MS-SSIM over n consecutive pairs (2n images) at `resolution`."""

    needs_images = True

    def __init__(self, n_pairs: int, resolution: int = RESOLUTION):
        super().__init__(2 * n_pairs)
        self.resolution = resolution
        self.carry = None
        self.total = 0.0
        self.pairs = 0
        self.source_shape = None

    def add(self, images, features):
        images = np.asarray(images)[: self.n - self.count]
        if not len(images):
            return
        self.count += len(images)
        self.source_shape = tuple(images.shape[1:])
        images = resize_to(images, self.resolution)
        if self.carry is not None:
            images = np.concatenate([self.carry, images])
            self.carry = None
        if len(images) % 2:
            self.carry, images = images[-1:], images[:-1]
        if len(images):
            s = ms_ssim(images[0::2], images[1::2])
            self.total += float(s.sum())
            self.pairs += len(s)

    def result(self) -> Dict:
        if not self.pairs:
            raise ValueError("MS-SSIM needs at least one pair (two images)")
        return {"mean": np.float64(self.total / self.pairs), "pairs": np.int64(self.pairs)}


class MSSSIM(Metric):
    """Registered in metrics/registry.py (unit "pairs": n pairs need 2n images; key `..._pairs`)."""

    def protocol(self, n):
        return {"metric": "ms_ssim", "pairs": int(n), "resolution": RESOLUTION, "weights": list(WEIGHTS),
                "filter": [FILTER_SIZE, FILTER_SIGMA], "k": [K1, K2], "variant": "pggan"}

    def accumulator(self, n, role, seed=0):
        return PairsAccumulator(n)

    def compute(self, generated, real, seed=0):
        out = {"generated": float(generated["mean"]), "pairs": int(generated["pairs"]),
               "resolution": RESOLUTION}
        if real is not None:
            out["real"] = float(real["mean"])
            out["real_pairs"] = int(real["pairs"])
        return out
