"""Training for the quality study (command.py); TensorFlow is imported here.

`run_one` trains one (row, seed) to the budget in segments that end at the evaluation points
(one `train_lib.Trainer`, built once; each segment is `Trainer.run()` to a later step, which
checkpoints at its end, so every record's step has a checkpoint and a killed run resumes exactly).
Evaluation is the trainer's own metrics during training (the study's protocol as its `eval.*`
config, trainer/periodic_eval.py), read back from the run's `metrics.jsonl`.
"""
from __future__ import annotations

import os
import time
from typing import Dict, Optional

import numpy as np

from facegan.images import save_grid
from facegan.jsonable import write_json_atomic
from facegan.trainer.periodic_eval import generated_batches

from .common import DONE_FILE, GRID_FILE, GRID_RAW_FILE, RECORDS_FILE, REPO, StudyError
from .protocol import fingerprint, run_differences
from .records import read_records, record_values, run_dir_for
from .aggregate import _read_json, fmt

GRID_SAMPLES, GRID_COLS = 64, 8


class StudyClock:
    """Overall progress of the session: kimg done / to do across all (row, seed) jobs, ETA from
    this session's measured rate (training and evaluation together)."""

    def __init__(self, jobs, budget: int, work_dir: str, log):
        self.log, self.budget, self.start = log, int(budget), time.monotonic()
        self.jobs = len(jobs)
        self.todo = 0
        for r, s in jobs:
            recs = read_records(os.path.join(run_dir_for(work_dir, r.name, s), RECORDS_FILE))
            shown = max([int(x["images_shown"]) for x in recs], default=0)
            self.todo += max(0, self.budget - shown)
        self.done = 0
        self.index = 0

    def next_job(self):
        self.index += 1

    def add(self, images: int):
        self.done += max(0, int(images))

    def eta(self) -> str:
        el = time.monotonic() - self.start
        if self.done <= 0:
            return "ETA unknown"
        left = max(0, self.todo - self.done) * el / self.done
        return f"ETA {_hms(left)} ({el / (self.done / 1000):.1f} s/kimg)"

    def report(self, row: str, seed: int, shown: int, values: Dict[str, float]):
        vals = ", ".join(f"{k} {fmt(v)}" for k, v in sorted(values.items()))
        self.log(f"study [{self.index}/{self.jobs}] {row} seed {seed}: {shown / 1000:g}/{self.budget / 1000:g} kimg"
                 f"  {vals}  | session {self.done / 1000:.1f}/{self.todo / 1000:.1f} kimg, "
                 f"elapsed {_hms(time.monotonic() - self.start)}, {self.eta()}")


def _hms(s: float) -> str:
    s = int(s)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def steps_to(trainer, target_images: int) -> int:
    """Steps from the trainer's state until it has shown >= target_images, with the batch each step
    will use (a progressive stage's own batch size, chosen from the images shown before the step
    as `Trainer._sync_stage` does), so a segment ends exactly where the first step reaches it."""
    images, steps = trainer.images_shown, 0
    while images < target_images:
        images += trainer._batch_for(trainer._stage(images)) * trainer.cfg.tricks.d_steps
        steps += 1
    return steps


def train_to(trainer, target_images: int) -> None:
    """Run the trainer until it has shown >= target_images, ending at the first step that reaches
    them (an evaluation point of the trainer's schedule, so no extra end-of-run evaluation)."""
    while trainer.images_shown < target_images:
        steps = trainer.step + max(1, steps_to(trainer, target_images))
        trainer.cfg = trainer.cfg.override({"run.steps": steps})
        trainer.run()


def grid_images(trainer, seed: int, num: int = GRID_SAMPLES, ema: bool = True) -> np.ndarray:
    """The first `num` images of the evaluated stream (the evaluator's latents, and for a
    conditional run its per-image attribute requests), from the trainer's current weights
    (the EMA generator where there is one, else / with ema=False the raw one)."""
    n_attr = len([a for a in trainer.cfg.condition.attributes.split(",") if a.strip()])
    sample = generated_batches(lambda z, y=None: trainer.gan.sample(z, ema=ema, attributes=y),
                               trainer.cfg.network.z_dim, seed, num, n_attr)
    return np.concatenate(list(sample(num)))


