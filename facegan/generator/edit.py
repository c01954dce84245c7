"""A new version of a latent generator SavedModel with attribute directions: the `edit` signatures.

`export_edit_version(source_dir, export_dir, names, directions)` loads a generator SavedModel of
the `unconditional` kind (DCGAN-family or StyleGAN2), keeps every signature it serves unchanged,
and adds:

| signature          | inputs                                                                   | outputs          |
|--------------------|--------------------------------------------------------------------------|------------------|
| `edit`             | `z` f32 [N, Z], `attribute` str [K], `strength` f32 [K], `truncation` f32 [] | `images`     |
| `edit_sample`      | `num` i32 [], `seed` i64 [], `attribute`, `strength`, `truncation`        | `images`, `png`  |
| `attribute_names`  | none                                                                     | `attribute_names` str [A] |
| `facegan_metadata` | none                                                                     | `metadata` str [1] (the metadata asset's JSON) |

An edit moves each latent along the unit normals of the attributes' linear boundaries
(InterFaceGAN, Shen et al. 2020, eq. 2: "x_edit = G(z + alpha n)"). In z (space "z"): z' = z +
sum_k strength_k n_{attribute_k}, then the model's own `generate` (so truncation and its checks
are the source's: psi scales z for DCGAN-family models, psi acts in W for StyleGAN2). In W (space
"w", StyleGAN2; the normals are [A, w_dim]): w = mapping(z), w' = w + sum_k strength_k n_k, then
truncation about w_avg as `generate` applies it (w_avg + psi (w' - w_avg) on the layers below the
export's cutoff) and the synthesis network. The W edit needs the Keras generator (`net`, rebuilt
by facegan.project.rebuild_generator), whose weights the version then holds a second time beside
the source's (the source's signatures keep their own). `edit_sample` takes z from
the seed's stream (`sample_latents`), so strength 0 is exactly `sample`. Refused in the graph
(INVALID_ARGUMENT on any server): an attribute not in `attribute_names`, `attribute` and
`strength` of different lengths, a NaN or Inf strength; the source's checks still apply (N,
truncation, non-finite z).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from facegan import generator as contract
from facegan.generator.ops import sample_latents, to_uint8

SIGNATURE_EDIT = "edit"
SIGNATURE_EDIT_SAMPLE = "edit_sample"
SIGNATURE_METADATA = contract.SIGNATURE_METADATA


class _EditModule(tf.Module):
    def __init__(self, base, names: Sequence[str], directions: np.ndarray, z_dim: int, metadata_json: str,
                 net=None, max_batch: int = 0, truncation_cutoff: int = 0):
        super().__init__(name="facegan_generator")
        self.base = base                          # the loaded source: its variables and functions
        self.max_batch, self.truncation_cutoff = int(max_batch), int(truncation_cutoff)
        self._w_edit = None
        if net is not None:
            # W edits run the Keras StyleGAN2 generator's mapping and synthesis. Only its variables
            # are tracked (the traced functions capture them); tracking the Keras model itself would
            # make the saver serialise every Keras call variant (slow to save and to load).
            self.w_variables = list(net.variables)
            cutoff = None if self.truncation_cutoff == 0 else self.truncation_cutoff

            def w_edit(z, offset, truncation):
                w = net.map(z) + offset[None]
                return to_uint8(net.synthesis(net.truncate(w, truncation, cutoff)))
            self._w_edit = w_edit
        self.names_list = [str(n) for n in names]
        self.names = tf.constant(self.names_list, tf.string)
        self.directions = tf.constant(np.asarray(directions, np.float32))   # [A, Z] unit normals
        self.z_dim = int(z_dim)
        self.metadata_json = tf.constant(metadata_json)
        for hidden in ("sample_range", "sample_range_cutoff"):   # load_generator's seeded paths
            if hasattr(base, hidden):
                setattr(self, hidden, getattr(base, hidden))
        z = tf.TensorSpec([None, self.z_dim], tf.float32, name="z")
        a = tf.TensorSpec([None], tf.string, name="attribute")
        s = tf.TensorSpec([None], tf.float32, name="strength")
        t = tf.TensorSpec([], tf.float32, name="truncation")
        self.edit = tf.function(self._edit, input_signature=[z, a, s, t])
        self.edit_sample = tf.function(self._edit_sample, input_signature=[
            tf.TensorSpec([], tf.int32, name="num"), tf.TensorSpec([], tf.int64, name="seed"), a, s, t])
        self.attribute_names = tf.function(lambda: {"attribute_names": self.names}, input_signature=[])
        # [1], not a scalar: a lone string scalar output trips some REST front ends.
        self.facegan_metadata = tf.function(lambda: {"metadata": self.metadata_json[None]}, input_signature=[])

    def _offset(self, attribute, strength):
        """[Z]: sum_k strength_k * direction(attribute_k), after the graph's checks."""
        match = tf.equal(attribute[:, None], self.names[None, :])            # [K, A]
        checks = [
            tf.debugging.Assert(tf.equal(tf.size(attribute), tf.size(strength)),
                                ["attribute and strength must have the same length (one strength per name)"]),
            tf.debugging.Assert(tf.reduce_all(tf.reduce_any(match, axis=1)),
                                [f"unknown attribute: this model edits {', '.join(self.names_list)}"]),
            tf.debugging.Assert(tf.reduce_all(tf.math.is_finite(strength)),
                                ["strength must be finite (it holds NaN or Inf)"])]
        with tf.control_dependencies(checks):
            coef = tf.linalg.matvec(tf.cast(match, tf.float32), tf.identity(strength), transpose_a=True)   # [A]
            return tf.linalg.matvec(self.directions, coef, transpose_a=True)                           # [Z]

    def _edit(self, z, attribute, strength, truncation):
        if self._w_edit is None:
            return {"images": self.base.generate(z + self._offset(attribute, strength)[None], truncation)["images"]}
        # W: the source's request checks (same messages), then move w and truncate about w_avg.
        n = tf.shape(z)[0]
        checks = [tf.debugging.Assert(tf.logical_and(truncation > 0.0, truncation <= 1.0),
                                      ["truncation must be in (0, 1]"]),
                  tf.debugging.Assert(tf.logical_and(n >= 1, n <= self.max_batch),
                                      [f"z's batch size N must be between 1 and {self.max_batch} images per request"]),
                  tf.debugging.Assert(tf.reduce_all(tf.math.is_finite(z)), ["z must be finite (it holds NaN or Inf)"])]
        with tf.control_dependencies(checks):
            z = tf.identity(z)
        return {"images": self._w_edit(z, self._offset(attribute, strength), truncation)}

    def _edit_sample(self, num, seed, attribute, strength, truncation):
        ok = tf.debugging.Assert(num >= 1, ["num must be >= 1"])
        with tf.control_dependencies([ok]):
            z = sample_latents(seed, tf.constant(0, tf.int64), num, self.z_dim)
        images = self._edit(z, attribute, strength, truncation)["images"]
        png = tf.map_fn(tf.io.encode_png, images, fn_output_signature=tf.TensorSpec([], tf.string))
        return {"images": images, "png": png}


