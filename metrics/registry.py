"""The metric registry: one `Metric` subclass per name, validated before any work starts.

A metric is split into
- an *accumulator* per side ("generated", "real") that consumes uint8 image batches and/or their
  extractor features as they stream past and keeps only what the distance needs (running moments,
  descriptors, per-pair scores); its `result()` is a dict of numpy arrays (the real side's result
  is what the statistics cache stores), and
- `compute(generated_result, real_result)`: the distance on those features.

`evaluate()` (metrics/evaluate.py) drives them: one pass over the generator, at most one pass over
the real images, one feature-extractor forward per batch shared by every feature metric.
"""
from __future__ import annotations

from typing import Dict, Optional, Type

METRICS: Dict[str, "Metric"] = {}


def protocol_count(n: int) -> str:
    """10000 -> '10k', 16384 -> '16k' (PGGAN's binary k), 50000 -> '50k', 500 -> '500'."""
    n = int(n)
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024}k"
    return str(n)


class Accumulator:
    """Consumes batches for one side; `result()` returns a dict of numpy arrays (or scalars)."""

    needs_images = False
    needs_features = False

    def __init__(self, n: int):
        self.n = int(n)       # images wanted; extra images are ignored
        self.count = 0

    @property
    def full(self) -> bool:
        return self.count >= self.n

    def add(self, images, features) -> None:
        raise NotImplementedError

    def result(self) -> Dict:
        raise NotImplementedError

    def close(self) -> None:
        pass


class Metric:
    """Base class. Subclasses set the class attributes and implement the three methods."""

    name: str = ""
    default_num: int = 10_000       # images (pairs for ms_ssim) of the protocol
    uses_extractor: bool = False    # True: results depend on the feature extractor
    needs_real: bool = True
    cacheable: bool = True          # real-side result small enough to store as npz

    def images_needed(self, n: int) -> int:
        """Generated images needed for `n` (pairs metrics need 2n)."""
        return int(n)

    def key(self, n: int, comparable: bool = True) -> str:
        """The protocol-named result key, e.g. `fid10k`; `_random` marks a non-comparable extractor."""
        k = f"{self.name}{protocol_count(n)}"
        return k if comparable or not self.uses_extractor else k + "_random"

    def protocol(self, n: int) -> Dict:
        """Parameters that define the protocol (part of the real-statistics cache key)."""
        return {"metric": self.name, "n": int(n)}

    def accumulator(self, n: int, role: str, seed: int = 0) -> Accumulator:
        raise NotImplementedError

    def compute(self, generated: Dict, real: Optional[Dict], seed: int = 0):
        raise NotImplementedError


def register_metric(cls: Type[Metric] = None, *, name: Optional[str] = None):
    """Class decorator (or call) adding a Metric subclass to METRICS under its name."""

    def deco(c):
        key = name or c.name
        if not key:
            raise ValueError(f"metric class {c.__name__} has no name")
        if key in METRICS and type(METRICS[key]) is not c:
            raise ValueError(f"metric {key!r} is already registered by {type(METRICS[key]).__name__}")
        inst = c()
        inst.name = key
        METRICS[key] = inst
        return c

    return deco(cls) if cls is not None else deco


def validate_metric_names(names) -> list:
    """A list of known metric names; ValueError listing the known ones on any unknown name."""
    if isinstance(names, str):
        names = [s for s in (p.strip() for p in names.split(",")) if s]
    names = list(names)
    if not names:
        raise ValueError(f"no metrics requested; known metrics: {', '.join(sorted(METRICS))}")
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        extra = " ('memorization' is its own function: metrics.memorization)" if "memorization" in unknown else ""
        raise ValueError(f"unknown metric(s) {', '.join(map(repr, unknown))}; known metrics: "
                         f"{', '.join(sorted(METRICS))}{extra}")
    seen = []
    for n in names:
        if n not in seen:
            seen.append(n)
    return seen
