"""The quality study (issue 14 §4): which preset makes the best faces, and does each paper's trick help?

One command trains a matrix of named rows (a preset plus `--set`-style overrides) on the same
faces, for the same budget of images, with the same seeds; scores every run with ONE protocol
during training (SWD, MS-SSIM next to the real-pair MS-SSIM, the face-detection rate, FID/KID
only where Inception weights exist); and writes `docs/quality.md` (the table with the papers'
claims next to our measured direction), `docs/quality.json` (every number behind it),
`docs/quality/<metric>.png` curves against images shown and `docs/quality/grid_<row>.png`.

    python bench/quality.py [--budget-kimg 128] [--seeds 1,2] [--rows dcgan,tan,...]
    facegan study ...                                 (the same command)
    python bench/quality.py --rerun-row dcgan --seed 1  (reproduce one row, compare with docs/quality.json)

Where the numbers come from: every run directory holds `metrics.jsonl`, one JSON object per
evaluation (`step`, `images_shown`, `resolution`, `headline` {request: number}, `scalars`
{"<result key>/<part>": number}, `protocols`), the layout of the trainer's metrics during
training (trainer/periodic_eval.py): the study only configures the trainer's `eval.*` block
with its protocol, for every row (a progressive stage is scored as exported, upsampled to the
final resolution, so a progressive curve is one protocol from 4x4 on). The table reads the last
record of each run (at the end of the budget); nothing else.

Resumable: a finished run leaves `study_done.json` (with a fingerprint of its config and
protocol) and is skipped; a killed run resumes from its last checkpoint (records newer than it are
dropped, then recomputed); a finished run whose fingerprint differs from the request is refused
with the differing fields (use another --work-dir). Progress: one line per segment with the
overall ETA, measured on this session's runs (training and evaluation).

This module is TensorFlow-free (matrix, records, aggregation, report, plots); training and
evaluation live in `facegan.study_runner`, imported only when something has to run.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

RECORDS_FILE = "metrics.jsonl"      # the trainer's name (trainer/periodic_eval.py METRICS_FILE)
DONE_FILE = "study_done.json"
GRID_FILE = "grid.png"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class StudyError(ValueError):
    """A bad flag, matrix or state; the message names it."""


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
_TAN_CLAIM = "TAN (Sajjadi et al.): the lens improves sample quality"
_REPORT = "Columbia report: repelling regularizer + skew/kurtosis statistics improve ProGAN (SWD 109.22 -> 104.30)"

DEFAULT_ROWS: Tuple[Row, ...] = (
    Row("dcgan", "dcgan", group="architectures"),
    Row("hdcgan_cpu", "hdcgan_cpu", group="architectures",
        claim=Claim("HDCGAN (Curto et al.): SELU+BN stays stable where DCGAN degrades (at higher "
                    "resolution; here 32x32)", "dcgan")),
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
    Row("dcgan_fm", "dcgan", {"tricks.feature_matching": 1.0}, group="tricks",
        claim=Claim("Salimans et al.: feature matching stabilizes training", "dcgan")),
    Row("dcgan_mbd", "dcgan", {"tricks.minibatch_discrimination": True}, group="tricks",
        claim=Claim("Salimans et al.: minibatch discrimination prevents collapse (more diverse samples)", "dcgan")),
    Row("dcgan_smooth", "dcgan", {"tricks.label_smoothing": 0.1}, group="tricks",
        claim=Claim("Salimans et al.: one-sided label smoothing (0.9 targets) helps", "dcgan")),
    Row("dcgan_ema", "dcgan", {"tricks.ema_kimg": 10.0, "tricks.ema_rampup": 0.05}, group="tricks",
        claim=Claim("Karras et al. 2018: the generator EMA gives better samples", "dcgan")),
    # Slots: run when the checkout has the preset (skipped with a note otherwise).
    Row("stylegan2_small", "stylegan2_small", {"tricks.augment.mode": "none"}, group="stylegan2"),
    Row("stylegan2_small_ada", "stylegan2_small", group="stylegan2",
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


# -- protocol ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Protocol:
    """One evaluation protocol for every run (metrics/registry.py requests)."""
    metrics: Tuple[str, ...]
    num_images: int            # per metric (pairs for ms_ssim, as the trainer's eval.num_images)
    every_images: int
    seed: int = 0              # latent stream of the evaluated samples
    extractor: str = "inception"
    batch_size: int = 64

    def to_dict(self):
        return dataclasses.asdict(self)


def default_metrics() -> List[str]:
    """SWD, MS-SSIM, face detection; FID and KID too when Inception weights are on this machine."""
    names = ["swd", "ms_ssim", "face_detection"]
    try:
        from facegan.metrics.features import resolve_inception_weights
        resolve_inception_weights(download=False)
        names += ["fid", "kid"]
    except Exception:   # WeightsUnavailableError or a broken file: FID/KID left out, said in the report
        pass
    return names


def trainer_eval_overrides(p: Protocol) -> Dict[str, Any]:
    """The protocol as the trainer's `eval.*` fields (trainer/periodic_eval.py)."""
    return {"eval.every_images": p.every_images, "eval.metrics": ",".join(p.metrics),
            "eval.num_images": p.num_images, "eval.seed": p.seed, "eval.extractor": p.extractor,
            "eval.batch_size": p.batch_size, "eval.memorization": 0, "eval.export": "last"}


def fingerprint(cfg_dict: Dict[str, Any], protocol: Protocol) -> Tuple[str, Dict[str, Any]]:
    """(sha256, what it covers): the config without run.steps (the budget decides them) + protocol."""
    cfg = json.loads(json.dumps(cfg_dict))
    cfg.get("run", {}).pop("steps", None)
    what = {"config": cfg, "protocol": protocol.to_dict()}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16], what


def diff_fields(a: Dict[str, Any], b: Dict[str, Any], prefix: str = "") -> List[str]:
    """Dotted names of the leaves that differ between two nested dicts."""
    out = []
    for k in sorted(set(a) | set(b)):
        x, y = a.get(k), b.get(k)
        if isinstance(x, dict) and isinstance(y, dict):
            out += diff_fields(x, y, f"{prefix}{k}.")
        elif x != y:
            out.append(f"{prefix}{k}")
    return out


