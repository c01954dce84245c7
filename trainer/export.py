"""Export a trained generator as a SavedModel that TF Serving serves, and load it back.

The exported SavedModel (see facegan/schema.py) is the one contract between training,
evaluation and serving; the evaluator and `facegan serve` load generators only through
`load_generator` / these signatures, exactly as TF Serving would.

Signatures (all outputs uint8 [0, 255] RGB):

| signature         | inputs                                              | outputs                          |
|-------------------|-----------------------------------------------------|----------------------------------|
| `serving_default` | `z` float32 [N, z_dim]                              | `images` uint8 [N, R, R, 3]      |
| `generate`        | `z` float32 [N, z_dim], `truncation` float32 []     | `images` uint8 [N, R, R, 3]      |
| `sample`          | `num` int32 [], `seed` int64 [], `truncation` f32 []| `images` uint8, `png` string [N] |

"Optional truncation" on the z signature: a SignatureDef has no optional inputs (TF Serving's
Predict rejects a request whose input keys differ from the signature's), so the truncation is
expressed as a second signature: `serving_default` == `generate` with truncation = 1. Since the
truncation is a scaling of z (below), a client holding z can equally pre-scale it.

Temperature scaling (the input keeps its wire name `truncation`; psi in (0, 1]): z' = psi * z for
z ~ N(0, I), i.e. sampling the prior at temperature psi (Kingma & Dhariwal 2018, Glow). It is NOT
StyleGAN's truncation trick, which moves w toward the mean of the mapping network's W space (these
generators have no mapping network); psi = 1 is the plain prior, smaller psi trades diversity for
quality. The metadata says so: "truncation": "temperature_scaling". (BigGAN's
resample-|z|>threshold truncation is not used either: it has no "1 = off" value and needs
rejection loops in the graph.)

Determinism of `sample`: latent row i is `stateless_normal([z_dim], seed=[seed, i])`
(`sample_latents`), so the same seed gives the same images on any machine/batch split,
`sample(num=4, seed=s)` is the prefix of `sample(num=16, seed=s)`, and a client can reproduce a
seed exactly through `serving_default` (what `facegan sample` does when TF Serving's batching
refuses the scalar inputs of `sample`). The hidden function `sample_range(seed, start, num, truncation)`
(not a signature; reachable through `tf.saved_model.load`) generates rows [start, start + num),
which `LoadedGenerator.batches` uses to stream any number of images in bounded batches.

Request bounds are in the graph too (so real TF Serving also refuses, with INVALID_ARGUMENT):
1 <= num <= max_batch, N <= max_batch for z, 0 < truncation <= 1.

The metadata JSON (assets/facegan_metadata.json) carries architecture, resolution, z_dim, steps,
preset, the full config, `generator_weights` ("ema" or "raw": which weights were exported, so an
evaluation can say which it scored; a caller exporting other weights passes its own value in
`metadata`), the caller's metadata (metrics at export ...) and the signature bounds.
"""
from __future__ import annotations

import datetime
import json
import os
import shutil
import tempfile
from typing import Any, Dict, Iterator, Optional

import numpy as np
import tensorflow as tf

from facegan import schema

SIGNATURE_GENERATE = "generate"   # z + truncation (the "optional truncation" form of serving_default)
DEFAULT_MAX_BATCH = 256           # per-request image bound baked into the graph and the metadata
TRUNCATION_KIND = "temperature_scaling"   # what the `truncation` input does: z' = psi * z


def to_uint8(images: tf.Tensor) -> tf.Tensor:
    """[-1, 1] float network output -> uint8 [0, 255] (round to nearest, clipped)."""
    x = tf.cast(images, tf.float32)
    return tf.cast(tf.round(tf.clip_by_value((x + 1.0) * 127.5, 0.0, 255.0)), tf.uint8)


