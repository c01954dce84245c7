"""Training as users run it (issue 9, "Training"): preset tables that follow the chosen
resolution, and progressive runs exported at any stage. The kill -9 and multi-worker tests are
end-to-end (subprocesses): tests/e2e/test_train_hardening_e2e.py."""
import json
import os

import numpy as np
import pytest

from facegan.trainer.config import ConfigError, get_preset
from tests.testlib.examples import write_synthetic_examples

# The progan preset made tiny without touching its batch-size table (the user sets no table).
TINY_PROGAN = {"network.resolution": 32, "network.filters": 8, "network.max_filters": 8, "network.z_dim": 8,
               "run.checkpoint_every": 100, "run.image_every": 100, "run.log_every": 100}


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return write_synthetic_examples(str(tmp_path_factory.mktemp("synth") / "examples"),
                                                n_train=24, n_eval=4, resolution=32, extra_resolutions=(4, 8, 16))


# -- 1. the preset's batch-size table belongs to the preset --------------------------------------
def test_preset_batch_sizes_above_the_chosen_resolution_are_dropped_with_a_note():
    full = get_preset("progan").network.batch_sizes
    assert {"64", "128"} <= set(full)
    cfg = get_preset("progan", {"network.resolution": 32})
    assert cfg.network.batch_sizes == {k: v for k, v in full.items() if int(k) <= 32}
    assert len(cfg.notes) == 1 and "64, 128" in cfg.notes[0] and "network.batch_sizes" in cfg.notes[0]
    # a later start resolution drops the entries below it too
    grown = get_preset("progan", {"network.resolution": 32, "network.start_resolution": 16})
    assert sorted(grown.network.batch_sizes, key=int) == ["16", "32"]
    # the notes round-trip through config.json's dict form
    assert type(cfg).from_dict(json.loads(cfg.to_json())).notes == cfg.notes


def test_preset_table_dropped_for_a_non_progressive_architecture():
    cfg = get_preset("progan", {"network.architecture": "dcgan", "network.resolution": 64, "loss.family": "ns"})
    # the table went with progan's settings (dcgan's have none); the note says so
    assert not hasattr(cfg.network, "batch_sizes") and "not progressive" in cfg.notes[0]


def test_a_table_the_user_sets_is_still_refused_and_untouched_presets_have_no_notes():
    with pytest.raises(ConfigError, match=r"network.batch_sizes\['64'\]: resolution outside"):
        get_preset("progan", {"network.resolution": 32, "network.batch_sizes": {"32": 16, "64": 8}})
    assert get_preset("progan").notes == [] and get_preset("progan", {"run.steps": 5}).notes == []


# -- 2. a progressive run exports at any stage -------------------------------------------------
def _upsample(images, factor):
    return np.repeat(np.repeat(images, factor, axis=1), factor, axis=2)


def test_cli_progan_at_32_stopped_in_its_first_stage_exports(synth, tmp_path, capsys):
    """The issue's command: `--preset progan --set network.resolution=32 --steps 1` (tiny widths)
    is accepted, logs/saves the note, trains at 4x4 and exports 32x32 (4x4 upsampled)."""
    from facegan import cli
    from facegan.generator import load_generator
    from facegan.trainer import train_lib
    out = str(tmp_path / "run")
    args = ["train", "--preset", "progan", "--data", synth, "--out", out, "--steps", "1"]
    # float32: the check below is pixel-exact, and under bf16 the SavedModel's graph and the eager
    # Keras call round the linear output layer's input differently (up to 2/255 apart)
    tiny = dict(TINY_PROGAN, **{"run.mixed_precision": "float32"})
    for k, v in tiny.items():
        args += ["--set", f"{k}={json.dumps(v)}"]
    assert cli.main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["resolution"] == 4 and summary["export"] == os.path.join(out, "export")
    with open(os.path.join(out, "config.json")) as f:
        assert "64, 128" in json.load(f)["notes"][0]

    g = load_generator(summary["export"])
    meta = g.metadata
    assert (meta["resolution"], meta["stage_resolution"], meta["stage_alpha"], meta["final_stage"]) == (32, 4, 1.0, False)
    z = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    served = g.generate(z)
    assert served.shape == (3, 32, 32, 3)
    # the same run resumed in-process (nothing left to train): its 4x4 EMA generator, upsampled
    res = train_lib.train(get_preset("progan", tiny), synth, out, steps=1, progress=False)
    assert res.resolution == 4
    stage = train_lib.data_lib.from_network(res.generator_ema(z, training=False)).numpy()
    assert len(np.unique(stage.reshape(-1, 3), axis=0)) > 1    # not a constant picture
    np.testing.assert_array_equal(served, _upsample(stage, 8))


def test_export_mid_fade_carries_the_schedule_s_alpha(synth, tmp_path):
    """Stopped halfway through the 8x8 fade-in of a 4 -> 16 run: 24 images shown = 16 stable at
    4x4 + 8 into a 16-image fade, so alpha = 0.5; the export is the 8x8 stage at that alpha, x2."""
    import tensorflow as tf
    from facegan.trainer import train_lib
    cfg = get_preset("smoke_progan", {"network.batch_sizes": {}, "optim.batch_size": 8, "network.stable_images": 16,
                                      "network.fade_images": 16, "run.image_every": 100})
    res = train_lib.train(cfg, synth, str(tmp_path / "run"), steps=3, progress=False)
    assert res.images_shown == 24 and res.resolution == 8 and res.stage_alpha == pytest.approx(0.5)
    path = train_lib.export(res, str(tmp_path / "export"))
    loaded = tf.saved_model.load(path)
    with open(os.path.join(path, "assets", "facegan_metadata.json")) as f:
        meta = json.load(f)
    assert (meta["resolution"], meta["stage_resolution"], meta["final_stage"]) == (16, 8, False)
    assert meta["stage_alpha"] == pytest.approx(0.5) and meta["upsampling"] == "nearest 8 -> 16"
    z = np.random.default_rng(1).standard_normal((2, cfg.network.z_dim)).astype(np.float32)
    served = loaded.signatures["serving_default"](z=tf.constant(z))["images"].numpy()
    stage = train_lib.data_lib.from_network(res.generator_ema(z, training=False)).numpy()
    np.testing.assert_array_equal(served, _upsample(stage, 2))
    # and alpha matters: the same weights at alpha 1 give other images
    res.gan.nets.alpha.assign(1.0)
    other = train_lib.data_lib.from_network(res.generator_ema(z, training=False)).numpy()
    assert np.abs(other.astype(int) - stage.astype(int)).max() > 0
