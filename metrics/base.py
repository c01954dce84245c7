"""The base classes of a metric implementation (registered by name in metrics/registry.py).

`Metric.calc(G, data, num, opts)` is the one contract (metrics/calc.py describes G, `EvalData` and
`CalcOptions`). Its default is the streaming implementation: a subclass provides `accumulator(n,
role, seed)` (one per side, "generated" / "real", consuming uint8 image batches and/or extractor
features as they stream past) and `compute(generated_result, real_result, seed)` (the distance),
and `calc_metrics` runs every streaming request of a call in one `metrics.evaluate` pass. A metric
that is not a function of the shared image stream sets `streaming = False` and implements `calc`
(and `unavailable`, when it needs more than the registry's `inputs` say).
TensorFlow-free.
"""
from __future__ import annotations

from typing import Dict, Optional

from facegan.metrics.registry import MetricRequest, MetricSpec


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
    """Base class of an implementation; `spec` (and request `options`) are set by `get_metric`.

    The contract is `calc`; the default implementation streams (`accumulator` + `compute`)."""

    spec: MetricSpec
    streaming = True       # computed from the shared image stream by metrics.evaluate

    def __init__(self, spec: MetricSpec, options: Optional[Dict] = None):
        self.spec = spec
        self.options = dict(options or {})

    name = property(lambda self: self.spec.name)
    default_num = property(lambda self: self.spec.default_num)
    uses_extractor = property(lambda self: self.spec.uses_extractor)
    needs_real = property(lambda self: self.spec.needs_real)
    cacheable = property(lambda self: self.spec.cacheable)

    @property
    def view(self) -> Optional[int]:
        """The extractor input view: None (the images as they are) or a downscale size."""
        return self.options.get("downscale")

    def images_needed(self, n: int) -> int:
        """Generated images needed for `n` (pairs metrics need 2n)."""
        return 2 * int(n) if self.spec.unit == "pairs" else int(n)

    def key(self, n: int, comparable: bool = True) -> str:
        return self.spec.key(n, comparable, self.options)

    def base_protocol(self, n: int) -> Dict:
        """`protocol(n)` plus the request options (part of the real-statistics cache key)."""
        p = dict(self.protocol(n))
        p.update(self.options)
        return p

    def protocol(self, n: int) -> Dict:
        """Parameters that define the protocol (part of the real-statistics cache key)."""
        return {"metric": self.name, "n": int(n)}

    @property
    def request(self) -> "MetricRequest":
        return MetricRequest(self.name, tuple(sorted(self.options.items())))

    def unavailable(self, G, data) -> Optional[str]:
        """Why this metric cannot be computed from generator G and `data` (None: it can)."""
        provides = frozenset(getattr(G, "provides", ()))
        missing = sorted(set(self.spec.inputs) - provides)
        if missing:
            return (f"needs a generator that provides {' and '.join(missing)} (this one provides "
                    f"{', '.join(sorted(provides)) or 'nothing'})")
        if self.needs_real and getattr(data, "real_batches", None) is None:
            return "needs real images to compare with"
        if self.spec.needs_examples and not getattr(data, "examples_uri", None):
            return "needs an Examples artifact (its train and eval splits)"
        return None

    def calc(self, G, data, num: int, opts) -> Dict:
        """{result key: value, "protocols": {result key: protocol}} for `num` images (pairs) of G
        against `data` (metrics.calc.EvalData) with `opts` (metrics.calc.CalcOptions).
        Streaming metrics: one metrics.evaluate pass (calc_metrics shares it between requests)."""
        from facegan.metrics.calc import calc_metrics
        return calc_metrics([self.request], G, data, num_images=num, opts=opts)

    def accumulator(self, n: int, role: str, seed: int = 0) -> Accumulator:
        raise NotImplementedError

    def compute(self, generated: Dict, real: Optional[Dict], seed: int = 0):
        raise NotImplementedError
