"""Inception Score (Salimans et al. 2016, arXiv:1606.03498): exp(E_x KL(p(y|x) || p(y))).

The standard protocol: the generated images are cut into 10 consecutive splits, the score is
computed per split (p(y) = the split's mean prediction) and reported as mean and std (ddof=0, as
the original code) over splits. Streamed: per split we keep only sum_x p(y|x) and
sum_x sum_y p log p, in float64 from the extractor's pre-softmax logits, the same quantities
TF-GAN's `classifier_score_from_logits_streaming` keeps. No real images are needed.
"""
from __future__ import annotations

from typing import Dict

import numpy as np

from facegan.metrics.base import Accumulator, Metric

NUM_SPLITS = 10


class SplitLogitsAccumulator(Accumulator):
    needs_features = True

    def __init__(self, n: int, splits: int = NUM_SPLITS):
        super().__init__(n)
        if n < splits:
            raise ValueError(f"Inception Score with {splits} splits needs at least {splits} images, got n={n}")
        self.splits = splits
        # split s holds images [s*n//splits, (s+1)*n//splits), as in the original IS code
        self.bounds = (np.arange(splits + 1) * n) // splits
        self.psum = None
        self.plogp = np.zeros(splits)
        self.counts = np.zeros(splits, np.int64)

    def add(self, images, features):
        if "logits" not in features:
            raise ValueError("this feature extractor has no classifier head; the Inception Score needs "
                             "the include-top InceptionV3 weights (not the notop file)")
        z = np.asarray(features["logits"][: self.n - self.count], np.float64)
        if not len(z):
            return
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        s = e.sum(axis=1, keepdims=True)
        p, logp = e / s, z - np.log(s)
        if self.psum is None:
            self.psum = np.zeros((self.splits, p.shape[1]))
        plogp = np.einsum("ij,ij->i", p, logp)
        # splits are contiguous ranges: sum each batch slice that falls into one split
        start = self.count
        while start < self.count + len(p):
            s = int(np.searchsorted(self.bounds, start, side="right") - 1)
            stop = min(self.count + len(p), int(self.bounds[s + 1]))
            lo, hi = start - self.count, stop - self.count
            self.psum[s] += p[lo:hi].sum(axis=0)
            self.plogp[s] += plogp[lo:hi].sum()
            self.counts[s] += hi - lo
            start = stop
        self.count += len(p)

    def result(self) -> Dict:
        return {"psum": self.psum, "plogp": self.plogp, "counts": self.counts}


def score_from_sums(psum, plogp, counts) -> Dict:
    """Per-split IS from streamed sums; {"mean", "std", "splits"}."""
    counts = np.asarray(counts)
    if (counts < 1).any():
        raise ValueError(f"an Inception Score split is empty (counts {counts.tolist()}); feed at least n images")
    q = psum / counts[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        qlogq = np.where(q > 0, q * np.log(np.where(q > 0, q, 1)), 0.0).sum(axis=1)
    scores = np.exp(plogp / counts - qlogq)
    return {"mean": float(scores.mean()), "std": float(scores.std()), "splits": int(len(scores))}


def inception_score_from_logits(logits, splits: int = NUM_SPLITS) -> Dict:
    acc = SplitLogitsAccumulator(len(logits), splits)
    acc.add(None, {"logits": logits})
    return score_from_sums(**acc.result())


class InceptionScore(Metric):
    """Registered in metrics/registry.py (direction, headline, rule keys, default size)."""

    def protocol(self, n):
        return {"metric": "is", "n": int(n), "splits": NUM_SPLITS}

    def accumulator(self, n, role, seed=0):
        return SplitLogitsAccumulator(n)

    def compute(self, generated, real, seed=0):
        return score_from_sums(**generated)
