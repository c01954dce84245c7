"""Metrics during training: score the generator every `eval.every_images` images.

The same metrics, with the same protocol, as the evaluator: requests go through the metric
registry (metrics/registry.py) and the metric contract `facegan.metrics.calc.calc_metrics` (for the
streaming metrics one pass over the generator and one over the real images, the content-keyed
real-statistics cache of metrics/cache.py, plus its in-memory `RealMemo` for SWD, so every real
side is computed once per run), and the generated stream is the evaluator's: the networks are seen
as a `facegan.generator.SampledGenerator` whose latent row i is `sample_latents(eval.seed, i)` (the
serving contract's stream) and, for a conditional run, whose request row i is the evaluator's
(`requested_attributes`), so the last evaluation of a run scores exactly the images `facegan
evaluate` scores on its export with the same seed and counts (tested). The sample is bounded
(`eval.num_images` per metric), so an evaluation costs seconds, not the protocol's 10k.
Metrics the registry marks `auto_when` a generator provides something (attribute_control for a
conditional run) are scored too; a metric that cannot be computed here (`Metric.unavailable`) is
skipped with the reason in every record.

PeriodicEval takes explicit values from the training loop (the eval config, the run and output
folders, the training files, the checkpoint, the TensorBoard writer, the generator's shape) and, at
each `run`, the model being trained (`sample(z, ema=, attributes=)`, `resolution`, `G_ema`,
`ema_state()`); it never reads the trainer.

Which weights: the weights that are exported, i.e. the generator EMA when the config keeps one
(`tricks.ema_decay` or `tricks.ema_kimg`; else the generator itself); every record says which
(`weights`) and, for an EMA, its horizon (`ema`: trainer/ema.py, GAN.ema_state). The raw
generator is scored too (`raw_headline`, TensorBoard `eval_raw/<metric>`) while the EMA is warming
up (its ramp below the full half-life, or its newest block's starting weights still > 1% of it),
and always with `eval.also_raw`: an EMA that still shows its initialisation is then visible.

Outputs (the chief writes run_dir; other multi-worker tasks their scratch folder):
- `metrics.jsonl`: one line per evaluation: step, images shown, resolution, weights, the headline
  number of each metric (`headline`), every sub-value (`scalars`), the protocols, seconds spent,
  the evaluation's share of wall time so far, whether it is the best so far;
- TensorBoard: `eval/<metric>` (the registry's headline number, e.g. `eval/swd`, `eval/fid`),
  `eval_detail/<result key>/<part>` (SWD per level, real-pair MS-SSIM, KID std, ...),
  `eval/memorization/<score>`, `perf/eval_fraction`, `perf/eval_seconds`;
- `best/`: the full training checkpoint of the best evaluation by `eval.best_metric` (direction
  from the registry: lower SWD/FID/KID, higher face-detection rate), kept by its own
  CheckpointManager (max 1), plus `best/best.json`. A progressive run compares only evaluations
  at its latest resolution (a 16px SWD is not a 64px SWD).
Real images: the Examples artifact's eval split next to the training split (the TFX Trainer's
`Split-train/*` patterns and `facegan train --data <artifact>` both have one), else the training
files themselves (logged and recorded as `real_split: "train"`); read once per resolution
(the bounded sample stays in memory), mirrored copies excluded as the evaluator does.
Feature metrics (FID/KID/IS, the memorization check's feature space) need the extractor's
weights; where they are missing, FID/KID/IS are skipped with the reason in every record. Nothing
that was not asked for is computed: the extractor is loaded (and Inception's weights downloaded)
only for a requested metric that uses it; the memorization check reuses it then, or else uses
`eval.extractor` only when it needs no download, and is otherwise skipped with the reason in
every record (`skipped.memorization`) -- never run on random features as a stand-in.

Resume: records newer than the checkpoint the run resumes from are dropped (resume is exact, so
they are recomputed identically), best tracking is rebuilt from the file, and an evaluation lost
to a kill (its checkpoint saved, its record not written) is redone on start. Evaluations happen
right after a checkpoint save (the loop forces one at each evaluation), so every record's step
has a checkpoint. Under a tf.distribute strategy the evaluation runs in the Python loop, outside
the replica step; every multi-worker task runs it (sampling reads synchronized BatchNorm
statistics with collective ops), so all of them reach the same best decision without a broadcast.
"""
from __future__ import annotations

