"""The latent (z -> image) GAN: generator + discriminator (+ EMA generator, + lens), keras-io
gan_ada.py style, on the small base of trainer/gan_base.py.

It holds the networks and what every family's step needs from them: generation from the step's
key (W-space generators also get per-layer noise and style-mixing crossovers drawn for the global
batch), D's float32 outputs (a projection D also takes the attributes), D's input transforms
(instance noise, then ADA / DiffAugment, trainer/augment.py, with different seeds for reals and
fakes), progressive stages and the EMA. WHAT a step trains is the loss family's object
(trainer/adversarial.py, trainer/stylegan_losses.py), named by the family's registration: its
phases (Dmain, Dreg, Gmain, Greg, lens) run between `begin_step` and `end_step`.

Distribution (trainer/replica.py): randomness (latents, instance noise, gradient-penalty
interpolation, augmentation) is drawn for the whole global batch from a stateless key and each
replica takes its slice. The key comes from a checkpointed `tf.random.Generator` (passed in with
the batch) or, under plain `fit`, from (seed, step). Returned metrics are global values named as
TensorBoard tags: loss/*, grad_norm/*, lens/*, progan/alpha, lr/*, noise/*, d/*, ada/*, pl/*.
"""
from __future__ import annotations

from typing import Dict, Tuple

import tensorflow as tf

from facegan.trainer import ema as ema_lib
from facegan.trainer import keys, registry, replica
from facegan.trainer.augment import PIPELINES, AdaptiveAugment, sign_stats
from facegan.trainer.config import Config
from facegan.trainer.data import from_network
from facegan.trainer.gan_base import GANBase, StepState, ema_pairs, first_replica_var
from facegan.trainer.optimizers import make_optimizer
from facegan.trainer.regularizers import instance_noise_std

_Z_G = keys.Z_G     # the generator step's latents (tests rebuild G's input from it)


