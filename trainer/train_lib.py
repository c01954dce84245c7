"""The training loop: strategy, precision, checkpoints, NaN recovery, TensorBoard, progress.

`train(cfg, examples_uri, run_dir, steps=None, log_dir=None)` is the one entry point; the TFX
`run_fn` (trainer/run_fn.py) and `facegan train` (trainer/cli.py) are thin wrappers over it.

Run directory layout:
    run_dir/config.json            resolved config (written before the first step)
    run_dir/checkpoints/           tf.train.CheckpointManager (atomic: the `checkpoint` index
                                   file is rewritten only after the shard files are complete)
    run_dir/logs/ (or log_dir)     TensorBoard events: scalars + image grids
    run_dir/samples/step_XXXXXXX.png   EMA-generator grids from fixed latents
    run_dir/metrics.jsonl, run_dir/best/   metrics during training (eval.every_images > 0;
                                   trainer/periodic_eval.py)
    run_dir/workertemp_<i>/        multi-worker only: worker i's (non-chief) writes, removed at the end

Killed at any moment (SIGKILL included), the same command resumes: a checkpoint counts only once
the CheckpointManager's index names it (written by atomic rename after the shards), and on start
the pieces a killed save can leave (`*_temp` shard folders, `checkpoint.tmp*`, `ckpt-N` files
newer than the index) are removed before training, so they are never mistaken for a checkpoint.

Multi-worker (run.strategy "multiworker", TF_CONFIG per worker): the strategy is created before
anything touches TensorFlow's context (collective ops must be configured at program startup).
Every worker runs the same loop, because saving and sampling read synchronized variables with
collective ops; the chief (task `chief`, or worker 0 without one) writes run_dir, the others write
the same files to their own `workertemp_<i>` folder and delete it at the end. All workers resume
from the chief's checkpoints, so run_dir must be storage every worker reads (GCS, NFS). The input
stream is sharded by data (each worker takes its replicas' slices of every global batch), so N
workers train exactly like one process with the same global batch.

Full state in every checkpoint: G, D, G_ema, lens, all optimizers (slots, iterations, lr), the
step, images shown (= position in the input stream, which is a pure function of it; see
trainer/data.py), progressive alpha, the learning-rate scale and recovery count, and the
`tf.random.Generator` state that keys every random draw. A killed run resumes from the latest
checkpoint and continues exactly as if it had not stopped.

NaN/Inf in any loss or gradient norm: restore the last good checkpoint, multiply the learning
rates by `run.nan_lr_factor`, continue; after `run.max_nan_recoveries` raise `TrainingDiverged`
naming the step and the loss.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
import time
from typing import Callable, Dict, Optional, Sequence, Union

import numpy as np
import tensorflow as tf

from facegan import machine, schema
from facegan.jsonable import write_json_atomic
from facegan.images import make_grid, save_grid
from facegan.progress import Progress
from facegan import conditioning
from facegan.trainer import data as data_lib
from facegan.trainer import registry
from facegan.trainer.config import Config, ema_enabled, validate
from facegan.trainer.export import export_generator
from facegan.trainer.networks import build_networks
from facegan.trainer.networks.lens import build_lens
from facegan.trainer.networks.progan import upsampled_generator

log = logging.getLogger("facegan.train")


class TrainingDiverged(RuntimeError):
    """NaN/Inf persisted after the allowed number of checkpoint recoveries."""


@dataclasses.dataclass
class TrainResult:
    cfg: Config
    run_dir: str
    log_dir: str
    steps: int
    images_shown: int
    resolution: int
    generator: object          # the stage generator being trained (keras.Model)
    generator_ema: object      # the EMA generator (== generator when EMA is off): export this
    metrics: Dict[str, float]
    nan_recoveries: int
    checkpoint: Optional[str]
    replicas: int = 1
    gan: object = None
    selected: str = "last"             # which state the result (and its export) holds: last | best
    eval_best: Optional[dict] = None   # the best metrics.jsonl record (eval.best_metric), if any
    stage_alpha: Optional[float] = None   # progressive: fade-in weight of the stage at the end
    chief: bool = True                    # multi-worker: False on workers whose outputs are scratch
    workers: int = 1                      # processes training together (multi-worker cluster size)
    scratch_dir: Optional[str] = None     # a non-chief worker's writes (removed by `release`)


# -- environment -----------------------------------------------------------------------------
def make_strategy(name: str):
    """mirrored: all local GPUs (or the CPU); multiworker: from TF_CONFIG; default: no wrapping.

    Call before anything initializes TensorFlow's context (a tf.data pipeline, a tensor, a
    seed): MultiWorkerMirroredStrategy configures collective ops, which TensorFlow accepts only
    at program startup."""


    if name == "default":
        return tf.distribute.get_strategy()
    if name == "multiworker":
        if not os.environ.get("TF_CONFIG"):
            raise ValueError("run.strategy 'multiworker' needs the TF_CONFIG environment variable "
                             "(cluster spec and task); use 'mirrored' on one machine")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        if gpus:
            return tf.distribute.MirroredStrategy()
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=cpus)
    raise ValueError(f"run.strategy {name!r} is not one of mirrored, multiworker, default")


def worker_role(strategy):
    """(is_chief, task_id, workers) of this process: (True, 0, 1) outside a multi-worker cluster.
    The chief is task `chief`, or `worker` 0 when the cluster has no chief (TF's convention)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True, 0, 1
    task_type, task_id = resolver.task_type, int(resolver.task_id or 0)
    cluster = resolver.cluster_spec().as_dict()
    workers = sum(len(cluster.get(t, [])) for t in ("chief", "worker"))
    chief = task_type == "chief" or (task_type == "worker" and task_id == 0 and "chief" not in cluster)
    return chief, task_id, workers


def clean_partial_checkpoints(ckpt_dir: str) -> list:
    """Remove what a save killed midway leaves in `ckpt_dir`; returns the removed paths.

    tf.train.CheckpointManager writes `ckpt-N_temp/` shards, merges them into `ckpt-N.index` +
    `ckpt-N.data-*`, then names ckpt-N in the `checkpoint` index by atomic rename. Anything not
    yet named there (shard folders, index temp files, ckpt-M files with M above the latest
    named one) belongs to a save that never finished."""
    if not tf.io.gfile.isdir(ckpt_dir):
        return []
    latest = tf.train.latest_checkpoint(ckpt_dir)
    latest_n = int(latest.rsplit("-", 1)[1]) if latest else -1
    removed = []
    for name in tf.io.gfile.listdir(ckpt_dir):
        name = name.rstrip("/")
        path = os.path.join(ckpt_dir, name)
        stem = name.split(".", 1)[0]
        number = stem[len("ckpt-"):].removesuffix("_temp")
        partial = (name.endswith("_temp") or name.startswith("checkpoint.tmp")
                   or (stem.startswith("ckpt-") and number.isdigit() and int(number) > latest_n))
        if partial:
            if tf.io.gfile.isdir(path):
                tf.io.gfile.rmtree(path)
            else:
                tf.io.gfile.remove(path)
            removed.append(path)
    return removed


# -- faults: corrupt checkpoints, a full disk -------------------------------------------------
class CorruptCheckpoints(ValueError):
    """No checkpoint of the run folder loads (the message lists each one and its problem)."""


def _one_line(e: BaseException, limit: int = 160) -> str:
    text = " ".join(str(getattr(e, "message", None) or e).split())
    text = f"{type(e).__name__}: {text}"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def checkpoint_problem(path: str) -> Optional[str]:
    """None when every tensor of checkpoint `path` reads back (index parses, data files complete,
    each tensor's checksum matches: TensorFlow's bundle reader checks crc32c on every read),
    else the first error, on one line. Reads the whole checkpoint once, not into any variable."""
    try:
        reader = tf.train.load_checkpoint(path)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except Exception as e:  # noqa: BLE001 - whatever stops it loading makes it unusable
        return _one_line(e)
    return None


def _ckpt_step(path: str) -> Optional[int]:
    tail = path.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else None


def newest_loadable_checkpoint(ckpt_dir: str, fix: bool = True) -> Optional[str]:
    """The newest checkpoint of `ckpt_dir` that loads (None when there is none yet).

    Corrupt ones newer than it (a truncated data file or index, flipped bits: what a crash, a
    full disk or bad storage leaves) are skipped with one warning naming them and the steps
    lost; with `fix` (the chief), their files are renamed `corrupt-ckpt-N.*` (kept for
    inspection, never loaded again) and the index is rewritten without them, so the manager
    continues from the good one. None loading raises CorruptCheckpoints: never load corruption,
    never start over silently."""
    state = tf.train.get_checkpoint_state(ckpt_dir)
    if state is None or not state.model_checkpoint_path:
        return None
    paths = list(state.all_model_checkpoint_paths)
    if state.model_checkpoint_path not in paths:
        paths.append(state.model_checkpoint_path)
    paths.sort(key=lambda p: (_ckpt_step(p) is not None, _ckpt_step(p) or 0))
    bad, good = [], None
    for path in reversed(paths):
        problem = checkpoint_problem(path)
        if problem is None:
            good = path
            break
        bad.append((path, problem))
    names = "; ".join(f"{os.path.basename(p)} ({why})" for p, why in bad)
    if good is None:
        raise CorruptCheckpoints(f"no checkpoint in {ckpt_dir} loads: {names}. Move the folder "
                                 f"aside to train from the start")
    if bad:
        newest, step = _ckpt_step(bad[0][0]), _ckpt_step(good)
        lost = f"{newest - step} steps lost" if newest is not None and step is not None else "steps lost"
        moved = ""
        if fix:
            moved = f"; renamed {_set_aside(ckpt_dir, [p for p, _ in bad], good)}"
        log.warning("checkpoint%s %s do%s not load; resuming from %s (step %s), %s%s",
                    "s" if len(bad) > 1 else "", names, "" if len(bad) > 1 else "es",
                    os.path.basename(good), step, lost, moved)
    return good


def _set_aside(ckpt_dir: str, bad: Sequence[str], good: str) -> str:
    """Rename the files of the `bad` checkpoints `corrupt-<name>` and drop them from the index."""
    renamed = []
    for path in bad:
        prefix = os.path.basename(path)
        for name in tf.io.gfile.listdir(ckpt_dir):
            if name == prefix or name.startswith(prefix + "."):
                tf.io.gfile.rename(os.path.join(ckpt_dir, name),
                                   os.path.join(ckpt_dir, "corrupt-" + name), overwrite=True)
        renamed.append(f"corrupt-{prefix}.*")
    state = tf.train.get_checkpoint_state(ckpt_dir)
    keep = [p for p in state.all_model_checkpoint_paths if p not in bad]
    from tensorflow.python.checkpoint import checkpoint_management   # as CheckpointManager writes it
    checkpoint_management.update_checkpoint_state_internal(
        ckpt_dir, good, keep or [good], save_relative_paths=True)
    return ", ".join(renamed)


def disk_full_message(run_dir: str, export_dir: Optional[str] = None) -> str:
    """One line after a write into `run_dir` (or `export_dir`) failed on a full disk: the
    device, and where the same command resumes. Removes what the failed write left (a partial
    checkpoint save, an export without its saved_model.pb) first: it holds the space."""
    from facegan import diskspace
    ckpt_dir = os.path.join(run_dir, "checkpoints")
    try:
        clean_partial_checkpoints(ckpt_dir)
        if export_dir and tf.io.gfile.isdir(export_dir) and \
                not tf.io.gfile.exists(os.path.join(export_dir, "saved_model.pb")):
            tf.io.gfile.rmtree(export_dir)
        latest = tf.train.latest_checkpoint(ckpt_dir)
    except Exception:  # noqa: BLE001 - the message matters more than the clean-up
        latest = None
    where = diskspace.disk_full_message(export_dir or run_dir,
                                        "the export" if export_dir else "the run folder")
    if latest:
        return (f"{where}; the run is resumable: the same command continues from {latest} "
                f"(step {_ckpt_step(latest)}) once there is space")
    return f"{where}; no checkpoint was saved yet"


def resolve_precision(requested: str):
    """(policy, reason) for run.mixed_precision: `auto` by hardware (facegan/machine.py)."""
    return machine.resolve_precision(requested, has_gpu=bool(tf.config.list_physical_devices("GPU")))


def set_precision(policy: str):
    if policy == "mixed_float16" and not tf.config.list_physical_devices("GPU"):
        raise ValueError("run.mixed_precision 'mixed_float16' needs a GPU; use 'mixed_bfloat16' on CPU")
    tf.keras.mixed_precision.set_global_policy(policy)


# -- the loop --------------------------------------------------------------------------------
class Trainer:
    """Builds everything once; `run()` trains to `steps` generator steps."""

    def __init__(self, cfg: Config, data, run_dir: str, *, steps: Optional[int] = None,
                 log_dir: Optional[str] = None, synthetic: bool = False, progress: bool = True,
                 strategy=None, on_step: Optional[Callable] = None):

        cfg = validate(cfg)
        if steps is not None:
            cfg = cfg.override({"run.steps": int(steps)})
        # First, before anything touches TensorFlow's context (see make_strategy).
        self.strategy = strategy or make_strategy(cfg.run.strategy)
        self.n_replicas = self.strategy.num_replicas_in_sync
        self.chief, task_id, self.workers = worker_role(self.strategy)
        policy, reason = resolve_precision(cfg.run.mixed_precision)   # config.json records both
        cfg = cfg.override({"run.mixed_precision": policy, "run.precision_reason": reason})
        log.info("precision %s: %s", policy, reason)
        self.cfg, self.run_dir = cfg, run_dir
        # Non-chief workers write the same files to their own scratch folder (see module docstring).
        self.scratch_dir = None if self.chief else os.path.join(run_dir, f"workertemp_{task_id}")
        out_dir = self.scratch_dir or run_dir
        self.log_dir = (log_dir if self.chief else None) or os.path.join(out_dir, "logs")
        self.ckpt_dir = os.path.join(out_dir, "checkpoints")
        self.sample_dir = os.path.join(out_dir, "samples")
        for d in (run_dir, self.log_dir, self.ckpt_dir, self.sample_dir):
            tf.io.gfile.makedirs(d)
        for path in clean_partial_checkpoints(self.ckpt_dir):
            log.warning("removed %s, left by a checkpoint save that did not finish", path)
        # Every worker resumes from the chief's checkpoint, looked up before any variable exists:
        # variable creation is collective, so no worker can have saved a newer one yet.
        resume_from = newest_loadable_checkpoint(os.path.join(run_dir, "checkpoints"), fix=self.chief)
        write_json_atomic(os.path.join(out_dir, "config.json"), cfg.to_dict())
        for note in cfg.notes:
            log.info("config: %s", note)

        self.synthetic = synthetic
        self.show_progress = progress
        self.on_step = on_step
        self._read_data(cfg, data, synthetic)
        tf.keras.utils.set_random_seed(cfg.run.seed)
        set_precision(cfg.run.mixed_precision)
        self._build_model(cfg)
        gan = self.gan
        self.writer = tf.summary.create_file_writer(self.log_dir)
        z_rng = np.random.default_rng(cfg.run.seed + 7)
        self.fixed_z = z_rng.standard_normal((16, cfg.network.z_dim)).astype(np.float32)
        self.fixed_attributes = (conditioning.grid_attributes(16, len(self.attribute_names))
                                 if self.attribute_names else None)
        self._step_fns: Dict = {}
        self._reals: Dict = {}
        self._iterator = None
        self._iter_key = None
        self.resumed_from = None
        if resume_from:
            self._restore(resume_from)
            self.resumed_from = resume_from
            log.info("resumed from %s at step %d", self.resumed_from, self.step)
        else:
            gan.copy_to_ema()
            self._sync_stage()
            self.manager.save(checkpoint_number=0)   # always something good to go back to
        # Metrics during training (trainer/periodic_eval.py): built after the restore, so best
        # tracking resumes from metrics.jsonl at the resumed step.
        self.evaluator = None
        if cfg.eval.every_images:
            from facegan.trainer.periodic_eval import PeriodicEval
            self.evaluator = PeriodicEval(
                cfg.eval, run_dir=run_dir, out_dir=out_dir, train_files=None if synthetic else self.files,
                train_info=None if synthetic else self.data_info, checkpoint=self.checkpoint, writer=self.writer,
                z_dim=cfg.network.z_dim, resolution=cfg.network.resolution,
                conditioning=self.attribute_names if getattr(self.gan, "conditional", False) else (),
                classifier_steps=cfg.condition.classifier_steps)
            self.evaluator.restore(self.step if self.resumed_from else None)

    def _read_data(self, cfg: Config, data, synthetic: bool) -> None:
        """The training files, their format and (conditional configs) attribute labels, checked
        before any step; the `data.synthetic` source."""
        if not synthetic:
            self.files = data_lib.resolve_files(data)
            self.data_info = data_lib.inspect_files(self.files)
            self._num_records = None
        # a conditional config reads (images, attributes); checked before any step
        self.attribute_names = conditioning.attribute_names(cfg)
        self.labels = None
        if self.attribute_names and not synthetic:
            self.labels = data_lib.scan_attributes(self.files, self.attribute_names, cfg.condition.unlabelled)
            if self.labels["unlabelled"]:
                log.warning("condition.unlabelled=skip: %d of %d Examples lack one of %s and are left out",
                            self.labels["unlabelled"], self.labels["total"], ", ".join(self.attribute_names))
        self.synthetic_source = self._synthetic_source(cfg) if not synthetic else None

    def _build_model(self, cfg: Config) -> None:
        """The networks, the architecture's keras.Model, the random-key generator and the
        checkpoint over all of them (the same objects for training and for `from_checkpoint`)."""
        # The key generator lives outside the strategy scope: it is used in cross-replica context
        # once per step and its key is broadcast to the replicas (see trainer/replica.py).
        self.rng = tf.random.Generator.from_seed(cfg.run.seed)
        with self.strategy.scope():
            self.networks = build_networks(cfg)
            # EMA copy: independent weights, shared progressive fade-in variable
            self.ema_networks = (build_networks(cfg, alpha=self.networks.alpha)
                                 if ema_enabled(cfg) else None)
            lens = None
            if cfg.tricks.lens.enabled:
                lens = build_lens(cfg)
            # the architecture's keras.Model (GAN, or an image-to-image model with its own step)
            model_cls = registry.import_by_name(registry.architecture(cfg.network.architecture).model)
            self.gan = model_cls(cfg, self.networks, self.ema_networks, lens,
                                 global_batch_size=self._batch_for(self._stage(0)))
            self.gan.compile()
        self.checkpoint = tf.train.Checkpoint(rng=self.rng, **self.gan.checkpoint_items())
        self.manager = tf.train.CheckpointManager(self.checkpoint, self.ckpt_dir,
                                                  max_to_keep=cfg.run.keep_checkpoints)

    @classmethod
    def from_checkpoint(cls, run_dir: str, checkpoint: str, cfg: Optional[Config] = None) -> "Trainer":
        """The model of `run_dir` (its config.json unless `cfg`) restored from `checkpoint`, for
        export: reads only, writes nothing (the run may still be training), no data, no strategy."""
        if cfg is None:
            with tf.io.gfile.GFile(os.path.join(run_dir, "config.json")) as f:
                cfg = Config.from_dict(json.load(f))
        self = cls.__new__(cls)
        self.strategy = tf.distribute.get_strategy()
        self.n_replicas, self.chief, self.workers, self.scratch_dir = 1, True, 1, None
        policy, _ = resolve_precision(cfg.run.mixed_precision)   # config.json holds the run's policy
        if policy == "mixed_float16" and not tf.config.list_physical_devices("GPU"):
            # a GPU run exported on a CPU: the variables are float32 either way, and the loss
            # scale (the only extra state) is not part of the generator
            log.info("exporting a mixed_float16 run without a GPU: building it in float32")
            policy = "float32"
        set_precision(policy)
        self.cfg, self.run_dir, self.log_dir = cfg, run_dir, os.path.join(run_dir, "logs")
        self.ckpt_dir = os.path.join(run_dir, "checkpoints")
        self.synthetic, self.evaluator = True, None
        self._build_model(cfg)
        self._iterator = None
        self.checkpoint.restore(checkpoint).assert_existing_objects_matched().expect_partial()
        self._sync_stage()
        self.resumed_from, self.restored_only = checkpoint, True
        return self

    # -- state helpers -----------------------------------------------------------------------
    @property
    def step(self) -> int:
        return int(self.gan.step.numpy())

    @property
    def images_shown(self) -> int:
        return int(self.gan.images_shown.numpy())

    def _stage(self, images_shown: int):
        if not self.networks.progressive:
            return None
        return self.networks.schedule(images_shown)

    def _batch_for(self, stage) -> int:
        b = self.cfg.optim.batch_size if stage is None or not stage.batch_size else int(stage.batch_size)
        if b % self.n_replicas:
            raise ValueError(f"optim.batch_size {b} must be divisible by the number of replicas "
                             f"({self.n_replicas}) so every replica gets the same share")
        return b

    def _sync_stage(self):
        """Point the GAN at the stage for the current images_shown; set alpha."""
        stage = self._stage(self.images_shown)
        res = self.cfg.network.resolution if stage is None else int(stage.resolution)
        batch = self._batch_for(stage)
        if (res, batch) != (self.gan.resolution, self.gan.global_batch_size):
            self.gan.set_stage(res, batch)
        if stage is not None:
            for nets in (self.networks, self.ema_networks):
                if nets is not None and nets.alpha is not None:
                    nets.alpha.assign(float(stage.alpha))
            if self.gan.enter_phase(stage.phase):
                log.info("progressive phase %d (%dx%d, %s): optimizer state reset", stage.phase, res, res,
                         "fade-in" if stage.fading else "stable")
        return stage

    def _restore(self, path: str):
        self.checkpoint.restore(path).assert_existing_objects_matched()
        self._iterator = None
        self._sync_stage()
        self.gan.apply_lr_scale()

    # -- input -------------------------------------------------------------------------------
    def _dataset(self, resolution: int, batch: int, position: Optional[int] = None):
        """The model's input stream (`input_kind`: images; image-to-image pairs [.., 6]; or
        unpaired domains [.., 6]) from `position` images on (default: the images shown)."""
        per_step = batch * self.cfg.tricks.d_steps
        kind = self.gan.input_kind
        if self.synthetic:
            return data_lib.synthetic_dataset(resolution, per_step, seed=self.cfg.run.seed,
                                              num_attributes=len(self.attribute_names),
                                              channels=3 if kind == "images" else 6)
        position = self.images_shown if position is None else position
        common = dict(seed=self.cfg.run.seed, shuffle_buffer=self.cfg.run.shuffle_buffer, position=position,
                      info=self.data_info)
        if kind == "domains":
            self._check_domains()
            return data_lib.domains_dataset(self.files, resolution, per_step, self.cfg.network.domain_attribute,
                                            **common)
        if kind == "images" and (self.synthetic_source is not None or self.cfg.condition.balance):
            real = {"files": self.files, "info": self.data_info, "labels": self.labels}
            return data_lib.mixed_dataset(real, self.synthetic_source, self.cfg.data.synthetic_ratio, resolution,
                                          per_step, seed=self.cfg.run.seed, shuffle_buffer=self.cfg.run.shuffle_buffer,
                                          position=position, balance=self.cfg.condition.balance)
        if position and self._num_records is None:
            self._num_records = data_lib.count_records(self.files, self.data_info["compression"])
        return data_lib.train_dataset(self.files, resolution, per_step, num_records=self._num_records,
                                      labels=self.labels,
                                      input_key=schema.INPUT_IMAGE if kind == "pairs" else None, **common)

    def _synthetic_source(self, cfg):
        """The `data.synthetic` Examples (train split), checked like the real data; None if unset."""
        paths = conditioning.synthetic_paths(cfg)
        if not paths:
            return None
        files = [f for p in paths for f in data_lib.resolve_files(p)]
        labels = (data_lib.scan_attributes(files, self.attribute_names, cfg.condition.unlabelled)
                  if self.attribute_names else None)
        log.info("data.synthetic: %d files (%s), drawn with probability %.3f per example", len(files),
                 ", ".join(paths), cfg.data.synthetic_ratio)
        return {"files": files, "info": data_lib.inspect_files(files), "labels": labels}

    def _check_domains(self):
        """Count the two domains once; refuse an empty one; record the counts (domains.json)."""
        if getattr(self, "domain_counts", None) is None:
            attr = self.cfg.network.domain_attribute
            counts = data_lib.count_domains(self.files, attr, self.data_info["compression"])
            if not counts["a"] or not counts["b"]:
                raise ValueError(f"network.domain_attribute {attr!r}: domain A (attr/{attr} = 0) has {counts['a']} "
                                 f"and domain B (= 1) {counts['b']} training images in {self.files[0]}...; both "
                                 f"need some (ingest with --labels)")
            self.domain_counts = dict(counts, attribute=attr)
            write_json_atomic(os.path.join(self.run_dir, "domains.json"), self.domain_counts)
            log.info("domains of %s: A (=0) %d, B (=1) %d, unlabeled %d", attr, counts["a"], counts["b"],
                     counts["unlabeled"])

    def _get_iterator(self):
        key = (self.gan.resolution, self.gan.global_batch_size)
        if self._iterator is None or self._iter_key != key:
            # Shard by data, never by file: every worker then takes its replicas' slices of the
            # same global batch, as the replicas of one process do (file sharding would give
            # each worker other images, and N workers would not train like one process).
            options = tf.data.Options()
            options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
            ds = self._dataset(*key).with_options(options)
            self._iterator = iter(self.strategy.experimental_distribute_dataset(ds))
            self._iter_key = key
        return self._iterator

    def _step_fn(self):
        # the loss's phases due at this step (e.g. StyleGAN2's lazy Dreg/Greg): a Python value,
        # one trace per distinct set (no tf.cond around an optimizer step)
        phases = self.gan.due_phases(self.step)
        key = (self.gan.resolution, self.gan.global_batch_size, phases)
        if key not in self._step_fns:
            gan, strategy, rng = self.gan, self.strategy, self.rng
            step_fn = functools.partial(gan.train_step, phases=phases)
            replica_fn = tf.function(step_fn, jit_compile=True) if self.cfg.run.xla else step_fn

            # autograph off: train_step has no tensor-dependent Python control flow, and
            # converting it (and every Keras call inside) costs seconds of tracing per stage.
            @tf.function(autograph=False)
            def dist_step(iterator):
                batch = next(iterator)
                seed = rng.make_seeds(1)[:, 0]
                out = strategy.run(replica_fn, args=((batch, seed),))
                # every replica holds the global value already (all-reduced in train_step)
                return {k: strategy.experimental_local_results(v)[0] for k, v in out.items()}

            self._step_fns[key] = dist_step
        return self._step_fns[key]

    # -- outputs -----------------------------------------------------------------------------
    def write_images(self, step: int):
        if self.gan.input_kind != "images":     # image-to-image: the model's preview rows
            path = os.path.join(self.sample_dir, f"step_{step:07d}.png")
            imgs, cols = self.gan.preview(self._fixed_reals(8))
            imgs = imgs.numpy()
            save_grid(imgs, path, cols=cols)
            with self.writer.as_default(step=step):
                tf.summary.image("samples/translations", make_grid(imgs, cols=cols)[None], max_outputs=1)
            self.writer.flush()
            return path
        imgs = self.gan.sample(self.fixed_z, ema=True, attributes=self.fixed_attributes).numpy()
        path = os.path.join(self.sample_dir, f"step_{step:07d}.png")
        save_grid(imgs, path + ".tmp", cols=4)     # rename: a killed run leaves no truncated PNG
        tf.io.gfile.rename(path + ".tmp", path, overwrite=True)
        with self.writer.as_default(step=step):
            tf.summary.image("samples/ema", make_grid(imgs, cols=4)[None], max_outputs=1)
            if self.gan.G_ema is not None:
                raw = self.gan.sample(self.fixed_z, ema=False, attributes=self.fixed_attributes).numpy()
                tf.summary.image("samples/generator", make_grid(raw, cols=4)[None], max_outputs=1)
            if self.gan.lens is not None and not self.synthetic:
                reals = self._fixed_reals()
                lensed = data_lib.from_network(self.gan.lens(reals, training=False)).numpy()
                tf.summary.image("lens/reals", make_grid(data_lib.from_network(reals).numpy(), cols=4)[None], max_outputs=1)
                tf.summary.image("lens/lensed_reals", make_grid(lensed, cols=4)[None], max_outputs=1)
        self.writer.flush()
        return path

    def _fixed_reals(self, n: int = 16):
        """The first n images (pairs) of the stream (position 0) at the current resolution, cached."""
        res = self.gan.resolution
        if res not in self._reals:
            self._reals[res] = next(iter(self._dataset(res, n // self.cfg.tricks.d_steps or 1, position=0).take(1)))[:n]
        return self._reals[res]

    def write_scalars(self, step: int, metrics: Dict[str, float], perf: Dict[str, float]):
        with self.writer.as_default(step=step):
            for k, v in {**metrics, **perf}.items():
                tf.summary.scalar(k, v)
            tf.summary.scalar("progress/images_shown", float(self.images_shown))
        self.writer.flush()

    def _nonfinite_weights(self):
        variables = self.gan.trained_variables()
        flags = tf.stack([tf.reduce_all(tf.math.is_finite(v)) for v in variables]).numpy()
        return [v.name for v, ok in zip(variables, flags) if not ok]

    def _recover_from_nan(self, step: int, bad, metrics: Dict[str, float], recoveries: int) -> int:
        """Non-finite values at `step`: restore the last good checkpoint and multiply the learning
        rates by `run.nan_lr_factor`; after `run.max_nan_recoveries`, raise TrainingDiverged."""
        cfg = self.cfg
        recoveries += 1
        if recoveries > cfg.run.max_nan_recoveries:
            raise TrainingDiverged(
                f"training diverged at step {step}: {', '.join(f'{k}={metrics[k]}' for k in bad)} "
                f"after {cfg.run.max_nan_recoveries} recoveries (each restored the last checkpoint "
                f"and multiplied the learning rate by {cfg.run.nan_lr_factor}); "
                f"lower optim.*_learning_rate or check the data")
        latest = self.manager.latest_checkpoint
        log.warning("non-finite %s at step %d; restoring %s, lr x%s (recovery %d/%d)",
                    bad, step, latest, cfg.run.nan_lr_factor, recoveries, cfg.run.max_nan_recoveries)
        self._restore(latest)
        self.gan.lr_scale.assign(float(self.gan.lr_scale.numpy()) * cfg.run.nan_lr_factor)
        self.gan.nan_recoveries.assign(recoveries)
        self.gan.apply_lr_scale()
        with self.writer.as_default(step=self.step):
            tf.summary.scalar("nan/recoveries", float(recoveries))
        return recoveries

    def _log_step(self, step: int, metrics: Dict[str, float], t_last: float, img_last: int, step_last: int):
        """Write the step's metrics and the throughput since the last log; returns the new marks."""
        now = time.monotonic()
        shown = self.images_shown
        dt = max(now - t_last, 1e-9)
        ips = (shown - img_last) / dt
        perf = {"perf/images_per_s": ips, "perf/s_per_kimg": 1000.0 / ips if ips > 0 else 0.0,
                "perf/steps_per_s": (step - step_last) / dt}
        self.write_scalars(step, metrics, perf)
        return now, shown, step

    # -- main loop ---------------------------------------------------------------------------
    def run(self) -> TrainResult:
        cfg = self.cfg
        total = cfg.run.steps
        step = self.step
        name = cfg.preset or cfg.network.architecture
        per_step = self.gan.global_batch_size * cfg.tricks.d_steps   # approximate when batch varies by stage
        progress = Progress(total=max(0, total - step) * per_step, unit="images", label=f"train {name}") \
            if self.show_progress else None
        shown_at_start = self.images_shown
        metrics: Dict[str, float] = {}
        t_last, img_last, step_last = time.monotonic(), self.images_shown, step
        recoveries = int(self.gan.nan_recoveries.numpy())
        ev = self.evaluator
        if ev is not None:
            ev.started = time.monotonic()
            if ev.due(self.images_shown) or (step >= total and ev.final_due(self.images_shown)):
                ev.run(step, self.images_shown, self.gan)   # an evaluation lost to a kill after its checkpoint
        while step < total:
            self._sync_stage()
            if self.gan.decays_lr:        # a learning-rate schedule (CycleGAN's linear decay)
                self.gan.apply_lr_scale()
            out = self._step_fn()(self._get_iterator())
            metrics = {k: float(v) for k, v in out.items()}
            step = self.step
            if self.on_step is not None:     # test hook (e.g. inject a NaN)
                metrics = self.on_step(self, step, metrics) or metrics
            bad = [k for k, v in metrics.items() if not math.isfinite(v)]
            eval_now = ev is not None and (ev.due(self.images_shown) or
                                           (step == total and ev.final_due(self.images_shown)))
            save_now = step % cfg.run.checkpoint_every == 0 or step == total or eval_now
            if save_now and not bad:    # never save a checkpoint that is not "good"
                bad = [f"weight {name}" for name in self._nonfinite_weights()]
                metrics.update({k: float("nan") for k in bad})
            if bad:
                recoveries = self._recover_from_nan(step, bad, metrics, recoveries)
                step = self.step
                t_last, img_last, step_last = time.monotonic(), self.images_shown, step
                continue
            if progress is not None:
                progress.label = f"train {name} step {step}/{total}"
                progress.update(max(0, self.images_shown - shown_at_start - progress.done))
            if step % cfg.run.log_every == 0 or step == total:
                t_last, img_last, step_last = self._log_step(step, metrics, t_last, img_last, step_last)
            if step % cfg.run.image_every == 0 or step == total:
                self.write_images(step)
            if save_now:
                self.manager.save(checkpoint_number=step)
            if eval_now:      # after the save: every record's step has a checkpoint
                ev.run(step, self.images_shown, self.gan)
            if progress is not None and ev is not None:
                progress.label = f"train {name} step {step}/{total}  eval {ev.fraction():.0%} of time"
        if progress is not None:
            progress.close()
        selected = "last"
        if ev is not None and cfg.eval.export == "best":
            best = ev.best_checkpoint()
            if best:
                self._restore(best)
                selected = "best"
                log.info("eval.export=best: the result holds step %d (%s %s)", self.step,
                         cfg.eval.best_metric, ev.best["headline"].get(cfg.eval.best_metric))
            else:
                log.warning("eval.export=best but no evaluation has a best checkpoint; the last "
                            "state is exported")
        # The stage the schedule gives for the images shown (PGGAN snapshots use the level of
        # detail at the current kimg): a straight and a resumed run then report and export the same.
        self._sync_stage()
        if not metrics and self.step >= total:
            log.info("nothing to do: run_dir already at step %d >= %d", self.step, total)
        return self.result(metrics, selected=selected, nan_recoveries=recoveries,
                           eval_best=ev.best if ev is not None else None)

    def result(self, metrics: Optional[Dict[str, float]] = None, *, selected: str = "last",
               nan_recoveries: Optional[int] = None, eval_best: Optional[dict] = None) -> TrainResult:
        """The current state as a TrainResult (what `export` writes)."""
        return TrainResult(cfg=self.cfg, run_dir=self.run_dir, log_dir=self.log_dir, steps=self.step,
                           images_shown=self.images_shown, resolution=self.gan.resolution,
                           generator=self.gan.G, generator_ema=self.gan.sampling_generator,
                           metrics=dict(metrics or {}),
                           nan_recoveries=(int(self.gan.nan_recoveries.numpy()) if nan_recoveries is None
                                           else nan_recoveries),
                           checkpoint=(self.resumed_from if getattr(self, "restored_only", False)
                                       else self.manager.latest_checkpoint),
                           replicas=self.n_replicas, gan=self.gan,
                           stage_alpha=(float(self.networks.alpha.numpy())
                                        if self.networks.alpha is not None else None),
                           chief=self.chief, workers=self.workers, scratch_dir=self.scratch_dir,
                           selected=selected, eval_best=eval_best)


def train(cfg: Config, examples_uri: Union[str, Sequence[str], None], run_dir: str,
          steps: Optional[int] = None, log_dir: Optional[str] = None, *, synthetic: bool = False,
          progress: bool = True, strategy=None, on_step: Optional[Callable] = None) -> TrainResult:
    """Train (or resume) a GAN on an Examples artifact (or file patterns); see module docstring."""
    trainer = Trainer(cfg, examples_uri, run_dir, steps=steps, log_dir=log_dir, synthetic=synthetic,
                      progress=progress, strategy=strategy, on_step=on_step)
    return trainer.run()


def export(result: TrainResult, export_dir: str, extra_metadata: Optional[dict] = None) -> str:
    """Export the EMA generator as the serving SavedModel (trainer/export.py's signatures).

    A progressive run exports at any point, as PGGAN snapshots do: a run stopped before its final
    stage serves the current stage's output upsampled (nearest) to the target resolution, with
    the stage resolution and alpha in the metadata. A non-chief worker exports to its scratch
    folder (saving is collective, so every worker must) and returns that path."""
    if not result.chief:
        export_dir = os.path.join(result.scratch_dir, "export")
    metadata = {"steps": result.steps, "images_shown": result.images_shown,
                "trained_resolution": result.resolution, "nan_recoveries": result.nan_recoveries,
                "final_metrics": result.metrics, "selected_checkpoint": result.selected,
                **({"eval_best": {k: result.eval_best.get(k) for k in ("step", "images_shown", "headline", "weights")}}
                   if result.eval_best else {}),
                **({"ema": result.gan.ema_state()} if hasattr(result.gan, "ema_state") else {}),
                **(extra_metadata or {})}
    domains = os.path.join(result.run_dir, "domains.json")     # CycleGAN: the images per domain
    if tf.io.gfile.exists(domains):
        with tf.io.gfile.GFile(domains) as f:
            metadata.setdefault("domains", json.load(f))
    kind = registry.architecture(result.cfg.network.architecture).kind
    if kind == "image_to_image":    # one stage; one direction, or CycleGAN's two
        models = result.gan.export_models()
        if result.workers > 1:
            models = local_translators(result, models)
        return export_generator(models, export_dir, cfg=result.cfg, metadata=metadata, kind=kind)
    generator = result.generator_ema
    if result.workers > 1:
        generator = local_copy(result, generator)
    target = int(result.cfg.network.resolution)
    if result.stage_alpha is not None:
        metadata.update(stage_resolution=result.resolution, stage_alpha=result.stage_alpha,
                        final_stage=result.resolution == target)
    if result.resolution != target:
        generator = upsampled_generator(generator, target)
        metadata["upsampling"] = f"nearest {result.resolution} -> {target}"
        log.info("progressive run at stage %dx%d (alpha %.3f): exporting it upsampled to %dx%d",
                 result.resolution, result.resolution, result.stage_alpha or 1.0, target, target)
    if kind == "conditional" and registry.architecture(result.cfg.network.architecture).w_space:
        from facegan.trainer.networks.stylegan2 import conditional_model   # cstylegan2
        generator = conditional_model(generator)
    return export_generator(generator, export_dir, cfg=result.cfg, metadata=metadata)


def export_replacing(result: TrainResult, export_dir: str, extra_metadata: Optional[dict] = None) -> str:
    """`export` into `export_dir`, replacing the SavedModel a previous start of the run left there
    (`facegan train`'s OUT/export: the same command again resumes, then exports again). The new
    export is written beside it and swapped in by renames."""
    local = "://" not in export_dir
    if not result.chief or not local or not os.path.exists(os.path.join(export_dir, "saved_model.pb")):
        return export(result, export_dir, extra_metadata)
    import shutil
    staging, old = export_dir + ".new", export_dir + ".old"
    for d in (staging, old):
        shutil.rmtree(d, ignore_errors=True)
    try:
        export(result, staging, extra_metadata)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)   # a failed write (a full disk) leaves nothing
        raise
    os.rename(export_dir, old)
    os.rename(staging, export_dir)
    shutil.rmtree(old, ignore_errors=True)
    return export_dir


def export_version(result: TrainResult, base: str, extra_metadata: Optional[dict] = None) -> Optional[str]:
    """Export as the next numbered version BASE/<N>/ (TF Serving's layout; N = 1 + the highest
    version there). Locally the version is written to a hidden staging folder in BASE and renamed
    into place, so a server polling BASE never loads half a SavedModel. Returns the version path
    (None on a non-chief worker, which exports to its scratch folder: saving is collective)."""
    from facegan.trainer import runs
    if not result.chief:
        export(result, os.path.join(result.scratch_dir, "serving"), extra_metadata)
        return None
    if "://" in base:     # object stores have no directory rename: write the version in place
        tf.io.gfile.makedirs(base)
        versions = [int(e.rstrip("/")) for e in tf.io.gfile.listdir(base) if e.rstrip("/").isdigit()]
        return export(result, os.path.join(base, str(max(versions, default=0) + 1)), extra_metadata)
    import shutil
    os.makedirs(base, exist_ok=True)
    staging = os.path.join(base, f".export-{os.getpid()}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        export(result, staging, extra_metadata)
        for _ in range(100):          # another export may take a number meanwhile: the next one
            target = os.path.join(base, str(max(runs.existing_versions(base), default=0) + 1))
            try:
                os.mkdir(target)      # claims the number; rename then replaces the empty folder
            except FileExistsError:
                continue
            os.rename(staging, target)
            return target
        raise RuntimeError(f"{base}: could not claim a version number")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def local_copy(result: TrainResult, generator):
    """The generator rebuilt outside any strategy with the trained weights. SavedModel signatures
    cannot capture MultiWorkerMirroredStrategy's variables; reading them is collective, so every
    worker makes this copy."""
    nets = build_networks(result.cfg)
    if nets.alpha is not None and result.stage_alpha is not None:
        nets.alpha.assign(result.stage_alpha)
    copy = nets.stage_models(result.resolution)[0]
    copy.set_weights(generator.get_weights())
    return copy


def local_translators(result: TrainResult, models):
    """Image-to-image: `local_copy` for the translator(s) the model exports -- one network
    (pix2pix), or CycleGAN's {"a_to_b": G, "b_to_a": F}, rebuilt from the config outside any
    strategy with the trained weights (CycleNetworks names G `generator` and F `generator_ba`)."""
    nets = build_networks(result.cfg)
    if not isinstance(models, dict):
        nets.generator.set_weights(models.get_weights())
        return nets.generator
    fresh = {"a_to_b": nets.generator, "b_to_a": getattr(nets, "generator_ba", None)}
    unknown = sorted(set(models) - {k for k, v in fresh.items() if v is not None})
    if unknown:
        raise ValueError(f"multi-worker export: no network to rebuild direction(s) {unknown} into")
    for name, model in models.items():
        fresh[name].set_weights(model.get_weights())
    return {name: fresh[name] for name in models}


def release(result: TrainResult) -> None:
    """Remove a non-chief worker's scratch folder (nothing to do on the chief)."""
    if result.scratch_dir and tf.io.gfile.exists(result.scratch_dir):
        tf.io.gfile.rmtree(result.scratch_dir)
