"""Frechet Inception Distance (Heusel et al. 2017, arXiv:1706.08500), streamed, in float64.

Feature side: running float64 sums of features and their outer products (shifted by the first
batch's mean for numerical stability), so any number of images costs O(D^2) memory.
Distance: |mu1 - mu2|^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^1/2) with unbiased (n-1) covariances, the
same estimator as TF-GAN's `frechet_classifier_distance_from_activations` and pytorch-fid.
Tr((S1 S2)^1/2) is computed as TF-GAN does (its `trace_sqrt_product`): with A = S1^1/2, the
eigenvalues of S1 S2 equal those of the symmetric A S2 A, so two symmetric eigendecompositions
replace a general matrix square root (faster and stable for singular covariances).
"""
from __future__ import annotations

from typing import Dict

import numpy as np

from facegan.metrics.base import Accumulator, Metric


class MomentAccumulator(Accumulator):
    """Running mean and covariance (float64) of the `pool` features of the first n images."""

    needs_features = True

    def __init__(self, n: int):
        super().__init__(n)
        self.shift = None
        self.s1 = None
        self.s2 = None

    def add(self, images, features):
        x = np.asarray(features["pool"], np.float64)[: self.n - self.count]
        if not len(x):
            return
        if self.shift is None:
            self.shift = x.mean(axis=0)
            self.s1 = np.zeros_like(self.shift)
            self.s2 = np.zeros((x.shape[1], x.shape[1]))
        xc = x - self.shift
        self.s1 += xc.sum(axis=0)
        self.s2 += xc.T @ xc
        self.count += len(x)

    def result(self) -> Dict:
        if self.count < 2:
            raise ValueError(f"FID needs at least 2 images per side, got {self.count}")
        n = self.count
        m = self.s1 / n
        cov = (self.s2 - n * np.outer(m, m)) / (n - 1)
        return {"mu": self.shift + m, "sigma": (cov + cov.T) / 2, "n": np.int64(n)}


def _sqrt_psd(mat: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(mat)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """Tr((sigma1 sigma2)^1/2) for symmetric PSD matrices, in float64."""
    a = _sqrt_psd(np.asarray(sigma1, np.float64))
    m = a @ np.asarray(sigma2, np.float64) @ a
    w = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sqrt(np.clip(w, 0, None)).sum())


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2), float64."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"feature dims differ: mu {mu1.shape} vs {mu2.shape}, sigma {sigma1.shape} vs {sigma2.shape}")
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt_product(sigma1, sigma2))


def frechet_distance_from_activations(act1, act2) -> float:
    """FID from two activation matrices [N, D] (unbiased covariances), float64."""
    s = []
    for a in (act1, act2):
        acc = MomentAccumulator(len(a))
        acc.add(None, {"pool": a})
        s.append(acc.result())
    return frechet_distance(s[0]["mu"], s[0]["sigma"], s[1]["mu"], s[1]["sigma"])


class FID(Metric):
    """Registered in metrics/registry.py (direction, headline, rule keys, default size)."""

    def protocol(self, n):
        return {"metric": "fid", "n": int(n), "features": "pool", "covariance": "unbiased"}

    def accumulator(self, n, role, seed=0):
        return MomentAccumulator(n)

    def compute(self, generated, real, seed=0):
        return frechet_distance(generated["mu"], generated["sigma"], real["mu"], real["sigma"])
