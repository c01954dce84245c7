"""Export a trained generator: the training config as contract metadata, then facegan.generator.

The SavedModel contract itself (kinds, signatures, checks, latents, the loader) lives in the core
package, facegan/generator/. This module adds only what training knows: the config fields
(architecture, preset, steps, EMA decay, default truncation, the full config) in the metadata, and
a check that the model matches the config it was trained with.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

from facegan import generator as contract
from facegan.generator import load_generator, read_metadata  # noqa: F401  (importers of the old home)


def config_metadata(cfg) -> Dict[str, Any]:
    """Metadata fields from a trainer Config (empty without one)."""
    if cfg is None:
        return {}
    from facegan.trainer import ema
    from facegan.trainer.config import ema_enabled
    return dict(architecture=cfg.network.architecture, preset=cfg.preset, steps=cfg.run.steps,
                ema_decay=cfg.tricks.ema_decay, default_temperature=cfg.tricks.temperature,
                # the EMA's horizon: per-step decay, or half-life in kimg with its ramp-up (trainer/ema.py)
                ema_horizon=ema.settings(cfg.tricks) if ema_enabled(cfg) else None,
                # which weights a trainer export holds (it exports the EMA generator iff one exists), so
                # an evaluation can say which it scored; a caller exporting other weights says so in
                # `metadata`, which wins
                generator_weights="ema" if ema_enabled(cfg) else "raw",
                config=cfg.to_dict())


def check_against_config(meta: dict, cfg) -> None:
    """ValueError if the exported z_dim / resolution differ from the config's."""
    if cfg is None:
        return
    for field in ("z_dim", "resolution"):
        want, got = int(getattr(cfg.network, field)), meta.get(field)
        if got is not None and int(got) != want:
            what = f"takes z of size {got}" if field == "z_dim" else f"makes {got}x{got} images"
            raise ValueError(f"cfg.network.{field} is {want} but the generator {what}")


def export_generator(generator, export_dir: str, *, cfg=None, metadata: Optional[dict] = None,
                     max_batch: int = contract.DEFAULT_MAX_BATCH, kind: Optional[str] = None,
                     **kind_args) -> str:
    """facegan.generator.export_generator with the config's metadata (caller's `metadata` wins).
    `kind` defaults to the config's: a conditional architecture exports the `conditional` kind
    with the config's attribute names (trainer/conditioning.py)."""
    from facegan.generator.export import export_generator as export
    from facegan.trainer.conditioning import export_kind_args

    if kind is None:
        derived = export_kind_args(cfg)
        kind = derived.pop("kind", contract.UNCONDITIONAL)
        kind_args = {**derived, **kind_args}
    if cfg is not None:
        kind_args.setdefault("z_dim", int(cfg.network.z_dim))   # for subclassed models without inputs
        if cfg.tricks.truncation_cutoff:   # W-space generators: truncate only the layers below it
            kind_args.setdefault("truncation_cutoff", int(cfg.tricks.truncation_cutoff))
    return export(generator, export_dir, kind=kind, metadata={**config_metadata(cfg), **(metadata or {})},
                  max_batch=max_batch, validate=lambda meta: check_against_config(meta, cfg), **kind_args)
