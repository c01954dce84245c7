"""Load a facegan generator SavedModel: the one loader (evaluator, `facegan serve`, clients, benchmarks).

`load_generator(dir)` reads the metadata asset, loads the SavedModel and returns the class of its
`kind` (registry `LOADERS`): every object has `.kind`, `.metadata`, `.signatures` (the served
functions, exactly what TF Serving runs), `.signature_defs` and `.max_batch`; then per kind
`generate` / `sample` / `batches` (latent kinds) or `translate` (image_to_image). Calls larger
than max_batch are split into bounded signature calls. The latent kinds carry the evaluator's seed
stream (stream.py: `generated_batches`, with the seed's attribute requests for a conditional
generator); `makes` (a class attribute: "samples" or "translations") and `provides` tell a consumer
what the generator can be scored on without asking for its kind.
"""
from __future__ import annotations

import functools
import json
import os
from typing import Dict, Iterator, Mapping, Optional, Sequence, Union

import numpy as np
import tensorflow as tf

from facegan import generator as contract
from facegan.generator.stream import SAMPLES, TRANSLATIONS, SeedStream


def read_metadata(export_dir: str) -> dict:
    """assets/facegan_metadata.json of a generator SavedModel; FileNotFoundError naming the path."""
    path = os.path.join(export_dir, "assets", contract.METADATA_ASSET)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{path}: not a facegan generator SavedModel (no metadata asset)")
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


class Generator:
    """A loaded generator SavedModel (subclasses add the methods of their kind)."""

    kind = ""
    required = ()          # signatures the kind must have
    makes = SAMPLES        # what the evaluator scores: the seed's samples, or translations of images

    def __init__(self, export_dir: str, metadata: dict, model):
        self.export_dir, self.metadata, self.model = export_dir, metadata, model
        self.signatures = dict(model.signatures)
        missing = [s for s in self.required if s not in self.signatures]
        if missing:
            raise ValueError(f"{export_dir}: {self.kind} generator SavedModel lacks the signature(s) {missing}")
        self.resolution = int(metadata["resolution"])
        self.max_batch = int(metadata.get("max_batch", contract.DEFAULT_MAX_BATCH))

    @functools.cached_property
    def signature_defs(self) -> dict:
        """name -> SignatureDef proto (what GetModelMetadata returns)."""
        from tensorflow.core.protobuf import saved_model_pb2
        sm = saved_model_pb2.SavedModel()
        with tf.io.gfile.GFile(os.path.join(self.export_dir, "saved_model.pb"), "rb") as f:
            sm.ParseFromString(f.read())
        return dict(sm.meta_graphs[0].signature_def)

    def _call(self, signature: str, **inputs) -> Dict[str, np.ndarray]:
        out = self.signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()})
        return {k: v.numpy() for k, v in out.items()}

    def _chunks(self, n: int):
        return range(0, n, self.max_batch)

    def _empty(self) -> np.ndarray:
        return np.zeros([0, self.resolution, self.resolution, 3], np.uint8)


def _truncation(truncation) -> np.float32:
    t = float(truncation)
    if not 0.0 < t <= 1.0:
        raise ValueError(f"truncation must be in (0, 1], got {truncation!r}")
    return np.float32(t)