def sample_latents(seed, start, num, z_dim: int) -> tf.Tensor:
    """float32 [num, z_dim]: rows [start, start + num) of the seed's latent stream.

    Row i is stateless_normal([z_dim], seed=[seed, i]), so it depends only on (seed, i):
    prefix-stable and batch-split-stable. The `sample` signature runs exactly this in its graph;
    clients (serving/client.py) run it eagerly to reproduce a seed through `serving_default`.
    """
    seed = tf.cast(seed, tf.int64)
    start = tf.cast(start, tf.int64)
    rows = tf.range(start, start + tf.cast(num, tf.int64), dtype=tf.int64)
    return tf.map_fn(lambda i: tf.random.stateless_normal([z_dim], seed=tf.stack([seed, i])),
                     rows, fn_output_signature=tf.TensorSpec([z_dim], tf.float32),
                     parallel_iterations=None if tf.executing_eagerly() else 32)


class _GeneratorModule(tf.Module):
    """The serving graph around a Keras generator: latents, truncation, bounds, uint8, PNG."""

    def __init__(self, generator: tf.keras.Model, z_dim: int, max_batch: int):
        super().__init__(name="facegan_generator")
        self.generator = generator
        self.z_dim = int(z_dim)
        self.max_batch = int(max_batch)
        z_spec = tf.TensorSpec([None, self.z_dim], tf.float32, name="z")
        scalar = lambda dtype, name: tf.TensorSpec([], dtype, name=name)  # noqa: E731
        self.serve = tf.function(self._serve, input_signature=[z_spec])
        self.generate = tf.function(self._generate, input_signature=[z_spec, scalar(tf.float32, "truncation")])
        self.sample = tf.function(self._sample, input_signature=[
            scalar(tf.int32, "num"), scalar(tf.int64, "seed"), scalar(tf.float32, "truncation")])
        self.sample_range = tf.function(self._sample_range, input_signature=[
            scalar(tf.int64, "seed"), scalar(tf.int64, "start"), scalar(tf.int32, "num"),
            scalar(tf.float32, "truncation")])

    # -- graph pieces -------------------------------------------------------------------------
    def _check_truncation(self, truncation):
        # tf.debugging.Assert with string-only data adds no cond guard (no Merge nodes for
        # grappler to complain about); the message is what TF Serving returns to the client.
        return tf.debugging.Assert(tf.logical_and(truncation > 0.0, truncation <= 1.0),
                                   ["truncation must be in (0, 1]"])

    def _check_count(self, n, what):
        return tf.debugging.Assert(tf.logical_and(n >= 1, n <= self.max_batch),
                                   [f"{what} must be between 1 and {self.max_batch} images per request"])

    def _images(self, z, truncation):
        # Scale toward the prior's mean (0): see the module docstring.
        out = self.generator(z * truncation, training=False)
        return to_uint8(out)

    def _serve(self, z):
        return {"images": self._generate(z, tf.constant(1.0))["images"]}

    def _generate(self, z, truncation):
        with tf.control_dependencies([self._check_truncation(truncation),
                                      self._check_count(tf.shape(z)[0], "z's batch size N")]):
            z = tf.identity(z)
        return {"images": self._images(z, truncation)}

    def _sample_range(self, seed, start, num, truncation):
        with tf.control_dependencies([self._check_truncation(truncation), self._check_count(num, "num"),
                                      tf.debugging.Assert(start >= 0, ["start must be >= 0"])]):
            z = sample_latents(seed, start, num, self.z_dim)
        images = self._images(z, truncation)
        png = tf.map_fn(tf.io.encode_png, images, fn_output_signature=tf.TensorSpec([], tf.string))
        return {"images": images, "png": png}

    def _sample(self, num, seed, truncation):
        return self._sample_range(seed, tf.constant(0, tf.int64), num, truncation)


