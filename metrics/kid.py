"""Kernel Inception Distance (Binkowski et al. 2018, arXiv:1801.01401).

Unbiased estimator of MMD^2 with the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3, averaged over
`num_subsets` random subsets of `subset_size` features drawn (without replacement within a subset)
from each side, as in the paper's code and StyleGAN2-ADA's `kernel_inception_distance.py`
(defaults 100 subsets of 1000). Reports the mean over subsets and their standard deviation
(`std`, ddof=1) plus the standard error of the mean (`stderr` = std / sqrt(num_subsets)).
Dot products run in float32 BLAS on float32 features; kernel values and sums in float64.
TF-GAN's `kernel_classifier_distance_and_std_from_activations` is the disjoint-blocks variant of
the same estimator (its std is our `stderr` over a partition).
"""
from __future__ import annotations

from typing import Dict

import numpy as np

from facegan.metrics.base import Accumulator, Metric

NUM_SUBSETS = 100
SUBSET_SIZE = 1000


class FeatureStore(Accumulator):
    """Keeps the `pool` features (float32) of the first n images."""

    needs_features = True

    def __init__(self, n: int, key: str = "pool"):
        super().__init__(n)
        self.key = key
        self.buf = None

    def add(self, images, features):
        x = np.asarray(features[self.key], np.float32)[: self.n - self.count]
        if not len(x):
            return
        if self.buf is None:
            self.buf = np.empty((self.n, x.shape[1]), np.float32)
        self.buf[self.count:self.count + len(x)] = x
        self.count += len(x)

    def result(self) -> Dict:
        if self.buf is None:
            raise ValueError("no features were accumulated")
        return {"features": self.buf[: self.count]}


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 between samples x [m, d] and y [n, d] under the cubic polynomial kernel."""
    x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
    m, n, d = len(x), len(y), x.shape[1]
    if m < 2 or n < 2:
        raise ValueError(f"KID needs at least 2 features per side, got {m} and {n}")
    kxx = (np.asarray(x @ x.T, np.float64) / d + 1) ** 3
    kyy = (np.asarray(y @ y.T, np.float64) / d + 1) ** 3
    kxy = (np.asarray(x @ y.T, np.float64) / d + 1) ** 3
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2.0 * kxy.mean())


def kernel_distance(x: np.ndarray, y: np.ndarray, num_subsets: int = NUM_SUBSETS,
                    subset_size: int = SUBSET_SIZE, seed: int = 0) -> Dict:
    """KID over random subsets: {"mean", "std", "stderr", "num_subsets", "subset_size"}."""
    rng = np.random.default_rng(seed)
    m = int(min(subset_size, len(x), len(y)))
    ests = []
    for _ in range(int(num_subsets)):
        ix = rng.choice(len(x), m, replace=False)
        iy = rng.choice(len(y), m, replace=False)
        ests.append(mmd2_unbiased(x[ix], y[iy]))
    ests = np.asarray(ests)
    std = float(ests.std(ddof=1)) if len(ests) > 1 else float("nan")
    return {"mean": float(ests.mean()), "std": std, "stderr": std / np.sqrt(len(ests)),
            "num_subsets": int(num_subsets), "subset_size": m}


class KID(Metric):
    """Registered in metrics/registry.py (direction, headline, rule keys, default size)."""
    num_subsets = NUM_SUBSETS
    subset_size = SUBSET_SIZE

    def protocol(self, n):
        return {"metric": "kid", "n": int(n), "features": "pool"}

    def accumulator(self, n, role, seed=0):
        return FeatureStore(n)

    def compute(self, generated, real, seed=0):
        return kernel_distance(generated["features"], real["features"], self.num_subsets,
                               self.subset_size, seed)