def run_one(row, seed: int, cfg, protocol, data: str, budget: int, run_dir: str,
            clock: StudyClock, log) -> dict:
    """Train + evaluate one (row, seed) to `budget` images (resuming; skipping when finished)."""
    from facegan.trainer import train_lib
    clock.next_job()
    fp, covers = fingerprint(cfg.to_dict(), protocol)
    started = _read_json(os.path.join(run_dir, "study_run.json"))
    if started is not None and started.get("fingerprint") != fp:
        from facegan.trainer.config import Config
        diff = run_differences(started.get("covers", {}), covers, Config().to_dict())
        if diff or "covers" not in started:
            raise StudyError(f"row {row.name} seed {seed}: {run_dir} holds a run with a different config or "
                               f"protocol ({', '.join(diff) or 'fingerprint'}); use another --work-dir or delete it")
        fp = started["fingerprint"]   # the same run, made before config fields that sit at their defaults
    done = _read_json(os.path.join(run_dir, DONE_FILE))
    if done is not None and int(done["images_shown"]) >= budget:
        log(f"study [{clock.index}/{clock.jobs}] {row.name} seed {seed}: finished earlier "
            f"({done['images_shown'] / 1000:g} kimg), skipped")
        return done
    os.makedirs(run_dir, exist_ok=True)
    # Wall seconds spent on this run before: a finished run being extended, or a run killed after
    # an evaluation (study_run.json keeps the total at each one; time after the last is lost).
    before_s = float((done if done is not None else started or {}).get("seconds", 0) or 0)
    started_json = {"fingerprint": fp, "covers": covers, "row": row.name, "seed": seed}

    def note_seconds(total):
        write_json_atomic(os.path.join(run_dir, "study_run.json"), {**started_json, "seconds": round(total, 1)})

    note_seconds(before_s)
    t0 = time.monotonic()
    trainer = train_lib.Trainer(cfg, data, run_dir, progress=False)
    every = protocol.every_images
    while trainer.images_shown < budget:
        before = trainer.images_shown
        train_to(trainer, min(budget, (before // every + 1) * every))
        rec = _last(run_dir)
        clock.add(trainer.images_shown - before)
        clock.report(row.name, seed, trainer.images_shown, record_values(rec) if rec else {})
        note_seconds(before_s + time.monotonic() - t0)
    last = _last(run_dir)
    if last is None or int(last["images_shown"]) != trainer.images_shown:   # lost to a kill after the last save
        trainer.run()   # the trainer redoes an evaluation lost to a kill on start
        last = _last(run_dir)
    if last is None or int(last["images_shown"]) != trainer.images_shown:
        raise StudyError(f"row {row.name} seed {seed}: no evaluation at the end of the budget in "
                           f"{os.path.join(run_dir, RECORDS_FILE)}")
    save_grids(trainer, protocol.seed, run_dir, last)
    seconds = before_s + time.monotonic() - t0
    marker = {"row": row.name, "seed": seed, "fingerprint": fp, "images_shown": trainer.images_shown,
              "step": trainer.step, "budget_images": budget, "final": record_values(last),
              "seconds": round(seconds, 1), "backend": "trainer", "commit": COMMIT}
    write_json_atomic(os.path.join(run_dir, DONE_FILE), marker)
    return marker


def save_grids(trainer, seed: int, run_dir: str, last: dict) -> None:
    """grid.png from the exported (EMA) weights; also grid_raw.png from the raw G when the last
    evaluation says the EMA was still warming up (its scores are then `raw_headline`, issue 20)."""
    save_grid(grid_images(trainer, seed), os.path.join(run_dir, GRID_FILE), cols=GRID_COLS)
    if (last.get("ema") or {}).get("warming_up"):
        save_grid(grid_images(trainer, seed, ema=False), os.path.join(run_dir, GRID_RAW_FILE), cols=GRID_COLS)


def git_commit() -> Optional[str]:
    """The checkout's commit (+ "-dirty" with uncommitted changes), or None outside a git checkout:
    the report says which code trained each run."""
    import subprocess
    try:
        sha = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (sha + ("-dirty" if dirty else "")) if sha else None


def _last(run_dir: str) -> Optional[dict]:
    recs = read_records(os.path.join(run_dir, RECORDS_FILE))
    return max(recs, key=lambda r: int(r["images_shown"])) if recs else None


COMMIT = git_commit()   # at import, before training: the code this process runs, not the checkout's later state
