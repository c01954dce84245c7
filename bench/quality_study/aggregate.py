"""Aggregation: per-row means and spreads over seeds, the verdict on each paper's claim, the
face gate, loss gaps and late swings."""
from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .common import DONE_FILE, RECORDS_FILE
from .matrix import Claim, Row
from .records import read_records, record_values, run_dir_for


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
    return dict(entry, source=committed_source(committed, entry.get("source"))), curve


def committed_source(committed: Dict[str, Any], source: Optional[str]) -> str:
    """Where a copied entry came from: the committed file it was first copied from and the run behind
    it. An entry merged again keeps that first origin instead of naming every merge in between."""
    marker = "committed quality.json"
    if source and marker in source:
        return source[source.rindex(marker):]
    here = f"{marker} ({committed.get('meta', {}).get('date', 'undated')})"
    return f"{here}: {source}" if source else here


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