def run_differences(stored: Dict[str, Any], current: Dict[str, Any], config_defaults: Dict[str, Any]) -> List[str]:
    """The fields where a run made earlier (`stored`: its study_run.json `covers`) differs from the
    request (`current`). A config field the stored run does not have (added to the config since)
    counts only when the request moves it off its default: a new field's default keeps the behaviour
    from before it existed, so older runs stay resumable and reportable."""
    stored, current = json.loads(json.dumps(stored)), json.loads(json.dumps(current))  # tuples == lists

    def get(d, dotted):
        for k in dotted.split("."):
            if not isinstance(d, dict) or k not in d:
                return _MISSING
            d = d[k]
        return d

    defaults = {"config": json.loads(json.dumps(config_defaults))}
    return [name for name in diff_fields(stored, current)
            if not (get(stored, name) is _MISSING and get(current, name) == get(defaults, name))]


_MISSING = object()


# -- records -----------------------------------------------------------------------------------
def read_records(path: str) -> List[Dict[str, Any]]:
    """The records of a metrics.jsonl (a torn last line from a kill is skipped)."""
    from facegan.trainer.runs import read_jsonl     # TensorFlow-free, as this module
    return read_jsonl(path)


def write_json_atomic(path: str, obj) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def result_key(record: Dict[str, Any], request: str) -> Optional[str]:
    """The protocol-named result key (e.g. `ms_ssim2k_pairs`) of a request in a record."""
    for key, proto in (record.get("protocols") or {}).items():
        if proto.get("request", proto.get("metric")) == request:
            return key
    return None


def record_values(record: Dict[str, Any]) -> Dict[str, float]:
    """The study's columns of one record: each request's headline, plus `ms_ssim_real` (HDCGAN
    reports real-pair MS-SSIM next to the generator's) when the record has it."""
    out = {k: float(v) for k, v in (record.get("headline") or {}).items()
           if isinstance(v, (int, float)) and not str(k).startswith("memorization")}
    key = result_key(record, "ms_ssim")
    real = (record.get("scalars") or {}).get(f"{key}/real") if key else None
    if real is not None:
        out["ms_ssim_real"] = float(real)
    key = result_key(record, "face_detection")
    real = (record.get("scalars") or {}).get(f"{key}/real/detected_fraction") if key else None
    if real is not None:
        out["face_detection_real"] = float(real)
    return out


def run_dir_for(work_dir: str, row: str, seed: int) -> str:
    return os.path.join(work_dir, row, f"seed{seed}")


# -- aggregation -------------------------------------------------------------------------------
def mean_spread(values: Sequence[float]) -> Tuple[float, float]:
    """(mean, spread) over seeds; spread = half the range, (max - min) / 2 (0 for one seed); with
    two seeds, mean ± spread spans exactly both."""
    v = [float(x) for x in values]
    return sum(v) / len(v), (max(v) - min(v)) / 2.0


# Columns that are not registry metrics: read from the run's training logs (see loss_gap).
TRAINING_DIRECTIONS = {"loss_gap": "lower"}


def metric_direction(name: str) -> Optional[str]:
    from facegan.metrics.registry import METRICS
    if name in TRAINING_DIRECTIONS:
        return TRAINING_DIRECTIONS[name]
    base = name.split(":")[0]
    return METRICS[base].direction if base in METRICS else None


# A row whose samples are detected as faces less than this fraction as often as the reals is
# "not faces": a distribution distance (SWD) between two such rows says nothing about faces.
FACE_GATE = 0.5


def faces_ratio(row: Dict, real_rate: Optional[float]) -> Optional[float]:
    """The row's face-detection rate over the reals' (the rate itself when the reals' is unknown)."""
    m = row["metrics"].get("face_detection")
    if m is None:
        return None
    real = (row["metrics"].get("face_detection_real") or {}).get("mean") or real_rate or 1.0
    return m["mean"] / real


def judge(claim: Claim, row: Dict, base: Dict, kimg: float,
          pooled: Optional[Dict[str, float]] = None, real_faces: Optional[float] = None) -> Tuple[str, str]:
    """`_judge`, then the face gate: a claim judged on another metric than the face rate cannot be
    "in direction" when either row's samples are not faces (face rate below FACE_GATE of the
    reals'): its grid is noise, and a better SWD between noise and faces (or two noises) is no
    evidence for the paper's claim. Such a verdict becomes "inconclusive" with the rates named."""
    measured, note = _judge(claim, row, base, kimg, pooled)
    if claim.metric == "face_detection" or not note.startswith("in direction"):
        return measured, note
    bad = [(name, r) for name, r in ((row.get("row", "this row"), row), (claim.baseline, base))
           if (faces_ratio(r, real_faces) or 0.0) < FACE_GATE and "face_detection" in r["metrics"]]
    if not bad:
        return measured, note
    rates = ", ".join(f"{n} {fmt(r['metrics']['face_detection']['mean'])}" for n, r in bad)
    return measured, (f"inconclusive, at {kimg:g} kimg: not faces ({rates}; below {FACE_GATE:g} of the reals' "
                      f"rate), so {claim.metric} alone cannot carry the claim")


def _judge(claim: Claim, row: Dict, base: Dict, kimg: float,
           pooled: Optional[Dict[str, float]] = None) -> Tuple[str, str]:
    """(measured, note) for a claim: the row's metric against the baseline's, in the registry's
    better direction; 'inconclusive' when the gap is within the two rows' seed spreads. When either
    row has one seed, the yardstick is the metric's pooled seed spread (`pooled`: the largest spread
    among rows with two or more seeds; see pooled_spreads), counted for both rows. Either way the
    gap must also exceed the two rows' late-run swings (late_swing: half the change between each
    run's last two evaluations), or the verdict is 'inconclusive'."""
    m = claim.metric
    if m not in row["metrics"] or m not in base["metrics"]:
        return "not measured", f"no {m} for both rows"
    a, sa = row["metrics"][m]["mean"], row["metrics"][m]["spread"]
    b, sb = base["metrics"][m]["mean"], base["metrics"][m]["spread"]
    direction = metric_direction(m)
    measured = f"{m} {fmt(a)} vs {fmt(b)} ({claim.baseline})"
    if direction is None:
        return measured, f"{m} has no better direction"
    better = a < b if direction == "lower" else a > b
    budget = f"at {kimg:g} kimg"
    la, lb = row["metrics"][m].get("late_swing"), base["metrics"][m].get("late_swing")
    if la is not None and lb is not None and abs(a - b) <= la + lb:
        return measured + ": within the late-run swing", \
            f"inconclusive, {budget} (the two runs' last evaluations still move by ±{la:.2g} and ±{lb:.2g})"
    if min(row["n"], base["n"]) < 2:
        sp = (pooled or {}).get(m)
        if sp is None:
            return measured + (": better" if better else ": worse"), \
                ("in direction" if better else "not reproduced") + f", {budget} (one seed: no spread)"
        if abs(a - b) <= 2 * sp:
            return measured + ": within the seed spread", \
                f"inconclusive, {budget} (one seed; pooled seed spread {sp:.2g})"
        return measured + (": better" if better else ": worse"), \
            ("in direction" if better else "not reproduced") + f", {budget} (one seed; pooled seed spread {sp:.2g})"
    if abs(a - b) <= sa + sb:
        return measured + ": within seed spread", f"inconclusive, {budget}"
    return measured + (": better" if better else ": worse"), ("in direction" if better else "not reproduced") + f", {budget}"


