"""The training loop (trainer/gan.py, data.py, train_lib.py, run_fn.py, cli.py).

Every preset is run for a few steps at 32x32 (progan grows 8 -> 16; stylegan2 at 16x16) on tiny
real faces (skipped without the shared data); everything else runs on synthetic Examples (`write_synthetic_examples`)
so a fresh clone runs it: resume equivalence, NaN recovery, one vs two replicas (subprocess with
two logical CPUs), TensorBoard output read back with TensorBoard's own event reader, the TFX
run_fn (duck-typed fn_args) and the CLI.
"""
import dataclasses
import json
import math
import os
import textwrap
import types

import numpy as np
import pytest

from facegan.images import decode_png
from tests.testlib.train import (checkpoint_weights, replica_progan, run_replica_script, tiny_overrides,
                           write_face_examples)
from tests.testlib.examples import write_synthetic_examples
from facegan.trainer.config import ema_enabled, Config, ConfigError, get_preset, preset_names

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def faces(ffhq_dir, tmp_path_factory):
    return write_face_examples(str(ffhq_dir), str(tmp_path_factory.mktemp("faces") / "examples"))


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """Synthetic blobs with the layout of `faces` (24 train images at 32x32 + stored 8 and 16)."""
    return write_synthetic_examples(str(tmp_path_factory.mktemp("synth") / "examples"),
                                                n_train=24, n_eval=4, resolution=32, extra_resolutions=(8, 16),
                                                attributes=("male", "smiling"))   # smoke_conditional


_RUNS = {}


def run_preset(preset, data, root):
    """Train `preset` made tiny for 3 steps on `data`. Presets whose tiny configs are identical
    (e.g. `dcgan` and `smoke`: same architecture, loss and tricks) share one run per data set to
    keep the suite short; so do presets that differ only in an `eval` block that cannot fire within
    the run (the paper presets evaluate every 50k images, the smoke ones never)."""
    from facegan.trainer import train_lib
    cfg = get_preset(preset, tiny_overrides(preset, **{"run.steps": 3}))
    d = dict(cfg.to_dict(), preset="", notes=[])    # notes name the preset (an override replaced its EMA)
    batches = [cfg.optim.batch_size, *[int(b) for b in getattr(cfg.network, "batch_sizes", {}).values()]]
    if cfg.eval.every_images == 0 or cfg.eval.every_images > 3 * max(batches) * cfg.tricks.d_steps:
        d.pop("eval")
    key = (json.dumps(d, sort_keys=True), data)
    if key not in _RUNS:
        run_dir = os.path.join(str(root), f"run_{preset}_{len(_RUNS)}")
        _RUNS[key] = train_lib.train(cfg, data, run_dir, steps=3, progress=False)
    return cfg, _RUNS[key]


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    return tmp_path_factory.mktemp("runs")


def _weights(model):
    return [w.numpy() for w in model.weights]


# -- every preset ------------------------------------------------------------------------------
def _z_presets():
    """Presets of z -> image architectures (image-to-image ones need pairs / domains: their own
    tests are tests/trainer/test_image_to_image.py)."""
    from facegan.trainer import registry
    return [p for p in preset_names()
            if registry.architecture(get_preset(p).network.architecture).kind != "image_to_image"]


@pytest.mark.parametrize("preset", _z_presets())
def test_preset_smoke_run(preset, synth, runs_root):
    check_preset_run(*run_preset(preset, synth, runs_root))


@pytest.mark.parametrize("preset", ["smoke", "smoke_progan"])
def test_preset_smoke_run_on_real_faces(preset, faces, runs_root):
    """The same checks on real faces (a plain and a progressive preset)."""
    check_preset_run(*run_preset(preset, faces, runs_root))


