"""A loss family with its own regulariser is one new module plus one registration.

The throwaway module below (written to tmp_path and imported from there, as a user's module
would be) subclasses the adversarial loss object with one extra phase: a lazy "logit magnitude"
regulariser on D as its own optimizer step every 2 minibatches (the shape of StyleGAN2's Dreg).
It is registered with one `register_loss(LossFamily(..., step="module:Class"))` and trained
3 steps through the normal entry point, `train_lib.train`. Its weight and interval are its own
settings (a `settings.LossConfig` subclass in the same module, registered with the family): the
config parses them as `loss.reg_weight` / `loss.reg_interval`, refuses them on another family, and
the interval the loss object runs at is the one the config set."""
import importlib
import sys

import numpy as np
import pytest

MODULE = '''
"""Throwaway loss family: non-saturating + lazy (every INTERVAL minibatches) logit-magnitude
regulariser on D, run as its own D optimizer step."""
import dataclasses

import tensorflow as tf

from facegan.trainer import replica
from facegan.trainer.adversarial import AdversarialLoss
from facegan.trainer.phases import Phase
from facegan.trainer.settings import ConfigError, LossConfig


@dataclasses.dataclass
class LogitMagnitudeSettings(LossConfig):
    family: str = "logit_magnitude_test"
    reg_weight: float = 5.0
    reg_interval: int = 4

    def validate(self, cfg, arch, family):
        if self.reg_interval < 1:
            raise ConfigError(f"loss.reg_interval must be >= 1, got {self.reg_interval}")


class LogitMagnitudeLoss(AdversarialLoss):
    @property
    def phases(self):
        main = super().phases     # Dmain, Gmain
        return main[:1] + [Phase("Dreg", self.d_reg, self.gan.cfg.loss.reg_interval)] + main[1:]

    def d_reg(self, s):
        gan = self.gan
        with tf.GradientTape() as tape:
            logits = gan.disc_out(s.x_in, s.a)["logits"]
            reg = gan.avg(gan.cfg.loss.reg_weight * tf.reduce_mean(tf.square(logits), axis=-1))
        s.sums["grad_norm/dreg"] = replica.apply(gan.d_optimizer, tape, reg, gan.D.trainable_variables)
        s.sums["loss/logit_magnitude"] = reg
'''

NAME = "logit_magnitude_test"


@pytest.fixture
def family(tmp_path, monkeypatch):
    from facegan.trainer import registry
    (tmp_path / "my_loss_family.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("my_loss_family")
    registry.register_loss(registry.LossFamily(
        NAME, "ns_generator_loss", "ns_discriminator_loss", "softplus_lens_loss",
        "test: ns + lazy logit magnitude", step="my_loss_family:LogitMagnitudeLoss",
        settings=module.LogitMagnitudeSettings))
    yield module
    registry.LOSSES.pop(NAME, None)
    sys.modules.pop("my_loss_family", None)


def test_a_new_loss_family_with_its_own_regulariser_trains_through_the_loop(family, tmp_path):
    from facegan.trainer import train_lib
    from facegan.trainer.config import get_preset
    cfg = get_preset("smoke", {"loss.family": NAME, "loss.reg_interval": 2, "network.resolution": 16, "network.filters": 4,
                               "optim.batch_size": 4, "tricks.ema_decay": 0.0, "run.log_every": 1,
                               "run.image_every": 100})
    seen = {}

    def on_step(trainer, step, metrics):
        seen[step] = dict(metrics)

    res = train_lib.train(cfg, None, str(tmp_path / "run"), steps=3, synthetic=True, progress=False,
                          on_step=on_step)
    assert type(res.gan.family_loss).__name__ == "LogitMagnitudeLoss"
    assert [p.name for p in res.gan.family_loss.phases] == ["Dmain", "Dreg", "Gmain"]
    # the regulariser ran at its interval: steps 0 and 2 (reported after steps 1 and 3), not step 1
    assert "loss/logit_magnitude" in seen[1] and "loss/logit_magnitude" in seen[3]
    assert "loss/logit_magnitude" not in seen[2]
    assert seen[1]["loss/logit_magnitude"] > 0 and np.isfinite(seen[3]["loss/logit_magnitude"])
    # as its own D optimizer step: 3 Dmain updates + 2 Dreg updates; G: 3
    assert int(res.gan.d_optimizer.iterations.numpy()) == 5
    assert int(res.gan.g_optimizer.iterations.numpy()) == 3


def test_the_interval_picks_the_traced_phases(family):
    from facegan.trainer import registry
    from facegan.trainer.config import get_preset
    from facegan.trainer.gan import GAN
    from facegan.trainer.networks import build_networks
    cfg = get_preset("smoke", {"loss.family": NAME, "loss.reg_interval": 2, "network.resolution": 16, "network.filters": 4,
                               "optim.batch_size": 4, "tricks.ema_decay": 0.0})
    assert registry.loss_family(NAME).step == "my_loss_family:LogitMagnitudeLoss"
    gan = GAN(cfg, build_networks(cfg), global_batch_size=4)
    assert [gan.due_phases(s) for s in range(4)] == [("Dmain", "Dreg", "Gmain"), ("Dmain", "Gmain")] * 2


def test_its_settings_are_its_own(family):
    """The family's fields parse with their defaults, are refused on another family naming the
    owner, and its validator runs."""
    from facegan.trainer.config import ConfigError, get_preset
    cfg = get_preset("smoke", {"loss.family": NAME})
    assert (cfg.loss.reg_weight, cfg.loss.reg_interval) == (5.0, 4)
    with pytest.raises(ConfigError, match=rf"loss.reg_interval: .*{NAME}"):
        get_preset("smoke", {"loss.reg_interval": 2})            # the smoke preset's family is ns
    with pytest.raises(ConfigError, match="loss.reg_interval must be >= 1"):
        get_preset("smoke", {"loss.family": NAME, "loss.reg_interval": 0})
