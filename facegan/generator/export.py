"""Export a Keras generator of any kind as the facegan SavedModel (see facegan/generator/__init__.py).

One `tf.Module` per kind wraps the Keras model(s) with the contract's graph: latents, truncation,
request bounds and input checks (tf.debugging.Assert, so TF Serving refuses bad requests too),
uint8 outputs, PNG. `export_generator` picks the module by kind (registry `MODULES`), probes the
model's shapes, writes the signatures and the metadata asset (also served by `facegan_metadata`).
"""
from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import tempfile
from typing import Any, Dict, Mapping, Optional, Sequence

import tensorflow as tf

from facegan import __version__ as facegan_version
from facegan import generator as contract
from facegan.generator.ops import from_uint8, sample_latents, to_uint8


def _scalar(dtype, name):
    return tf.TensorSpec([], dtype, name=name)


def _guard(x, checks):
    """x, but only after every check (an Assert op) has passed."""
    with tf.control_dependencies(checks):
        return tf.identity(x)


def _model_inputs(model) -> list:
    try:
        return list(model.inputs) if model.inputs else []
    except (AttributeError, ValueError, TypeError):
        return []


def _check_images_out(out, what: str) -> int:
    if out.shape.rank != 4 or out.shape[-1] != 3 or out.shape[1] != out.shape[2]:
        raise ValueError(f"{what} output must be [N, R, R, 3] images, got {out.shape}")
    return int(out.shape[1])


class _Module(tf.Module):
    """Shared request checks; subclasses define `signatures()` and `describe()`."""

    kind = ""

    def __init__(self, max_batch: int):
        super().__init__(name="facegan_generator")
        self.max_batch = int(max_batch)

    # tf.debugging.Assert with string-only data adds no cond guard (no Merge nodes for grappler to
    # complain about); the message is what TF Serving returns to the client.
    def _check_count(self, n, what):
        return tf.debugging.Assert(tf.logical_and(n >= 1, n <= self.max_batch),
                                   [f"{what} must be between 1 and {self.max_batch} images per request"])

    @staticmethod
    def _check_truncation(truncation):
        return tf.debugging.Assert(tf.logical_and(truncation > 0.0, truncation <= 1.0),
                                   ["truncation must be in (0, 1]"])

    @staticmethod
    def _check_finite(x, what):
        return tf.debugging.Assert(tf.reduce_all(tf.math.is_finite(x)),
                                   [f"{what} must be finite (it holds NaN or Inf)"])

    def signatures(self) -> Dict[str, Any]:
        raise NotImplementedError

    def input_notes(self, signature: str) -> Dict[str, str]:
        """Text appended to an input's shape in the metadata (value ranges, names); the shape itself
        is always the signature's."""
        return {}

    def describe(self) -> Dict[str, Any]:
        raise NotImplementedError

    def trace_hidden(self):
        """Trace the functions saved with the model but not served (reachable by tf.saved_model.load)."""


