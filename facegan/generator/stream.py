"""The seed's generated stream: what every consumer that scores a latent generator reads.

Row i of a seed's stream is the latent `sample_latents(seed, i)` (ops.py) and, for a generator that
conditions on attributes, the request `requested_attributes(seed, i, A)`: each attribute 0/1 with
probability 1/2, a pure function of (seed, i). The generator owns its request stream, so a metric
asks for `G.generated_batches(n, batch_size, seed)` (images) or `with_requests=True` ((images,
requests) pairs; requests None without conditioning) and never needs to know the generator's kind.

`SeedStream` is the mixin that gives a generator that stream from `z_dim`, `conditioning` (attribute
names, in vector order; empty = none), `max_batch` and `_stream_batch(seed, start, num, requests)`
(default: `generate(latents, attributes=requests)`). The loaded SavedModel classes (load.py) and
`SampledGenerator` (a generator being trained, seen through a sampling function) use it.

`provides` names what a generator can be scored from: "samples" (the seed's stream), "conditioning"
(requests behind each sample). The metric registry (facegan.metrics.registry, MetricSpec.inputs)
states which of these a metric reads. TensorFlow is imported on first use only.
"""
from __future__ import annotations

import functools
from typing import Callable, FrozenSet, Iterator, Optional, Sequence

import numpy as np

SAMPLES, CONDITIONING, TRANSLATIONS = "samples", "conditioning", "translations"


def requested_attributes(seed: int, start: int, num: int, num_attributes: int) -> np.ndarray:
    """float32 [num, A] 0/1: rows [start, start + num) of the seed's request stream (row i depends
    only on (seed, i), so any batch split gives the same requests)."""
    rows = [np.random.default_rng([int(seed), 7919, int(i)]).integers(0, 2, int(num_attributes))
            for i in range(int(start), int(start) + int(num))]
    return np.asarray(rows, np.float32).reshape(int(num), int(num_attributes))


@functools.lru_cache(maxsize=None)
def _compiled_latents():
    """`sample_latents` as one compiled function (eager map_fn is slow for the training loop's
    repeated evaluations); the same stateless values."""
    import tensorflow as tf

    from facegan.generator.ops import sample_latents

    @tf.function(reduce_retracing=True)
    def latents(seed, start, num, z_dim: int):
        return sample_latents(seed, start, num, z_dim)
    return latents


class SeedStream:
    """Mixin: the seed's stream of a latent generator (see the module docstring)."""

    conditioning: Sequence[str] = ()
    z_dim: int
    max_batch: int = 1 << 30

    @property
    def provides(self) -> FrozenSet[str]:
        return frozenset({SAMPLES, CONDITIONING} if self.conditioning else {SAMPLES})

    def requests(self, seed: int, start: int, num: int) -> Optional[np.ndarray]:
        """The conditioning rows [start, start + num) of the seed's stream (None: no conditioning)."""
        if not self.conditioning:
            return None
        return requested_attributes(seed, start, num, len(self.conditioning))

    def _stream_batch(self, seed: int, start: int, num: int, requests: Optional[np.ndarray]) -> np.ndarray:
        from facegan.generator.ops import sample_latents
        z = sample_latents(int(seed), int(start), int(num), self.z_dim).numpy()
        return self.generate(z) if requests is None else self.generate(z, attributes=requests)

    def generated_batches(self, total: int, batch_size: int, seed: int, *,
                          with_requests: bool = False) -> Iterator:
        """uint8 batches [B, R, R, 3] covering rows [0, total) of the seed's stream (the last may be
        short); `with_requests`: (images, requests) pairs."""
        if total < 0 or batch_size < 1:
            raise ValueError(f"need total >= 0 and batch_size >= 1, got total={total} batch_size={batch_size}")
        for start in range(0, int(total), int(batch_size)):
            n = min(int(batch_size), int(total) - start)
            req = self.requests(seed, start, n)
            images = self._stream_batch(seed, start, n, req)
            yield (images, req) if with_requests else images

    def sample_stream(self, num: int, seed: int) -> np.ndarray:
        """uint8 [num, R, R, 3]: rows [0, num) of the seed's stream, in one array."""
        return np.concatenate(list(self.generated_batches(int(num), min(int(num), self.max_batch), seed)))


class SampledGenerator(SeedStream):
    """A generator seen through `sample_fn(z)` / `sample_fn(z, attributes)` -> uint8 images (e.g. the
    networks being trained): the same stream as the exported SavedModel's, so metrics during training
    score exactly the images the evaluator scores on the export."""

    def __init__(self, sample_fn: Callable, z_dim: int, resolution: int, conditioning: Sequence[str] = ()):
        self.sample_fn, self.z_dim, self.resolution = sample_fn, int(z_dim), int(resolution)
        self.conditioning = list(conditioning)

    def generate(self, z, attributes=None) -> np.ndarray:
        return np.asarray(self.sample_fn(z) if attributes is None else self.sample_fn(z, attributes))

    def _stream_batch(self, seed, start, num, requests):
        import tensorflow as tf
        z = _compiled_latents()(tf.constant(seed, tf.int64), tf.constant(start, tf.int64),
                                tf.constant(num, tf.int64), self.z_dim)
        return self.generate(z, requests)