def fmt(v: Optional[float]) -> str:
    if v is None or not math.isfinite(v):
        return "—"
    return f"{v:.4g}"


LOSS_TAGS = ("loss/g", "loss/d")


def loss_gap(log_dir: str, tail: float = 0.25) -> Optional[float]:
    """FaceGANs (Li et al.) report a smaller gap between G's and D's losses: the mean of
    |loss/g - loss/d| over the last `tail` of the logged steps of a run, read from its TensorBoard
    events with TensorBoard's own reader (None without both series). The two losses are each
    family's own (e.g. the FaceGANs formula for `facegan`, NS-GAN for `dcgan`), as the paper
    compares them."""
    if not os.path.isdir(log_dir):
        return None
    from tensorboard.backend.event_processing import event_accumulator as ea
    from tensorboard.util import tensor_util
    acc = ea.EventAccumulator(log_dir, size_guidance={ea.TENSORS: 0, ea.SCALARS: 0})
    acc.Reload()
    tags = set(acc.Tags().get("tensors", []))
    if not set(LOSS_TAGS) <= tags:
        return None
    g, d = ({e.step: float(tensor_util.make_ndarray(e.tensor_proto)) for e in acc.Tensors(t)} for t in LOSS_TAGS)
    steps = sorted(set(g) & set(d))
    if not steps:
        return None
    last = steps[int(len(steps) * (1 - tail)):] or steps[-1:]
    return sum(abs(g[s] - d[s]) for s in last) / len(last)


def late_swing(curve: Sequence[Tuple[int, Dict[str, float]]], metric: str) -> Optional[float]:
    """Half the change of `metric` between a run's last two evaluations (None with fewer than
    two): how far the end-of-budget value still moves at this budget. A gap between two rows
    smaller than their swings combined says nothing, whatever the seed spread (a one-seed row's
    pooled spread is borrowed from other rows, whose curves may be far steadier)."""
    vals = [v[metric] for _, v in curve if metric in v and v[metric] is not None and math.isfinite(v[metric])]
    return abs(vals[-1] - vals[-2]) / 2.0 if len(vals) >= 2 else None


def pooled_spreads(summary: Sequence[Dict[str, Any]]) -> Dict[str, float]:
    """Per metric, the largest seed spread among rows with two or more seeds: the yardstick for
    comparisons that involve a one-seed row (a conservative stand-in for its unknown spread)."""
    out: Dict[str, float] = {}
    for r in summary:
        if r["n"] >= 2:
            for k, m in r["metrics"].items():
                out[k] = max(out.get(k, 0.0), m["spread"])
    return out


def committed_seed(committed: Optional[Dict[str, Any]], row: str, seed: int):
    """(per-seed entry, curve) of `row`/`seed` in a committed quality.json, or None. The entry is
    copied as written (values, images shown, ...) and tagged with its source; nothing is recomputed."""
    if not committed:
        return None
    crow = next((r for r in committed.get("rows", []) if r.get("row") == row), None)
    entry = (crow or {}).get("per_seed", {}).get(str(seed))
    if entry is None:
        return None
    curve = [(int(x), dict(v)) for x, v in (committed.get("curves", {}).get(row, {}).get(str(seed)) or [])]
    source = f"committed quality.json ({committed.get('meta', {}).get('date', 'undated')})"
    if entry.get("source"):
        source += f": {entry['source']}"
    return dict(entry, source=source), curve


def summarize(rows: Sequence[Row], work_dir: str, seeds: Sequence[int],
              committed: Optional[Dict[str, Any]] = None) -> List[Dict[str, Any]]:
    """Per row: the final record of each finished seed, each column's mean and spread, the claim
    verdict. Rows with no finished seed are listed with `n` = 0. With `committed` (a quality.json
    written earlier, see --merge-committed), a (row, seed) not finished in `work_dir` takes that
    file's entry and curve as they are: finished runs replace committed seeds, nothing else moves.
    Each per-seed entry names its `source` (the run's commit, or the committed file)."""
    out = []
    for row in rows:
        per_seed, curves = {}, {}
        for s in seeds:
            rd = run_dir_for(work_dir, row.name, s)
            done = _read_json(os.path.join(rd, DONE_FILE))
            if done is None:
                old = committed_seed(committed, row.name, s)
                if old is not None:
                    per_seed[s], curves[s] = old
                continue
            recs = read_records(os.path.join(rd, RECORDS_FILE))
            if not recs:
                continue
            final = max(recs, key=lambda r: int(r["images_shown"]))
            values = record_values(final)
            gap = loss_gap(os.path.join(rd, "logs"))
            if gap is not None:
                values["loss_gap"] = gap
            per_seed[s] = {"values": values, "images_shown": int(final["images_shown"]),
                           "num_real": {p.get("request", k): p.get("num_real") for k, p in
                                        (final.get("protocols") or {}).items() if p.get("num_real")},
                           "step": int(final["step"]), "resolution": final.get("resolution"),
                           "source": "run at commit " + str(done.get("commit") or "unrecorded"),
                           "seconds": done.get("seconds")}
            curves[s] = [(int(r["images_shown"]), record_values(r)) for r in
                         sorted(recs, key=lambda r: int(r["images_shown"]))]
        metrics = {}
        names = sorted({k for v in per_seed.values() for k in v["values"]})
        for k in names:
            vals = [v["values"][k] for v in per_seed.values() if k in v["values"]]
            m, sp = mean_spread(vals)
            metrics[k] = {"mean": m, "spread": sp, "n": len(vals)}
            swings = [late_swing(c, k) for c in curves.values()]
            swings = [x for x in swings if x is not None]
            if swings:
                metrics[k]["late_swing"] = max(swings)
        out.append({"row": row.name, "preset": row.preset, "overrides": row.overrides, "group": row.group,
                    "note": row.note, "claim": dataclasses.asdict(row.claim) if row.claim else None,
                    "n": len(per_seed), "per_seed": {str(k): v for k, v in per_seed.items()},
                    "metrics": metrics, "curves": {str(k): v for k, v in curves.items()}})
    by_name = {r["row"]: r for r in out}
    pooled = pooled_spreads(out)
    pooled.pop("face_detection_real", None)
    reals = [r["metrics"]["face_detection_real"]["mean"] for r in out if "face_detection_real" in r["metrics"]]
    real_faces = sum(reals) / len(reals) if reals else None
    for r, row in zip(out, rows):
        r["more_claims"] = []
        for i, claim in enumerate((row.claim,) + tuple(row.more_claims)):
            if claim is None or not r["n"] or not by_name.get(claim.baseline, {}).get("n"):
                continue
            kimg = min(v["images_shown"] for v in r["per_seed"].values()) / 1000
            measured, verdict = judge(claim, r, by_name[claim.baseline], kimg, pooled, real_faces)
            if i == 0:
                r["measured"], r["verdict"] = measured, verdict
            else:
                r["more_claims"].append({**dataclasses.asdict(claim), "measured": measured, "verdict": verdict})
    return out


