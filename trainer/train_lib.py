"""The training loop: strategy, precision, checkpoints, NaN recovery, TensorBoard, progress.

`train(cfg, examples_uri, run_dir, steps=None, log_dir=None)` is the one entry point; the TFX
`run_fn` (trainer/run_fn.py) and `facegan train` (trainer/cli.py) are thin wrappers over it.

Run directory layout:
    run_dir/config.json            resolved config (written before the first step)
    run_dir/checkpoints/           tf.train.CheckpointManager (atomic: the `checkpoint` index
                                   file is rewritten only after the shard files are complete)
    run_dir/logs/ (or log_dir)     TensorBoard events: scalars + image grids
    run_dir/samples/step_XXXXXXX.png   EMA-generator grids from fixed latents

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

from facegan.images import make_grid, save_grid
from facegan.progress import Progress
from facegan.trainer import data as data_lib
from facegan.trainer.config import Config, validate
from facegan.trainer.export import export_generator
from facegan.trainer.gan import GAN
from facegan.trainer.networks import build_networks
from facegan.trainer.networks.lens import build_lens

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


# -- environment -----------------------------------------------------------------------------
def make_strategy(name: str):
    """mirrored: all local GPUs (or the CPU); multiworker: from TF_CONFIG; default: no wrapping."""
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


def set_precision(policy: str):
    if policy == "mixed_float16" and not tf.config.list_physical_devices("GPU"):
        raise ValueError("run.mixed_precision 'mixed_float16' needs a GPU; use 'mixed_bfloat16' on CPU")
    tf.keras.mixed_precision.set_global_policy(policy)


def write_json_atomic(path: str, obj) -> None:
    tmp = path + ".tmp"
    with tf.io.gfile.GFile(tmp, "w") as f:
        f.write(json.dumps(obj, indent=2, sort_keys=True))
    tf.io.gfile.rename(tmp, path, overwrite=True)


# -- the loop --------------------------------------------------------------------------------
class Trainer:
    """Builds everything once; `run()` trains to `steps` generator steps."""

    def __init__(self, cfg: Config, data, run_dir: str, *, steps: Optional[int] = None,
                 log_dir: Optional[str] = None, synthetic: bool = False, progress: bool = True,
                 strategy=None, on_step: Optional[Callable] = None):

        cfg = validate(cfg)
        if steps is not None:
            cfg = cfg.override({"run.steps": int(steps)})
        self.cfg, self.run_dir = cfg, run_dir
        self.log_dir = log_dir or os.path.join(run_dir, "logs")
        self.ckpt_dir = os.path.join(run_dir, "checkpoints")
        self.sample_dir = os.path.join(run_dir, "samples")
        for d in (run_dir, self.log_dir, self.ckpt_dir, self.sample_dir):
            tf.io.gfile.makedirs(d)
        write_json_atomic(os.path.join(run_dir, "config.json"), cfg.to_dict())

        self.synthetic = synthetic
        self.show_progress = progress
        self.on_step = on_step
        if not synthetic:
            self.files = data_lib.resolve_files(data)
            self.data_info = data_lib.inspect_files(self.files)
            self._num_records = None
        tf.keras.utils.set_random_seed(cfg.run.seed)
        set_precision(cfg.run.mixed_precision)
        self.strategy = strategy or make_strategy(cfg.run.strategy)
        self.n_replicas = self.strategy.num_replicas_in_sync

        # The key generator lives outside the strategy scope: it is used in cross-replica context
        # once per step and its key is broadcast to the replicas (see trainer/gan.py).
        self.rng = tf.random.Generator.from_seed(cfg.run.seed)
        with self.strategy.scope():
            self.networks = build_networks(cfg)
            # EMA copy: independent weights, shared progressive fade-in variable
            self.ema_networks = (build_networks(cfg, alpha=self.networks.alpha)
                                 if cfg.tricks.ema_decay > 0 else None)
            lens = None
            if cfg.tricks.lens.enabled:
                lens = build_lens(cfg)
            self.gan = GAN(cfg, self.networks, self.ema_networks, lens,
                           global_batch_size=self._batch_for(self._stage(0)))
            self.gan.compile()

        gan = self.gan
        self.checkpoint = tf.train.Checkpoint(rng=self.rng, **gan.checkpoint_items())
        self.manager = tf.train.CheckpointManager(self.checkpoint, self.ckpt_dir,
                                                  max_to_keep=cfg.run.keep_checkpoints)
        self.writer = tf.summary.create_file_writer(self.log_dir)
        z_rng = np.random.default_rng(cfg.run.seed + 7)
        self.fixed_z = z_rng.standard_normal((16, cfg.network.z_dim)).astype(np.float32)
        self._step_fns: Dict = {}
        self._reals: Dict = {}
        self._iterator = None
        self._iter_key = None
        self.resumed_from = None
        if self.manager.latest_checkpoint:
            self._restore(self.manager.latest_checkpoint)
            self.resumed_from = self.manager.latest_checkpoint
            log.info("resumed from %s at step %d", self.resumed_from, self.step)
        else:
            gan.copy_to_ema()
            self._sync_stage()
            self.manager.save(checkpoint_number=0)   # always something good to go back to

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
        return stage

    def _restore(self, path: str):
        self.checkpoint.restore(path).assert_existing_objects_matched()
        self._iterator = None
        self._sync_stage()
        self.gan.apply_lr_scale()

    # -- input -------------------------------------------------------------------------------
    def _dataset(self, resolution: int, batch: int):
        per_step = batch * self.cfg.tricks.d_steps
        if self.synthetic:
            return data_lib.synthetic_dataset(resolution, per_step, seed=self.cfg.run.seed)
        position = self.images_shown
        if position and self._num_records is None:
            self._num_records = data_lib.count_records(self.files, self.data_info["compression"])
        return data_lib.train_dataset(self.files, resolution, per_step, seed=self.cfg.run.seed,
                                      shuffle_buffer=self.cfg.run.shuffle_buffer, position=position,
                                      info=self.data_info, num_records=self._num_records)

    def _get_iterator(self):
        key = (self.gan.resolution, self.gan.global_batch_size)
        if self._iterator is None or self._iter_key != key:
            ds = self._dataset(*key)
            self._iterator = iter(self.strategy.experimental_distribute_dataset(ds))
            self._iter_key = key
        return self._iterator

    def _step_fn(self):
        # phase: which lazy regularizers run this step (StyleGAN2; a Python value, one trace each)
        phase = self.gan.lazy_phase(self.step)
        key = (self.gan.resolution, self.gan.global_batch_size, phase)
        if key not in self._step_fns:
            gan, strategy, rng = self.gan, self.strategy, self.rng
            step_fn = functools.partial(gan.train_step, phase=phase)
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
        imgs = self.gan.sample(self.fixed_z, ema=True).numpy()
        path = os.path.join(self.sample_dir, f"step_{step:07d}.png")
        save_grid(imgs, path, cols=4)
        with self.writer.as_default(step=step):
            tf.summary.image("samples/ema", make_grid(imgs, cols=4)[None], max_outputs=1)
            if self.gan.G_ema is not None:
                raw = self.gan.sample(self.fixed_z, ema=False).numpy()
                tf.summary.image("samples/generator", make_grid(raw, cols=4)[None], max_outputs=1)
            if self.gan.lens is not None and not self.synthetic:
                reals = self._fixed_reals()
                lensed = data_lib.from_network(self.gan.lens(reals, training=False)).numpy()
                tf.summary.image("lens/reals", make_grid(data_lib.from_network(reals).numpy(), cols=4)[None], max_outputs=1)
                tf.summary.image("lens/lensed_reals", make_grid(lensed, cols=4)[None], max_outputs=1)
        self.writer.flush()
        return path

    def _fixed_reals(self):
        """The first 16 images of the stream (position 0) at the current resolution, cached."""
        res = self.gan.resolution
        if res not in self._reals:
            ds = data_lib.train_dataset(self.files, res, 16, seed=self.cfg.run.seed,
                                        shuffle_buffer=self.cfg.run.shuffle_buffer, info=self.data_info)
            self._reals[res] = next(iter(ds.take(1)))
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
        while step < total:
            self._sync_stage()
            out = self._step_fn()(self._get_iterator())
            metrics = {k: float(v) for k, v in out.items()}
            step = self.step
            if self.on_step is not None:     # test hook (e.g. inject a NaN)
                metrics = self.on_step(self, step, metrics) or metrics
            bad = [k for k, v in metrics.items() if not math.isfinite(v)]
            save_now = step % cfg.run.checkpoint_every == 0 or step == total
            if save_now and not bad:    # never save a checkpoint that is not "good"
                bad = [f"weight {name}" for name in self._nonfinite_weights()]
                metrics.update({k: float("nan") for k in bad})
            if bad:
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
                step = self.step
                with self.writer.as_default(step=step):
                    tf.summary.scalar("nan/recoveries", float(recoveries))
                t_last, img_last, step_last = time.monotonic(), self.images_shown, step
                continue
            if progress is not None:
                progress.label = f"train {name} step {step}/{total}"
                progress.update(max(0, self.images_shown - shown_at_start - progress.done))
            if step % cfg.run.log_every == 0 or step == total:
                now = time.monotonic()
                shown = self.images_shown
                dt = max(now - t_last, 1e-9)
                ips = (shown - img_last) / dt
                perf = {"perf/images_per_s": ips, "perf/s_per_kimg": 1000.0 / ips if ips > 0 else 0.0,
                        "perf/steps_per_s": (step - step_last) / dt}
                self.write_scalars(step, metrics, perf)
                t_last, img_last, step_last = now, shown, step
            if step % cfg.run.image_every == 0 or step == total:
                self.write_images(step)
            if save_now:
                self.manager.save(checkpoint_number=step)
        if progress is not None:
            progress.close()
        if not metrics and self.step >= total:
            log.info("nothing to do: run_dir already at step %d >= %d", self.step, total)
        return TrainResult(cfg=cfg, run_dir=self.run_dir, log_dir=self.log_dir, steps=self.step,
                           images_shown=self.images_shown, resolution=self.gan.resolution,
                           generator=self.gan.G, generator_ema=self.gan.sampling_generator,
                           metrics=metrics, nan_recoveries=recoveries,
                           checkpoint=self.manager.latest_checkpoint,
                           replicas=self.n_replicas, gan=self.gan)


def train(cfg: Config, examples_uri: Union[str, Sequence[str], None], run_dir: str,
          steps: Optional[int] = None, log_dir: Optional[str] = None, *, synthetic: bool = False,
          progress: bool = True, strategy=None, on_step: Optional[Callable] = None) -> TrainResult:
    """Train (or resume) a GAN on an Examples artifact (or file patterns); see module docstring."""
    trainer = Trainer(cfg, examples_uri, run_dir, steps=steps, log_dir=log_dir, synthetic=synthetic,
                      progress=progress, strategy=strategy, on_step=on_step)
    return trainer.run()


def export(result: TrainResult, export_dir: str, extra_metadata: Optional[dict] = None) -> str:
    """Export the EMA generator as the serving SavedModel (trainer/export.py's signatures)."""
    metadata = {"steps": result.steps, "images_shown": result.images_shown,
                "trained_resolution": result.resolution, "nan_recoveries": result.nan_recoveries,
                "final_metrics": result.metrics, **(extra_metadata or {})}
    return export_generator(result.generator_ema, export_dir, cfg=result.cfg, metadata=metadata)