def _probe_shapes(generator: tf.keras.Model, cfg=None):
    """(z_dim, resolution) from the model's input/output; ValueError naming what is wrong.

    A subclassed model without symbolic inputs takes its z_dim from cfg.network.z_dim.
    """
    try:
        in_shape = generator.inputs[0].shape if generator.inputs else generator.input_shape
    except (AttributeError, ValueError, TypeError):
        in_shape = None
    if (in_shape is None or len(in_shape) != 2 or in_shape[-1] is None) and cfg is not None:
        in_shape = (None, int(cfg.network.z_dim))
    if in_shape is None or len(in_shape) != 2 or in_shape[-1] is None:
        raise ValueError(f"generator input must be z [N, z_dim] with a known z_dim, got {in_shape}")
    z_dim = int(in_shape[-1])
    out = generator(tf.zeros([1, z_dim]), training=False)
    if out.shape.rank != 4 or out.shape[-1] != 3 or out.shape[1] != out.shape[2]:
        raise ValueError(f"generator output must be [N, R, R, 3] images, got {out.shape}")
    return z_dim, int(out.shape[1])


def build_metadata(cfg, metadata: Optional[dict], z_dim: int, resolution: int, max_batch: int) -> dict:
    """The JSON written to assets/facegan_metadata.json (config fields, then caller's metadata)."""
    meta: Dict[str, Any] = {}
    if cfg is not None:
        net = cfg.network
        if int(net.z_dim) != z_dim:
            raise ValueError(f"cfg.network.z_dim is {net.z_dim} but the generator takes z of size {z_dim}")
        if int(net.resolution) != resolution:
            raise ValueError(f"cfg.network.resolution is {net.resolution} but the generator makes "
                             f"{resolution}x{resolution} images")
        meta.update(architecture=net.architecture, preset=cfg.preset, steps=cfg.run.steps,
                    ema_decay=cfg.tricks.ema_decay, default_temperature=cfg.tricks.temperature,
                    # which weights a trainer export holds (it exports the EMA generator iff one exists)
                    generator_weights="ema" if cfg.tricks.ema_decay > 0 else "raw",
                    config=cfg.to_dict())
    meta.update(metadata or {})
    meta.update(
        resolution=resolution, z_dim=z_dim, channels=3,
        latent_distribution="normal", truncation=TRUNCATION_KIND, max_batch=max_batch,
        signatures={
            schema.SIGNATURE_DEFAULT: {"inputs": {"z": f"float32 [N, {z_dim}]"},
                                       "outputs": {"images": f"uint8 [N, {resolution}, {resolution}, 3]"}},
            SIGNATURE_GENERATE: {"inputs": {"z": f"float32 [N, {z_dim}]", "truncation": "float32 []"},
                                 "outputs": {"images": f"uint8 [N, {resolution}, {resolution}, 3]"}},
            schema.SIGNATURE_SAMPLE: {"inputs": {"num": "int32 []", "seed": "int64 []", "truncation": "float32 []"},
                                      "outputs": {"images": f"uint8 [N, {resolution}, {resolution}, 3]",
                                                  "png": "string [N]"}},
        },
        exported_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        tensorflow_version=tf.__version__,
    )
    meta.setdefault("architecture", "unknown")
    return meta


def export_generator(generator: tf.keras.Model, export_dir: str, *, cfg=None, metadata: Optional[dict] = None,
                     max_batch: int = DEFAULT_MAX_BATCH) -> str:
    """Write `generator` (z [N, z_dim] -> [-1, 1] images; pass the EMA weights) as a SavedModel.

    `export_dir` may be local or any tf.io.gfile path; it must not already hold a SavedModel.
    Returns export_dir. `metadata` (steps, metrics, ...) is merged into the metadata asset.
    """
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    if tf.io.gfile.exists(os.path.join(export_dir, "saved_model.pb")):
        raise ValueError(f"{export_dir} already holds a SavedModel; export to a new directory")
    z_dim, resolution = _probe_shapes(generator, cfg)
    meta = build_metadata(cfg, metadata, z_dim, resolution, max_batch)
    module = _GeneratorModule(generator, z_dim, max_batch)
    tmp = tempfile.mkdtemp(prefix="facegan_meta_")
    try:
        meta_path = os.path.join(tmp, schema.METADATA_ASSET)
        with open(meta_path, "w") as f:
            json.dump(meta, f, indent=2, sort_keys=True, default=str)
        module.metadata_asset = tf.saved_model.Asset(meta_path)  # copied into assets/
        signatures = {
            schema.SIGNATURE_DEFAULT: module.serve.get_concrete_function(),
            SIGNATURE_GENERATE: module.generate.get_concrete_function(),
            schema.SIGNATURE_SAMPLE: module.sample.get_concrete_function(),
        }
        module.sample_range.get_concrete_function()
        tf.saved_model.save(module, export_dir, signatures=signatures)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return export_dir


