"""Shared by tests/trainer/test_stylegan_train.py and tests/e2e/test_stylegan_train_e2e.py."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from facegan.trainer.config import ConfigError, get_preset
from tests.testlib.train import checkpoint_weights
from tests.testlib.examples import write_synthetic_examples


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# Tiny smoke_stylegan2: every regularizer and ADA update every step; ADA starts at p = 0.5 and
# moves 8 / 100 per step, so a restored p is distinguishable from the initial one.
TINY = {"network.resolution": 16, "network.z_dim": 16, "network.w_dim": 16, "network.channel_base": 64,
        "network.channel_max": 16, "loss.r1_interval": 1, "loss.pl_interval": 1,
        "tricks.augment.p": 0.5, "tricks.augment.interval": 1, "tricks.augment.speed_images": 100,
        "tricks.ema_decay": 0.9, "run.checkpoint_every": 1, "run.image_every": 100, "run.log_every": 1}


@pytest.fixture(scope="module")
def synth16(tmp_path_factory):
    return write_synthetic_examples(str(tmp_path_factory.mktemp("synth16") / "examples"),
                                                n_train=16, n_eval=2, resolution=16)


@pytest.fixture(scope="module")
def straight(synth16, tmp_path_factory):
    from facegan.trainer import train_lib
    cfg = get_preset("smoke_stylegan2", TINY)
    return train_lib.train(cfg, synth16, str(tmp_path_factory.mktemp("straight")), steps=2, progress=False)


# -- export and serving -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def exported(straight, tmp_path_factory):
    from facegan.generator import load_generator
    from facegan.trainer import train_lib
    path = train_lib.export(straight, str(tmp_path_factory.mktemp("export") / "1"))
    return path, load_generator(path)
