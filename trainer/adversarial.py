"""Loss objects of the latent (z -> image) GAN's families, each owning its phases as data.

`AdversarialLoss` (ns, minimax, lsgan, hinge, facegan: the family's G/D functions from the
registry) runs, per step: Dmain (`tricks.d_steps` discriminator updates on fresh fakes), Gmain (one
generator update), and lens (Sajjadi et al. 2018: lambda * adversarial + ||X - L(X)||^2) when the
lens is on. Tricks enter as terms (trainer/tricks.py) and as D-input transforms (the GAN's
`d_input`: instance noise, augmentation). Families with their own regularizer subclass it:
`WGANGPLoss` adds the gradient penalty term (Gulrajani et al. 2017), `WGANClipLoss` clips the
critic after each update (Arjovsky et al. 2017, Algorithm 1), `StyleGAN2Loss`
(trainer/stylegan_losses.py) adds the lazy Dreg / Greg phases. A new family = a module with such
a class + one `register_loss(LossFamily(..., step="module:Class"))`.
"""
from __future__ import annotations

from typing import Dict, List

import tensorflow as tf

from facegan.trainer import keys, registry, replica
from facegan.trainer.losses import gradient_penalty, lens_reconstruction_loss
from facegan.trainer.networks.lens import lens_lambda as lens_lambda_at
from facegan.trainer.phases import Phase, StepState
from facegan.trainer.tricks import Term, add_terms, trick_terms