def check_preset_run(cfg, res):
    assert res.steps == 3
    for k in ("loss/g", "loss/d", "grad_norm/g", "grad_norm/d", "lr/g", "lr/d"):
        assert k in res.metrics, k
    assert all(math.isfinite(v) for v in res.metrics.values()), res.metrics
    assert res.metrics["grad_norm/g"] > 0 and res.metrics["grad_norm/d"] > 0

    # weights changed from the step-0 checkpoint, stay finite; the EMA moved less than G
    ckpt_dir = os.path.join(res.run_dir, "checkpoints")
    init = checkpoint_weights(os.path.join(ckpt_dir, "ckpt-0"), "generator/")
    final = checkpoint_weights(os.path.join(ckpt_dir, "ckpt-3"), "generator/")
    ema = checkpoint_weights(os.path.join(ckpt_dir, "ckpt-3"), "generator_ema/")
    assert init and init.keys() == final.keys()
    assert all(np.isfinite(v).all() for v in final.values())
    g_move = sum(float(np.sum((final[k] - init[k]) ** 2)) for k in init)
    assert g_move > 0
    if ema_enabled(cfg):      # a per-step decay or a half-life in images
        ema_move = sum(float(np.sum((ema[k.replace("generator/", "generator_ema/", 1)] - init[k]) ** 2))
                       for k in init)
        assert 0 < ema_move < g_move
    else:   # EMA only where the preset's paper uses it (issue 14): no EMA weights at all
        assert not ema

    # image grid of 16 fixed latents (4x4, 2px padding) at the trained resolution
    r = res.resolution
    assert r == (16 if cfg.network.architecture in ("progan", "stylegan2") else 32)    # TINY_ARCH
    grid = decode_png(open(os.path.join(res.run_dir, "samples", "step_0000003.png"), "rb").read())
    assert grid.shape == (4 * (r + 2) + 2, 4 * (r + 2) + 2, 3)
    assert grid.std() > 0

    # resolved config written next to the run, round-trips to the config that ran
    with open(os.path.join(res.run_dir, "config.json")) as f:
        written = Config.from_dict(json.load(f))
    # (runs are shared between presets with identical tiny configs: compare without the name)
    assert dataclasses.replace(written, preset=cfg.preset) == dataclasses.replace(res.cfg, preset=cfg.preset)
    # ... which is the requested one plus the precision decision and its reason
    assert res.cfg.run.precision_reason and res.cfg.run.mixed_precision == cfg.run.mixed_precision
    assert dataclasses.replace(res.cfg.run, precision_reason="") == cfg.run
    if cfg.tricks.lens.enabled:
        assert 0.0 < res.metrics["lens/lambda"] <= 1.0 and res.metrics["lens/recon"] >= 0
    if cfg.network.architecture == "progan":
        assert 0.0 <= res.metrics["progan/alpha"] <= 1.0
        assert "loss/gp" in res.metrics   # WGAN-GP


def test_tensorboard_scalars_and_images(synth, runs_root):
    from tensorboard.backend.event_processing import event_accumulator
    import tensorflow as tf
    cfg, res = run_preset("smoke", synth, runs_root)
    ea = event_accumulator.EventAccumulator(res.log_dir, size_guidance={"tensors": 0, "images": 0, "scalars": 0})
    ea.Reload()
    tags = set(ea.Tags()["tensors"])
    for tag in ("loss/g", "loss/d", "loss/d_adv", "grad_norm/g", "grad_norm/d", "lr/g", "lr/d",
                "perf/images_per_s", "perf/s_per_kimg", "samples/ema"):
        assert tag in tags, (tag, sorted(tags))
    # scalars logged every step (log_every=1) and the last equals what the step returned
    events = ea.Tensors("loss/g")
    assert [e.step for e in events] == [1, 2, 3]
    assert float(tf.make_ndarray(events[-1].tensor_proto)) == pytest.approx(res.metrics["loss/g"], rel=1e-6)
    ips = float(tf.make_ndarray(ea.Tensors("perf/images_per_s")[-1].tensor_proto))
    spk = float(tf.make_ndarray(ea.Tensors("perf/s_per_kimg")[-1].tensor_proto))
    assert ips > 0 and spk == pytest.approx(1000.0 / ips, rel=1e-4)
    # the image summary is a PNG of the 4x4 grid (image_every=2 -> steps 2 and 3)
    imgs = ea.Tensors("samples/ema")
    assert [e.step for e in imgs] == [2, 3]
    w, h, png = tf.make_ndarray(imgs[-1].tensor_proto)[:3]
    arr = decode_png(png)
    assert arr.shape == (int(h), int(w), 3) == (4 * 34 + 2, 4 * 34 + 2, 3)


