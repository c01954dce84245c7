"""The study's matrix: rows (a preset plus `--set`-style overrides), the papers' claims they
check, and each (row, seed)'s resolved training config."""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .common import StudyError


# -- the matrix --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Claim:
    """A paper's claim, checked as: `metric` of this row vs the `baseline` row, in the metric's
    better direction (from the metric registry)."""
    text: str
    baseline: str
    metric: str = "swd"


@dataclass(frozen=True)
class Row:
    name: str
    preset: str
    overrides: Dict[str, Any] = field(default_factory=dict)
    group: str = ""
    claim: Optional[Claim] = None
    note: str = ""
    more_claims: Tuple[Claim, ...] = ()     # further claims, listed under the table


# ProGAN made small enough for 2 cores (the preset's 512 filters would take minutes per step; at
# 128 filters a 128-kimg row costs ~40 min here, at 64 about a quarter of that); its growth schedule
# is scaled to the budget (see progressive_schedule); the preset's per-resolution batch sizes apply
# (64 up to 16x16, 32 at 32x32; the schedule is in images, so the budget is the same). The three ProGAN rows
# share these widths, so their comparisons (residual blocks, repelling + statistics) hold.
_PROGAN = {"network.filters": 64, "network.max_filters": 64, "network.z_dim": 128}
_SG2_EMA = {"tricks.ema_decay": 0.99778}
_TAN_CLAIM = "TAN (Sajjadi et al.): the lens improves sample quality"
_REPORT = "Columbia report: repelling regularizer + skew/kurtosis statistics improve ProGAN (SWD 109.22 -> 104.30)"

DEFAULT_ROWS: Tuple[Row, ...] = (
    Row("dcgan", "dcgan", group="architectures"),
    Row("hdcgan_cpu", "hdcgan_cpu", group="architectures",
        claim=Claim("HDCGAN (Curto et al.): SELU+BN stays stable where DCGAN degrades (at higher "
                    "resolution than this table's)", "dcgan")),
    Row("facegan", "facegan", group="architectures",
        claim=Claim("FaceGANs (Li et al.): faster to good faces than DCGAN", "dcgan"),
        more_claims=(Claim("FaceGANs (Li et al.): a smaller gap between G's and D's losses than DCGAN",
                           "dcgan", "loss_gap"),)),
    Row("dcgan_lens", "dcgan_lens", group="lens",
        claim=Claim(_TAN_CLAIM + " (on DCGAN)", "dcgan")),
    Row("tan_ns_nolens", "tan", {"tricks.lens.enabled": False}, group="lens"),
    Row("tan_ns", "tan", group="lens", claim=Claim(_TAN_CLAIM + " (NS-GAN)", "tan_ns_nolens")),
    Row("tan_lsgan_nolens", "tan_lsgan", {"tricks.lens.enabled": False}, group="lens"),
    Row("tan_lsgan", "tan_lsgan", group="lens", claim=Claim(_TAN_CLAIM + " (LSGAN)", "tan_lsgan_nolens")),
    Row("progan", "progan", dict(_PROGAN), group="progan"),
    Row("progan_residual", "progan", {**_PROGAN, "network.residual_g": True, "network.residual_d": True},
        group="progan", claim=Claim("Columbia report: residual blocks within each resolution help", "progan")),
    Row("progan_repel_stats", "progan", {**_PROGAN, "tricks.repelling": 0.1, "network.mbstd_extra_stats": True},
        group="progan", claim=Claim(_REPORT, "progan")),
    # PGGAN's G ends in a linear toRGB (networks.py G_paper); tanh was this repository's earlier
    # output and stays an option (network.output_activation); this row measures it (issue 20).
    Row("progan_tanh", "progan", {**_PROGAN, "network.output_activation": "tanh"}, group="progan",
        claim=Claim("this repository's earlier tanh output vs PGGAN's linear toRGB (Karras et al. 2018)",
                    "progan"),
        more_claims=(Claim("tanh output vs PGGAN's linear toRGB: the face rate", "progan", "face_detection"),)),
    Row("dcgan_fm", "dcgan", {"tricks.feature_matching": 1.0}, group="tricks",
        claim=Claim("Salimans et al.: feature matching stabilizes training", "dcgan")),
    Row("dcgan_mbd", "dcgan", {"tricks.minibatch_discrimination": True}, group="tricks",
        claim=Claim("Salimans et al.: minibatch discrimination prevents collapse (more diverse samples)", "dcgan")),
    Row("dcgan_smooth", "dcgan", {"tricks.label_smoothing": 0.1}, group="tricks",
        claim=Claim("Salimans et al.: one-sided label smoothing (0.9 targets) helps", "dcgan")),
    Row("dcgan_ema", "dcgan", {"tricks.ema_kimg": 10.0, "tricks.ema_rampup": 0.05}, group="tricks",
        claim=Claim("Karras et al. 2018: the generator EMA gives better samples", "dcgan")),
    # Slots: run when the checkout has the preset (skipped with a note otherwise). Pinned to the
    # per-step EMA decay they were trained with before the preset moved to stylegan2-ada's 10 kimg
    # with ramp-up (issue 20), so new seeds and reruns compare with the committed ones.
    Row("stylegan2_small", "stylegan2_small", {"tricks.augment.mode": "none", **_SG2_EMA}, group="stylegan2"),
    Row("stylegan2_small_ada", "stylegan2_small", dict(_SG2_EMA), group="stylegan2",
        claim=Claim("Karras et al. 2020 (ADA): adaptive augmentation helps on small data", "stylegan2_small")),
    Row("conditional", "dcgan", {"network.architecture": "cdcgan", "condition.attributes": "male,smiling"},
        group="conditional",
        claim=Claim("Miyato & Koyama 2018: a projection-conditional GAN beats its unconditional twin", "dcgan"),
        note="conditional DCGAN on CelebA attributes (the ingest cache carries the labels); also scored "
             "with attribute_control"),
)