class _LatentModule(_Module):
    """Unconditional: z -> images; `sample` draws z from a seed (see sample_latents)."""

    kind = contract.UNCONDITIONAL
    conditional = False

    def __init__(self, generator, z_dim: int, resolution: int, max_batch: int):
        super().__init__(max_batch)
        self.generator, self.z_dim, self.resolution = generator, int(z_dim), int(resolution)
        z = tf.TensorSpec([None, self.z_dim], tf.float32, name="z")
        t = _scalar(tf.float32, "truncation")
        a = self._attribute_specs()
        self.serve = tf.function(self._serve, input_signature=[z, *a[:1]])
        self.generate = tf.function(self._generate, input_signature=[z, *a[:1], t])
        self.sample = tf.function(self._sample, input_signature=[
            _scalar(tf.int32, "num"), _scalar(tf.int64, "seed"), t, *a[1:]])
        self.sample_range = tf.function(self._sample_range, input_signature=[
            _scalar(tf.int64, "seed"), _scalar(tf.int64, "start"), _scalar(tf.int32, "num"), t, *a[1:]])

    @classmethod
    def build(cls, model, max_batch, z_dim=None, **_):
        inputs = _model_inputs(model)
        if inputs and inputs[0].shape.rank == 2 and inputs[0].shape[-1] is not None:
            z_dim = int(inputs[0].shape[-1])
        if not z_dim:
            raise ValueError("generator input must be z [N, z_dim] with a known z_dim "
                             f"(got {[i.shape for i in inputs] or 'no symbolic inputs'}; pass z_dim=)")
        resolution = _check_images_out(model(tf.zeros([1, int(z_dim)]), training=False), "generator")
        return cls(model, z_dim, resolution, max_batch)

    def _attribute_specs(self):
        return []

    def _net(self, z, attributes):
        return self.generator(z, training=False)

    def _checks(self, z, attributes, truncation, n, what):
        return [self._check_truncation(truncation), self._check_count(n, what), self._check_finite(z, "z")]

    def _images(self, z, attributes, truncation, n, what):
        checks = self._checks(z, attributes, truncation, n, what)
        z = _guard(z, checks)
        if attributes is not None:
            attributes = _guard(attributes, checks)
        # Scale toward the prior's mean (0): see the package docstring.
        return to_uint8(self._net(z * truncation, attributes))

    def _serve(self, z, *attributes):
        return {"images": self._generate(z, *attributes, tf.constant(1.0))["images"]}

    def _generate(self, z, *rest):
        *attributes, truncation = rest
        a = attributes[0] if attributes else None
        return {"images": self._images(z, a, truncation, tf.shape(z)[0], "z's batch size N")}

    def _sample_range(self, seed, start, num, truncation, *attributes):
        return self._seeded(seed, start, num, truncation, attributes)

    def _seeded(self, seed, start, num, truncation, attributes, **image_args):
        """Rows [start, start + num) of the seed's stream as images and PNGs (image_args: to `_images`)."""
        start = _guard(start, [tf.debugging.Assert(start >= 0, ["start must be >= 0"]),
                               self._check_count(num, "num")])
        z = sample_latents(seed, start, num, self.z_dim)
        a = tf.tile(attributes[0][None], [num, 1]) if attributes else None
        images = self._images(z, a, truncation, num, "num", **image_args)
        png = tf.map_fn(tf.io.encode_png, images, fn_output_signature=tf.TensorSpec([], tf.string))
        return {"images": images, "png": png}

    def _sample(self, num, seed, truncation, *attributes):
        return self._sample_range(seed, tf.constant(0, tf.int64), num, truncation, *attributes)

    def signatures(self):
        return {contract.SIGNATURE_DEFAULT: self.serve.get_concrete_function(),
                contract.SIGNATURE_GENERATE: self.generate.get_concrete_function(),
                contract.SIGNATURE_SAMPLE: self.sample.get_concrete_function()}

    def trace_hidden(self):
        self.sample_range.get_concrete_function()

    def describe(self):
        return {"resolution": self.resolution, "z_dim": self.z_dim, "latent_distribution": "normal",
                "truncation": contract.TRUNCATION_KIND}


