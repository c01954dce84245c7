"""The generator contract: one SavedModel layout for every kind of generator, one loader.

Training exports through `export_generator`; the evaluator, `facegan serve` (and so TF Serving's
behaviour), `facegan sample` and the benchmarks load through `load_generator`, which returns an
object with `.kind`, `.metadata` and the methods of its kind. This package is TensorFlow-free at
import: `export_generator`, `load_generator`, `read_metadata`, `sample_latents`, `to_uint8`,
`from_uint8` are imported by name on first use (PEP 562 `__getattr__`), so `import facegan` and
the REST client stay light.

Three kinds (metadata `kind`; a SavedModel without it is `unconditional`, the first kind):

| kind             | signature         | inputs                                                  | outputs                 |
|------------------|-------------------|---------------------------------------------------------|-------------------------|
| `unconditional`  | `serving_default` | `z` f32 [N, Z]                                          | `images` u8 [N, R, R, 3]|
|                  | `generate`        | `z` f32 [N, Z], `truncation` f32 []                     | `images`                |
|                  | `sample`          | `num` i32 [], `seed` i64 [], `truncation` f32 []        | `images`, `png` str [N] |
| `conditional`    | `serving_default` | `z` f32 [N, Z], `attributes` f32 [N, A]                 | `images`                |
|                  | `generate`        | `z`, `attributes`, `truncation` f32 []                  | `images`                |
|                  | `sample`          | `num`, `seed`, `truncation`, `attributes` f32 [A]       | `images`, `png`         |
|                  | `attribute_names` | none                                                    | `attribute_names` str [A] |
| `image_to_image` | `translate_<dir>` | `images` u8 [N, Ri, Ri, 3] (one per direction)          | `images` u8 [N, R, R, 3]|
|                  | `translate`, `serving_default` | the default (first) direction              | `images`                |

Z = z_dim, A = len(metadata["attributes"]) (names in the order of the vector), R = output
resolution, Ri = metadata["input_resolution"]. A SignatureDef has no optional inputs (TF Serving's
Predict rejects a request whose input keys differ), so "z with an optional truncation" is the second
signature `generate`; `serving_default` is `generate` at truncation 1. Every output is uint8 RGB.

Refused inside the graph (INVALID_ARGUMENT from any server, TF Serving included): N or `num`
outside [1, max_batch]; truncation outside (0, 1]; z with NaN or Inf; an attribute vector of the
wrong length, with NaN/Inf, or with values outside metadata["attribute_range"] (default [0, 1]);
translate inputs that are not [N, Ri, Ri, 3] (dtype is fixed by the signature: uint8).

Latents are exact: row i of a seed's stream is `stateless_normal([Z], seed=[seed, i])`
(`sample_latents`), so the same seed gives the same images on any machine and batch split,
`sample(num=4)` is the prefix of `sample(num=16)`, and a client can reproduce a seed through
`serving_default` (what `facegan sample` does when TF Serving's batching refuses `sample`'s scalar
inputs). Truncation is psi-scaling toward the prior's mean, z' = psi * z (mean 0): the "truncation
trick" in the form of Karras et al. 2019 (StyleGAN), for a Gaussian prior the sampling temperature
of Kingma & Dhariwal 2018 (Glow); psi = 1 is no truncation. (BigGAN's resampling variant has no
"1 = off" value and needs rejection loops in the graph.)

W-space generators (StyleGAN/StyleGAN2, metadata `truncation: "w_space"`) keep the
`unconditional` signatures, but `truncation` is psi applied in W (w' = w_avg + psi (w - w_avg), on
the layers below metadata `truncation_cutoff`, 0 = all; Karras et al. 2019), and add
`style_mix`: `seed_a`, `seed_b` i64 [], `num` i32 [], `crossover` i32 [], `truncation` f32 [] ->
`images`, `png`: image i uses row i of seed_a's stream on layers < crossover and row i of seed_b's
on the rest (0 = seed_b's image, num_ws = seed_a's; above num_ws is INVALID_ARGUMENT in the graph). Metadata adds num_ws, truncation_cutoff and
w_avg_updates (how many training batches the exported w_avg averaged: "w_avg's step"). A per-request
cutoff has its own signatures (the export-time one stays the default of `sample`/`generate`):

| `generate_cutoff` | `z` f32 [N, Z], `truncation` f32 [], `truncation_cutoff` i32 []        | `images`         |
| `sample_cutoff`   | `num` i32 [], `seed` i64 [], `truncation` f32 [], `truncation_cutoff` i32 [] | `images`, `png` |
| `style_mix_cutoff` | `style_mix`'s inputs + `truncation_cutoff` i32 []                          | `images`, `png` |

psi is applied on the layers < truncation_cutoff, as StyleGAN does: 0 = no layer (no truncation),
num_ws = every layer (the whole-W truncation); outside [0, num_ws] is INVALID_ARGUMENT in the graph.
(The export-time metadata `truncation_cutoff` keeps its meaning, 0 = every layer.)

The evaluator's stream (stream.py): a latent generator owns its seed's stream, `generated_batches(n,
batch_size, seed)`, with the seed's attribute requests (`requested_attributes`) for a conditional one,
so metrics never branch on the kind; `SampledGenerator` gives a generator being trained that stream.

Metadata (assets/facegan_metadata.json): kind, contract_version, resolution, channels, max_batch,
signatures (shapes as text) and per kind z_dim / latent_distribution / truncation, attributes /
attribute_range, input_resolution / directions / default_direction; then whatever the caller adds
(architecture, preset, steps, config, metrics ...; trainer/export.py adds the training config).
Every export also serves that JSON from the input-less `facegan_metadata` signature (output
`metadata` string [1]), so a network client (`facegan ui`) reads preset, steps and metrics.
"""
from __future__ import annotations