def _read_json(path: str):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None


# -- plots (PIL: matplotlib is not part of the pinned stack) ------------------------------------
PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
           (0, 0, 128), (128, 0, 0), (0, 128, 128), (128, 128, 0), (75, 0, 130), (255, 215, 0),
           (0, 100, 0), (199, 21, 133)]


def _ticks(lo: float, hi: float, n: int = 6) -> List[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 5, 10) if m * mag >= raw), default=10 * mag)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def line_plot(series: Dict[str, List[Tuple[float, float]]], path: str, title: str, xlabel: str,
              hline: Optional[Tuple[str, float]] = None, size=(900, 540)) -> str:
    """A PNG line plot: one coloured line (with point markers) per series, axes with ticks, a
    legend, an optional dashed reference line (e.g. real-pair MS-SSIM)."""
    from PIL import Image, ImageDraw, ImageFont
    font = ImageFont.load_default()
    W, H = size
    left, right, top, bottom = 70, 210, 34, 50
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    pts = [p for s in series.values() for p in s]
    ys = [y for _, y in pts] + ([hline[1]] if hline else [])
    if not pts:
        raise ValueError(f"{path}: nothing to plot")
    x0, x1 = min(0.0, min(x for x, _ in pts)), max(x for x, _ in pts) or 1.0
    y0, y1 = min(ys), max(ys)
    pad = (y1 - y0) * 0.05 or abs(y0) * 0.05 or 1.0
    y0, y1 = y0 - pad, y1 + pad
    px = lambda x: left + (x - x0) / ((x1 - x0) or 1) * (W - left - right)  # noqa: E731
    py = lambda y: H - bottom - (y - y0) / ((y1 - y0) or 1) * (H - top - bottom)  # noqa: E731
    d.rectangle([left, top, W - right, H - bottom], outline=(0, 0, 0))
    for t in _ticks(x0, x1):
        d.line([px(t), H - bottom, px(t), H - bottom + 5], fill=(0, 0, 0))
        d.text((px(t) - 10, H - bottom + 8), f"{t:g}", fill=(0, 0, 0), font=font)
    for t in _ticks(y0, y1):
        d.line([left - 5, py(t), W - right, py(t)], fill=(225, 225, 225))
        d.line([left - 5, py(t), left, py(t)], fill=(0, 0, 0))
        d.text((4, py(t) - 6), f"{t:.4g}", fill=(0, 0, 0), font=font)
    d.text((left, 10), title, fill=(0, 0, 0), font=font)
    d.text(((left + W - right) // 2 - 30, H - 18), xlabel, fill=(0, 0, 0), font=font)
    if hline:
        y = py(hline[1])
        for xx in range(left, W - right, 12):
            d.line([xx, y, min(xx + 6, W - right), y], fill=(60, 60, 60), width=2)
    for i, (name, s) in enumerate(series.items()):
        c = PALETTE[i % len(PALETTE)]
        xy = [(px(x), py(y)) for x, y in sorted(s)]
        if len(xy) > 1:
            d.line(xy, fill=c, width=2)
        for x, y in xy:
            d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=c)
        ly = top + 4 + 14 * i
        d.line([W - right + 10, ly + 6, W - right + 30, ly + 6], fill=c, width=3)
        d.text((W - right + 36, ly), name, fill=(0, 0, 0), font=font)
    if hline:
        ly = top + 4 + 14 * len(series)
        d.line([W - right + 10, ly + 6, W - right + 30, ly + 6], fill=(60, 60, 60), width=1)
        d.text((W - right + 36, ly), hline[0], fill=(0, 0, 0), font=font)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    img.save(path)
    return path


def mean_curves(summary_row: Dict[str, Any], metric: str) -> List[Tuple[float, float]]:
    """(kimg, mean over seeds) at each evaluation point the seeds share."""
    by_x: Dict[int, List[float]] = {}
    for curve in summary_row["curves"].values():
        for x, vals in curve:
            if metric in vals:
                by_x.setdefault(x, []).append(vals[metric])
    n = summary_row["n"]
    return [(x / 1000, sum(v) / len(v)) for x, v in sorted(by_x.items()) if len(v) == n]


# -- the report --------------------------------------------------------------------------------
COLUMNS = (("swd", "SWD ↓"), ("ms_ssim", "MS-SSIM"), ("ms_ssim_real", "MS-SSIM real pairs"),
           ("face_detection", "faces ↑"), ("fid", "FID ↓"), ("kid", "KID ↓"),
           ("attribute_control", "attribute control ↑"), ("loss_gap", "G−D loss gap ↓"))
METRIC_TITLES = {"swd": "SWD (x1e3, lower is better)", "ms_ssim": "MS-SSIM of sample pairs (dashed: real pairs)",
                 "face_detection": "face-detection rate (higher is better)", "fid": "FID (lower is better)",
                 "kid": "KID (lower is better)"}


def wall_minutes(row: Dict[str, Any]) -> str:
    """Mean wall time per seed (training + evaluation, from each run's study_done.json), minutes;
    "—" when no seed recorded it (entries merged from an older report)."""
    secs = [v["seconds"] for v in row["per_seed"].values() if v.get("seconds")]
    return f"{sum(secs) / len(secs) / 60:.1f}" if secs else "—"


def cell(m: Optional[Dict[str, float]]) -> str:
    if not m:
        return "—"
    return fmt(m["mean"]) + (f" ± {m['spread']:.2g}" if m["n"] > 1 else "")


# Above this line quality.md may hold hand-written text (kept when the report is rewritten).
GENERATED_MARK = "<!-- generated by bench/quality.py below this line -->"


def write_report(summary: List[Dict[str, Any]], out_dir: str, meta: Dict[str, Any],
                 grids: Dict[str, str], skipped: Dict[str, str]) -> Dict[str, str]:
    """docs/quality.md + quality.json + quality/<metric>.png + quality/grid_<row>.png."""
    fig_dir = os.path.join(out_dir, "quality")
    os.makedirs(fig_dir, exist_ok=True)
    done = [r for r in summary if r["n"]]
    cols = [(k, t) for k, t in COLUMNS if any(k in r["metrics"] for r in done)]
    kimg = meta["budget_kimg"]
    files = {}
    for k, title in METRIC_TITLES.items():
        series = {r["row"]: mean_curves(r, k) for r in done}
        series = {n: s for n, s in series.items() if s}
        if not series:
            continue
        hline = None
        if k == "ms_ssim":
            reals = [r["metrics"]["ms_ssim_real"]["mean"] for r in done if "ms_ssim_real" in r["metrics"]]
            hline = ("real pairs", sum(reals) / len(reals)) if reals else None
        files[k] = line_plot(series, os.path.join(fig_dir, f"{k}.png"), title, "kimg (thousands of images shown)", hline)
    for name, src in grids.items():
        dst = os.path.join(fig_dir, f"grid_{name}.png")
        if os.path.abspath(src) != os.path.abspath(dst):
            shutil.copyfile(src, dst)
        files[f"grid_{name}"] = dst

    L = ["# Quality study", "",
         f"Every row trained for {kimg:g} kimg (thousands of real images shown to D) at "
         f"{meta['resolution']}x{meta['resolution']} on {meta['data']}, seeds {', '.join(map(str, meta['seeds']))}; "
         f"evaluated every {meta['protocol']['every_images'] / 1000:g} kimg with one protocol: "
         f"{', '.join(meta['protocol']['metrics'])} on {meta['protocol']['num_images']} samples each "
         f"(pairs for MS-SSIM; latent stream seed {meta['protocol']['seed']}). "
         "Values are at the end of the budget: mean ± spread over seeds (spread = half the range of "
         "the seeds' values; with two seeds the interval spans both). A claim is checked on its metric against its baseline row: "
         "*in direction* (better beyond the seed spread), *not reproduced* (worse beyond it), "
         "*inconclusive* (within it, or within the two runs' late-run swings: half the change between "
         "each run's last two evaluations; or, for a claim on another metric than the face rate, when "
         f"either row's face rate is below {FACE_GATE:g} of the reals': samples that are not faces). "
         "*wall min*: minutes per seed, training and evaluation, on a shared machine. Small budgets say little about the papers' long runs: every "
         f"verdict holds at {kimg:g} kimg only.", ""]
    num_real = sorted({f"{k} {n}" for r in done for v in r["per_seed"].values() for k, n in v.get("num_real", {}).items()})
    if num_real:
        L += [f"Real images compared with (the eval split; fewer than the protocol asks for means all of "
              f"them): {', '.join(num_real)}.", ""]
    if "fid" not in meta["protocol"]["metrics"]:
        L += ["FID/KID: not computed (no Inception weights on the machine that ran this; see README "
              "\"No Inception weights offline\"). The face-detection rate is no stand-in for FID.", ""]
    head = ["row", "preset + overrides", "kimg", "seeds", "wall min"] + [t for _, t in cols] + \
        ["paper's claim", "measured", "note"]
    L += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in summary:
        over = ", ".join(f"{k}={json.dumps(v)}" for k, v in r["overrides"].items())
        conf = f"`{r['preset']}`" + (f" {over}" if over else "")
        if not r["n"]:
            why = skipped.get(r["row"], "not run yet")
            L.append("| " + " | ".join([r["row"], conf, "—", "0", "—"] + ["—"] * len(cols) +
                                      [r["claim"]["text"] if r["claim"] else "", "", why]) + " |")
            continue
        k_end = min(v["images_shown"] for v in r["per_seed"].values()) / 1000
        cells = [r["row"], conf, f"{k_end:g}", str(r["n"]), wall_minutes(r)] + \
            [cell(r["metrics"].get(k)) for k, _ in cols]
        cells += [r["claim"]["text"] if r["claim"] else "", r.get("measured", ""),
                  r.get("verdict", "") + (f"; {r['note']}" if r["note"] else "")]
        L.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    more = [(r["row"], c) for r in summary for c in r.get("more_claims", [])]
    if more:
        L += ["", "Further claims (same rule):", ""]
        L += [f"- **{name}** vs {c['baseline']}: {c['text']}. Measured: {c['measured']}; {c['verdict']}."
              for name, c in more]
    sources = [(r["row"], s, v["source"]) for r in done for s, v in sorted(r["per_seed"].items()) if v.get("source")]
    if sources:
        L += ["", "Where each run comes from (a run's commit is recorded when it finishes; "
              "committed entries are copied from the earlier report as written):", ""]
        L += [f"- {name} seed {s}: {src}" for name, s, src in sources]
    L += ["", "## Curves", ""]
    for k in METRIC_TITLES:
        if k in files:
            L += [f"![{METRIC_TITLES[k]}](quality/{k}.png)", ""]
    if grids:
        L += ["## Samples", "", f"64 samples of each row's first seed at the end of the budget (the "
              f"exported weights; latent stream seed {meta['protocol']['seed']}).", ""]
        for name in grids:
            L += [f"**{name}**", "", f"![{name}](quality/grid_{name}.png)", ""]
    m = meta["machine"]
    L += ["## How this was made", "", "```", meta["command"], "```", "",
          f"- date: {meta['date']}", f"- budget: {kimg:g} kimg per row and seed, batch {meta['batch_size']}",
          "- evaluation: the trainer's metrics during training (`eval.*`, trainer/periodic_eval.py)",
          f"- machine: {m.get('cpu_model')} ({m.get('cpu_count')} cores; avx512_bf16 {m.get('avx512_bf16')}, "
          f"amx_bf16 {m.get('amx_bf16')}, amx_tile {m.get('amx_tile')}; load {m.get('load_avg_1m')})",
          f"- wall time of the runs: {meta.get('seconds_total', 0) / 60:.1f} min",
          *([f"- merged with the committed `{meta['merged_from']['path']}` of {meta['merged_from']['date']} "
             f"(`{meta['merged_from']['command']}`): its (row, seed) entries not rerun here are copied as written"]
            if meta.get("merged_from") else []),
          f"- every number: `quality.json`; reproduce one row: `{meta['rerun_hint']}`", ""]
    md = os.path.join(out_dir, "quality.md")
    preface = ""
    if os.path.exists(md):   # a hand-written block above the marker (status, rerun checks) is kept
        with open(md) as f:
            old = f.read()
        if GENERATED_MARK in old:
            preface = old[:old.index(GENERATED_MARK)]
    if preface:
        body = preface.strip("\n")
        body = body[len(L[0]):].strip("\n") if body.startswith(L[0]) else body
        L = [L[0], "", body, "", GENERATED_MARK, ""] + L[2:]
    with open(md, "w") as f:
        f.write("\n".join(L))
    write_json_atomic(os.path.join(out_dir, "quality.json"),
                      {"meta": meta, "rows": [{k: v for k, v in r.items() if k != "curves"} for r in summary],
                       "curves": {r["row"]: r["curves"] for r in summary}})
    files["md"] = md
    return files


def parse_markdown_table(md_text: str) -> List[Dict[str, str]]:
    """The study table of a quality.md as dicts keyed by header (for tests and --rerun-row)."""
    lines = [ln for ln in md_text.splitlines() if ln.startswith("| ")]
    if not lines:
        return []
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(head, (c.strip() for c in ln.strip("|").split("|")))) for ln in lines[1:]]


