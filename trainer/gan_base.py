"""The small base every trained model shares: state, optimizers, EMA, the phase runner.

A model (trainer/gan.py's latent GAN, trainer/image_to_image.py's translators) is a
`tf.keras.Model` holding networks and state; its loss object (one per loss family, named by the
family's registration: trainer/adversarial.py, trainer/stylegan_losses.py, ...) owns the training
phases as DATA, as stylegan3's `StyleGAN2Loss.accumulate_gradients(phase)`: a list of `Phase`
(name, interval, function). One `train_step(data, phases)` runs the phases a step asks for, in
the loss object's order, between the model's `begin_step` and `end_step`; the loop
(trainer/train_lib.py) asks `due_phases(step)` which phases are due and traces one step function
per distinct answer (a Python value: no tf.cond around an optimizer step). Replica rules:
trainer/replica.py.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import tensorflow as tf

from facegan.trainer import replica
from facegan.trainer.config import Config
from facegan.trainer.optimizers import lazy_optimizer_params, make_optimizer, unique_variables
from facegan.trainer.phases import StepState


def first_replica_var(value, dtype, name):
    return tf.Variable(value, dtype=dtype, trainable=False, name=name,
                       aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)


def ema_pairs(ema_generator, generator) -> List[Tuple[tf.Variable, tf.Variable]]:
    """(EMA weight, weight) pairs of two copies of one generator; refuses mismatched shapes."""
    pairs = list(zip(ema_generator.weights, generator.weights))
    for e, v in pairs:
        if e.shape != v.shape:
            raise ValueError(f"EMA generator weight {e.name} {e.shape} does not match {v.name} {v.shape}")
    return pairs


class GANBase(tf.keras.Model):
    """State (step, images shown, lr scale, NaN recoveries), G/D optimizers over every stage's
    variables, the generator EMA, checkpoint items, and `train_step` over the loss's phases.
    Subclasses set `self.family_loss` (the loss object: `phases`, `lazy_intervals`, `build()`,
    `checkpoint_items()`, `after_step(state)`) and implement `all_stage_models`, `begin_step`,
    `end_step`, `ema_stage_pairs`."""

    input_kind = "images"   # what the loop feeds: "images", or (image-to-image) "pairs" / "domains"
    decays_lr = False       # True: the loop calls apply_lr_scale before every step (a schedule)

    def __init__(self, cfg: Config, *, global_batch_size: int, name: str = "gan"):
        super().__init__(name=name)
        self.cfg = cfg
        self.global_batch_size = int(global_batch_size)
        self.seed = int(cfg.run.seed)
        self.step = first_replica_var(0, tf.int64, "step")               # generator steps done
        self.images_shown = first_replica_var(0, tf.int64, "images_shown")  # reals shown to D
        self.lr_scale = first_replica_var(1.0, tf.float32, "lr_scale")  # NaN recovery lowers it
        self.nan_recoveries = first_replica_var(0, tf.int64, "nan_recoveries")
        self.g_optimizer = self.d_optimizer = None
        self.family_loss = None
        self._ema_pairs: List[Tuple[tf.Variable, tf.Variable]] = []

    # -- optimizers and learning rates -------------------------------------------------------------
    def compile(self, g_optimizer=None, d_optimizer=None, **kwargs):
        super().compile(**kwargs)
        cfg, lazy = self.cfg, self.family_loss.lazy_intervals
        self.g_optimizer = g_optimizer or make_optimizer(cfg, cfg.optim.g_learning_rate, lazy["g"])
        self.d_optimizer = d_optimizer or make_optimizer(cfg, cfg.optim.d_learning_rate, lazy["d"])
        # Build optimizer slots for every variable of every stage now, so a checkpoint restores
        # into existing slots and a progressive stage change never meets an unknown variable.
        g_models, d_models = self.all_stage_models()
        self.g_variables, self.d_variables = unique_variables(g_models), unique_variables(d_models)
        for opt, var_list in self.optimizers_and_variables():
            getattr(opt, "inner_optimizer", opt).build(var_list)
        self.family_loss.build()
        self.apply_lr_scale()

    def optimizers_and_variables(self):
        return [(self.g_optimizer, self.g_variables), (self.d_optimizer, self.d_variables)]

    def lr_multiplier(self) -> float:
        """The schedule's factor at the current step (1: constant learning rates)."""
        return 1.0

    def apply_lr_scale(self):
        s = float(self.lr_scale.numpy()) * self.lr_multiplier()
        o, lazy = self.cfg.optim, self.family_loss.lazy_intervals
        for opt, lr, k in ((self.g_optimizer, o.g_learning_rate, "g"), (self.d_optimizer, o.d_learning_rate, "d")):
            opt.learning_rate = lazy_optimizer_params(lr, o.beta1, o.beta2, lazy[k])[0] * s

    # -- state -------------------------------------------------------------------------------------
    def checkpoint_items(self) -> Dict[str, object]:
        """Counters, optimizers and the loss object's state (subclasses add their networks)."""
        return dict(step=self.step, images_shown=self.images_shown, lr_scale=self.lr_scale,
                    nan_recoveries=self.nan_recoveries, g_optimizer=self.g_optimizer,
                    d_optimizer=self.d_optimizer, **self.family_loss.checkpoint_items())

    def trained_variables(self) -> List[tf.Variable]:
        """Every trained weight of every stage: what the NaN check inspects."""
        return [v for _, var_list in self.optimizers_and_variables() for v in var_list]

    # -- the step ----------------------------------------------------------------------------------
    def due_phases(self, step: int) -> Tuple[str, ...]:
        """Names of the loss's phases due at `step` (the loop's trace key)."""
        return tuple(p.name for p in self.family_loss.phases if p.due(step))

    def train_step(self, data, phases: Optional[Sequence[str]] = None):
        """One step: the named phases (default, e.g. under plain `fit`: the every-step ones)."""
        if phases is None:
            phases = [p.name for p in self.family_loss.phases if p.interval == 1]
        state = self.begin_step(data)
        for phase in self.family_loss.phases:
            if phase.name in phases:
                phase.run(state)
        self.family_loss.after_step(state)
        return self.end_step(state)

    def split_key(self, data):
        """(batch, key): the loop passes (batch, key); plain `fit` keys by (seed, step)."""
        if isinstance(data, (tuple, list)):
            batch, key = data
        else:
            batch, key = data, tf.stack([tf.constant(self.seed, tf.int64), tf.identity(self.step)])
        return batch, tf.cast(key, tf.int64)

    def finish(self, state: StepState, images: int):
        """Counters and the one metric reduction at the end of a step."""
        self.step.assign_add(1)
        self.images_shown.assign_add(images)
        state.shared["lr/g"] = tf.cast(self.g_optimizer.learning_rate, tf.float32)
        state.shared["lr/d"] = tf.cast(self.d_optimizer.learning_rate, tf.float32)
        return replica.reduce(state.sums, state.shared)

    def avg(self, per_example):
        return replica.average(per_example, self.global_batch_size)

    # -- EMA ---------------------------------------------------------------------------------------
    def copy_to_ema(self):
        """EMA copies <- their networks, every weight of every stage (start of training)."""
        for e, v in self.ema_stage_pairs():
            e.assign(v)

    def ema_stage_pairs(self) -> List[Tuple[tf.Variable, tf.Variable]]:
        return []

    def ema_trainable(self) -> set:
        """Refs of the weights the EMA averages (the others are copied)."""
        return {v.ref() for v in self.G.trainable_weights}

    def _ema_start(self, v) -> int:
        """Images shown when the weight's block appeared (progressive growing; else 0)."""
        return 0

    def _update_ema(self):
        """E <- v + beta (E - v) for averaged weights (Karras et al. 2018, sec. A.1), copies for
        the rest (BatchNorm statistics are running averages already). beta is `tricks.ema_decay`
        per step, or from `tricks.ema_kimg` (+ `ema_rampup`) and the images each weight's block
        has been trained on (trainer/ema.py), computed in the graph from images_shown, so a
        resumed run uses the same betas. Plain replica-context assigns: every replica holds
        identical weights (gradients are all-reduced before the update), so each updates its
        own copy; no merge_call, so the step stays XLA-compilable on any device."""
        t = self.cfg.tricks
        trainable = self.ema_trainable()
        per_step = float(self.global_batch_size * t.d_steps)
        shown = tf.cast(self.images_shown, tf.float64)     # before this step's images
        betas: Dict[int, tf.Tensor] = {}

        def beta_for(start):
            if start not in betas:
                nimg = tf.constant(t.ema_kimg * 1000.0, tf.float64)
                if t.ema_rampup > 0:
                    nimg = tf.minimum(nimg, tf.maximum(shown - start, 0.0) * t.ema_rampup)
                betas[start] = tf.cast(tf.pow(tf.constant(0.5, tf.float64),
                                              per_step / tf.maximum(nimg, 1e-8)), tf.float32)
            return betas[start]
        for e, v in self._ema_pairs:
            if v.ref() not in trainable:
                e.assign(v)
            elif t.ema_kimg > 0:
                e.assign(v + tf.cast(beta_for(self._ema_start(v)), v.dtype) * (e - v))
            else:
                e.assign(v + float(t.ema_decay) * (e - v))