def next_version_dir(model_dir: str) -> str:
    """<base>/<max version + 1> for a version directory <base>/<N>."""
    base = os.path.dirname(os.path.abspath(model_dir.rstrip("/")))
    versions = [int(d) for d in os.listdir(base) if d.isdigit()]
    return os.path.join(base, str(max(versions, default=0) + 1))


def export_edit_version(source_dir: str, export_dir: str, names: Sequence[str], directions,
                        extra_metadata: Optional[dict] = None, space: str = "z", net=None) -> str:
    """Write `source_dir`'s model plus the edit signatures (module docstring) to `export_dir`.

    names: attribute names, one per row of directions [A, Z] (space "z") or [A, w_dim] (space "w",
    with `net` the source's Keras StyleGAN2 generator); each row is normalised to unit length."""
    from facegan.generator.load import read_metadata
    meta = read_metadata(source_dir)
    kind = meta.get("kind", contract.UNCONDITIONAL)
    if kind != contract.UNCONDITIONAL:
        raise ValueError(f"{source_dir}: attribute directions edit an unconditional generator's latent; "
                         f"this one is {kind}")
    names = [str(n) for n in names]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"attribute names must be non-empty and distinct, got {names}")
    z_dim = int(meta["z_dim"])
    if space not in ("z", "w"):
        raise ValueError(f"space must be z or w, got {space!r}")
    if space == "w" and (net is None or meta.get("truncation") != contract.TRUNCATION_W):
        raise ValueError(f"{source_dir}: W edits need a W-space (StyleGAN2) generator and its Keras network (net=)")
    dim = z_dim if space == "z" else int(net.w_avg.shape[0])
    d = np.asarray(directions, np.float64)
    if d.shape != (len(names), dim) or not np.all(np.isfinite(d)):
        raise ValueError(f"directions must be finite [{len(names)}, {dim}] (space {space}), got {d.shape}")
    norms = np.linalg.norm(d, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError("a direction is all zeros")
    d = (d / norms).astype(np.float32)
    if tf.io.gfile.exists(os.path.join(export_dir, "saved_model.pb")):
        raise ValueError(f"{export_dir} already holds a SavedModel; export to a new directory")

    base = tf.saved_model.load(source_dir)
    signatures = dict(base.signatures)
    meta = dict(meta, **(extra_metadata or {}))
    meta["edit"] = dict(meta.get("edit") or {}, attributes=names, space=space, source=os.path.basename(
        os.path.abspath(source_dir.rstrip("/"))))
    sig_text = dict(meta.get("signatures") or {})
    sig_text.update({
        SIGNATURE_EDIT: {"inputs": {"z": f"float32 [N, {z_dim}]", "attribute": "string [K]",
                                    "strength": "float32 [K]", "truncation": "float32 []"},
                         "outputs": {"images": "uint8 [N, R, R, 3]"}},
        SIGNATURE_EDIT_SAMPLE: {"inputs": {"num": "int32 []", "seed": "int64 []", "attribute": "string [K]",
                                           "strength": "float32 [K]", "truncation": "float32 []"},
                                "outputs": {"images": "uint8 [N, R, R, 3]", "png": "string [N]"}},
        contract.SIGNATURE_ATTRIBUTE_NAMES: {"inputs": {}, "outputs": {"attribute_names": f"string [{len(names)}]"}},
        SIGNATURE_METADATA: {"inputs": {}, "outputs": {"metadata": "string [1]"}}})
    meta["signatures"] = sig_text
    text = json.dumps(meta, indent=2, sort_keys=True, default=str)
    module = _EditModule(base, names, d, z_dim, text, net=net if space == "w" else None,
                         max_batch=int(meta.get("max_batch") or contract.DEFAULT_MAX_BATCH),
                         truncation_cutoff=int(meta.get("truncation_cutoff") or 0))
    signatures.update({SIGNATURE_EDIT: module.edit.get_concrete_function(),
                       SIGNATURE_EDIT_SAMPLE: module.edit_sample.get_concrete_function(),
                       contract.SIGNATURE_ATTRIBUTE_NAMES: module.attribute_names.get_concrete_function(),
                       SIGNATURE_METADATA: module.facegan_metadata.get_concrete_function()})
    tmp = tempfile.mkdtemp(prefix="facegan_meta_")
    try:
        path = os.path.join(tmp, contract.METADATA_ASSET)
        with open(path, "w") as f:
            f.write(text)
        module.metadata_asset = tf.saved_model.Asset(path)
        tf.saved_model.save(module, export_dir, signatures=signatures)
        # The source's asset comes along under the same name (the saver renames ours `..._1`);
        # every copy gets the new text, so load_generator reads the new metadata.
        assets = os.path.join(export_dir, "assets")
        for name in tf.io.gfile.listdir(assets):
            if name.startswith(contract.METADATA_ASSET):
                with tf.io.gfile.GFile(os.path.join(assets, name), "w") as f:
                    f.write(text)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return export_dir