import datetime
import json
import logging
import os
import time
from typing import Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from facegan import examples_io, schema
from facegan.jsonable import jsonable
from facegan.generator.stream import SampledGenerator
from facegan.metrics.report import headline_scalars   # the evaluator's names
from facegan.trainer.runs import best_record, better  # noqa: F401  (one definition)

log = logging.getLogger("facegan.train.eval")

METRICS_FILE = "metrics.jsonl"
BEST_DIR = "best"
BEST_FILE = "best.json"
FALLBACK_EXTRACTOR = "random_tiny"
_MEMORIZATION_SCORES = ("score", "copy_fraction", "nn_ratio", "exact_copy_fraction")


# -- inputs -----------------------------------------------------------------------------------
def eval_split_files(train_files: Sequence[str]):
    """(files, split name) of the real images to compare with: the eval split beside the train
    split when the train files are one artifact's `Split-train`, else the train files."""
    dirs = {os.path.dirname(f) for f in train_files}
    if len(dirs) == 1:
        d = dirs.pop()
        if os.path.basename(d.rstrip("/")) == f"Split-{schema.TRAIN_SPLIT}":
            uri = os.path.dirname(d.rstrip("/"))
            try:
                return examples_io.open_checked(examples_io.split_files(uri, schema.EVAL_SPLIT)), schema.EVAL_SPLIT
            except FileNotFoundError:
                pass
    return list(train_files), schema.TRAIN_SPLIT


def read_images(files: Sequence[str], resolution: int, limit: int, info: Dict) -> np.ndarray:
    """The first `limit` non-mirrored images of `files` (file order) as uint8 [N, R, R, 3]: the
    stored `image_<R>` when ingestion wrote one, else the full image area-resized and rounded
    (as trainer/data.py feeds D)."""
    key = info["keys"].get(resolution, schema.IMAGE)
    spec = examples_io.feature_spec((key,))
    ds = tf.data.TFRecordDataset(list(files), compression_type=info["compression"])
    ds = ds.map(lambda s: tf.io.parse_single_example(s, spec))
    ds = ds.filter(lambda e: tf.equal(e[schema.MIRRORED], 0)).filter(examples_io.is_real).take(limit)

    def decode(e):
        img = tf.io.decode_png(e[key], channels=3)
        if key == schema.IMAGE and info["target"] != resolution:
            x = tf.image.resize(tf.cast(img, tf.float32), [resolution, resolution], method="area")
            img = tf.cast(tf.clip_by_value(tf.round(x), 0, 255), tf.uint8)
        return tf.ensure_shape(img, [resolution, resolution, 3])

    batches = [b.numpy() for b in ds.map(decode).batch(256)]
    if not batches:
        raise ValueError(f"{files[0]}: no images to evaluate against")
    return np.concatenate(batches)


def generated_batches(sample_fn, z_dim: int, seed: int, batch_size: int, num_attributes: int = 0):
    """fn(n) -> uint8 batches of the seed's stream, rows [0, n), through `sample_fn(z)` (conditional,
    num_attributes > 0: `sample_fn(z, attributes)` with the evaluator's requests): the generator
    contract's one stream (facegan.generator.SampledGenerator), for callers holding a function."""
    gen = SampledGenerator(sample_fn, z_dim, 0, [f"attribute{i}" for i in range(int(num_attributes))])
    return lambda n: gen.generated_batches(n, batch_size, seed)


def upsample_nearest(images: np.ndarray, factor: int) -> np.ndarray:
    """uint8 [N, r, r, 3] -> [N, r*factor, r*factor, 3] by pixel repetition (PGGAN's export of an
    unfinished stage; the same as trainer.networks.progan.upsampled_generator)."""
    return np.repeat(np.repeat(images, factor, axis=1), factor, axis=2)