class GAN(GANBase):
    """Generator + discriminator (+ EMA generator, + lens) trained by its loss family's phases."""

    def __init__(self, cfg: Config, networks, ema_networks=None, lens=None, *, global_batch_size: int):
        super().__init__(cfg, global_batch_size=global_batch_size)
        self.nets, self.ema_nets, self.lens = networks, ema_networks, lens
        self.lens_optimizer = None
        # progressive: the schedule phase the optimizers' state belongs to (see enter_phase)
        self.optimizer_phase = first_replica_var(0, tf.int64, "optimizer_phase")
        self.resolution = None
        arch = registry.architecture(cfg.network.architecture)
        self.w_space = arch.w_space
        # a conditional architecture's G takes [z, y]; its D takes [x, y] (projection) or x and
        # returns class_logits (acgan). Batches are then (images, attributes).
        self.conditional = arch.kind == "conditional"
        a = cfg.tricks.augment
        self.ada = None if a.mode == "none" else AdaptiveAugment(
            a.mode, a.p, a.target, a.interval, a.speed_images, ops=PIPELINES[a.pipeline], policy=a.policy)
        self.family_loss = registry.import_by_name(registry.loss_family(cfg.loss.family).step)(self)
        self.set_stage(networks.schedule(0).resolution, self.global_batch_size)

    # -- setup and state ---------------------------------------------------------------------------
    def compile(self, g_optimizer=None, d_optimizer=None, lens_optimizer=None, **kwargs):
        if self.lens is not None:
            self.lens_optimizer = lens_optimizer or make_optimizer(self.cfg, self.cfg.tricks.lens.learning_rate)
        super().compile(g_optimizer, d_optimizer, **kwargs)

    def optimizers_and_variables(self):
        extra = [(self.lens_optimizer, self.lens.trainable_variables)] if self.lens is not None else []
        return super().optimizers_and_variables() + extra

    def apply_lr_scale(self):
        super().apply_lr_scale()
        if self.lens_optimizer is not None:
            self.lens_optimizer.learning_rate = self.cfg.tricks.lens.learning_rate * float(self.lr_scale.numpy())

    def checkpoint_items(self) -> Dict[str, object]:
        """Everything a checkpoint needs to resume exactly (the Trainer adds its random-key
        generator): networks (registry `checkpoints`), EMA generator, lens, optimizers, counters,
        the loss object's state (historical averages, path-length mean), ADA."""
        items = dict(super().checkpoint_items(), **self.nets.checkpoint_items())
        if self.nets.progressive:
            items["optimizer_phase"] = self.optimizer_phase
        if self.ema_nets is not None:
            items["generator_ema"] = self.ema_nets.generator
            if self.nets.progressive:
                items["g_ema_stages"] = [g for g, _ in self.ema_nets.stages()]
        if self.lens is not None:
            items.update(lens=self.lens, lens_optimizer=self.lens_optimizer)
        if self.ada is not None:
            items["ada"] = self.ada
        return items

    @property
    def historical(self):
        return self.family_loss.historical

    @property
    def pl_mean(self):
        return getattr(self.family_loss, "pl_mean", None)

    def all_stage_models(self) -> Tuple[list, list]:
        stages = self.nets.stages()
        return [g for g, _ in stages], [d for _, d in stages]

    def set_stage(self, resolution: int, global_batch_size: int):
        """Select the (G, D, G_ema) of a progressive stage (or the only ones) and the batch size."""
        self.G, self.D = self.nets.stage_models(resolution)
        self.G_ema = self.ema_nets.stage_models(resolution)[0] if self.ema_nets else None
        self.resolution = int(resolution)
        self.global_batch_size = int(global_batch_size)
        self._ema_pairs = ema_pairs(self.G_ema, self.G) if self.G_ema is not None else []

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

    def ema_stage_pairs(self):
        if self.ema_nets is None:
            return []
        return [p for (e_g, _), (g, _) in zip(self.ema_nets.stages(), self.nets.stages()) for p in ema_pairs(e_g, g)]

    @property
    def sampling_generator(self) -> tf.keras.Model:
        return self.G_ema if self.G_ema is not None else self.G

    def export_models(self):
        """What export writes: the sampling generator."""
        return self.sampling_generator

    def call(self, z, training=False):
        return self.G(z, training=training)

    # -- what the phases use -----------------------------------------------------------------------
    def generate(self, key, purpose, a=None, n_global=None):
        """G(z) (G(z, a) for a conditional G) for the training step: z from the global key;
        W-space generators also get per-layer noise and style-mixing crossovers drawn for the
        global batch (replica-independent)."""
        n_global = n_global or self.global_batch_size
        z = replica.global_slice(key, purpose, [self.cfg.network.z_dim], n_global)
        if not self.w_space:
            return self.G([z, a] if self.conditional else z, training=True)
        rows = replica.rows(n_global)
        fold = tf.random.experimental.stateless_fold_in
        z2 = replica.global_slice(key, purpose + keys.W_MIX_Z, [self.cfg.network.z_dim], n_global)
        cross = self.G.mixing_crossover(fold(key, purpose + keys.W_MIX_CUT), tf.shape(z)[0], rows=rows)
        return self.G(z, training=True, noise_seed=fold(key, purpose + keys.W_NOISE), z2=z2, crossover=cross,
                      rows=rows, attributes=a)

    def disc_out(self, images, attributes=None, training=True) -> Dict[str, tf.Tensor]:
        """D's outputs as float32 (a projection D also takes the attributes)."""
        takes_y = self.conditional and len(self.D.inputs) == 2
        out = self.D([images, attributes] if takes_y else images, training=training)
        return {k: tf.cast(v, tf.float32) for k, v in out.items()}

    def _global_slice(self, key, purpose, shape_tail, kind="normal", n_global=None):
        """Draw [global_batch (or n_global), *tail] from a stateless key; this replica's rows."""
        return replica.global_slice(key, purpose, shape_tail, n_global or self.global_batch_size, kind)

    def d_input(self, images, noise_std, key, noise_purpose, aug_purpose=None):
        """What D sees: images + instance noise (if on), then augmented (if on and `aug_purpose`)."""
        if noise_std is not None:
            noise = self._global_slice(key, noise_purpose, images.shape[1:])
            images = images + tf.cast(noise_std, images.dtype) * tf.cast(noise, images.dtype)
        if self.ada is None or aug_purpose is None:
            return images
        seed = tf.random.experimental.stateless_fold_in(key, aug_purpose)
        return tf.cast(self.ada(tf.cast(images, tf.float32), seed, rows=replica.rows(self.global_batch_size)),
                       images.dtype)

    def observe_reals(self, real_logits, sums):
        """ADA's overfitting heuristic r_t = E[sign(D(real))]: accumulate this D step's signs."""
        if self.ada is not None:
            s_sum, s_count = sign_stats(real_logits)
            sums["ada/sign_sum"] = sums.get("ada/sign_sum", 0.0) + s_sum
            sums["ada/count"] = sums.get("ada/count", 0.0) + s_count

    # -- the step ----------------------------------------------------------------------------------
    def begin_step(self, data) -> StepState:
        """The step's reals split into `tricks.d_steps` slices (faded during a progressive fade),
        their labels (fakes are conditioned on the labels of the reals they meet), instance noise."""
        images, key = self.split_key(data)
        attrs = None
        if self.conditional:
            images, attrs = images
        cfg, t = self.cfg, self.cfg.tricks
        local_b = self.global_batch_size // replica.num_replicas()
        images = tf.cast(images, tf.float32)
        if self.nets.progressive and cfg.network.fade_reals and self.resolution > cfg.network.start_resolution:
            from facegan.trainer.networks.progan import fade_reals
            images = fade_reals(images, self.nets.alpha)
        reals = tf.reshape(images, [t.d_steps, local_b] + list(images.shape[1:]))
        labels = (tf.reshape(tf.cast(attrs, tf.float32), [t.d_steps, local_b, -1]) if self.conditional
                  else [None] * t.d_steps)
        step = tf.identity(self.step)
        noise_std = None
        if t.instance_noise > 0:
            noise_std = tf.cast(instance_noise_std(step, t.instance_noise, t.instance_noise_steps), tf.float32)
        return StepState(key, reals=reals, labels=labels, step=step, noise_std=noise_std)

    def end_step(self, s: StepState):
        self._update_ema()
        if self.nets.progressive and self.nets.alpha is not None:
            s.shared["progan/alpha"] = tf.cast(self.nets.alpha, tf.float32)
        if s.noise_std is not None:
            s.shared["noise/instance_std"] = s.noise_std
        out = self.finish(s, self.global_batch_size * self.cfg.tricks.d_steps)
        if self.ada is not None:
            # Every replica holds the same global sums, so each updates its own copy of the ADA
            # variables identically (plain replica-context assigns, as the EMA update does).
            self.ada.observe(out.pop("ada/sign_sum"), out.pop("ada/count"), self.global_batch_size)
            out.update(self.ada.metrics())
        return out

    # -- EMA ---------------------------------------------------------------------------------------
    def _block_start(self, resolution: int) -> int:
        n = self.cfg.network
        return ema_lib.block_appearance(n.start_resolution, n.resolution, n.fade_images,
                                        n.stable_images).get(resolution, 0)

    def _ema_start(self, v) -> int:
        """Images shown when the weight's progressive block appeared (0 otherwise)."""
        return self._block_start(ema_lib.block_resolution(v.name)) if self.nets.progressive else 0

    def ema_state(self) -> Dict[str, object]:
        """What the sampling generator is, for metadata and evaluation records: which weights,
        the configured horizon, and (EMA) the current horizon of the newest block and whether
        it is still warming up (trainer/ema.py)."""
        if self.G_ema is None:
            return {"weights": "raw"}
        t = self.cfg.tricks
        start = self._block_start(int(self.resolution)) if self.nets.progressive else 0
        cur = max(0, int(self.images_shown.numpy()) - start)
        per_step = self.global_batch_size * t.d_steps
        out = {"weights": "ema", **ema_lib.settings(t), "newest_block_images": cur,
               "warming_up": ema_lib.warming_up(t.ema_kimg, t.ema_rampup, t.ema_decay, per_step, cur)}
        if t.ema_kimg > 0:
            out["horizon_images"] = ema_lib.horizon_images(t.ema_kimg, t.ema_rampup, cur)
        return out

    # -- sampling ----------------------------------------------------------------------------------
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