class _StyleModule(_LatentModule):
    """Unconditional with a W space (StyleGAN): truncation is psi in W toward the tracked w_avg
    (on layers < cutoff), plus the `style_mix` signature. The model must offer
    `model(z, training=False, psi=, cutoff=, z2=, crossover=)`, `num_ws` and `w_avg_updates`
    (facegan.trainer.networks.stylegan2.StyleGenerator)."""

    def __init__(self, generator, z_dim, resolution, max_batch, truncation_cutoff: int = 0):
        super().__init__(generator, z_dim, resolution, max_batch)
        self.num_ws, self.truncation_cutoff = int(generator.num_ws), int(truncation_cutoff)
        if not 0 <= self.truncation_cutoff <= self.num_ws:
            raise ValueError(f"truncation_cutoff must be in [0, {self.num_ws}] (0 = every layer), "
                             f"got {truncation_cutoff}")
        self.style_mix = tf.function(self._style_mix, input_signature=[
            _scalar(tf.int64, "seed_a"), _scalar(tf.int64, "seed_b"), _scalar(tf.int32, "num"),
            _scalar(tf.int32, "crossover"), _scalar(tf.float32, "truncation")])
        # Per-request cutoff: new signatures, so `sample`/`generate` keep their inputs (a SignatureDef
        # has no optional inputs, and existing clients send exactly the old keys).
        t, c = _scalar(tf.float32, "truncation"), _scalar(tf.int32, "truncation_cutoff")
        self.generate_cutoff = tf.function(self._generate_cutoff, input_signature=[
            tf.TensorSpec([None, self.z_dim], tf.float32, name="z"), t, c])
        self.sample_cutoff = tf.function(self._sample_cutoff, input_signature=[
            _scalar(tf.int32, "num"), _scalar(tf.int64, "seed"), t, c])
        self.sample_range_cutoff = tf.function(self._sample_range_cutoff, input_signature=[
            _scalar(tf.int64, "seed"), _scalar(tf.int64, "start"), _scalar(tf.int32, "num"), t, c])
        self.style_mix_cutoff = tf.function(self._style_mix_cutoff, input_signature=[
            _scalar(tf.int64, "seed_a"), _scalar(tf.int64, "seed_b"), _scalar(tf.int32, "num"),
            _scalar(tf.int32, "crossover"), t, c])

    @staticmethod
    def accepts(model) -> bool:
        return all(hasattr(model, a) for a in ("num_ws", "w_avg", "style_mix"))

    @classmethod
    def build(cls, model, max_batch, z_dim=None, truncation_cutoff=0, **_):
        z_dim = int(z_dim or model.cfg.z_dim)
        resolution = _check_images_out(model(tf.zeros([1, z_dim]), training=False), "generator")
        return cls(model, z_dim, resolution, max_batch, truncation_cutoff)

    def _cutoff(self):
        return None if self.truncation_cutoff == 0 else self.truncation_cutoff

    def _images(self, z, attributes, truncation, n, what, cutoff=None):
        """cutoff: None = the export-time cutoff; a tensor = the request's (layers < cutoff get psi)."""
        checks = self._checks(z, attributes, truncation, n, what)
        cutoff = self._request_cutoff(cutoff, checks)
        z = _guard(z, checks)
        return to_uint8(self.generator(z, training=False, psi=truncation, cutoff=cutoff))

    def _generate_cutoff(self, z, truncation, truncation_cutoff):
        return {"images": self._images(z, None, truncation, tf.shape(z)[0], "z's batch size N", truncation_cutoff)}

    def _sample_range_cutoff(self, seed, start, num, truncation, truncation_cutoff):
        return self._seeded(seed, start, num, truncation, (), cutoff=truncation_cutoff)

    def _sample_cutoff(self, num, seed, truncation, truncation_cutoff):
        return self._sample_range_cutoff(seed, tf.constant(0, tf.int64), num, truncation, truncation_cutoff)

    def _request_cutoff(self, cutoff, checks):
        """The cutoff to apply: the export-time one for None, else the request's tensor, whose
        bounds check is appended to `checks`."""
        if cutoff is None:
            return self._cutoff()
        checks.append(tf.debugging.Assert(tf.logical_and(cutoff >= 0, cutoff <= self.num_ws), [
            f"truncation_cutoff must be in [0, {self.num_ws}] (layers < cutoff are truncated: "
            f"0 = none, {self.num_ws} = all)"]))
        return cutoff

    def _style_mix(self, seed_a, seed_b, num, crossover, truncation, cutoff=None):
        """cutoff: None = the export-time cutoff; a tensor = the request's (style_mix_cutoff)."""
        n = self.num_ws
        checks = [self._check_truncation(truncation), self._check_count(num, "num"),
                  tf.debugging.Assert(tf.logical_and(crossover >= 0, crossover <= n), [
                      f"crossover must be in [0, {n}], the number of layers (layers < crossover take "
                      f"seed_a's styles: 0 = seed_b's image, {n} = seed_a's)"])]
        cutoff = self._request_cutoff(cutoff, checks)
        num = _guard(num, checks)
        za = sample_latents(seed_a, tf.constant(0, tf.int64), num, self.z_dim)
        zb = sample_latents(seed_b, tf.constant(0, tf.int64), num, self.z_dim)
        images = to_uint8(self.generator(za, training=False, z2=zb, crossover=crossover, psi=truncation,
                                         cutoff=cutoff))
        png = tf.map_fn(tf.io.encode_png, images, fn_output_signature=tf.TensorSpec([], tf.string))
        return {"images": images, "png": png}

    def _style_mix_cutoff(self, seed_a, seed_b, num, crossover, truncation, truncation_cutoff):
        return self._style_mix(seed_a, seed_b, num, crossover, truncation, cutoff=truncation_cutoff)

    def signatures(self):
        return {**super().signatures(), contract.SIGNATURE_STYLE_MIX: self.style_mix.get_concrete_function(),
                contract.SIGNATURE_GENERATE_CUTOFF: self.generate_cutoff.get_concrete_function(),
                contract.SIGNATURE_SAMPLE_CUTOFF: self.sample_cutoff.get_concrete_function(),
                contract.SIGNATURE_STYLE_MIX_CUTOFF: self.style_mix_cutoff.get_concrete_function()}

    def trace_hidden(self):
        super().trace_hidden()
        self.sample_range_cutoff.get_concrete_function()

    def describe(self):
        return {**super().describe(), "truncation": contract.TRUNCATION_W, "num_ws": self.num_ws,
                "truncation_cutoff": self.truncation_cutoff,
                "w_avg_updates": int(self.generator.w_avg_updates.numpy())}