# -- rerun comparison --------------------------------------------------------------------------
def compare_rerun(committed_row: Dict[str, Any], seed: int, new_values: Dict[str, float],
                  pooled: Optional[Dict[str, float]] = None) -> List[Dict[str, Any]]:
    """Each committed metric of `seed` vs the rerun: within the row's reported spread? (A one-seed
    row reports no spread of its own; it is then compared within the study's pooled seed spread of
    that metric, see pooled_spreads, or within 1% of the committed value where there is none.)"""
    per_seed = committed_row["per_seed"].get(str(seed))
    if per_seed is None:
        raise StudyError(f"row {committed_row['row']!r} has no committed result for seed {seed} "
                         f"(seeds: {', '.join(committed_row['per_seed']) or 'none'})")
    out = []
    for k, old in sorted(per_seed["values"].items()):
        spread = committed_row["metrics"][k]["spread"]
        tol = spread if committed_row["metrics"][k]["n"] > 1 else (pooled or {}).get(k, 0.01 * abs(old))
        new = new_values.get(k)
        out.append({"metric": k, "committed": old, "rerun": new, "tolerance": tol,
                    "within": new is not None and abs(new - old) <= tol + 1e-12})
    return out


# -- machine -----------------------------------------------------------------------------------
def machine_info() -> Dict[str, Any]:
    """facegan.machine.cpu_info(): what every benchmark records (CPU model, bf16/AMX flags, load)."""
    from facegan.machine import cpu_info
    return cpu_info()


