"""Training and evaluation for the quality study (facegan/study.py); TensorFlow is imported here.

`run_one` trains one (row, seed) to the budget in segments that end at the evaluation points
(one `train_lib.Trainer`, built once; each segment is `Trainer.run()` to a later step, which
checkpoints at its end, so every record's step has a checkpoint and a killed run resumes exactly).
Evaluation, backend "trainer": the trainer's own metrics during training (`eval.*` config),
read back from `metrics.jsonl`. Backend "study": `SelfEval` below scores the generator that
would be exported (the EMA generator when `tricks.ema_decay > 0`) through
`facegan.metrics.evaluate`, on the latent stream `sample_latents(protocol.seed, i)` (the serving
contract's, so a run's last record scores what `facegan evaluate --seed` scores on its export),
against the eval split of the same Examples (mirrored copies excluded, as the evaluator does; a
progressive stage's output is upscaled to the final resolution first, as in PGGAN),
and appends a record of the trainer's layout.
"""
from __future__ import annotations

import datetime
import math
import os
import time
from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf

from facegan import examples_io, schema
from facegan import study as S
from facegan.images import save_grid

GRID_SAMPLES, GRID_COLS = 64, 8


class StudyClock:
    """Overall progress of the session: kimg done / to do across all (row, seed) jobs, ETA from
    this session's measured rate (training and evaluation together)."""

    def __init__(self, jobs, budget: int, work_dir: str, log):
        self.log, self.budget, self.start = log, int(budget), time.monotonic()
        self.jobs = len(jobs)
        self.todo = 0
        for r, s in jobs:
            recs = S.read_records(os.path.join(S.run_dir_for(work_dir, r.name, s), S.RECORDS_FILE))
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
        vals = ", ".join(f"{k} {S.fmt(v)}" for k, v in sorted(values.items()))
        self.log(f"study [{self.index}/{self.jobs}] {row} seed {seed}: {shown / 1000:g}/{self.budget / 1000:g} kimg"
                 f"  {vals}  | session {self.done / 1000:.1f}/{self.todo / 1000:.1f} kimg, "
                 f"elapsed {_hms(time.monotonic() - self.start)}, {self.eta()}")


def _hms(s: float) -> str:
    s = int(s)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


@tf.function(reduce_retracing=True)
def _latents(seed, start, num, z_dim: int):
    from facegan.generator.ops import sample_latents
    return sample_latents(seed, start, num, z_dim)


def latents(seed: int, start: int, num: int, z_dim: int) -> tf.Tensor:
    return _latents(tf.constant(seed, tf.int64), tf.constant(start, tf.int64), tf.constant(num, tf.int64), z_dim)