def test_all_tricks_and_lens(synth, tmp_path):
    """Lens + feature matching + repelling + historical averaging + instance noise + label
    smoothing + 2 D steps: every term reported, schedules match their formulas."""
    from tensorboard.backend.event_processing import event_accumulator
    from facegan.trainer import train_lib
    K, noise0, noise_steps = 10, 0.2, 10
    cfg = get_preset("smoke", tiny_overrides("smoke", **{
        "tricks.lens.enabled": True, "tricks.lens.anneal_steps": K, "tricks.lens.blocks": 2,
        "tricks.lens.filters": 8, "tricks.feature_matching": 1.0, "tricks.repelling": 0.5,
        "tricks.historical_averaging": 0.01, "tricks.instance_noise": noise0,
        "tricks.instance_noise_steps": noise_steps, "tricks.label_smoothing": 0.1, "tricks.d_steps": 2,
        "run.image_every": 3}))
    res = train_lib.train(cfg, synth, str(tmp_path / "run"), steps=3, progress=False)
    m = res.metrics
    for k in ("loss/lens", "lens/recon", "lens/adv", "grad_norm/lens", "loss/feature_matching",
              "loss/repelling", "loss/historical_g", "loss/historical_d"):
        assert k in m and math.isfinite(m[k]), k
    t = 2   # the third step runs with step counter t = 2
    assert m["lens/lambda"] == pytest.approx(1 - math.sin(t * math.pi / (2 * K)), rel=1e-5)
    assert m["noise/instance_std"] == pytest.approx(noise0 * (1 - t / noise_steps), rel=1e-5)
    assert res.images_shown == 3 * 2 * 8   # d_steps x batch per step
    # each loss is the sum of its weighted terms, every term reported under its name
    assert m["loss/g"] == pytest.approx(m["loss/g_adv"] + m["loss/feature_matching"]
                                        + 0.5 * m["loss/repelling"] + 0.01 * m["loss/historical_g"], rel=1e-4)
    assert m["loss/d"] == pytest.approx(m["loss/d_adv"] + 0.01 * m["loss/historical_d"], rel=1e-4)
    assert res.gan.historical[0].count.numpy() == 3 and res.gan.historical[1].count.numpy() == 3
    ea = event_accumulator.EventAccumulator(res.log_dir, size_guidance={"tensors": 0})
    ea.Reload()
    assert {"lens/reals", "lens/lensed_reals", "lens/lambda"} <= set(ea.Tags()["tensors"])