class _ConditionalModule(_LatentModule):
    """Conditional: (z, attribute vector) -> images; names and order of the vector in the metadata."""

    kind = contract.CONDITIONAL

    def __init__(self, generator, z_dim, resolution, max_batch, attributes: Sequence[str],
                 attribute_range=contract.DEFAULT_ATTRIBUTE_RANGE):
        self.attributes = [str(a) for a in attributes]
        self.attribute_range = (float(attribute_range[0]), float(attribute_range[1]))
        super().__init__(generator, z_dim, resolution, max_batch)

    @classmethod
    def build(cls, model, max_batch, z_dim=None, attributes=None,
              attribute_range=contract.DEFAULT_ATTRIBUTE_RANGE, **_):
        if not attributes:
            raise ValueError("a conditional generator needs attributes= (the names, in vector order)")
        if len(set(attributes)) != len(attributes):
            raise ValueError(f"attribute names repeat: {list(attributes)}")
        lo, hi = attribute_range
        if not float(lo) < float(hi):
            raise ValueError(f"attribute_range must be (low, high) with low < high, got {attribute_range}")
        inputs = _model_inputs(model)
        if len(inputs) != 2:
            raise ValueError(f"a conditional generator takes [z, attributes], got inputs {inputs}")
        if inputs[0].shape[-1] is not None:
            z_dim = int(inputs[0].shape[-1])
        if inputs[1].shape[-1] != len(attributes):
            raise ValueError(f"the generator takes {inputs[1].shape[-1]} attributes but {len(attributes)} "
                             f"names were given: {list(attributes)}")
        if not z_dim:
            raise ValueError("generator input z must have a known z_dim")
        out = model([tf.zeros([1, int(z_dim)]), tf.zeros([1, len(attributes)])], training=False)
        return cls(model, z_dim, _check_images_out(out, "generator"), max_batch, attributes, attribute_range)

    def _attribute_specs(self):
        # The real shapes, [N, A] per image and [A] for `sample`'s one vector; the graph checks the
        # rows against N, the values against the range, and names the attributes in its message.
        k = len(self.attributes)
        return [tf.TensorSpec([None, k], tf.float32, name="attributes"),
                tf.TensorSpec([k], tf.float32, name="attributes")]

    def _checks(self, z, attributes, truncation, n, what):
        lo, hi = self.attribute_range
        k = len(self.attributes)
        shape = tf.shape(attributes)
        return super()._checks(z, attributes, truncation, n, what) + [
            tf.debugging.Assert(tf.logical_and(tf.equal(shape[-1], k), tf.equal(shape[0], n)),
                                [f"attributes must be {k} values per image ({', '.join(self.attributes)})"]),
            # NaN fails both comparisons, so non-finite values are refused here too.
            tf.debugging.Assert(tf.reduce_all(tf.logical_and(attributes >= lo, attributes <= hi)),
                                [f"attribute values must be in [{lo:g}, {hi:g}] (no NaN or Inf)"])]

    def _sample_range(self, seed, start, num, truncation, attributes):
        k = len(self.attributes)
        attributes = _guard(attributes, [tf.debugging.Assert(
            tf.equal(tf.size(attributes), k),
            [f"attributes must be {k} values ({', '.join(self.attributes)})"])])
        return super()._sample_range(seed, start, num, truncation, attributes)

    def input_notes(self, signature):
        lo, hi = self.attribute_range
        return {"attributes": f" in [{lo:g}, {hi:g}]: {', '.join(self.attributes)}"}

    def _net(self, z, attributes):
        return self.generator([z, tf.ensure_shape(attributes, [None, len(self.attributes)])], training=False)

    def describe(self):
        return {**super().describe(), "attributes": self.attributes, "attribute_range": list(self.attribute_range)}

    # A network client (TF Serving's API has no access to the metadata asset) reads the
    # attribute names, in vector order, from this input-less signature.
    def _attribute_names(self):
        return {"attribute_names": tf.constant(self.attributes, tf.string)}

    def signatures(self):
        names = tf.function(self._attribute_names, input_signature=[])
        return {**super().signatures(), contract.SIGNATURE_ATTRIBUTE_NAMES: names.get_concrete_function()}