import importlib

from facegan import schema

UNCONDITIONAL, CONDITIONAL, IMAGE_TO_IMAGE = "unconditional", "conditional", "image_to_image"
KINDS = (UNCONDITIONAL, CONDITIONAL, IMAGE_TO_IMAGE)
CONTRACT_VERSION = 2              # 1: unconditional only, no `kind` field

SIGNATURE_DEFAULT = schema.SIGNATURE_DEFAULT
SIGNATURE_GENERATE = schema.SIGNATURE_GENERATE
SIGNATURE_SAMPLE = schema.SIGNATURE_SAMPLE
SIGNATURE_TRANSLATE = "translate"
SIGNATURE_ATTRIBUTE_NAMES = "attribute_names"   # conditional: () -> attribute_names str [A]
# every kind: () -> metadata str [1], the metadata asset's JSON (TF Serving's API cannot read assets)
SIGNATURE_METADATA = "facegan_metadata"
METADATA_ASSET = schema.METADATA_ASSET

DEFAULT_MAX_BATCH = 256           # per-request image bound baked into the graph and the metadata
DEFAULT_ATTRIBUTE_RANGE = (0.0, 1.0)
DEFAULT_DIRECTION = "forward"     # the direction name of a single image-to-image model
TRUNCATION_KIND = "temperature_scaling"   # z' = psi * z (not StyleGAN's truncation in W)
TRUNCATION_W = "w_space"          # W-space generators (StyleGAN): w' = w_avg + psi (w - w_avg)
SIGNATURE_STYLE_MIX = "style_mix"
# W-space generators: `generate`/`sample` with a per-request truncation cutoff (an added input would
# break existing clients of `generate`/`sample`, whose SignatureDefs have no optional inputs)
SIGNATURE_GENERATE_CUTOFF = "generate_cutoff"
SIGNATURE_SAMPLE_CUTOFF = "sample_cutoff"
SIGNATURE_STYLE_MIX_CUTOFF = "style_mix_cutoff"


def translate_signature(direction: str) -> str:
    """Signature name of one image-to-image direction (CycleGAN exports two)."""
    return f"{SIGNATURE_TRANSLATE}_{direction}"


# name -> submodule holding it (TensorFlow is imported there, on first use only)
_LAZY = {"export_generator": "export", "build_metadata": "export",
         "load_generator": "load", "read_metadata": "load", "Generator": "load",
         "generator_class": "load", "SeedStream": "stream", "SampledGenerator": "stream",
         "requested_attributes": "stream",
         "sample_latents": "ops", "to_uint8": "ops", "from_uint8": "ops"}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