class AdversarialLoss:
    """The phases of a z -> image GAN step for a family of adversarial G/D losses."""

    def __init__(self, gan):
        self.gan = gan
        self.family = registry.loss_family(gan.cfg.loss.family)
        self.g_loss_fn, self.d_loss_fn = self.family.bind(gan.cfg.loss)
        self.lens_adv_fn = self.family.bind_lens(gan.cfg.loss)
        self.d_terms: List[Term] = []
        self.g_terms: List[Term] = []
        self.historical = None
        self.lazy_intervals = {"g": 0, "d": 0}   # optimizers rescaled for lazy phases (StyleGAN2)

    @property
    def phases(self) -> List[Phase]:
        out = [Phase("Dmain", self.d_main), Phase("Gmain", self.g_main)]
        if self.gan.lens is not None:
            out.append(Phase("lens", self.lens_main))
        return out

    def family_terms(self):
        """(D terms, G terms) of the family's own regularizers, before the tricks' terms."""
        return [], []

    def build(self):
        """Terms, once the optimizers' variable lists exist (under the strategy scope)."""
        d_family, g_family = self.family_terms()
        d_tricks, g_tricks, self.historical = trick_terms(self.gan)
        self.d_terms, self.g_terms = d_family + d_tricks, g_family + g_tricks

    def checkpoint_items(self) -> Dict[str, object]:
        return {"historical": list(self.historical)} if self.historical is not None else {}

    def after_d_update(self, variables):
        """Runs after each discriminator optimizer step (e.g. weight clipping)."""

    def after_step(self, state: StepState):
        for term in self.d_terms + self.g_terms:
            if term.after_update is not None:
                term.after_update()

    # -- phases ------------------------------------------------------------------------------------
    def d_main(self, s: StepState):
        """`tricks.d_steps` D updates, each on its slice of the reals and fresh fakes."""
        gan, t = self.gan, self.gan.cfg.tricks
        d_vars = gan.D.trainable_variables
        for j in range(t.d_steps):
            x, a = s.reals[j], s.labels[j]
            with tf.GradientTape() as tape:
                fake = tf.cast(gan.generate(s.key, keys.Z_D + j, a), tf.float32)
                x_in = tf.cast(gan.lens(x, training=True), tf.float32) if gan.lens is not None else x
                x_in = gan.d_input(x_in, s.noise_std, s.key, keys.NOISE_REAL + j, keys.AUG_REAL + j)
                f_in = gan.d_input(fake, s.noise_std, s.key, keys.NOISE_FAKE + j, keys.AUG_FAKE + j)
                real_out, fake_out = gan.disc_out(x_in, a), gan.disc_out(f_in, a)
                d_adv = gan.avg(self.d_loss_fn(real_out["logits"], fake_out["logits"],
                                               real_label_smoothing=t.label_smoothing))
                d_loss = add_terms(self.d_terms, d_adv, dict(
                    real=x_in, fake=f_in, key=s.key, j=j, attributes=a, real_out=real_out, fake_out=fake_out),
                    s.sums)
            s.sums["grad_norm/d"] = replica.apply(gan.d_optimizer, tape, d_loss, d_vars) / replica.num_replicas()
            self.after_d_update(d_vars)
            gan.observe_reals(real_out["logits"], s.sums)
        s.x_in, s.a = x_in, a          # D's last real input and labels: Dreg and feature matching
        s.sums["loss/d"] = d_loss
        s.sums["loss/d_adv"] = d_adv
        s.sums["d/real_logit"] = gan.avg(tf.reduce_mean(real_out["logits"], axis=-1))
        s.sums["d/fake_logit"] = gan.avg(tf.reduce_mean(fake_out["logits"], axis=-1))

    def g_main(self, s: StepState):
        """One G update on fakes conditioned on the last D step's labels."""
        gan = self.gan
        a = s.labels[-1]
        with tf.GradientTape() as tape:
            fake = tf.cast(gan.generate(s.key, keys.Z_G, a), tf.float32)
            fake_out = gan.disc_out(gan.d_input(fake, s.noise_std, s.key, keys.NOISE_G, keys.AUG_G), a)
            g_adv = gan.avg(self.g_loss_fn(fake_out["logits"]))
            # Feature matching (Salimans et al. 2016 sec. 3.1) takes f(x) and f(G(z)) from the SAME
            # discriminator: the term recomputes the real features with D as updated by Dmain, on
            # D's last real input.
            g_loss = add_terms(self.g_terms, g_adv, dict(
                real=tf.stop_gradient(s.x_in), fake_features=fake_out["features"], attributes=a,
                fake_out=fake_out), s.sums)
        s.sums["grad_norm/g"] = (replica.apply(gan.g_optimizer, tape, g_loss, gan.G.trainable_variables)
                                 / replica.num_replicas())
        s.sums["loss/g"] = g_loss
        s.sums["loss/g_adv"] = g_adv

    def lens_main(self, s: StepState):
        """The lens (Sajjadi et al. 2018): lambda * adversarial + ||X - L(X)||^2, lambda annealed."""
        gan = self.gan
        x = s.reals[-1]
        lam = tf.cast(lens_lambda_at(s.step, gan.cfg.tricks.lens.anneal_steps), tf.float32)
        with tf.GradientTape() as tape:
            lx = tf.cast(gan.lens(x, training=True), tf.float32)
            l_logits = gan.disc_out(gan.d_input(lx, s.noise_std, s.key, keys.NOISE_REAL, None), s.labels[-1])["logits"]
            l_adv = tf.cast(self.lens_adv_fn(l_logits), tf.float32)
            recon = lens_reconstruction_loss(x, lx)   # summed over pixels (see losses.py)
            l_loss = gan.avg(lam * l_adv + recon)
        s.sums["grad_norm/lens"] = (replica.apply(gan.lens_optimizer, tape, l_loss, gan.lens.trainable_variables)
                                    / replica.num_replicas())
        s.sums["loss/lens"] = l_loss
        s.sums["lens/adv"] = gan.avg(l_adv)
        s.sums["lens/recon"] = gan.avg(recon)
        s.shared["lens/lambda"] = lam


class WGANGPLoss(AdversarialLoss):
    """WGAN-GP (Gulrajani et al. 2017): D's loss + gp_weight * (||grad D(x_hat)|| - 1)^2 at
    interpolates x_hat = x + eps (G(z) - x), eps ~ U[0, 1] drawn for the global batch."""

    def family_terms(self):
        gan = self.gan

        def gp(c):
            eps = replica.global_slice(c["key"], keys.GP_EPS + c["j"], [1, 1, 1], gan.global_batch_size,
                                       kind="uniform")
            return gan.avg(gradient_penalty(lambda x: gan.disc_out(x, c["attributes"])["logits"],
                                            c["real"], c["fake"], interpolation=eps))
        return [Term("gp", gan.cfg.loss.gp_weight, gp)], []


class WGANClipLoss(AdversarialLoss):
    """WGAN (Arjovsky et al. 2017, Algorithm 1): w <- clip(w, -c, c) after each critic update.
    Plain replica-context assigns, as the EMA: every replica holds the same D weights after the
    all-reduced update, so each clips its own copy to the same values."""

    def after_d_update(self, variables):
        c = float(self.gan.cfg.loss.clip_value)
        for v in variables:
            v.assign(tf.clip_by_value(v, -c, c))