class _TranslateModule(_Module):
    """Image-to-image: uint8 images -> uint8 images, one `translate_<direction>` per direction."""

    kind = contract.IMAGE_TO_IMAGE

    def __init__(self, translators: Mapping[str, Any], input_resolution: int, resolution: int, max_batch: int):
        super().__init__(max_batch)
        self.translators = dict(translators)
        self.directions = list(translators)
        self.input_resolution, self.resolution = int(input_resolution), int(resolution)
        # The real shape [N, Ri, Ri, 3] (GetModelMetadata shows it); the graph checks it again, with
        # the batch bound, for servers that do not check shapes against the signature.
        r = self.input_resolution
        spec = tf.TensorSpec([None, r, r, 3], tf.uint8, name="images")
        self.translate_fns = {d: tf.function(lambda images, d=d: self._translate(d, images), input_signature=[spec])
                              for d in self.directions}

    @classmethod
    def build(cls, model, max_batch, **_):
        translators = dict(model) if isinstance(model, Mapping) else {contract.DEFAULT_DIRECTION: model}
        if not translators:
            raise ValueError("an image-to-image export needs at least one direction")
        sizes = set()
        for name, m in translators.items():
            if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
                raise ValueError(f"direction name {name!r} must be lower-case letters, digits and _")
            inputs = _model_inputs(m)
            shape = inputs[0].shape if len(inputs) == 1 else None
            if shape is None or shape.rank != 4 or shape[1] is None or shape[1] != shape[2] or shape[3] != 3:
                raise ValueError(f"direction {name!r}: the translator must take images [N, R, R, 3] with a "
                                 f"known R, got {shape}")
            out = m(tf.zeros([1, *shape[1:]]), training=False)
            sizes.add((int(shape[1]), _check_images_out(out, f"direction {name!r}")))
        if len(sizes) != 1:
            raise ValueError(f"every direction must map the same input size to the same output size, got {sizes}")
        (in_res, out_res), = sizes
        return cls(translators, in_res, out_res, max_batch)

    def _translate(self, direction, images):
        r, shape = self.input_resolution, tf.shape(images)
        dims = tf.concat([shape, tf.zeros([4], tf.int32)], 0)[:4]   # safe to index at any rank
        ok = tf.reduce_all([tf.equal(tf.rank(images), 4), dims[0] >= 1, dims[0] <= self.max_batch,
                            tf.equal(dims[1], r), tf.equal(dims[2], r), tf.equal(dims[3], 3)])
        images = _guard(images, [tf.debugging.Assert(ok, [
            f"images must be uint8 [N, {r}, {r}, 3] RGB with 1 <= N <= {self.max_batch}"])])
        x = from_uint8(tf.ensure_shape(images, [None, r, r, 3]))
        return {"images": to_uint8(self.translators[direction](x, training=False))}

    def signatures(self):
        fns = {contract.translate_signature(d): f.get_concrete_function() for d, f in self.translate_fns.items()}
        default = fns[contract.translate_signature(self.directions[0])]
        return {contract.SIGNATURE_DEFAULT: default, contract.SIGNATURE_TRANSLATE: default, **fns}

    def describe(self):
        return {"resolution": self.resolution, "input_resolution": self.input_resolution,
                "directions": self.directions, "default_direction": self.directions[0]}


# kind -> the module that builds its graph
MODULES = {m.kind: m for m in (_LatentModule, _ConditionalModule, _TranslateModule)}