# -- the records file -------------------------------------------------------------------------
def read_records(path: str) -> List[Dict]:
    """The records of a metrics.jsonl (a torn last line, from a kill mid-write, is skipped)."""
    if not tf.io.gfile.exists(path):
        return []
    out = []
    with tf.io.gfile.GFile(path) as f:
        for i, line in enumerate(f):
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                log.warning("%s line %d is not JSON (a write cut short?); skipped", path, i + 1)
    return out


def _write_records(path: str, records: List[Dict]) -> None:
    tmp = path + ".tmp"
    with tf.io.gfile.GFile(tmp, "w") as f:
        f.write("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
    tf.io.gfile.rename(tmp, path, overwrite=True)


def _append_record(path: str, record: Dict) -> None:
    if "://" in path:   # object stores cannot append: rewrite (small file)
        _write_records(path, read_records(path) + [record])
        return
    with open(path, "a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


# `better` and `best_record` live in trainer/runs.py (TensorFlow-free: `facegan export --checkpoint
# best` picks the same checkpoint without loading TensorFlow); imported above.


# -- the evaluator ----------------------------------------------------------------------------
class PeriodicEval:
    """Owned by the training loop: `due()` after each step, `run()` right after a checkpoint save.

    `ecfg`: the run's `eval` config; `run_dir`: the chief's run folder (metrics.jsonl, best/ are
    read from there on resume); `out_dir`: where this task writes (a non-chief worker's scratch
    folder); `train_files` / `train_info`: the training Examples (None: a synthetic run, refused)
    and trainer.data.inspect_files' description; `checkpoint`: what `best/` saves; `writer`: the
    TensorBoard summary writer; `z_dim`, `resolution` (the target: what is scored),
    `conditioning` (attribute names the generator conditions on), `classifier_steps` (attribute
    classifiers)."""

    def __init__(self, ecfg, *, run_dir: str, out_dir: str, train_files: Optional[Sequence[str]],
                 train_info: Optional[Dict], checkpoint, writer, z_dim: int, resolution: int,
                 conditioning: Sequence[str] = (), classifier_steps: Optional[int] = None):
        from facegan.metrics.registry import METRICS, get_metric, parse_request, validate_metric_names
        self.ecfg = e = ecfg
        if train_files is None:
            raise ValueError("eval.every_images needs real images to compare with (--data); "
                             "set eval.every_images=0 for --synthetic runs")
        self.run_dir, self.writer = run_dir, writer
        self.train_files, self.train_info = list(train_files), train_info
        self.z_dim, self.target, self.classifier_steps = int(z_dim), int(resolution), classifier_steps
        self.conditioning = list(conditioning)
        provides = SampledGenerator(None, z_dim, resolution, self.conditioning).provides
        requested = validate_metric_names(e.metrics) if e.metrics.strip() else []
        auto = [n for n, s in METRICS.items() if s.auto_when and s.auto_when <= provides]
        self.requests = list(dict.fromkeys(requested + validate_metric_names(auto) if auto else requested))
        self.metric_of = {r.label: get_metric(r) for r in self.requests}
        self.best_metric = e.best_metric or None
        self.direction = parse_request(self.best_metric).spec.direction if self.best_metric else None
        self.every = int(e.every_images)
        self.out_dir = out_dir
        self.path = os.path.join(self.out_dir, METRICS_FILE)
        self.best_dir = os.path.join(self.out_dir, BEST_DIR)
        self.cache_dir = e.cache_dir or os.path.join(run_dir, "eval_cache")
        self.best_manager = tf.train.CheckpointManager(checkpoint, self.best_dir, max_to_keep=1,
                                                       checkpoint_name="best")
        self.real_files, self.real_split = eval_split_files(self.train_files)
        if self.real_split != schema.EVAL_SPLIT:
            log.warning("eval: no eval split beside the training files; comparing with the "
                        "training images (recorded as real_split 'train')")
        self.real_excluded = examples_io.count_synthetic(self.real_files)   # synthetic: never a real
        from facegan.metrics.attributes import examples_artifact
        self.examples_uri = examples_artifact(self.train_files)   # labelled splits (classifiers)
        self.real_info = None
        self._reals: Dict[int, tuple] = {}
        self._train_sample: Dict[int, np.ndarray] = {}
        self._extractor = None
        from facegan.metrics.cache import RealMemo
        self.real_memo = RealMemo()   # SWD's real side, computed once per run (not in the npz cache)
        self.skipped: Dict[str, str] = {}
        self.seconds = 0.0
        self.started = time.monotonic()
        self.records: List[Dict] = []
        self.best: Optional[Dict] = None
        self.last_images = 0

    # -- state -----------------------------------------------------------------------------------
    def restore(self, resumed_step: Optional[int]) -> None:
        """Rebuild best tracking from the chief's metrics.jsonl; drop records past `resumed_step`."""
        shared = os.path.join(self.run_dir, METRICS_FILE)
        records = read_records(shared)
        step = -1 if resumed_step is None else int(resumed_step)
        kept = [r for r in records if int(r["step"]) <= step]
        if len(kept) != len(records):
            log.warning("eval: dropping %d record(s) of %s newer than the %s", len(records) - len(kept),
                        shared, "fresh start" if resumed_step is None else f"resumed step {step}")
            _write_records(self.path, kept)
        self.records = kept
        self.last_images = max([int(r["images_shown"]) for r in kept], default=0)
        if self.best_metric:
            self.best = best_record(kept, self.best_metric, self.direction)
            saved = tf.train.latest_checkpoint(os.path.join(self.run_dir, BEST_DIR))
            if self.best is not None and (not saved or _step_of(saved) != int(self.best["step"])):
                log.warning("eval: best record at step %d has no checkpoint in %s (found %s); the "
                            "next improvement saves one", self.best["step"],
                            os.path.join(self.run_dir, BEST_DIR), saved)
                self.best = dict(self.best, checkpoint=None)

    def due(self, images_shown: int) -> bool:
        return self.every > 0 and images_shown >= (self.last_images // self.every + 1) * self.every

    def final_due(self, images_shown: int) -> bool:
        """At the end of a run: evaluate the final state unless it just was (runs shorter than
        `every_images` are not evaluated: the schedule never started)."""
        return self.every > 0 and images_shown >= self.every and images_shown != self.last_images

    def fraction(self) -> float:
        """Share of this process's wall time (since the loop started) spent evaluating."""
        return self.seconds / max(time.monotonic() - self.started, 1e-9)

    def best_checkpoint(self) -> Optional[str]:
        if self.best is None or self.best.get("checkpoint") is None:
            return None
        return tf.train.latest_checkpoint(os.path.join(self.run_dir, BEST_DIR))

    # -- inputs -----------------------------------------------------------------------------------
    def _real(self, resolution: int, limit: int):
        if resolution not in self._reals:
            from facegan.metrics import cache as cache_lib
            if self.real_info is None:
                from facegan.trainer import data as data_lib
                self.real_info = data_lib.inspect_files(self.real_files)
            imgs = read_images(self.real_files, resolution, limit, self.real_info)
            key = f"{self.real_split}:{cache_lib.hash_batches([imgs])}"
            self._reals[resolution] = (imgs, key)
        return self._reals[resolution]

    def _train_images(self, resolution: int, limit: int) -> np.ndarray:
        if resolution not in self._train_sample:
            self._train_sample[resolution] = read_images(self.train_files, resolution, limit, self.train_info)
        return self._train_sample[resolution]

    def _extractor_name(self) -> Optional[str]:
        """The configured extractor if it loads, else None (reason in self.skipped)."""
        if self._extractor is None:
            from facegan.metrics import WeightsUnavailableError, get_extractor
            try:
                get_extractor(self.ecfg.extractor)
                self._extractor = self.ecfg.extractor
            except WeightsUnavailableError as err:
                self._extractor = ""
                reason = " ".join(str(err).split())   # one line: it goes into every record
                for r in self.requests:
                    if r.spec.uses_extractor:
                        self.skipped[r.label] = reason
                log.warning("eval: %s unavailable, skipping %s: %s", self.ecfg.extractor,
                            ", ".join(self.skipped) or "nothing", reason)
        return self._extractor or None

    def _memorization_extractor(self, loaded: Optional[str]) -> Optional[str]:
        """The memorization check's feature space: `eval.extractor`, never a random stand-in.
        `loaded`: the extractor the requested metrics loaded (reused). When no requested metric
        uses it, it is used only if it needs no download (a check nobody's metrics need costs
        no download); else the check is skipped, the reason recorded (and logged once)."""
        if "memorization" in self.skipped:
            return None
        name = self.ecfg.extractor
        if loaded:
            return loaded
        if any(r.spec.uses_extractor for r in self.requests):   # wanted and did not load
            why = next((self.skipped[r.label] for r in self.requests if r.label in self.skipped), "")
            self.skipped["memorization"] = f"needs {name} features, which did not load: {why}"
            return None
        from facegan.metrics import WeightsUnavailableError
        from facegan.metrics.features import resolve_inception_weights
        try:
            if name == "inception":
                resolve_inception_weights(download=False)
            from facegan.metrics import get_extractor
            get_extractor(name)
            return name
        except WeightsUnavailableError:
            self.skipped["memorization"] = (
                f"compares {name} features; no requested metric needs them and their weights are "
                f"not on this machine (not downloaded for this check alone; eval.memorization=0 "
                f"turns it off)")
            log.info("eval: memorization check off: %s", self.skipped["memorization"])
            return None

    # -- one evaluation ---------------------------------------------------------------------------
    def _available(self, gen, data) -> List:
        """The requests computable from `gen` and `data`; the others skipped (reason recorded)."""
        out = []
        for r in self.requests:
            if r.label in self.skipped:
                continue
            why = self.metric_of[r.label].unavailable(gen, data)
            if why:
                self.skipped[r.label] = why
                log.warning("eval: skipping %s: %s", r.label, why)
                continue
            out.append(r)
        return out

    def _score(self, model, ema: bool, resolution: int) -> Dict:
        import facegan.metrics as M
        from facegan.metrics.calc import CalcOptions, EvalData, calc_metrics
        e = self.ecfg
        extractor = self._extractor_name() if any(r.spec.uses_extractor for r in self.requests) else None
        # A progressive stage below the target is scored as it would be exported: its output
        # upsampled (nearest, as PGGAN) to the target resolution, against reals at the target. So
        # every evaluation of a run uses one protocol, and metrics with a minimum size (SWD's 7x7
        # neighbourhoods) never see a 4x4 stage.
        factor = resolution // int(model.resolution)
        sample = (lambda z, y=None: model.sample(z, ema=ema, attributes=y)) if factor == 1 else \
            (lambda z, y=None: upsample_nearest(np.asarray(model.sample(z, ema=ema, attributes=y)), factor))
        gen = SampledGenerator(sample, self.z_dim, resolution, self.conditioning)
        # the real images: as many as the hungriest streaming (or real-reading) metric needs
        reading = [r for r in self.requests if r.label not in self.skipped
                   and (self.metric_of[r.label].streaming or r.spec.needs_real)]
        data = EvalData(examples_uri=self.examples_uri)
        if reading:
            n_real = max(self.metric_of[r.label].images_needed(e.num_images) for r in reading)
            data.real_batches, data.real_cache_key = self._real(resolution, n_real)
        requests = self._available(gen, data)
        results: Dict = {}
        if requests:
            opts = CalcOptions(seed=e.seed, batch_size=e.batch_size, extractor=extractor or FALLBACK_EXTRACTOR,
                               cache_dir=self.cache_dir, progress=False, real_memo=self.real_memo,
                               classifier_steps=self.classifier_steps)
            results = dict(calc_metrics(requests, gen, data, num_images=e.num_images, opts=opts))
        mem_extractor = self._memorization_extractor(extractor) if e.memorization else None
        if mem_extractor:
            samples = np.concatenate(list(gen.generated_batches(e.memorization, e.batch_size, e.seed)))
            reals, _ = self._real(resolution, e.num_images)
            mem = M.memorization(samples, [self._train_images(resolution, e.num_images)], None,
                                 extractor=mem_extractor, reference_batches=[reals], progress=False)
            results["memorization"] = {k: mem[k] for k in _MEMORIZATION_SCORES + ("num_generated", "num_train",
                                                                         "num_reference", "extractor")
                             if k in mem}
        return results

    def headline(self, results: Dict) -> Dict[str, float]:
        """{request label: the registry's headline number} (+ the memorization score)."""
        from facegan.metrics.registry import parse_request
        out = {}
        for key, proto in (results.get("protocols") or {}).items():
            req = proto.get("request", proto.get("metric"))
            v = parse_request(req).spec.headline_value(results.get(key))
            if v is not None:
                out[req] = v
        for name in ("memorization", "memorization_random"):
            if name in results:
                out[name] = float(results[name]["score"])
        return out

    def run(self, step: int, images_shown: int, model) -> Dict:
        """Evaluate `model` (the networks being trained) now; write the record, TensorBoard scalars
        and (if better) the best checkpoint."""
        t0 = time.monotonic()
        resolution = int(model.resolution)          # the stage (progressive runs)
        target = self.target                        # what is scored (see _score)
        weights = "ema" if model.G_ema is not None else "generator"
        results = self._score(model, True, target)
        ema = model.ema_state() if hasattr(model, "ema_state") else None
        warming = bool(ema and ema.get("warming_up"))
        raw = self._score(model, False, target) if (self.ecfg.also_raw or warming) and weights == "ema" else None
        head = self.headline(results)
        seconds = time.monotonic() - t0
        self.seconds += seconds
        record = {
            "step": int(step), "images_shown": int(images_shown), "kimg": images_shown / 1000.0,
            "resolution": resolution, "scored_resolution": target, "weights": weights, "real_split": self.real_split,
            "real_excluded_synthetic": self.real_excluded,
            "headline": head, "scalars": headline_scalars(results),
            "protocols": results.get("protocols", {}), "cache": results.get("cache", {}),
            "skipped": dict(self.skipped), "seconds": round(seconds, 3),
            "eval_fraction": round(self.fraction(), 4),
            "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        if ema is not None and weights == "ema":
            record["ema"] = ema
        if raw is not None:
            record["raw_headline"] = self.headline(raw)
        if self.best_metric:
            value = head.get(self.best_metric)
            prev = self.best if self.best is not None and int(self.best["resolution"]) == resolution else None
            record["best_metric"] = self.best_metric
            record["best"] = better(self.direction, value, None if prev is None else prev["headline"][self.best_metric])
            if record["best"]:
                # checkpoint first, record second: a kill in between leaves a record-less
                # checkpoint that the redone evaluation (same state, same numbers) overwrites.
                path = self.best_manager.save(checkpoint_number=int(step))
                record["checkpoint"] = path
                with tf.io.gfile.GFile(os.path.join(self.best_dir, BEST_FILE), "w") as f:
                    f.write(json.dumps(jsonable(record, nan_as_null=True), indent=2, sort_keys=True))
                self.best = record
        record = jsonable(record, nan_as_null=True)   # JSON has no NaN
        _append_record(self.path, record)
        self.records.append(record)
        self.last_images = int(images_shown)
        self._write_tensorboard(step, record)
        log.info("eval at step %d (%s weights, %dpx): %s  [%.1f s, %.0f%% of wall time%s]", step, weights,
                 resolution, ", ".join(f"{k}={v:.4g}" for k, v in head.items()), seconds,
                 100 * record["eval_fraction"], ", best" if record.get("best") else "")
        return record

    def _write_tensorboard(self, step: int, record: Dict) -> None:
        with self.writer.as_default(step=int(step)):
            for k, v in record["headline"].items():
                tf.summary.scalar(f"eval/{k}", v)
            for k, v in (record.get("raw_headline") or {}).items():
                tf.summary.scalar(f"eval_raw/{k}", v)
            for k, v in record["scalars"].items():
                tf.summary.scalar(f"eval_detail/{k}", v)
            tf.summary.scalar("perf/eval_fraction", record["eval_fraction"])
            tf.summary.scalar("perf/eval_seconds", record["seconds"])
        self.writer.flush()


def _step_of(checkpoint_path: str) -> int:
    return int(checkpoint_path.rsplit("-", 1)[1])