# -- data --------------------------------------------------------------------------------------
def faces_dir() -> str:
    return os.path.abspath(os.environ.get("FACEGAN_FACES_DIR") or os.path.join(REPO, "..", "shared", "data", "faces"))


def cache_dir_default() -> str:
    return os.environ.get("FACEGAN_STUDY_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "facegan", "study")


def ensure_faces(cache_dir: str, resolution: int, log=print) -> str:
    """The shared CelebA faces ingested once (`--crop celeba`, this resolution) into the cache;
    returns the Examples directory. The cache lives outside the repository (the faces' terms)."""
    src = os.path.join(faces_dir(), "celeba89x109", "images")
    out = os.path.join(cache_dir, f"celeba{resolution}")
    if os.path.exists(os.path.join(out, "ingest_summary.json")) and \
            not os.path.exists(os.path.join(out, "INGEST_INCOMPLETE")):
        return out
    if not os.path.isdir(src):
        raise StudyError(f"no faces at {src}: set FACEGAN_FACES_DIR to the shared faces folder "
                         f"(holding celeba89x109/images), or pass --data EXAMPLES")
    if os.path.realpath(out).startswith(os.path.realpath(REPO) + os.sep):
        raise StudyError(f"--cache-dir {cache_dir} is inside the repository; the faces' terms forbid "
                         f"copying them there: choose a folder outside it")
    os.makedirs(cache_dir, exist_ok=True)
    cmd = [sys.executable, "-m", "facegan.cli", "ingest", "--input", src, "--output", out,
           "--resolution", str(resolution), "--crop", "celeba"]
    labels = os.path.join(faces_dir(), "celeba89x109", "list_attr_celeba.txt")
    if os.path.exists(labels):
        cmd += ["--labels", labels]      # for the conditional row
    log(f"study: ingesting the shared CelebA faces once: {' '.join(cmd)}")
    if subprocess.call(cmd) != 0:
        raise StudyError(f"ingesting {src} into {out} failed (command above)")
    return out


# -- the command -------------------------------------------------------------------------------
EXAMPLES = """examples:
  python bench/quality.py                                    # the whole matrix, 128 kimg, seeds 1,2
  python bench/quality.py --rows dcgan,hdcgan_cpu,facegan --budget-kimg 64 --seeds 1
  python bench/quality.py --report-only                      # rewrite docs/quality.md from finished runs
  python bench/quality.py --rerun-row dcgan --seed 1         # reproduce one row, compare with docs/quality.json
  python bench/quality.py --list-rows"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--budget-kimg", type=float, default=128.0, help="thousands of images shown per row and seed")
    p.add_argument("--seeds", default="1,2", help="training seeds (run.seed), comma-separated")
    p.add_argument("--rows", default=None, help="comma-separated row names (default: all; --list-rows)")
    p.add_argument("--list-rows", action="store_true", help="print the matrix and exit")
    p.add_argument("--matrix", default=None, help='JSON {"rows": [{"name", "preset", "overrides", "claim"}], '
                   '"common": {...}} instead of the built-in matrix')
    p.add_argument("--data", default=None, help="Examples directory (default: the shared CelebA faces, "
                   "ingested once into --cache-dir)")
    p.add_argument("--cache-dir", default=None, help="ingest cache and runs, outside the repo "
                   "(default: $FACEGAN_STUDY_DIR or ~/.cache/facegan/study)")
    p.add_argument("--work-dir", default=None, help="run directories (default: CACHE_DIR/runs)")
    p.add_argument("--out", default="docs", help="where quality.md, quality.json and quality/ go")
    p.add_argument("--resolution", type=int, default=32, help="network.resolution of every row")
    p.add_argument("--batch-size", type=int, default=64, help="optim.batch_size of every row")
    p.add_argument("--eval-every-kimg", type=float, default=16.0, help="evaluate every N kimg")
    p.add_argument("--eval-images", type=int, default=2048, help="samples per metric (pairs for MS-SSIM)")
    p.add_argument("--metrics", default="auto", help="metric requests (default: swd,ms_ssim,face_detection, "
                   "+fid,kid when Inception weights exist)")
    p.add_argument("--extractor", default="inception", help="FID/KID feature extractor (metrics/features.py)")
    p.add_argument("--report-only", action="store_true", help="write the report from finished runs; train nothing")
    p.add_argument("--rerun-row", default=None, help="retrain one row for --seed into a fresh directory "
                   "and compare with OUT/quality.json within its reported spread")
    p.add_argument("--seed", type=int, default=None, help="the seed for --rerun-row")
    p.add_argument("--merge-committed", default=None, metavar="QUALITY_JSON",
                   help="with --report-only: take each (row, seed) not finished in --work-dir from this "
                   "earlier quality.json as written (same budget and protocol required); finished runs "
                   "replace its seeds, verdicts are recomputed over the merged rows")
    p.add_argument("--drop-committed", default="", metavar="ROWS",
                   help="with --merge-committed: rows whose committed entries are NOT taken (their code or "
                   "config changed since); they show only runs finished in --work-dir")


def rerun_command(command: str, row: str, seed: int) -> str:
    """The study's command with --rows/--seeds replaced by `--rerun-row ROW --seed S`."""
    words, out, skip = command.split(" "), [], False
    for w in words:
        if skip:
            skip = False
            continue
        if w in ("--rows", "--seeds", "--rerun-row", "--seed", "--merge-committed", "--drop-committed"):
            skip = True
            continue
        if w != "--report-only" and not w.startswith(("--rows=", "--seeds=", "--merge-committed=", "--drop-committed=")):
            out.append(w)
    return " ".join(out + ["--rerun-row", row, "--seed", str(seed)])


# Path flags of the study whose values name one machine's folders when absolute (or above the
# repository): the report prints a placeholder instead, so docs/ cites no machine's paths.
PATH_PLACEHOLDERS = {"--cache-dir": "CACHE_DIR", "--work-dir": "WORK_DIR", "--data": "EXAMPLES",
                     "--out": "OUT_DIR", "--matrix": "MATRIX_JSON"}


def portable_command(command: str) -> str:
    """`command` with each absolute (or `..`) value of a path flag replaced by its placeholder."""
    words, out = command.split(" "), []
    for i, w in enumerate(words):
        flag, eq, value = w.partition("=")
        if eq and flag in PATH_PLACEHOLDERS and value.startswith(("/", "..", "~")):
            w = f"{flag}={PATH_PLACEHOLDERS[flag]}"
        elif i and words[i - 1] in PATH_PLACEHOLDERS and w.startswith(("/", "..", "~")):
            w = PATH_PLACEHOLDERS[words[i - 1]]
        out.append(w)
    return " ".join(out)


def _command_line(argv: Optional[Sequence[str]]) -> str:
    if argv is None:   # `facegan study ...`: sys.argv holds the command name first
        argv = [a for a in sys.argv[1:] if a != "--verbose"]
        argv = argv[1:] if argv[:1] == ["study"] else argv
    prog = "python bench/quality.py" if sys.argv and sys.argv[0].endswith("quality.py") else "facegan study"
    return portable_command(" ".join([prog] + [a if a and " " not in a else json.dumps(a) for a in argv]))


def main(args, argv: Optional[Sequence[str]] = None, log=None) -> int:
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    try:
        return _main(args, argv, log)
    except StudyError as e:
        print(f"study: {e}", file=sys.stderr)
        return 2


def _main(args, argv, log) -> int:
    rows_all, common = load_matrix(args.matrix)
    common = {**common, "network.resolution": args.resolution, "optim.batch_size": args.batch_size}
    if args.list_rows:
        for r in rows_all:
            print(f"{r.name:<22} {r.preset:<16} {json.dumps(r.overrides)}"
                  + (f"   claim vs {r.claim.baseline}: {r.claim.text}" if r.claim else ""))
        return 0
    if args.budget_kimg <= 0 or args.eval_every_kimg <= 0 or args.eval_images < 2:
        raise StudyError("--budget-kimg and --eval-every-kimg must be > 0 and --eval-images >= 2")
    budget = int(round(args.budget_kimg * 1000))
    every = int(round(args.eval_every_kimg * 1000))
    cache_dir = args.cache_dir or cache_dir_default()
    work_dir = args.work_dir or os.path.join(cache_dir, "runs")
    if args.rerun_row is not None:
        if args.seed is None:
            raise StudyError("--rerun-row needs --seed")
        rows, seeds = select_rows(rows_all, args.rerun_row), [args.seed]
    else:
        rows, seeds = select_rows(rows_all, args.rows), parse_seeds(args.seeds)
    runnable, skipped = available_rows(rows)
    for name, why in skipped.items():
        log(f"study: skipping row {name}: {why}")
    metrics = default_metrics() if args.metrics == "auto" else \
        [m.strip() for m in args.metrics.split(",") if m.strip()]
    from facegan.metrics.registry import validate_metric_names
    try:
        metrics = [r.label for r in validate_metric_names(metrics)]
    except ValueError as e:
        raise StudyError(f"--metrics: {e}") from None
    protocol = Protocol(tuple(metrics), int(args.eval_images), every, extractor=args.extractor)
    # every config is resolved (and so validated) before anything trains
    configs = {(r.name, s): resolve_config(r, common, s, budget, trainer_eval_overrides(protocol))
               for r in runnable for s in seeds}
    if args.rerun_row is not None:
        return _rerun(args, runnable, seeds[0], configs, protocol, budget, work_dir, log)

    data = None
    if not args.report_only:
        data = args.data or ensure_faces(cache_dir, args.resolution, log)
        from facegan import study_runner
        jobs = [(r, s) for r in runnable for s in seeds]
        eta = study_runner.StudyClock(jobs, budget, work_dir, log)
        for r, s in jobs:
            study_runner.run_one(r, s, configs[(r.name, s)], protocol, data, budget,
                                 run_dir_for(work_dir, r.name, s), eta, log)
    committed = None
    if args.merge_committed:
        if not args.report_only:
            raise StudyError("--merge-committed only with --report-only (train first, then merge)")
        committed = load_committed(args.merge_committed, budget, protocol)
        drop = {n.strip() for n in args.drop_committed.split(",") if n.strip()}
        unknown = sorted(drop - {r.name for r in rows_all})
        if unknown:
            raise StudyError(f"--drop-committed: unknown row(s) {unknown}")
        committed = dict(committed, rows=[r for r in committed["rows"] if r.get("row") not in drop])
        for name in sorted(drop):
            skipped.setdefault(name, "committed runs predate a fix to this row; rerun not finished yet")
    summary = summarize(rows, work_dir, seeds, committed)
    grids = {}
    for r in summary:
        for s in seeds:
            g = os.path.join(run_dir_for(work_dir, r["row"], s), GRID_FILE)
            if r["n"] and os.path.exists(g):
                grids[r["row"]] = g
                break
        old_grid = os.path.join(args.out, "quality", f"grid_{r['row']}.png")
        if committed and r["n"] and r["row"] not in grids and os.path.exists(old_grid):
            grids[r["row"]] = old_grid     # a merged row keeps its committed grid
    seconds = sum((_read_json(os.path.join(run_dir_for(work_dir, r.name, s), DONE_FILE)) or {}).get("seconds", 0)
                  for r in rows for s in seeds)
    data_label = data or args.data or os.path.join(cache_dir, f"celeba{args.resolution}")
    command = _command_line(argv)
    if args.report_only and not committed:   # the command that trained the runs, when an earlier report names it
        command = ((_read_json(os.path.join(args.out, "quality.json")) or {}).get("meta", {})
                   .get("command") or command)
    command = portable_command(command)
    if data_label.startswith(("/", "..", "~")):
        data_label = PATH_PLACEHOLDERS["--data"]
    meta = {"command": command, "budget_kimg": budget / 1000, "seeds": seeds,
            "resolution": args.resolution, "batch_size": args.batch_size, "protocol": protocol.to_dict(),
            "backend": "trainer", "machine": machine_info(), "seconds_total": seconds,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "data": ("the shared CelebA faces (10,000 `img_align_celeba` images; `facegan ingest --crop celeba`)"
                     if not args.data else f"`{data_label}`"),
            "rerun_hint": rerun_command(command, rows[0].name, seeds[0])}
    if committed:
        meta["merged_from"] = {"path": os.path.basename(args.merge_committed),
                               "date": committed["meta"].get("date"),
                               "command": portable_command(committed["meta"].get("command") or "")}
        # wall time: this work dir's runs only; the committed runs' stays in the committed file's meta
    files = write_report(summary, args.out, meta, grids, skipped)
    log(f"study: wrote {files['md']} ({sum(1 for r in summary if r['n'])} of {len(summary)} rows finished)")
    return 0


def load_committed(path: str, budget: int, protocol: Protocol) -> Dict[str, Any]:
    """A quality.json to merge with: refused unless its budget and protocol are this command's."""
    committed = _read_json(path)
    if committed is None or "rows" not in committed or "meta" not in committed:
        raise StudyError(f"--merge-committed {path}: not a quality.json written by this tool")
    if abs(committed["meta"]["budget_kimg"] * 1000 - budget) > 0.5:
        raise StudyError(f"--merge-committed {path}: its runs had {committed['meta']['budget_kimg']:g} kimg; "
                         f"pass --budget-kimg {committed['meta']['budget_kimg']:g}")
    if dict(committed["meta"]["protocol"], metrics=list(committed["meta"]["protocol"]["metrics"])) != \
            dict(protocol.to_dict(), metrics=list(protocol.metrics)):
        raise StudyError(f"--merge-committed {path}: its protocol {committed['meta']['protocol']} differs from "
                         "this command's; pass the same --metrics/--eval-images/--eval-every-kimg")
    return committed


def _rerun(args, rows, seed, configs, protocol, budget, work_dir, log) -> int:
    committed = _read_json(os.path.join(args.out, "quality.json"))
    if committed is None:
        raise StudyError(f"{os.path.join(args.out, 'quality.json')}: no committed study to compare with")
    row = rows[0] if rows else None
    if row is None:
        raise StudyError(f"row {args.rerun_row!r} cannot run in this checkout")
    crow = next((r for r in committed["rows"] if r["row"] == row.name), None)
    if crow is None:
        raise StudyError(f"row {row.name!r} is not in {args.out}/quality.json")
    if abs(committed["meta"]["budget_kimg"] * 1000 - budget) > 0.5:
        raise StudyError(f"the committed study ran {committed['meta']['budget_kimg']:g} kimg per row; "
                         f"pass --budget-kimg {committed['meta']['budget_kimg']:g}")
    if dict(committed["meta"]["protocol"], metrics=list(committed["meta"]["protocol"]["metrics"])) != \
            dict(protocol.to_dict(), metrics=list(protocol.metrics)):
        raise StudyError(f"the protocol differs from the committed one ({committed['meta']['protocol']}); "
                         "pass the same --metrics/--eval-images/--eval-every-kimg")
    data = args.data or ensure_faces(args.cache_dir or cache_dir_default(), args.resolution, log)
    from facegan import study_runner
    rd = os.path.join(work_dir, "rerun", row.name, f"seed{seed}")
    shutil.rmtree(rd, ignore_errors=True)
    clock = study_runner.StudyClock([(row, seed)], budget, os.path.join(work_dir, "rerun"), log)
    study_runner.run_one(row, seed, configs[(row.name, seed)], protocol, data, budget, rd, clock, log)
    recs = read_records(os.path.join(rd, RECORDS_FILE))
    new = record_values(max(recs, key=lambda r: int(r["images_shown"])))
    gap = loss_gap(os.path.join(rd, "logs"))
    if gap is not None:
        new["loss_gap"] = gap
    result = compare_rerun(crow, seed, new, pooled_spreads(committed["rows"]))
    for c in result:
        log(f"  {c['metric']:<16} committed {fmt(c['committed'])}  rerun {fmt(c['rerun'])}  "
            f"tolerance ±{fmt(c['tolerance'])}  {'ok' if c['within'] else 'OUTSIDE'}")
    ok = all(c["within"] for c in result)
    print(json.dumps({"row": row.name, "seed": seed, "reproduced": ok, "comparison": result}, indent=2))
    return 0 if ok else 1


def cli_main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="bench/quality.py", description=__doc__.splitlines()[0],
                                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    argv = list(sys.argv[1:] if argv is None else argv)
    return main(p.parse_args(argv), argv)