COMMON = {"network.resolution": 32, "optim.batch_size": 64}


def row_from_dict(d: Dict[str, Any], where: str) -> Row:
    """A row of a --matrix JSON file: {"name", "preset", "overrides"?, "group"?, "note"?,
    "claim"?: {"text", "baseline", "metric"?}}."""
    unknown = set(d) - {"name", "preset", "overrides", "group", "claim", "note"}
    if unknown or "name" not in d or "preset" not in d:
        raise StudyError(f"{where}: a row needs 'name' and 'preset' (and optionally overrides, group, "
                         f"claim, note); got keys {sorted(d)}")
    claim = d.get("claim")
    if claim is not None:
        if not isinstance(claim, dict) or not {"text", "baseline"} <= set(claim):
            raise StudyError(f"{where}: row {d['name']!r}: claim needs 'text' and 'baseline'")
        claim = Claim(claim["text"], claim["baseline"], claim.get("metric", "swd"))
    return Row(d["name"], d["preset"], dict(d.get("overrides") or {}), d.get("group", ""), claim,
               d.get("note", ""))


def load_matrix(path: Optional[str]) -> Tuple[Tuple[Row, ...], Dict[str, Any]]:
    """(rows, common overrides): the default matrix, or a JSON file {"rows": [...], "common": {...}}."""
    if not path:
        return DEFAULT_ROWS, dict(COMMON)
    try:
        with open(path) as f:
            d = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise StudyError(f"--matrix {path}: {e}") from None
    if not isinstance(d, dict) or not isinstance(d.get("rows"), list) or not d["rows"]:
        raise StudyError(f"--matrix {path}: expected {{\"rows\": [...], \"common\": {{...}}}}")
    rows = tuple(row_from_dict(r, f"--matrix {path} row {i}") for i, r in enumerate(d["rows"]))
    names = [r.name for r in rows]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise StudyError(f"--matrix {path}: duplicate row names {dup}")
    return rows, dict(d.get("common") or {})


def select_rows(rows: Sequence[Row], names: Optional[str]) -> List[Row]:
    if not names:
        return list(rows)
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    known = {r.name: r for r in rows}
    bad = [n for n in wanted if n not in known]
    if bad:
        raise StudyError(f"--rows: unknown row(s) {bad}; rows: {', '.join(known)}")
    return [known[n] for n in wanted]


def parse_seeds(text: str) -> List[int]:
    try:
        seeds = [int(s) for s in str(text).split(",") if s.strip()]
    except ValueError:
        raise StudyError(f"--seeds: expected comma-separated integers, got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise StudyError(f"--seeds: expected distinct comma-separated integers, got {text!r}")
    return seeds


def progressive_schedule(network: Dict[str, Any], budget_images: int) -> Dict[str, int]:
    """Fade-in and stable phases scaled so a progressive run reaches its final resolution within
    the budget: 2 * doublings + 1 equal phases (stable at the start resolution, then fade + stable
    per doubling), as PGGAN's schedule with its phase length set by the budget."""
    doublings = int(round(math.log2(int(network["resolution"]) / int(network["start_resolution"]))))
    phase = max(1, int(budget_images) // (2 * doublings + 1))
    return {"network.fade_images": phase, "network.stable_images": phase}


def resolve_config(row: Row, common: Dict[str, Any], seed: int, budget_images: int,
                   eval_overrides: Optional[Dict[str, Any]] = None):
    """The row's Config for a seed (TensorFlow-free; ConfigError -> StudyError naming the row)."""
    from facegan.trainer import registry
    from facegan.trainer.config import ConfigError, get_preset
    over = {**common, **row.overrides, "run.seed": int(seed), **(eval_overrides or {})}
    try:
        cfg = get_preset(row.preset, over)
        if registry.architecture(cfg.network.architecture).progressive:
            cfg = cfg.override(progressive_schedule(dataclasses.asdict(cfg.network), budget_images))
    except ConfigError as e:
        raise StudyError(f"row {row.name!r} (preset {row.preset}): {e}") from None
    return cfg


def available_rows(rows: Sequence[Row]) -> Tuple[List[Row], Dict[str, str]]:
    """(rows whose preset exists, {row: why skipped})."""
    from facegan.trainer.config import preset_names
    have = set(preset_names())
    ok = [r for r in rows if r.preset in have]
    return ok, {r.name: f"preset {r.preset!r} does not exist in this checkout" for r in rows if r.preset not in have}