class LatentGenerator(SeedStream, Generator):
    """`unconditional`: images from latents z or from a seed (the seed's stream: stream.py)."""

    kind = contract.UNCONDITIONAL
    required = (contract.SIGNATURE_DEFAULT, contract.SIGNATURE_GENERATE, contract.SIGNATURE_SAMPLE)

    def __init__(self, export_dir, metadata, model):
        super().__init__(export_dir, metadata, model)
        self.z_dim = int(metadata["z_dim"])

    def _stream_batch(self, seed, start, num, requests):
        if requests is not None:     # a conditional generator: its requests, through `generate`
            return super()._stream_batch(seed, start, num, requests)
        # the in-graph `sample` stream (the signature a server runs), in bounded calls
        parts = [self.sample_range(seed, start + i, min(self.max_batch, num - i)) for i in self._chunks(num)]
        return np.concatenate(parts) if parts else self._empty()

    # the attribute hook: unconditional models take none
    def _attribute_rows(self, attributes, n: int) -> dict:
        if attributes is not None:
            raise ValueError(f"{self.export_dir} is an unconditional generator: it takes no attributes")
        return {}

    def _truncation_cutoff(self, truncation_cutoff) -> Optional[np.int32]:
        """A per-request cutoff (W-space generators only), checked against [0, num_ws]."""
        if truncation_cutoff is None:
            return None
        if contract.SIGNATURE_SAMPLE_CUTOFF not in self.signatures:
            raise ValueError(f"{self.export_dir}: this generator takes no per-request truncation cutoff "
                             f"(no {contract.SIGNATURE_SAMPLE_CUTOFF} signature: not a W-space generator, "
                             "or exported before the cutoff signatures)")
        num_ws = int(self.metadata["num_ws"])
        if not 0 <= int(truncation_cutoff) <= num_ws:
            raise ValueError(f"truncation_cutoff must be in [0, {num_ws}] (layers < cutoff are truncated), "
                             f"got {truncation_cutoff}")
        return np.int32(truncation_cutoff)

    def generate(self, z, truncation: float = 1.0, *, attributes=None, truncation_cutoff=None) -> np.ndarray:
        """uint8 [N, R, R, 3] for latents z [N, z_dim] (any N; split into bounded batches).
        truncation_cutoff (W-space generators): psi on the layers < it, instead of the export's."""
        z = np.asarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must have shape [N, {self.z_dim}], got {list(z.shape)}")
        t = _truncation(truncation)
        cutoff = self._truncation_cutoff(truncation_cutoff)
        attrs = self._attribute_rows(attributes, len(z))
        out = []
        for i in self._chunks(len(z)):
            part = {"z": z[i:i + self.max_batch], **{k: v[i:i + self.max_batch] for k, v in attrs.items()}}
            if cutoff is not None:
                out.append(self._call(contract.SIGNATURE_GENERATE_CUTOFF, truncation=t, truncation_cutoff=cutoff,
                                      **part)["images"])
            elif t == 1.0:
                out.append(self._call(contract.SIGNATURE_DEFAULT, **part)["images"])
            else:
                out.append(self._call(contract.SIGNATURE_GENERATE, truncation=t, **part)["images"])
        return np.concatenate(out) if out else self._empty()

    def sample_range(self, seed: int, start: int, num: int, truncation: float = 1.0, png: bool = False, *,
                     attributes=None, truncation_cutoff=None):
        """Rows [start, start + num) of the seed's deterministic stream (num <= max_batch)."""
        extra = {k: tf.constant(v[0]) for k, v in self._attribute_rows(attributes, 1).items()}
        fn = self.model.sample_range
        cutoff = self._truncation_cutoff(truncation_cutoff)
        if cutoff is not None:
            fn, extra = self.model.sample_range_cutoff, {**extra, "truncation_cutoff": tf.constant(cutoff)}
        res = fn(seed=tf.constant(int(seed), tf.int64), start=tf.constant(int(start), tf.int64),
                 num=tf.constant(int(num), tf.int32), truncation=tf.constant(_truncation(truncation)), **extra)
        return (res["images"].numpy(), res["png"].numpy()) if png else res["images"].numpy()

    def sample(self, num: int, seed: int, truncation: float = 1.0, *, attributes=None,
               truncation_cutoff=None) -> np.ndarray:
        """uint8 [num, R, R, 3]: identical to the `sample` signature for the same seed (to
        `sample_cutoff` with truncation_cutoff)."""
        if int(num) < 1:
            raise ValueError(f"num must be >= 1, got {num}")
        return np.concatenate(list(self.batches(int(num), self.max_batch, seed, truncation, attributes=attributes,
                                                truncation_cutoff=truncation_cutoff)))

    def batches(self, total: int, batch_size: int, seed: int, truncation: float = 1.0, *,
                attributes=None, truncation_cutoff=None) -> Iterator[np.ndarray]:
        """Yield uint8 batches covering `total` images of the seed's stream (last may be short)."""
        if total < 0 or batch_size < 1:
            raise ValueError(f"need total >= 0 and batch_size >= 1, got total={total} batch_size={batch_size}")
        batch_size = min(int(batch_size), self.max_batch)
        for start in range(0, int(total), batch_size):
            yield self.sample_range(seed, start, min(batch_size, total - start), truncation, attributes=attributes,
                                    truncation_cutoff=truncation_cutoff)


    @property
    def w_space(self) -> bool:
        """True for StyleGAN generators: truncation is psi in W, and `style_mix` exists."""
        return self.metadata.get("truncation") == contract.TRUNCATION_W

    def style_mix(self, seed_a: int, seed_b: int, num: int, crossover: int, truncation: float = 1.0,
                  truncation_cutoff: Optional[int] = None) -> np.ndarray:
        """uint8 [num, R, R, 3]: row i of seed_a's stream on layers < crossover, seed_b's on the rest;
        truncation_cutoff (psi on the layers below it) calls `style_mix_cutoff`."""
        if contract.SIGNATURE_STYLE_MIX not in self.signatures:
            raise ValueError(f"{self.export_dir}: this generator has no W space, so no style mixing "
                             f"(architecture {self.metadata.get('architecture', 'unknown')})")
        layers = int(self.metadata.get("num_ws", 1 << 30))
        if not 1 <= int(num) <= self.max_batch or not 0 <= int(crossover) <= layers:
            raise ValueError(f"style_mix needs 1 <= num <= {self.max_batch} and crossover >= 0, at most {layers} "
                             f"(the number of layers), got {num}, {crossover}")
        inputs = dict(seed_a=np.int64(seed_a), seed_b=np.int64(seed_b), num=np.int32(num),
                      crossover=np.int32(crossover), truncation=_truncation(truncation))
        if truncation_cutoff is None:
            return self._call(contract.SIGNATURE_STYLE_MIX, **inputs)["images"]
        cutoff = self._truncation_cutoff(truncation_cutoff)
        if contract.SIGNATURE_STYLE_MIX_CUTOFF not in self.signatures:
            raise ValueError(f"{self.export_dir}: exported before per-request cutoffs in style mixing "
                             f"(no {contract.SIGNATURE_STYLE_MIX_CUTOFF} signature); re-export it")
        return self._call(contract.SIGNATURE_STYLE_MIX_CUTOFF, truncation_cutoff=cutoff, **inputs)["images"]


