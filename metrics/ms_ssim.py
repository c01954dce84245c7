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
"""
from __future__ import annotations

from typing import Dict

import numpy as np

from facegan.metrics.registry import Accumulator, Metric

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


def _ssim_cs(tf, x, y, size: int, sigma: float):
    """Per-image mean SSIM and cs over pixels and channels, 'valid' separable Gaussian filtering."""
    c = x.shape[-1]
    g = tf.constant(gaussian_1d(size, sigma), tf.float32)
    stack = tf.concat([x, y, x * x, y * y, x * y], axis=-1)          # [B, H, W, 5C]
    ch = 5 * c
    kh = tf.tile(tf.reshape(g, [size, 1, 1, 1]), [1, 1, ch, 1])
    kw = tf.tile(tf.reshape(g, [1, size, 1, 1]), [1, 1, ch, 1])
    f = tf.nn.depthwise_conv2d(stack, kh, [1, 1, 1, 1], "VALID")
    f = tf.nn.depthwise_conv2d(f, kw, [1, 1, 1, 1], "VALID")
    mu1, mu2, s11, s22, s12 = tf.split(f, 5, axis=-1)
    mu11, mu22, mu12 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    s11, s22, s12 = s11 - mu11, s22 - mu22, s12 - mu12
    c1, c2 = (K1 * MAX_VAL) ** 2, (K2 * MAX_VAL) ** 2
    v1 = 2.0 * s12 + c2
    v2 = s11 + s22 + c2
    ssim = tf.reduce_mean((2.0 * mu12 + c1) * v1 / ((mu11 + mu22 + c1) * v2), axis=[1, 2, 3])
    cs = tf.reduce_mean(v1 / v2, axis=[1, 2, 3])
    return ssim, cs


_FN = {}


def _ms_ssim_fn(shape):
    """One traced function per image shape (H, W, C); any batch size."""
    if shape not in _FN:
        import tensorflow as tf

        @tf.function(input_signature=[tf.TensorSpec((None,) + shape, tf.float32)] * 2)
        def fn(x, y):
            ssims, css = [], []
            for _ in range(len(WEIGHTS)):
                h, w = x.shape[1], x.shape[2]
                size = min(FILTER_SIZE, h, w)
                ssim, cs = _ssim_cs(tf, x, y, size, size * FILTER_SIGMA / FILTER_SIZE)
                ssims.append(ssim)
                css.append(cs)
                x = tf.nn.avg_pool2d(x, 2, 2, "VALID")
                y = tf.nn.avg_pool2d(y, 2, 2, "VALID")
            wts = tf.constant(WEIGHTS, tf.float32)
            mcs = tf.maximum(tf.stack(css[:-1]), 0.0)
            last = tf.maximum(ssims[-1], 0.0)
            return tf.reduce_prod(mcs ** wts[:-1, None], axis=0) * last ** wts[-1]

        _FN[shape] = fn
    return _FN[shape]


def ms_ssim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """MS-SSIM per pair of uint8 (or float in [0, 255]) images [B, H, W, C] -> float [B]."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"MS-SSIM needs two [B, H, W, C] batches of one shape, got {a.shape} and {b.shape}")
    if min(a.shape[1:3]) < 2 ** (len(WEIGHTS) - 1):
        raise ValueError(f"MS-SSIM with {len(WEIGHTS)} scales needs images of at least "
                         f"{2 ** (len(WEIGHTS) - 1)} pixels, got {a.shape[1:3]}")
    fn = _ms_ssim_fn(tuple(int(d) for d in a.shape[1:]))
    return fn(np.asarray(a, np.float32), np.asarray(b, np.float32)).numpy().astype(np.float64)


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