def read_metadata(export_dir: str) -> dict:
    path = os.path.join(export_dir, "assets", schema.METADATA_ASSET)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{path}: not a facegan generator SavedModel (no metadata asset)")
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


class LoadedGenerator:
    """A generator SavedModel loaded for in-process use (evaluator, server, benchmarks)."""

    def __init__(self, export_dir: str):
        self.export_dir = export_dir
        self.metadata = read_metadata(export_dir)
        self._model = tf.saved_model.load(export_dir)
        sigs = self._model.signatures
        for name in (schema.SIGNATURE_DEFAULT, schema.SIGNATURE_SAMPLE):
            if name not in sigs:
                raise ValueError(f"{export_dir}: SavedModel lacks the {name!r} signature")
        self.signatures = sigs
        self.z_dim = int(self.metadata["z_dim"])
        self.resolution = int(self.metadata["resolution"])
        self.max_batch = int(self.metadata.get("max_batch", DEFAULT_MAX_BATCH))

    def _truncation(self, truncation) -> float:
        t = float(truncation)
        if not 0.0 < t <= 1.0:
            raise ValueError(f"truncation must be in (0, 1], got {truncation!r}")
        return t

    def generate(self, z, truncation: float = 1.0) -> np.ndarray:
        """uint8 [N, R, R, 3] for latents z [N, z_dim] (any N; split into bounded batches)."""
        z = np.asarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must have shape [N, {self.z_dim}], got {list(z.shape)}")
        t = self._truncation(truncation)
        out = []
        for i in range(0, len(z), self.max_batch):
            zb = tf.constant(z[i:i + self.max_batch])
            if t == 1.0:
                res = self.signatures[schema.SIGNATURE_DEFAULT](z=zb)
            else:
                res = self.signatures[SIGNATURE_GENERATE](z=zb, truncation=tf.constant(t))
            out.append(res["images"].numpy())
        if not out:
            return np.zeros([0, self.resolution, self.resolution, 3], np.uint8)
        return np.concatenate(out)

    def sample_range(self, seed: int, start: int, num: int, truncation: float = 1.0, png: bool = False):
        """Rows [start, start + num) of the seed's deterministic stream (num <= max_batch)."""
        res = self._model.sample_range(seed=tf.constant(int(seed), tf.int64), start=tf.constant(int(start), tf.int64),
                                       num=tf.constant(int(num), tf.int32),
                                       truncation=tf.constant(self._truncation(truncation)))
        return (res["images"].numpy(), res["png"].numpy()) if png else res["images"].numpy()

    def sample(self, num: int, seed: int, truncation: float = 1.0) -> np.ndarray:
        """uint8 [num, R, R, 3]: identical to the `sample` signature for the same seed."""
        if int(num) < 1:
            raise ValueError(f"num must be >= 1, got {num}")
        return np.concatenate(list(self.batches(int(num), self.max_batch, seed, truncation)))

    def batches(self, total: int, batch_size: int, seed: int, truncation: float = 1.0) -> Iterator[np.ndarray]:
        """Yield uint8 batches covering `total` images of the seed's stream (last may be short)."""
        if total < 0 or batch_size < 1:
            raise ValueError(f"need total >= 0 and batch_size >= 1, got total={total} batch_size={batch_size}")
        batch_size = min(int(batch_size), self.max_batch)
        for start in range(0, int(total), batch_size):
            yield self.sample_range(seed, start, min(batch_size, total - start), truncation)


def load_generator(export_dir: str) -> LoadedGenerator:
    return LoadedGenerator(export_dir)