def _spec_text(spec) -> str:
    if spec.shape.rank is None:
        return f"{spec.dtype.name} any shape"
    dims = ["N" if i == 0 and d is None else "?" if d is None else str(d) for i, d in enumerate(spec.shape)]
    return f"{spec.dtype.name} [{', '.join(dims)}]"


def build_metadata(module: _Module, signatures: Mapping[str, Any], metadata: Optional[dict]) -> dict:
    """The JSON of assets/facegan_metadata.json: the caller's fields, then the contract's (which win)."""
    meta: Dict[str, Any] = dict(metadata or {})
    meta.update(module.describe())
    meta.update(
        kind=module.kind, contract_version=contract.CONTRACT_VERSION, channels=3, max_batch=module.max_batch,
        # Written from the concrete functions themselves (what GetModelMetadata reports), so the
        # text cannot drift from the graph; notes (ranges, names) only follow an input it has.
        signatures={name: {"inputs": {s.name: _spec_text(s) + module.input_notes(name).get(s.name, "")
                                      for s in tf.nest.flatten(fn.structured_input_signature)
                                      if isinstance(s, tf.TensorSpec)},
                           "outputs": {k: _spec_text(t) for k, t in fn.structured_outputs.items()}}
                    for name, fn in signatures.items()},
        exported_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        tensorflow_version=tf.__version__, facegan_version=facegan_version,
    )
    meta.setdefault("architecture", "unknown")
    return meta


def metadata_signature_text() -> Dict[str, Any]:
    """The `facegan_metadata` signature as the metadata's `signatures` entry describes it."""
    return {"inputs": {}, "outputs": {"metadata": "string [1]"}}


def metadata_function(text: str):
    """The input-less `facegan_metadata` signature: the metadata JSON `text` as string [1] (not a
    scalar: a lone string scalar output trips some REST front ends)."""
    value = tf.constant(text)
    return tf.function(lambda: {"metadata": value[None]}, input_signature=[])


def export_generator(model, export_dir: str, *, kind: str = contract.UNCONDITIONAL, metadata: Optional[dict] = None,
                     max_batch: int = contract.DEFAULT_MAX_BATCH, validate=None, **kind_args) -> str:
    """Write `model` as a facegan generator SavedModel of `kind`; returns export_dir.

    model: unconditional: z [N, Z] -> [-1, 1] images (pass the EMA weights); conditional:
    [z, attributes] -> images, with kind_args attributes=[names in vector order] and optionally
    attribute_range=(low, high); image_to_image: a model [-1, 1] images -> images, or a mapping
    {direction name: model} (CycleGAN: both directions). kind_args z_dim= serves subclassed models
    without symbolic inputs. `export_dir` (local or any tf.io.gfile path) must not hold a SavedModel.
    `validate(metadata)`, if given, may raise before anything is written (trainer: config match).
    """
    if kind not in MODULES:
        raise ValueError(f"unknown generator kind {kind!r}; choose one of {', '.join(contract.KINDS)}")
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    if tf.io.gfile.exists(os.path.join(export_dir, "saved_model.pb")):
        raise ValueError(f"{export_dir} already holds a SavedModel; export to a new directory")
    module_cls = MODULES[kind]
    if kind == contract.UNCONDITIONAL and _StyleModule.accepts(model):   # W-space generator
        module_cls = _StyleModule
    module = module_cls.build(model, max_batch, **kind_args)
    signatures = module.signatures()
    module.trace_hidden()
    meta = build_metadata(module, signatures, metadata)
    meta["signatures"][contract.SIGNATURE_METADATA] = metadata_signature_text()
    if validate is not None:
        validate(meta)
    text = json.dumps(meta, indent=2, sort_keys=True, default=str)
    module.facegan_metadata = metadata_function(text)
    signatures[contract.SIGNATURE_METADATA] = module.facegan_metadata.get_concrete_function()
    tmp = tempfile.mkdtemp(prefix="facegan_meta_")
    try:
        meta_path = os.path.join(tmp, contract.METADATA_ASSET)
        with open(meta_path, "w") as f:
            f.write(text)
        module.metadata_asset = tf.saved_model.Asset(meta_path)  # copied into assets/
        tf.saved_model.save(module, export_dir, signatures=signatures)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return export_dir