def upscale_nearest(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 [N, r, r, 3] -> [N, size, size, 3] by pixel repetition (size a multiple of r): a
    progressive stage's output shown at the final resolution, as PGGAN's generator upscales the
    output of a lower level of detail (nearest neighbour), so every record compares with the same
    full-resolution real images."""
    f = size // images.shape[1]
    return images if f == 1 else np.repeat(np.repeat(images, f, axis=1), f, axis=2)


class SelfEval:
    """The study's own evaluation between segments (backend "study"); records as the trainer's."""

    def __init__(self, trainer, protocol: "S.Protocol", data: str, run_dir: str, cache_dir: str):
        from facegan.metrics.registry import get_metric, validate_metric_names
        self.t, self.p = trainer, protocol
        self.path = os.path.join(run_dir, S.RECORDS_FILE)
        self.cache_dir = cache_dir
        reqs = validate_metric_names(list(protocol.metrics))
        limit = max(get_metric(r).images_needed(protocol.num_images) for r in reqs)
        self.real_split = schema.EVAL_SPLIT
        try:
            imgs = list(examples_io.iterate_images(data, schema.EVAL_SPLIT, batch_size=256,
                                                   include_mirrored=False, limit=limit))
        except FileNotFoundError:
            imgs = []
        if not imgs:   # an artifact without an eval split: compare with the training images, said so
            self.real_split = schema.TRAIN_SPLIT
            imgs = list(examples_io.iterate_images(data, schema.TRAIN_SPLIT, batch_size=256,
                                                   include_mirrored=False, limit=limit))
        if not imgs:
            raise S.StudyError(f"{data}: no images to evaluate against")
        self.reals = np.concatenate(imgs)
        from facegan.metrics.cache import hash_batches
        self.real_key = f"{self.real_split}:{hash_batches([self.reals])}"

    def restore(self, step: int) -> List[dict]:
        """Drop records newer than the checkpoint the run resumed from (recomputed identically)."""
        recs = S.read_records(self.path)
        kept = [r for r in recs if int(r["step"]) <= int(step)]
        if len(kept) != len(recs):
            tmp = self.path + ".tmp"
            with open(tmp, "w") as f:
                f.write("".join(S.json.dumps(r, sort_keys=True) + "\n" for r in kept))
            os.replace(tmp, self.path)
        return kept

    def run(self) -> dict:
        import facegan.metrics as M
        from facegan.components.gan_evaluator.evaluate_lib import flat_scalars
        from facegan.metrics.registry import parse_request
        t0 = time.monotonic()
        gan, cfg, p = self.t.gan, self.t.cfg, self.p
        res, full = int(gan.resolution), int(cfg.network.resolution)
        reals = self.reals
        z_dim = cfg.network.z_dim

        def generated(n):
            for start in range(0, int(n), 256):
                num = min(256, int(n) - start)
                yield upscale_nearest(gan.sample(latents(p.seed, start, num, z_dim), ema=True).numpy(), full)

        results = M.evaluate(list(p.metrics), generated, lambda: (reals[i:i + 256] for i in range(0, len(reals), 256)),
                             num_images=p.num_images, extractor=p.extractor, cache_dir=self.cache_dir,
                             real_cache_key=self.real_key, progress=False, seed=p.seed)
        headline = {}
        for key, proto in results["protocols"].items():
            v = parse_request(proto["request"]).spec.headline_value(results[key])
            if v is not None:
                headline[proto["request"]] = v
        record = {"step": self.t.step, "images_shown": self.t.images_shown, "kimg": self.t.images_shown / 1000,
                  "resolution": res, "compared_at": full, "weights": "ema" if gan.G_ema is not None else "generator",
                  "real_split": self.real_split, "headline": headline,
                  "scalars": flat_scalars({k: v for k, v in results.items() if k not in ("protocols", "cache", "comparable")}),
                  "protocols": results["protocols"], "seconds": round(time.monotonic() - t0, 3),
                  "source": "study", "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        line = _to_json(record)
        with open(self.path, "a") as f:
            f.write(line + "\n")
        return S.json.loads(line)


def _to_json(obj) -> str:
    """numpy scalars and arrays as JSON numbers and lists."""
    return S.json.dumps(obj, sort_keys=True, default=lambda o: o.tolist())


def train_to(trainer, target_images: int) -> None:
    """Run the trainer until it has shown >= target_images. Steps are counted at the largest batch
    any stage uses (a progressive stage change alters the batch mid-segment) and the loop repeats
    until the images are reached, so a segment overshoots by less than one step's images."""
    n = trainer.cfg.network
    largest = max([trainer.gan.global_batch_size, trainer.cfg.optim.batch_size,
                   *[int(b) for b in (n.batch_sizes or {}).values()]])
    while trainer.images_shown < target_images:
        per_step = largest * trainer.cfg.tricks.d_steps
        steps = trainer.step + max(1, math.ceil((target_images - trainer.images_shown) / per_step))
        trainer.cfg = trainer.cfg.override({"run.steps": steps})
        trainer.run()


def run_one(row, seed: int, cfg, protocol, backend: str, data: str, budget: int, run_dir: str,
            clock: StudyClock, log) -> dict:
    """Train + evaluate one (row, seed) to `budget` images (resuming; skipping when finished)."""
    from facegan.trainer import train_lib
    clock.next_job()
    fp, covers = S.fingerprint(cfg.to_dict(), protocol)
    started = S._read_json(os.path.join(run_dir, "study_run.json"))
    if started is not None and started.get("fingerprint") != fp:
        diff = S.diff_fields(started.get("covers", {}), covers)
        raise S.StudyError(f"row {row.name} seed {seed}: {run_dir} holds a run with a different config or "
                           f"protocol ({', '.join(diff) or 'fingerprint'}); use another --work-dir or delete it")
    done = S._read_json(os.path.join(run_dir, S.DONE_FILE))
    if done is not None and int(done["images_shown"]) >= budget:
        log(f"study [{clock.index}/{clock.jobs}] {row.name} seed {seed}: finished earlier "
            f"({done['images_shown'] / 1000:g} kimg), skipped")
        return done
    os.makedirs(run_dir, exist_ok=True)
    S.write_json_atomic(os.path.join(run_dir, "study_run.json"), {"fingerprint": fp, "covers": covers,
                                                                  "row": row.name, "seed": seed})
    t0 = time.monotonic()
    trainer = train_lib.Trainer(cfg, data, run_dir, progress=False)
    every = protocol.every_images
    ev = None
    if backend == "study":
        ev = SelfEval(trainer, protocol, data, run_dir, os.path.join(os.path.dirname(os.path.dirname(run_dir)), "eval_cache"))
        ev.restore(trainer.step if trainer.resumed_from else -1)
    while trainer.images_shown < budget:
        before = trainer.images_shown
        train_to(trainer, min(budget, (before // every + 1) * every))
        rec = ev.run() if ev is not None else _last(run_dir)
        clock.add(trainer.images_shown - before)
        clock.report(row.name, seed, trainer.images_shown, S.record_values(rec) if rec else {})
    last = _last(run_dir)
    if last is None or int(last["images_shown"]) != trainer.images_shown:   # lost to a kill after the last save
        if ev is not None:
            last = ev.run()
        else:
            trainer.run()   # the trainer redoes an evaluation lost to a kill on start
            last = _last(run_dir)
    if last is None or int(last["images_shown"]) != trainer.images_shown:
        raise S.StudyError(f"row {row.name} seed {seed}: no evaluation at the end of the budget in "
                           f"{os.path.join(run_dir, S.RECORDS_FILE)}")
    imgs = trainer.gan.sample(latents(protocol.seed, 0, GRID_SAMPLES, cfg.network.z_dim), ema=True).numpy()
    save_grid(imgs, os.path.join(run_dir, S.GRID_FILE), cols=GRID_COLS)
    seconds = time.monotonic() - t0 + (done or {}).get("seconds", 0)
    marker = {"row": row.name, "seed": seed, "fingerprint": fp, "images_shown": trainer.images_shown,
              "step": trainer.step, "budget_images": budget, "final": S.record_values(last),
              "seconds": round(seconds, 1), "backend": backend}
    S.write_json_atomic(os.path.join(run_dir, S.DONE_FILE), marker)
    return marker


def _last(run_dir: str) -> Optional[dict]:
    recs = S.read_records(os.path.join(run_dir, S.RECORDS_FILE))
    return max(recs, key=lambda r: int(r["images_shown"])) if recs else None