class ConditionalGenerator(LatentGenerator):
    """`conditional`: latents plus an attribute vector (names and order in `.attributes`)."""

    kind = contract.CONDITIONAL

    def __init__(self, export_dir, metadata, model):
        super().__init__(export_dir, metadata, model)
        self.attributes = list(metadata["attributes"])
        self.conditioning = self.attributes      # the seed's requests condition on these (stream.py)
        self.attribute_range = tuple(metadata.get("attribute_range", contract.DEFAULT_ATTRIBUTE_RANGE))

    def attribute_vector(self, values: Union[Mapping[str, float], Sequence[float]]) -> np.ndarray:
        """float32 [A] from {name: value} (unnamed attributes = the range's low end) or a sequence."""
        if isinstance(values, Mapping):
            unknown = sorted(set(values) - set(self.attributes))
            if unknown:
                raise ValueError(f"unknown attribute(s) {unknown}; this generator knows {self.attributes}")
            return np.asarray([values.get(a, self.attribute_range[0]) for a in self.attributes], np.float32)
        return np.asarray(values, np.float32)

    def _attribute_rows(self, attributes, n: int) -> dict:
        if attributes is None:
            raise ValueError(f"a conditional generator needs attributes ({', '.join(self.attributes)})")
        a = self.attribute_vector(attributes)
        if a.ndim == 1:
            a = np.broadcast_to(a, (n, a.shape[0]))
        if a.shape != (n, len(self.attributes)):
            raise ValueError(f"attributes must have shape [{len(self.attributes)}] or [{n}, {len(self.attributes)}] "
                             f"({', '.join(self.attributes)}), got {list(a.shape)}")
        return {"attributes": np.ascontiguousarray(a)}


class ImageToImageGenerator(Generator):
    """`image_to_image`: uint8 images in, uint8 images out, per named direction."""

    kind = contract.IMAGE_TO_IMAGE
    required = (contract.SIGNATURE_DEFAULT, contract.SIGNATURE_TRANSLATE)
    makes = TRANSLATIONS
    provides = frozenset({TRANSLATIONS})

    def __init__(self, export_dir, metadata, model):
        super().__init__(export_dir, metadata, model)
        self.directions = list(metadata["directions"])
        self.default_direction = metadata.get("default_direction", self.directions[0])
        self.input_resolution = int(metadata["input_resolution"])

    def translate(self, images, direction: Optional[str] = None) -> np.ndarray:
        """uint8 [N, R, R, 3] from uint8 [N, Ri, Ri, 3] (any N; split into bounded batches)."""
        direction = direction or self.default_direction
        if direction not in self.directions:
            raise ValueError(f"unknown direction {direction!r}; this model translates {self.directions}")
        images = np.asarray(images)
        r = self.input_resolution
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (r, r, 3):
            raise ValueError(f"images must be uint8 [N, {r}, {r}, 3], got {images.dtype} {list(images.shape)}")
        name = contract.translate_signature(direction)
        out = [self._call(name, images=images[i:i + self.max_batch])["images"] for i in self._chunks(len(images))]
        return np.concatenate(out) if out else self._empty()


# kind -> loaded-model class
LOADERS = {c.kind: c for c in (LatentGenerator, ConditionalGenerator, ImageToImageGenerator)}


def generator_class(metadata: dict) -> type:
    """The loaded-model class of a metadata's `kind` (ValueError naming an unknown kind)."""
    kind = metadata.get("kind", contract.UNCONDITIONAL)   # contract version 1 had one kind only
    if kind not in LOADERS:
        raise ValueError(f"unknown generator kind {kind!r} in {contract.METADATA_ASSET} "
                         f"(this facegan knows {', '.join(contract.KINDS)})")
    return LOADERS[kind]


def load_generator(export_dir: str) -> Generator:
    """The generator SavedModel at export_dir as the class of its kind (ValueError naming what is wrong)."""
    metadata = read_metadata(export_dir)
    kind = metadata.get("kind", contract.UNCONDITIONAL)   # contract version 1 had one kind only
    if kind not in LOADERS:
        raise ValueError(f"{export_dir}: unknown generator kind {kind!r} in {contract.METADATA_ASSET} "
                         f"(this facegan knows {', '.join(contract.KINDS)})")
    return LOADERS[kind](export_dir, metadata, tf.saved_model.load(export_dir))
