"""The GAN as one `tf.keras.Model` with a custom `train_step` (keras-io gan_ada.py style).

One `train_step(batch)` = `tricks.d_steps` discriminator updates, then one generator update (and
one lens update when the lens is on), then the generator-EMA update. Everything configurable is
read from the typed `Config`; architectures and loss families come from trainer/registry.py,
regularizers from trainer/regularizers.py.

Distribution rules (so a run gives the same result on 1 or N replicas for the same global batch):
- every per-example loss is averaged with `tf.nn.compute_average_loss(global_batch_size=...)`, so
  per-replica losses sum to the global mean;
- gradients are all-reduced explicitly (SUM) before `apply_gradients(skip_gradients_aggregation=
  True)`, so gradient norms and the NaN check see the *global* gradient;
- randomness (latents, instance noise, gradient-penalty interpolation) is drawn for the whole
  global batch from a stateless key and each replica takes its slice: the numbers an example
  sees do not depend on how many replicas there are. The key comes from a checkpointed
  `tf.random.Generator` (passed in with the batch) or, under plain `fit`, from (seed, step).
- batch-level regularizers (feature matching, repelling, historical averaging) are computed per
  replica and averaged over replicas (documented approximation; exact on one replica).

Returned metrics are global values (all-reduced inside the step) named as TensorBoard tags:
loss/*, grad_norm/*, lens/*, progan/alpha, lr/*, noise/*, d/*, ada/*, pl/*.

StyleGAN2 / ADA (issue 10; the `# -- style:` blocks): W-space generators (registry `w_space`) are
called with per-layer noise and style-mixing crossovers drawn for the global batch
(`rows=(global_batch, offset)`); D-input augmentation (trainer/augment.py, any architecture)
sees reals and fakes with different seeds; the `nsgan_r1` family adds StyleGAN2's lazy R1 (on
augmented reals) and lazy path length as SEPARATE optimizer steps ("Dreg"/"Greg", as NVlabs' code)
on the minibatches `lazy_phase(step)` names, with Adam rescaled by `lazy_optimizer_params`. The
phase is a Python value: the loop traces one step function per phase (no tf.cond around an
optimizer step, which would need merge_call inside a cond branch).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Dict, List, Optional, Tuple

import tensorflow as tf

from facegan.trainer import ema as ema_lib
from facegan.trainer import registry
from facegan.trainer import stylegan_losses
from facegan.trainer.augment import PIPELINES, AdaptiveAugment, sign_stats
from facegan.trainer.config import Config
from facegan.trainer.data import from_network
from facegan.trainer.fused_adam import FusedAdam
from facegan.trainer.losses import gradient_penalty, lens_reconstruction_loss
from facegan.trainer.networks.conditional import acgan_loss
from facegan.trainer.networks.lens import lens_lambda as lens_lambda_at
from facegan.trainer.regularizers import (HistoricalAveraging, feature_matching_loss, instance_noise_std,
                                          repelling_loss)

SUM = tf.distribute.ReduceOp.SUM

# Stateless-key purposes (fold_in data) so each random draw is independent and reproducible.
_Z_G, _Z_D, _NOISE_REAL, _NOISE_FAKE, _GP_EPS, _NOISE_G = 1, 100, 200, 300, 400, 500
# style: augmentation, W-space draws (offsets added to a z purpose), lazy regularizers
_AUG_REAL, _AUG_FAKE, _AUG_G, _Z_PL = 600, 700, 800, 900
_W_MIX_Z, _W_MIX_CUT, _W_NOISE, _PL_NOISE = 10_000, 20_000, 30_000, 40_000


def _first_replica_var(value, dtype, name):
    return tf.Variable(value, dtype=dtype, trainable=False, name=name,
                       aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)


def optimizer_name(cfg: Config) -> str:
    """`optim.optimizer`, with "auto" resolved to the loss family's paper optimizer (RMSProp for
    WGAN with weight clipping, Arjovsky et al. 2017; Adam otherwise)."""
    if cfg.optim.optimizer != "auto":
        return cfg.optim.optimizer
    return registry.loss_family(cfg.loss.family).optimizer


def make_optimizer(cfg: Config, learning_rate: float, lazy_interval: int = 0) -> tf.keras.optimizers.Optimizer:
    """The config's optimizer; `lazy_interval` > 0: StyleGAN2's lazy-regularization Adam rescaling."""
    o = cfg.optim
    if optimizer_name(cfg) == "rmsprop":
        opt = tf.keras.optimizers.RMSprop(learning_rate=learning_rate, epsilon=o.epsilon)
    else:
        learning_rate, beta1, beta2 = stylegan_losses.lazy_optimizer_params(learning_rate, o.beta1, o.beta2,
                                                                            lazy_interval)
        # adam_fused: the same update in one kernel per variable (equal up to float rounding)
        adam = FusedAdam if optimizer_name(cfg) == "adam_fused" else tf.keras.optimizers.Adam
        opt = adam(learning_rate=learning_rate, beta_1=beta1, beta_2=beta2, epsilon=o.epsilon)
    if cfg.run.mixed_precision == "mixed_float16":   # loss scaling: float16 gradients underflow
        opt = tf.keras.mixed_precision.LossScaleOptimizer(opt)
    return opt


def unique_variables(models) -> List[tf.Variable]:
    seen, out = set(), []
    for m in models:
        for v in m.trainable_variables:
            if v.ref() not in seen:
                seen.add(v.ref())
                out.append(v)
    return out


@dataclasses.dataclass(frozen=True)
class Term:
    """One optional regularizer: `weight * value(inputs)` is added to a network's loss and the
    value is reported to TensorBoard as loss/<name>; `after_update` runs after that network's
    optimizer steps (e.g. historical averaging's running mean)."""
    name: str
    weight: float
    value: Callable[[Dict[str, tf.Tensor]], tf.Tensor]
    after_update: Optional[Callable[[], None]] = None


def _ema_pairs(ema_generator, generator) -> List[Tuple[tf.Variable, tf.Variable]]:
    """(EMA weight, weight) pairs of two copies of one generator; refuses mismatched shapes."""
    pairs = list(zip(ema_generator.weights, generator.weights))
    for e, v in pairs:
        if e.shape != v.shape:
            raise ValueError(f"EMA generator weight {e.name} {e.shape} does not match {v.name} {v.shape}")
    return pairs


class GAN(tf.keras.Model):
    """Generator + discriminator (+ EMA generator, + lens) trained by one custom `train_step`."""

    input_kind = "images"    # what the loop feeds train_step: "images", or (image-to-image) "pairs" / "domains"

    def __init__(self, cfg: Config, networks, ema_networks=None, lens=None, *, global_batch_size: int):
        super().__init__(name="gan")
        self.cfg = cfg
        self.nets = networks
        self.ema_nets = ema_networks
        self.lens = lens
        self.family = registry.loss_family(cfg.loss.family)
        self.g_loss_fn, self.d_loss_fn = self.family.bind(cfg.loss)
        self.lens_adv_fn = self.family.bind_lens(cfg.loss)
        self.global_batch_size = int(global_batch_size)
        self.seed = int(cfg.run.seed)
        self.step = _first_replica_var(0, tf.int64, "step")               # generator steps done
        self.images_shown = _first_replica_var(0, tf.int64, "images_shown")  # reals shown to D
        self.lr_scale = _first_replica_var(1.0, tf.float32, "lr_scale")  # NaN recovery lowers it
        self.nan_recoveries = _first_replica_var(0, tf.int64, "nan_recoveries")
        # progressive: the schedule phase the optimizers' state belongs to (see enter_phase)
        self.optimizer_phase = _first_replica_var(0, tf.int64, "optimizer_phase")
        self.g_optimizer = self.d_optimizer = self.lens_optimizer = None
        self.historical = None
        self.resolution = None
        # -- style: W space, augmentation, lazy regularizers (issue 10) --
        self.w_space = registry.architecture(cfg.network.architecture).w_space
        a = cfg.tricks.augment
        self.ada = None if a.mode == "none" else AdaptiveAugment(
            a.mode, a.p, a.target, a.interval, a.speed_images, ops=PIPELINES[a.pipeline], policy=a.policy)
        self.lazy = self.family.lazy_r1
        self.use_pl = self.lazy and self.w_space and cfg.loss.pl_weight > 0
        self.pl_mean = stylegan_losses.PathLengthMean() if self.use_pl else None
        self.lr_lazy = {"g": cfg.loss.pl_interval if self.use_pl else 0, "d": cfg.loss.r1_interval if self.lazy else 0}
        # -- end style --
        # issue 11: a conditional architecture's G takes [z, y]; its D takes [x, y] (projection) or
        # x and returns class_logits (acgan). Batches are then (images, attributes).
        self.conditional = registry.architecture(cfg.network.architecture).kind == "conditional"
        self.set_stage(networks.schedule(0).resolution, self.global_batch_size)

    # -- setup -----------------------------------------------------------------------------------
    def compile(self, g_optimizer=None, d_optimizer=None, lens_optimizer=None, **kwargs):
        super().compile(**kwargs)
        cfg = self.cfg
        self.g_optimizer = g_optimizer or make_optimizer(cfg, cfg.optim.g_learning_rate, self.lr_lazy["g"])
        self.d_optimizer = d_optimizer or make_optimizer(cfg, cfg.optim.d_learning_rate, self.lr_lazy["d"])
        if self.lens is not None:
            self.lens_optimizer = lens_optimizer or make_optimizer(cfg, cfg.tricks.lens.learning_rate)
        # Build optimizer slots for every variable of every stage now, so a checkpoint restores
        # into existing slots and a progressive stage change never meets an unknown variable.
        g_models, d_models = self.all_stage_models()
        self.g_variables, self.d_variables = unique_variables(g_models), unique_variables(d_models)
        for opt, var_list in ((self.g_optimizer, self.g_variables), (self.d_optimizer, self.d_variables),
                              (self.lens_optimizer, self.lens.trainable_variables if self.lens else None)):
            if opt is not None:
                inner = getattr(opt, "inner_optimizer", opt)
                inner.build(var_list)
        self.terms = self._regularizer_terms()
        self.apply_lr_scale()

    def _regularizer_terms(self) -> Dict[str, List[Term]]:
        """The optional weighted terms of D's ("d") and G's ("g") losses, from the config.
        `inputs` (see train_step): D gets real, fake (its inputs), key, j (D step); G gets
        real (D's last real input: feature matching takes its features from the updated D) and
        fake_features. Values are this replica's share (replica sum = global)."""
        cfg, t = self.cfg, self.cfg.tricks
        per_replica = self._per_replica_scalar
        d_terms, g_terms = [], []
        if self.family.needs_gradient_penalty:
            d_terms.append(Term("gp", cfg.loss.gp_weight, lambda c: self._avg(
                self._gradient_penalty(c["real"], c["fake"], c["key"], _GP_EPS + c["j"], c["attributes"]))))
        if self.conditional and cfg.condition.discriminator == "acgan":   # Odena et al. 2017
            w = cfg.condition.acgan_weight
            d_terms.append(Term("acgan_d", w, lambda c: self._avg(
                acgan_loss(c["real_out"]["class_logits"], c["attributes"]) +
                acgan_loss(c["fake_out"]["class_logits"], c["attributes"]))))
            g_terms.append(Term("acgan_g", w, lambda c: self._avg(
                acgan_loss(c["fake_out"]["class_logits"], c["attributes"]))))
        if t.feature_matching > 0:
            g_terms.append(Term("feature_matching", t.feature_matching, lambda c: per_replica(
                feature_matching_loss(tf.stop_gradient(self._disc(c["real"], c["attributes"])[1]), c["fake_features"]))))
        if t.repelling > 0:
            g_terms.append(Term("repelling", t.repelling, lambda c: per_replica(repelling_loss(c["fake_features"]))))
        if t.historical_averaging > 0:
            # Created here, under the strategy scope (the running averages are variables).
            self.historical = (HistoricalAveraging(self.g_variables), HistoricalAveraging(self.d_variables))
            for terms, net, h, v in ((d_terms, "d", self.historical[1], self.d_variables),
                                     (g_terms, "g", self.historical[0], self.g_variables)):
                terms.append(Term(f"historical_{net}", t.historical_averaging,
                                  lambda c, h=h, v=v: per_replica(h.loss(v)),
                                  after_update=lambda h=h, v=v: h.update(v)))
        return {"d": d_terms, "g": g_terms}

    @staticmethod
    def _add_terms(terms: List[Term], loss, inputs, sums):
        """loss + sum of weight * value; each value reported as loss/<name>."""
        for term in terms:
            value = term.value(inputs)
            sums[f"loss/{term.name}"] = value
            loss += term.weight * value
        return loss

    # -- state -----------------------------------------------------------------------------------
    def checkpoint_items(self) -> Dict[str, object]:
        """Everything a checkpoint needs to resume this GAN exactly (the Trainer adds its
        random-key generator): networks (registry `checkpoints`), EMA generator, lens,
        optimizers, counters, regularizer state."""
        items = dict(step=self.step, images_shown=self.images_shown, lr_scale=self.lr_scale,
                     nan_recoveries=self.nan_recoveries, g_optimizer=self.g_optimizer,
                     d_optimizer=self.d_optimizer, **self.nets.checkpoint_items())
        if self.nets.progressive:
            items["optimizer_phase"] = self.optimizer_phase
        if self.ema_nets is not None:
            items["generator_ema"] = self.ema_nets.generator
            if self.nets.progressive:
                items["g_ema_stages"] = [g for g, _ in self.ema_nets.stages()]
        if self.lens is not None:
            items.update(lens=self.lens, lens_optimizer=self.lens_optimizer)
        if self.historical is not None:
            items["historical"] = list(self.historical)
        if self.ada is not None:
            items["ada"] = self.ada
        if self.pl_mean is not None:
            items["path_length_mean"] = self.pl_mean
        return items

    def trained_variables(self) -> List[tf.Variable]:
        """Every trained weight of every stage (G, D, lens): what the NaN check inspects."""
        return list(self.g_variables) + list(self.d_variables) + (
            list(self.lens.trainable_variables) if self.lens is not None else [])

    def all_stage_models(self) -> Tuple[list, list]:
        stages = self.nets.stages()
        return [g for g, _ in stages], [d for _, d in stages]

    def set_stage(self, resolution: int, global_batch_size: int):
        """Select the (G, D, G_ema) of a progressive stage (or the only ones) and the batch size."""
        self.G, self.D = self.nets.stage_models(resolution)
        self.G_ema = self.ema_nets.stage_models(resolution)[0] if self.ema_nets else None
        self.resolution = int(resolution)
        self.global_batch_size = int(global_batch_size)
        self._ema_pairs = _ema_pairs(self.G_ema, self.G) if self.G_ema is not None else []

    def enter_phase(self, phase: int) -> bool:
        """Progressive growing: reset Adam's state (moments and step count) when the schedule
        enters a new phase, i.e. at the start and at the end of each fade-in, as PGGAN does
        (train.py, `reset_opt_for_new_lod`: "Reset optimizer internal state (e.g. Adam moments)
        when new layers are introduced", when floor(lod) or ceil(lod) changes). The phase the
        state belongs to is checkpointed, so a resumed run resets exactly where a straight one
        does. Returns whether it reset."""
        if not (self.nets.progressive and self.cfg.network.reset_optimizer_at_fade):
            return False
        if int(self.optimizer_phase.numpy()) == int(phase):
            return False
        for opt in (self.g_optimizer, self.d_optimizer):
            inner = getattr(opt, "inner_optimizer", opt)
            for v in inner.variables:
                if "learning_rate" not in v.name:
                    v.assign(tf.zeros_like(v))
        self.optimizer_phase.assign(int(phase))
        return True

    decays_lr = False        # True: the loop calls apply_lr_scale before every step (a schedule)

    def lr_multiplier(self) -> float:
        """The schedule's factor at the current step (1: constant learning rates)."""
        return 1.0

    def apply_lr_scale(self):
        s = float(self.lr_scale.numpy()) * self.lr_multiplier()
        o = self.cfg.optim
        for opt, lr, k in ((self.g_optimizer, o.g_learning_rate, "g"), (self.d_optimizer, o.d_learning_rate, "d")):
            opt.learning_rate = stylegan_losses.lazy_optimizer_params(lr, o.beta1, o.beta2, self.lr_lazy[k])[0] * s
        if self.lens_optimizer is not None:
            self.lens_optimizer.learning_rate = self.cfg.tricks.lens.learning_rate * s

    def copy_to_ema(self):
        """G_ema <- G for every weight of every stage (start of training)."""
        if self.ema_nets is None:
            return
        for (e_g, _), (g, _) in zip(self.ema_nets.stages(), self.nets.stages()):
            for e, v in _ema_pairs(e_g, g):
                e.assign(v)

    @property
    def sampling_generator(self) -> tf.keras.Model:
        return self.G_ema if self.G_ema is not None else self.G

    def export_models(self):
        """What export writes: the sampling generator (image-to-image: {direction: model})."""
        return self.sampling_generator

    def call(self, z, training=False):
        return self.G(z, training=training)

    # -- style: W-space generation, augmentation, lazy phases ----------------------------------
    def lazy_phase(self, step: int) -> Tuple[bool, bool]:
        """(R1 due, path length due) for the step about to run: StyleGAN2's lazy regularization
        every loss.r1_interval / loss.pl_interval minibatches (NVlabs: phase.interval)."""
        lo = self.cfg.loss
        return (bool(self.lazy and step % lo.r1_interval == 0), bool(self.use_pl and step % lo.pl_interval == 0))

    def _rows(self, n_global):
        """(global rows, this replica's offset) for a global batch of n_global rows."""
        ctx = tf.distribute.get_replica_context()
        local = n_global // ctx.num_replicas_in_sync
        return n_global, tf.cast(ctx.replica_id_in_sync_group, tf.int32) * local

    def _generate(self, key, purpose, a=None, n_global=None):
        """G(z) (G(z, a) for a conditional G) for the training step: z from the global key;
        W-space generators also get per-layer noise and style-mixing crossovers drawn for the
        global batch (replica-independent)."""
        n_global = n_global or self.global_batch_size
        z = self._global_rows(key, purpose, n_global)
        if not self.w_space:
            return self._gen(z, a)
        rows = self._rows(n_global)
        fold = tf.random.experimental.stateless_fold_in
        z2 = self._global_rows(key, purpose + _W_MIX_Z, n_global)
        cross = self.G.mixing_crossover(fold(key, purpose + _W_MIX_CUT), tf.shape(z)[0], rows=rows)
        return self.G(z, training=True, noise_seed=fold(key, purpose + _W_NOISE), z2=z2, crossover=cross, rows=rows,
                      attributes=a)

    def _global_rows(self, key, purpose, n_global):
        """z [n_global, z_dim] from the key, this replica's rows."""
        return self._global_slice(key, purpose, [self.cfg.network.z_dim], n_global=n_global)

    def _augment(self, images, key, purpose):
        if self.ada is None:
            return images
        seed = tf.random.experimental.stateless_fold_in(key, purpose)
        return tf.cast(self.ada(tf.cast(images, tf.float32), seed, rows=self._rows(self.global_batch_size)),
                       images.dtype)

    def _r1_step(self, x_in, a, sums):
        """Dreg: lazy R1 on the (augmented) reals as its own D optimizer step."""
        lo = self.cfg.loss
        with tf.GradientTape() as tape:
            r1 = self._avg(stylegan_losses.r1_penalty(lambda x: self._disc_out(x, a)["logits"], x_in,
                                                      lo.r1_gamma, lo.r1_interval))
        self._apply(self.d_optimizer, tape, r1, self.D.trainable_variables)
        sums["loss/r1"] = r1

    def _pl_step(self, key, sums, shared, a=None):
        """Greg: lazy path length on batch / pl_batch_shrink examples as its own G optimizer step;
        the running mean uses the global mean length (all-reduced) and is then assigned."""
        lo, G = self.cfg.loss, self.G
        n_pl = self.global_batch_size // lo.pl_batch_shrink
        rows = self._rows(n_pl)
        fold = tf.random.experimental.stateless_fold_in
        ctx = tf.distribute.get_replica_context()

        def global_mean(x):
            total = tf.reduce_sum(x)
            if ctx.num_replicas_in_sync > 1:
                total = ctx.all_reduce(SUM, total)
            return total / n_pl

        z = self._global_rows(key, _Z_PL, n_pl)
        z2 = self._global_rows(key, _Z_PL + _W_MIX_Z, n_pl)
        with tf.GradientTape() as tape:
            cross = G.mixing_crossover(fold(key, _Z_PL + _W_MIX_CUT), tf.shape(z)[0], rows=rows)
            a = None if a is None else a[:tf.shape(z)[0]]   # conditional: the batch's first labels
            ws = G.mix(G.map(z, attributes=a), G.map(z2, attributes=a), cross)
            penalty, new_mean, _ = stylegan_losses.path_length_penalty(
                lambda w: G.synthesis(w, noise_seed=fold(key, _Z_PL + _W_NOISE), rows=rows), ws,
                self.pl_mean.value, fold(key, _PL_NOISE), lo.pl_decay, lo.pl_weight, lo.pl_interval,
                rows=rows, mean_fn=global_mean)
            pl = tf.nn.compute_average_loss(penalty, global_batch_size=n_pl)
        self._apply(self.g_optimizer, tape, pl, G.trainable_variables)
        self.pl_mean.value.assign(new_mean)
        sums["loss/pl"] = pl
        shared["pl/mean"] = new_mean
    # -- end style --

    def _gen(self, z, attributes=None, training=True):
        return self.G([z, attributes] if self.conditional else z, training=training)

    # -- randomness ------------------------------------------------------------------------------
    def _global_slice(self, key, purpose, shape_tail, kind="normal", n_global=None):
        """Draw [global_batch (or n_global), *tail] from a stateless key and return this replica's rows."""
        ctx = tf.distribute.get_replica_context()
        n = ctx.num_replicas_in_sync
        n_global = n_global or self.global_batch_size
        local = n_global // n
        seed = tf.random.experimental.stateless_fold_in(key, purpose)
        shape = [n_global] + list(shape_tail)
        if kind == "normal":
            full = tf.random.stateless_normal(shape, seed=seed)
        else:
            full = tf.random.stateless_uniform(shape, seed=seed)
        if n == 1:
            return full
        start = tf.cast(ctx.replica_id_in_sync_group, tf.int32) * local
        return full[start:start + local]

    # -- pieces ----------------------------------------------------------------------------------
    def _avg(self, per_example):
        return tf.nn.compute_average_loss(tf.cast(per_example, tf.float32),
                                          global_batch_size=self.global_batch_size)

    def _per_replica_scalar(self, scalar):
        """A batch-level term computed per replica: divide so the replica sum is the mean."""
        n = tf.distribute.get_replica_context().num_replicas_in_sync
        return tf.cast(scalar, tf.float32) / n

    def _disc_out(self, images, attributes=None, training=True):
        """D's outputs as float32 (a projection D also takes the attributes)."""
        takes_y = self.conditional and len(self.D.inputs) == 2
        out = self.D([images, attributes] if takes_y else images, training=training)
        return {k: tf.cast(v, tf.float32) for k, v in out.items()}

    def _disc(self, images, attributes=None, training=True):
        out = self._disc_out(images, attributes, training)
        return out["logits"], out["features"]

    def _instance_noise(self, step):
        t = self.cfg.tricks
        if t.instance_noise <= 0:
            return None
        return tf.cast(instance_noise_std(step, t.instance_noise, t.instance_noise_steps), tf.float32)

    def _noisy(self, images, std, key, purpose):
        if std is None:
            return images
        noise = self._global_slice(key, purpose, images.shape[1:])
        return images + tf.cast(std, images.dtype) * tf.cast(noise, images.dtype)

    def _gradient_penalty(self, real, fake, key, purpose, attributes=None):
        """WGAN-GP per example, trainer.losses.gradient_penalty with eps drawn here: it must come
        from the global-batch key (replica-count independence)."""
        eps = self._global_slice(key, purpose, [1, 1, 1], kind="uniform")
        return gradient_penalty(lambda x: self._disc(x, attributes)[0], real, fake, interpolation=eps)

    def _apply(self, optimizer, tape, loss, variables):
        """Gradients of `loss`, all-reduced across replicas, applied; returns the global norm."""
        scaled = isinstance(optimizer, tf.keras.mixed_precision.LossScaleOptimizer)
        grads = tape.gradient(optimizer.get_scaled_loss(loss) if scaled else loss, variables)
        if scaled:
            grads = optimizer.get_unscaled_gradients(grads)
        grads = [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g) for g, v in zip(grads, variables)]
        ctx = tf.distribute.get_replica_context()
        if ctx.num_replicas_in_sync > 1:
            grads = ctx.all_reduce(SUM, grads)
        norm = tf.linalg.global_norm(grads)
        optimizer.apply_gradients(zip(grads, variables), skip_gradients_aggregation=True)
        return norm

    def _clip_critic(self, variables):
        """WGAN (Arjovsky et al. 2017, Algorithm 1): w <- clip(w, -c, c) after each critic update.
        Plain replica-context assigns, as `_update_ema`: every replica holds the same D weights
        after the all-reduced update, so each clips its own copy to the same values."""
        c = float(self.cfg.loss.clip_value)
        for v in variables:
            v.assign(tf.clip_by_value(v, -c, c))

    def _update_ema(self):
        """G_ema <- G + beta (G_ema - G) for trainable weights (Karras et al. 2018, sec. A.1);
        BatchNorm statistics are copied (they are running averages already). beta is
        `tricks.ema_decay` per step, or from `tricks.ema_kimg` (+ `ema_rampup`) and the images
        each weight's block has been trained on (trainer/ema.py), computed in the graph from
        images_shown, so a resumed run uses the same betas.

        Runs in replica context with plain assigns: every replica holds identical G weights
        (gradients are all-reduced before the update), so each updates its own copy of G_ema
        (Keras weights have aggregation NONE: the assign writes this replica's component). No
        merge_call, so the step stays XLA-compilable on any device."""
        t = self.cfg.tricks
        trainable = {v.ref() for v in self.G.trainable_weights}
        if t.ema_kimg > 0:
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
        else:
            decay = float(t.ema_decay)
        for e, v in self._ema_pairs:
            if v.ref() in trainable:
                if t.ema_kimg > 0:
                    b = tf.cast(beta_for(self._ema_start(v)), v.dtype)
                    e.assign(v + b * (e - v))
                else:
                    e.assign(v + decay * (e - v))
            else:
                e.assign(v)

    def _ema_start(self, v) -> int:
        """Images shown when the weight's progressive block appeared (0 otherwise)."""
        if not self.nets.progressive:
            return 0
        n = self.cfg.network
        r = ema_lib.block_resolution(v.name)
        return ema_lib.block_appearance(n.start_resolution, n.resolution, n.fade_images,
                                        n.stable_images).get(r, 0)

    def ema_state(self) -> Dict[str, object]:
        """What the sampling generator is, for metadata and evaluation records: which weights,
        the configured horizon, and (EMA) the current horizon of the newest block and whether
        it is still warming up (trainer/ema.py)."""
        if self.G_ema is None:
            return {"weights": "raw"}
        t, n = self.cfg.tricks, self.cfg.network
        shown = int(self.images_shown.numpy())
        start = 0
        if self.nets.progressive:
            start = ema_lib.block_appearance(n.start_resolution, n.resolution, n.fade_images,
                                             n.stable_images).get(int(self.resolution), 0)
        cur = max(0, shown - start)
        per_step = self.global_batch_size * t.d_steps
        out = {"weights": "ema", **ema_lib.settings(t), "newest_block_images": cur,
               "warming_up": ema_lib.warming_up(t.ema_kimg, t.ema_rampup, t.ema_decay, per_step, cur)}
        if t.ema_kimg > 0:
            out["horizon_images"] = ema_lib.horizon_images(t.ema_kimg, t.ema_rampup, cur)
        return out

    # -- the step --------------------------------------------------------------------------------
    def train_step(self, data, phase: Tuple[bool, bool] = (False, False)):
        """One step; `phase` = lazy_phase(step) (R1 due, path length due), a Python value (the
        library loop passes it; plain `fit` runs no lazy regularizer)."""
        if isinstance(data, (tuple, list)):
            images, key = data
        else:   # plain `fit`: key from (seed, step); the library loop passes a Generator key
            images, key = data, tf.stack([tf.constant(self.seed, tf.int64), tf.identity(self.step)])
        attrs = None
        if self.conditional:   # issue 11: the batch is (images, attributes)
            images, attrs = images
        key = tf.cast(key, tf.int64)
        cfg, t = self.cfg, self.cfg.tricks
        ctx = tf.distribute.get_replica_context()
        n_rep = ctx.num_replicas_in_sync
        local_b = self.global_batch_size // n_rep
        images = tf.cast(images, tf.float32)
        if self.nets.progressive and cfg.network.fade_reals and self.resolution > cfg.network.start_resolution:
            from facegan.trainer.networks.progan import fade_reals
            images = fade_reals(images, self.nets.alpha)
        reals = tf.reshape(images, [t.d_steps, local_b] + list(images.shape[1:]))
        # fakes are conditioned on the labels of the reals they meet (the data's label distribution)
        labels = (tf.reshape(tf.cast(attrs, tf.float32), [t.d_steps, local_b, -1]) if self.conditional
                  else [None] * t.d_steps)
        step = tf.identity(self.step)
        noise_std = self._instance_noise(step)
        lens_lambda = None
        if self.lens is not None:
            lens_lambda = tf.cast(lens_lambda_at(step, t.lens.anneal_steps), tf.float32)

        sums: Dict[str, tf.Tensor] = {}     # per-replica contributions: replica sum = global value
        shared: Dict[str, tf.Tensor] = {}   # identical on every replica

        # ---- discriminator ----
        d_vars = self.D.trainable_variables
        for j in range(t.d_steps):
            x = reals[j]
            a = labels[j]
            with tf.GradientTape() as tape:
                fake = tf.cast(self._generate(key, _Z_D + j, a), tf.float32)
                x_in = tf.cast(self.lens(x, training=True), tf.float32) if self.lens is not None else x
                x_in = self._augment(self._noisy(x_in, noise_std, key, _NOISE_REAL + j), key, _AUG_REAL + j)
                f_in = self._augment(self._noisy(fake, noise_std, key, _NOISE_FAKE + j), key, _AUG_FAKE + j)
                real_out, fake_out = self._disc_out(x_in, a), self._disc_out(f_in, a)
                real_logits = real_out["logits"]
                fake_logits = fake_out["logits"]
                d_adv = self._avg(self.d_loss_fn(real_logits, fake_logits,
                                                 real_label_smoothing=t.label_smoothing))
                d_loss = self._add_terms(self.terms["d"], d_adv, dict(
                    real=x_in, fake=f_in, key=key, j=j, attributes=a, real_out=real_out, fake_out=fake_out), sums)
            sums["grad_norm/d"] = self._apply(self.d_optimizer, tape, d_loss, d_vars) / n_rep
            if self.family.clips_weights:
                self._clip_critic(d_vars)
            if self.ada is not None:   # ADA's overfitting heuristic r_t = E[sign(D(real))]
                s_sum, s_count = sign_stats(real_logits)
                sums["ada/sign_sum"] = sums.get("ada/sign_sum", 0.0) + s_sum
                sums["ada/count"] = sums.get("ada/count", 0.0) + s_count
        if phase[0]:
            self._r1_step(x_in, a, sums)
        sums["loss/d"] = d_loss
        sums["loss/d_adv"] = d_adv
        sums["d/real_logit"] = self._avg(tf.reduce_mean(real_logits, axis=-1))
        sums["d/fake_logit"] = self._avg(tf.reduce_mean(fake_logits, axis=-1))
        for term in self.terms["d"]:
            if term.after_update is not None:
                term.after_update()

        # ---- generator ----
        g_vars = self.G.trainable_variables
        a = labels[-1]
        with tf.GradientTape() as tape:
            fake = tf.cast(self._generate(key, _Z_G, a), tf.float32)
            f_in = self._augment(self._noisy(fake, noise_std, key, _NOISE_G), key, _AUG_G)
            fake_out = self._disc_out(f_in, a)
            fake_logits, fake_feats = fake_out["logits"], fake_out["features"]
            g_adv = self._avg(self.g_loss_fn(fake_logits))
            # Feature matching (Salimans et al. 2016 sec. 3.1) takes f(x) and f(G(z)) from the SAME
            # discriminator: the term recomputes the real features with D as updated above, on D's
            # last real input (see `_regularizer_terms`).
            g_loss = self._add_terms(self.terms["g"], g_adv, dict(
                real=tf.stop_gradient(x_in), fake_features=fake_feats, attributes=a, fake_out=fake_out), sums)
        sums["grad_norm/g"] = self._apply(self.g_optimizer, tape, g_loss, g_vars) / n_rep
        if phase[1]:
            self._pl_step(key, sums, shared, labels[-1])
        sums["loss/g"] = g_loss
        sums["loss/g_adv"] = g_adv
        for term in self.terms["g"]:
            if term.after_update is not None:
                term.after_update()

        # ---- lens (Sajjadi et al. 2018): lambda * adversarial + ||X - L(X)||^2 ----
        if self.lens is not None:
            x = reals[-1]
            with tf.GradientTape() as tape:
                lx = tf.cast(self.lens(x, training=True), tf.float32)
                l_logits, _ = self._disc(self._noisy(lx, noise_std, key, _NOISE_REAL), labels[-1])
                l_adv = tf.cast(self.lens_adv_fn(l_logits), tf.float32)
                recon = lens_reconstruction_loss(x, lx)   # summed over pixels (see losses.py)
                l_loss = self._avg(lens_lambda * l_adv + recon)
            sums["grad_norm/lens"] = self._apply(self.lens_optimizer, tape, l_loss,
                                                 self.lens.trainable_variables) / n_rep
            sums["loss/lens"] = l_loss
            sums["lens/adv"] = self._avg(l_adv)
            sums["lens/recon"] = self._avg(recon)
            shared["lens/lambda"] = lens_lambda

        self._update_ema()
        self.step.assign_add(1)
        self.images_shown.assign_add(self.global_batch_size * t.d_steps)

        shared["lr/g"] = tf.cast(self.g_optimizer.learning_rate, tf.float32)
        shared["lr/d"] = tf.cast(self.d_optimizer.learning_rate, tf.float32)
        if self.nets.progressive and self.nets.alpha is not None:
            shared["progan/alpha"] = tf.cast(self.nets.alpha, tf.float32)
        if noise_std is not None:
            shared["noise/instance_std"] = noise_std
        out = self._reduce(sums, shared)
        if self.ada is not None:
            # Every replica holds the same global sums, so each updates its own copy of the ADA
            # variables identically (plain replica-context assigns, as _update_ema does).
            self.ada.observe(out.pop("ada/sign_sum"), out.pop("ada/count"), self.global_batch_size)
            out.update(self.ada.metrics())
        return out

    def _reduce(self, sums, shared):
        """All-reduce every metric in one collective; every replica returns the global values."""
        ctx = tf.distribute.get_replica_context()
        n = ctx.num_replicas_in_sync
        names = list(sums) + list(shared)
        vec = tf.stack([tf.cast(sums[k], tf.float32) for k in sums] +
                       [tf.cast(shared[k], tf.float32) / n for k in shared])
        if n > 1:
            vec = ctx.all_reduce(SUM, vec)
        return {k: vec[i] for i, k in enumerate(names)}

    # -- sampling --------------------------------------------------------------------------------
    def sample(self, z, ema=True, temperature: float = 1.0, attributes=None):
        """uint8 images from latents, z scaled by the sampling temperature (z' = psi * z); a
        conditional GAN also takes the attribute vectors [N, A]."""
        g = self.sampling_generator if ema else self.G
        if self.w_space:   # truncation in W toward w_avg (Karras et al. 2019)
            y = tf.convert_to_tensor(attributes, tf.float32) if self.conditional else None
            return from_network(g(tf.convert_to_tensor(z, tf.float32), training=False, psi=temperature, attributes=y))
        z = tf.convert_to_tensor(z, tf.float32) * temperature
        if self.conditional:
            z = [z, tf.convert_to_tensor(attributes, tf.float32)]
        return from_network(g(z, training=False))