# -- resume ------------------------------------------------------------------------------------
def test_resume_equals_straight_run(synth, tmp_path, capsys):
    """4 steps straight == 2 steps with `facegan train`, then the same command with --steps 4."""
    from facegan import cli
    from facegan.trainer import train_lib
    over = tiny_overrides("smoke", **{"run.checkpoint_every": 100, "run.image_every": 100,
                                      "tricks.instance_noise": 0.1, "tricks.instance_noise_steps": 8})
    cfg = get_preset("smoke", over)
    straight = train_lib.train(cfg, synth, str(tmp_path / "straight"), steps=4, progress=False)
    out = str(tmp_path / "split")
    args = ["train", "--preset", "smoke", "--data", synth, "--out", out, "--no-export"]
    for k, v in over.items():
        args += ["--set", f"{k}={json.dumps(v)}"]
    assert cli.main(args + ["--steps", "2"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["steps"] == 2 and first["checkpoint"].endswith("ckpt-2")
    assert cli.main(args + ["--steps", "4"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["steps"] == 4 and second["images_shown"] == straight.images_shown == 32
    a = checkpoint_weights(straight.checkpoint, "")
    b = checkpoint_weights(second["checkpoint"], "")
    assert a.keys() == b.keys() and any(k.startswith("generator_ema/") for k in a)
    for k in a:
        if not k.startswith("save_counter"):   # how many saves happened differs, by design
            np.testing.assert_allclose(a[k], b[k], rtol=0, atol=1e-6, err_msg=k)
    for k, v in straight.metrics.items():
        assert second["metrics"][k] == pytest.approx(v, rel=1e-4, abs=1e-5), k


def test_cli_rejects_bad_override(synth, tmp_path, capsys):
    from facegan import cli
    rc = cli.main(["train", "--preset", "smoke", "--data", synth, "--out", str(tmp_path),
                   "--set", "optim.batchsize=8"])
    assert rc == 2 and "optim.batchsize" in capsys.readouterr().err


# -- NaN recovery ------------------------------------------------------------------------------
def test_nan_recovery_restores_and_lowers_lr(synth, tmp_path):
    from facegan.trainer import train_lib
    poisoned = []

    def poison_once(trainer, step, metrics):
        if step == 2 and not poisoned:   # a real NaN in D's weights: the next step's losses are NaN
            w = trainer.gan.D.trainable_variables[0]
            w.assign(np.full(w.shape, np.nan, np.float32))
            poisoned.append(step)

    cfg = get_preset("smoke", tiny_overrides("smoke", **{"run.checkpoint_every": 1, "run.image_every": 100}))
    res = train_lib.train(cfg, synth, str(tmp_path / "run"), steps=4, progress=False, on_step=poison_once)
    assert poisoned == [2]
    # caught before saving step 2 (weights checked before every save): back to step 1, lr halved
    assert res.steps == 4 and res.nan_recoveries == 1
    assert res.metrics["lr/g"] == pytest.approx(cfg.optim.g_learning_rate * cfg.run.nan_lr_factor)
    assert res.metrics["lr/d"] == pytest.approx(cfg.optim.d_learning_rate * cfg.run.nan_lr_factor)
    assert all(np.isfinite(w.numpy()).all() for w in res.gan.D.weights + res.gan.G.weights)
    assert all(math.isfinite(v) for v in res.metrics.values())


def test_nan_after_limit_raises_naming_step_and_loss(synth, tmp_path):
    from facegan.trainer import train_lib

    def poison_always(trainer, step, metrics):
        w = trainer.gan.D.trainable_variables[0]
        w.assign(np.full(w.shape, np.inf, np.float32))

    # no checkpoint after step 0, so the poisoned weights surface as NaN losses at step 2
    cfg = get_preset("smoke", tiny_overrides("smoke", **{"run.checkpoint_every": 100, "run.image_every": 100,
                                                         "run.max_nan_recoveries": 2}))
    with pytest.raises(train_lib.TrainingDiverged, match=r"step 2: .*loss/d=nan.*after 2 recoveries"):
        train_lib.train(cfg, synth, str(tmp_path / "run"), steps=5, progress=False, on_step=poison_always)


# -- replicas ----------------------------------------------------------------------------------
REPLICA_BODY = textwrap.dedent("""
    res = {}
    for n in (1, 2):
        strategy = tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(n)])
        r = train_lib.train(cfg, uri, f"{out}/r{n}", steps=1, progress=False, strategy=strategy)
        res[n] = r
    w = {n: [v.numpy() for v in r.gan.G.weights + r.gan.D.weights + r.generator_ema.weights] for n, r in res.items()}
    r0, r1 = tf.train.load_checkpoint(f"{out}/r1/checkpoints/ckpt-0"), tf.train.load_checkpoint(res[1].checkpoint)
    keys = [k for k in r0.get_variable_to_shape_map() if k.startswith(("generator/", "discriminator/"))
            and k.endswith("VARIABLE_VALUE") and "OPTIMIZER_SLOT" not in k]
    print(json.dumps({
        "replicas": [res[1].replicas, res[2].replicas],
        "max_weight_diff": max(float(np.abs(a - b).max()) for a, b in zip(w[1], w[2])),
        "max_weight_change": max(float(np.abs(r0.get_tensor(k) - r1.get_tensor(k)).max()) for k in keys),
        "metrics": [res[1].metrics, res[2].metrics]}))
""")


def test_one_vs_two_replicas_same_update(tmp_path):
    uri = write_synthetic_examples(str(tmp_path / "ex8"), n_train=16, n_eval=2, resolution=8)
    out = run_replica_script(REPLICA_BODY, replica_progan(8), uri, str(tmp_path / "out"))
    assert out["replicas"] == [1, 2]
    assert out["max_weight_change"] > 1e-4          # the step did move the weights (Adam ~ lr)
    assert out["max_weight_diff"] < 1e-5
    m1, m2 = out["metrics"]
    assert m1.keys() == m2.keys()
    for k in m1:
        assert m2[k] == pytest.approx(m1[k], rel=1e-4, abs=1e-6), k


# -- TFX run_fn (duck-typed fn_args, no TFX import) ---------------------------------------------
def test_run_fn_trains_and_exports(synth, tmp_path):
    import tensorflow as tf
    from facegan.trainer.run_fn import run_fn
    fn_args = types.SimpleNamespace(
        custom_config={"preset": "smoke", "overrides": tiny_overrides("smoke"), "log_dir": str(tmp_path / "tb")},
        train_steps=2, train_files=[os.path.join(synth, "Split-train", "*")],
        model_run_dir=str(tmp_path / "model_run"), serving_model_dir=str(tmp_path / "serving"))
    run_fn(fn_args)
    assert os.path.exists(os.path.join(tmp_path, "model_run", "checkpoints", "ckpt-2.index"))
    assert os.listdir(tmp_path / "tb")
    loaded = tf.saved_model.load(str(tmp_path / "serving"))
    z = tf.random.stateless_normal([2, 16], seed=[1, 2])
    images = loaded.signatures["serving_default"](z=z)["images"]
    assert images.dtype == tf.uint8 and images.shape == (2, 32, 32, 3)


@pytest.mark.parametrize("cc, msg", [
    ({"preset": "smoke", "bogus": 1}, "bogus"),
    ({"overrides": {}}, "exactly one of 'preset'"),
    ({"preset": "smoke", "overrides": {"optim.nope": 1}}, "optim.nope"),
    ({"preset": "nosuch"}, "nosuch"),
])
def test_run_fn_custom_config_errors(cc, msg):
    from facegan.trainer.run_fn import config_from_custom
    with pytest.raises(ConfigError, match=msg):
        config_from_custom(cc)


def test_custom_config_json_string_and_full_config():
    from facegan.trainer.run_fn import config_from_custom
    cfg, extras = config_from_custom(json.dumps({"preset": "hdcgan", "overrides": {"optim.batch_size": 8}}))
    assert cfg.network.architecture == "hdcgan" and cfg.optim.batch_size == 8 and extras["log_dir"] is None
    full = get_preset("dcgan").to_dict()
    cfg2, _ = config_from_custom({"config": full, "overrides": {"run.seed": 3}})
    assert cfg2 == get_preset("dcgan", {"run.seed": 3})


def test_mixed_bfloat16_policy(synth, tmp_path):
    """run.mixed_precision=mixed_bfloat16: layers compute in bfloat16, variables/outputs stay float32."""
    import tensorflow as tf
    from facegan.trainer import train_lib
    cfg = get_preset("smoke", tiny_overrides("smoke", **{"run.mixed_precision": "mixed_bfloat16",
                                                         "run.image_every": 100}))
    try:
        res = train_lib.train(cfg, synth, str(tmp_path / "run"), steps=2, progress=False)
        dtypes = {layer.compute_dtype for layer in res.gan.G.layers if layer.weights}
        assert "bfloat16" in dtypes
        assert all(w.dtype == tf.float32 for w in res.gan.G.weights)
        assert all(math.isfinite(v) for v in res.metrics.values())
        assert res.generator_ema(tf.zeros([1, 16])).dtype == tf.float32
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")


def test_xla_compiled_step_trains_and_averages(synth, tmp_path):
    """run.xla compiles the replica step, EMA update included (plain assigns, no merge_call).
    (Its numbers are not compared with the plain step: XLA draws other stateless random numbers.)"""
    from facegan.trainer import train_lib
    cfg = get_preset("smoke", tiny_overrides("smoke", **{"run.xla": True, "run.image_every": 100}))
    res = train_lib.train(cfg, synth, str(tmp_path / "xla"), steps=2, progress=False)
    assert all(math.isfinite(v) for v in res.metrics.values()) and res.metrics["grad_norm/g"] > 0
    ckpt = os.path.join(res.run_dir, "checkpoints")
    init = checkpoint_weights(os.path.join(ckpt, "ckpt-0"), "generator/")
    final = checkpoint_weights(os.path.join(ckpt, "ckpt-2"), "generator/")
    ema = checkpoint_weights(os.path.join(ckpt, "ckpt-2"), "generator_ema/")
    g_move = sum(float(np.sum((final[k] - init[k]) ** 2)) for k in init)
    ema_move = sum(float(np.sum((ema[k.replace("generator/", "generator_ema/", 1)] - init[k]) ** 2)) for k in init)
    assert 0 < ema_move < g_move
