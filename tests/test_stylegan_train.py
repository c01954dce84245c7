"""StyleGAN2 + ADA inside the product (issue 10): the registered `stylegan2` architecture trained
by the one GAN/train loop, resumed exactly (ADA p, w_avg and the path-length mean included), 1 vs 2
replicas, exported through the generator contract (psi in W, `style_mix`) and served pixel-equal.

The module-level properties (shapes, demodulation, truncation/mixing identities, R1 and path length
against hand values, every augmentation) are in tests/test_stylegan2.py and tests/test_augment.py.
Runs are tiny (16x16, widths 16) and set the lazy intervals to 1, so every step has the same phase
and each Trainer traces one step function (tracing the nested R1/path-length tapes is most of
the cost).
"""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from facegan.trainer.config import ConfigError, get_preset
from train_testlib import checkpoint_weights
from tests.examples_testlib import write_synthetic_examples

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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


def test_config_refusals():
    with pytest.raises(ConfigError, match="loss.pl_weight: path length .* no W space"):
        get_preset("smoke_progan", {"loss.family": "nsgan_r1"})
    with pytest.raises(ConfigError, match="batch normalization"):   # R1 is per example, like WGAN-GP
        get_preset("smoke", {"loss.family": "nsgan_r1", "loss.pl_weight": 0.0})
    get_preset("smoke_progan", {"loss.family": "nsgan_r1", "loss.pl_weight": 0.0})   # R1 alone: fine
    with pytest.raises(ConfigError, match="tricks.augment.mode 'adaa'"):
        get_preset("smoke", {"tricks.augment.mode": "adaa"})
    with pytest.raises(ConfigError, match="tricks.truncation_cutoff .* no W space"):
        get_preset("smoke", {"tricks.truncation_cutoff": 2})
    for arch in ("stylegan2", "stylegan"):   # XLA: the W-space running averages need a cross-replica sync
        with pytest.raises(ConfigError, match=r"run.xla: stylegan2? cannot be XLA-compiled: .*w_avg.*merge_call"):
            get_preset("smoke_stylegan2", {"network.architecture": arch, "run.xla": True})
    get_preset("smoke", {"run.xla": True, "tricks.augment.mode": "ada"})   # ADA alone compiles (plain variables)


def test_config_names_match_augment_module():
    from facegan.trainer import augment, config
    assert set(config.AUGMENT_MODES) == set(augment.MODES)
    assert set(config.AUGMENT_PIPELINES) == set(augment.PIPELINES)
    assert set(config.DIFFAUGMENT_POLICIES) == set(augment.DIFFAUGMENT_POLICIES)


def test_training_state_and_metrics(straight):
    m = straight.metrics
    # ADA: r_t in [-1, 1]; p moved from 0.5 by exactly one step of 8 / 100 per minibatch
    # (sign(r_t - 0.6) is +-1), i.e. p is in {0.5 +- 0.08 k : k = 0..2} and within [0, 1]
    assert -1.0 <= m["ada/rt"] <= 1.0
    assert min(abs(m["ada/p"] - (0.5 + 0.08 * k)) for k in (-2, 0, 2)) < 1e-6
    assert m["loss/r1"] > 0 and m["loss/pl"] > 0 and m["pl/mean"] > 0
    gan = straight.gan
    # w_avg: an EMA of batch means, updated by the D-step and G-step calls (2 per step, 2 steps)
    assert int(gan.G.w_avg_updates.numpy()) == 4
    assert np.abs(gan.G.w_avg.numpy()).max() > 0
    # the EMA generator copies w_avg (non-trainable weights are copied, not averaged)
    np.testing.assert_array_equal(gan.G_ema.w_avg.numpy(), gan.G.w_avg.numpy())
    # lazy-regularization Adam rescaling (StyleGAN2 App. B) with interval 1: c = 1/2
    assert m["lr/d"] == pytest.approx(0.0025 * 0.5) and m["lr/g"] == pytest.approx(0.0025 * 0.5)
    assert float(gan.d_optimizer.beta_1) == pytest.approx(0.0) and float(gan.d_optimizer.beta_2) == pytest.approx(0.99 ** 0.5)


def test_resume_restores_ada_w_avg_and_path_length_mean(straight, synth16, tmp_path):
    from facegan.trainer import train_lib
    cfg = get_preset("smoke_stylegan2", TINY)
    run = str(tmp_path / "split")
    train_lib.train(cfg, synth16, run, steps=1, progress=False)
    resumed = train_lib.train(cfg, synth16, run, steps=2, progress=False)
    assert resumed.steps == 2
    a, b = checkpoint_weights(straight.checkpoint, ""), checkpoint_weights(resumed.checkpoint, "")
    assert a.keys() == b.keys()
    for must in ("ada/p/", "path_length_mean/value/", "generator/w_avg/", "generator_ema/w_avg/"):
        assert any(k.startswith(must) for k in a), must
    for k in a:
        if not k.startswith("save_counter"):
            np.testing.assert_allclose(a[k], b[k], rtol=0, atol=1e-6, err_msg=k)
    for k, v in straight.metrics.items():
        assert resumed.metrics[k] == pytest.approx(v, rel=1e-4, abs=1e-5), k


REPLICA_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from facegan.trainer.config import get_preset
    from facegan.trainer import train_lib
    uri, out, over = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    # minibatch stddev groups are per replica by design: group size 1 (a constant feature) here
    cfg = get_preset("smoke_stylegan2", dict(over, **{"network.mbstd_group_size": 1, "run.checkpoint_every": 100}))
    res = {}
    for n in (1, 2):
        strategy = tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(n)])
        res[n] = train_lib.train(cfg, uri, f"{out}/r{n}", steps=1, progress=False, strategy=strategy)
    w = {n: [v.numpy() for v in r.gan.G.weights + r.gan.D.weights + r.generator_ema.weights]
         for n, r in res.items()}
    st = {n: [float(r.gan.ada.p.numpy()), float(r.gan.pl_mean.value.numpy())] for n, r in res.items()}
    print(json.dumps({"replicas": [res[1].replicas, res[2].replicas],
                      "max_weight_diff": max(float(np.abs(a - b).max()) for a, b in zip(w[1], w[2])),
                      "state": [st[1], st[2]], "metrics": [res[1].metrics, res[2].metrics]}))
""")


@pytest.mark.e2e
def test_one_vs_two_replicas_same_update(tmp_path):
    # 8x8 (two synthesis blocks): tracing the R1/path-length tapes per replica is the cost
    synth8 = write_synthetic_examples(str(tmp_path / "synth8"), n_train=16, n_eval=2, resolution=8)
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), TF_CPP_MIN_LOG_LEVEL="2")
    over = dict(TINY, **{"network.resolution": 8})
    proc = subprocess.run([sys.executable, "-c", REPLICA_SCRIPT, synth8, str(tmp_path / "out"), json.dumps(over)],
                          capture_output=True, text=True, env=env, timeout=1200, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["replicas"] == [1, 2]
    assert out["max_weight_diff"] < 1e-5          # the tolerance of test_train_loop's replica test
    assert out["state"][1] == pytest.approx(out["state"][0], rel=1e-5, abs=1e-6)
    m1, m2 = out["metrics"]
    assert m1.keys() == m2.keys()
    for k in m1:
        assert m2[k] == pytest.approx(m1[k], rel=1e-4, abs=1e-6), k


# -- export and serving -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def exported(straight, tmp_path_factory):
    from facegan.generator import load_generator
    from facegan.trainer import train_lib
    path = train_lib.export(straight, str(tmp_path_factory.mktemp("export") / "1"))
    return path, load_generator(path)


def test_export_psi_and_style_mix_signatures(exported, straight):
    import tensorflow as tf
    from facegan.generator import sample_latents
    path, gen = exported
    meta = gen.metadata
    G = straight.generator_ema
    assert meta["truncation"] == "w_space" and gen.w_space and meta["num_ws"] == G.num_ws == 6
    assert meta["w_avg_updates"] == int(G.w_avg_updates.numpy()) == 4
    assert "style_mix" in gen.signatures
    z = sample_latents(3, 0, 4, 16).numpy()
    # psi = 1: the plain generator; sample(seed) == generate(its latents)
    want = np.asarray(tf.cast(tf.round(tf.clip_by_value((G(z, training=False) + 1) * 127.5, 0, 255)), tf.uint8))
    np.testing.assert_array_equal(gen.sample(4, 3), want)
    np.testing.assert_array_equal(gen.generate(z), want)
    # psi = 0: every seed gives the w_avg image
    zero = gen.sample(4, 3, truncation=1e-30)   # the contract's range is (0, 1]
    assert all(np.abs(zero[i].astype(int) - zero[0].astype(int)).max() <= 1 for i in range(4))
    # psi in W, not z scaling: psi = 0.5 differs from both psi = 1 and the z-scaled image
    half = gen.sample(4, 3, truncation=0.5)
    assert np.abs(half.astype(int) - want.astype(int)).max() > 0
    # style mixing: crossover 0 = seed_b's images, crossover >= num_ws = seed_a's, in between neither
    np.testing.assert_array_equal(gen.style_mix(3, 9, 4, 0), gen.sample(4, 9))
    np.testing.assert_array_equal(gen.style_mix(3, 9, 4, 6), gen.sample(4, 3))
    mid = gen.style_mix(3, 9, 4, 2)
    assert np.abs(mid.astype(int) - gen.sample(4, 9).astype(int)).max() > 0
    with pytest.raises(ValueError, match="crossover >= 0"):
        gen.style_mix(3, 9, 4, -1)


def _keras_uint8(G, z, **kw):
    import tensorflow as tf
    return np.asarray(tf.cast(tf.round(tf.clip_by_value((G(z, training=False, **kw) + 1) * 127.5, 0, 255)), tf.uint8))


def test_per_request_truncation_cutoff(exported, straight):
    import tensorflow as tf
    from facegan.generator import sample_latents
    path, gen = exported
    G, n = straight.generator_ema, straight.generator_ema.num_ws
    # the old signatures keep exactly their inputs (existing clients send these keys)
    assert set(gen.signature_defs["sample"].inputs) == {"num", "seed", "truncation"}
    assert set(gen.signature_defs["generate"].inputs) == {"z", "truncation"}
    for name in ("sample_cutoff", "generate_cutoff"):
        assert gen.metadata["signatures"][name]["inputs"]["truncation_cutoff"] == "int32 []"
    assert gen.metadata["truncation_cutoff"] == 0      # exported with psi on every layer
    z = sample_latents(3, 0, 4, 16).numpy()
    # cutoff = num_ws: the whole-W truncation; cutoff = 0: no truncation
    whole = gen.sample(4, 3, 0.5)
    np.testing.assert_array_equal(gen.sample(4, 3, 0.5, truncation_cutoff=n), whole)
    np.testing.assert_array_equal(gen.sample(4, 3, 0.5, truncation_cutoff=0), gen.sample(4, 3))
    # in between: the Keras model's layers < cutoff truncation, neither of the two ends
    mid = gen.sample(4, 3, 0.5, truncation_cutoff=2)
    np.testing.assert_array_equal(mid, _keras_uint8(G, z, psi=0.5, cutoff=2))
    assert np.abs(mid.astype(int) - whole.astype(int)).max() > 0
    assert np.abs(mid.astype(int) - gen.sample(4, 3).astype(int)).max() > 0
    np.testing.assert_array_equal(gen.generate(z, 0.5, truncation_cutoff=2), mid)
    # bounds: in the graph (any server) and in the loader
    for bad in (-1, n + 1):
        with pytest.raises(tf.errors.InvalidArgumentError, match=rf"truncation_cutoff must be in \[0, {n}\]"):
            gen.signatures["sample_cutoff"](num=tf.constant(2), seed=tf.constant(3, tf.int64),
                                            truncation=tf.constant(0.5), truncation_cutoff=tf.constant(bad))
        with pytest.raises(tf.errors.InvalidArgumentError, match="truncation_cutoff must be in"):
            gen.signatures["generate_cutoff"](z=tf.constant(z), truncation=tf.constant(0.5),
                                              truncation_cutoff=tf.constant(bad))
        with pytest.raises(ValueError, match="truncation_cutoff must be in"):
            gen.sample(2, 3, 0.5, truncation_cutoff=bad)
        with pytest.raises(tf.errors.InvalidArgumentError, match="truncation_cutoff must be in"):
            gen.signatures["style_mix_cutoff"](seed_a=tf.constant(1, tf.int64), seed_b=tf.constant(2, tf.int64),
                                               num=tf.constant(2), crossover=tf.constant(2),
                                               truncation=tf.constant(0.5), truncation_cutoff=tf.constant(bad))
        with pytest.raises(ValueError, match="truncation_cutoff must be in"):
            gen.style_mix(1, 2, 2, 2, 0.5, truncation_cutoff=bad)


def test_style_mix_per_request_truncation_cutoff(exported, straight):
    """style_mix_cutoff: psi on the layers < cutoff of the mixed styles, as the Keras model does it."""
    from facegan.generator import sample_latents
    path, gen = exported
    G, n = straight.generator_ema, straight.generator_ema.num_ws
    assert gen.metadata["signatures"]["style_mix_cutoff"]["inputs"]["truncation_cutoff"] == "int32 []"
    assert set(gen.signature_defs["style_mix"].inputs) == {"seed_a", "seed_b", "num", "crossover", "truncation"}
    # ends: cutoff num_ws = the export's (every layer), cutoff 0 = no truncation
    np.testing.assert_array_equal(gen.style_mix(1, 2, 3, 2, 0.5, truncation_cutoff=n), gen.style_mix(1, 2, 3, 2, 0.5))
    np.testing.assert_array_equal(gen.style_mix(1, 2, 3, 2, 0.5, truncation_cutoff=0), gen.style_mix(1, 2, 3, 2))
    # in between: the Keras model's mix of seed 1's and seed 2's streams, truncated on layers < 3 only
    za, zb = sample_latents(1, 0, 3, 16).numpy(), sample_latents(2, 0, 3, 16).numpy()
    mid = gen.style_mix(1, 2, 3, 2, 0.5, truncation_cutoff=3)
    np.testing.assert_array_equal(mid, _keras_uint8(G, za, z2=zb, crossover=2, psi=0.5, cutoff=3))
    assert np.abs(mid.astype(int) - gen.style_mix(1, 2, 3, 2, 0.5).astype(int)).max() > 0
    assert np.abs(mid.astype(int) - gen.style_mix(1, 2, 3, 2).astype(int)).max() > 0


@pytest.mark.e2e
def test_served_psi_and_style_mix_pixel_equal(exported, tmp_path):
    import argparse
    import shutil
    from facegan.images import decode_png
    from facegan.serving import client as client_lib
    from facegan.serving.manager import ModelSpec
    from facegan.serving.server import Server
    path, gen = exported
    base = tmp_path / "sg"
    base.mkdir()
    shutil.copytree(path, base / "1")
    srv = Server([ModelSpec("sg", str(base))], port=0, host="127.0.0.1", rest_api_port=0, poll_wait_s=0.2).start()
    try:
        with client_lib.GrpcClient(f"127.0.0.1:{srv.port}", timeout=60) as grpc_client:
            np.testing.assert_array_equal(grpc_client.sample("sg", 4, 5, truncation=0.7), gen.sample(4, 5, 0.7))
            np.testing.assert_array_equal(grpc_client.style_mix("sg", 1, 2, 3, 2, 0.7), gen.style_mix(1, 2, 3, 2, 0.7))
            # per-request cutoff (sample_cutoff): pixel-equal to the SavedModel; out of range refused
            np.testing.assert_array_equal(grpc_client.sample("sg", 4, 5, 0.7, truncation_cutoff=2),
                                          gen.sample(4, 5, 0.7, truncation_cutoff=2))
            with pytest.raises(client_lib.ClientError, match="truncation_cutoff must be in") as err:
                grpc_client.sample("sg", 4, 5, 0.7, truncation_cutoff=7)
            assert err.value.code == "INVALID_ARGUMENT"
        rest = client_lib.RestClient(f"127.0.0.1:{srv.rest_api_port}", timeout=60)
        np.testing.assert_array_equal(rest.sample("sg", 4, 5, truncation=0.7), gen.sample(4, 5, 0.7))
        np.testing.assert_array_equal(rest.sample("sg", 4, 5, 0.7, truncation_cutoff=2),
                                      gen.sample(4, 5, 0.7, truncation_cutoff=2))
        with pytest.raises(client_lib.ClientError, match="truncation_cutoff must be in"):
            rest.sample("sg", 4, 5, 0.7, truncation_cutoff=-1)
        np.testing.assert_array_equal(rest.style_mix("sg", 1, 2, 3, 2, 0.7), gen.style_mix(1, 2, 3, 2, 0.7))
        # style mixing with a per-request cutoff (style_mix_cutoff), both APIs
        want = gen.style_mix(1, 2, 3, 2, 0.7, truncation_cutoff=3)
        np.testing.assert_array_equal(rest.style_mix("sg", 1, 2, 3, 2, 0.7, truncation_cutoff=3), want)
        with client_lib.GrpcClient(f"127.0.0.1:{srv.port}", timeout=60) as grpc_client:
            np.testing.assert_array_equal(grpc_client.style_mix("sg", 1, 2, 3, 2, 0.7, truncation_cutoff=3), want)
        # the CLI: --style-mix grid rows = seed_a, each crossover, seed_b
        parser = argparse.ArgumentParser()
        client_lib.add_arguments(parser)
        out = tmp_path / "mix.png"
        args = parser.parse_args(["--rest", f"127.0.0.1:{srv.rest_api_port}", "--model", "sg", "--num", "3",
                                  "--style-mix", "1,2", "--crossover", "2", "--psi", "0.7", "--out", str(out)])
        assert client_lib.main(args) == 0
        grid, r, pad = decode_png(out.read_bytes()), 16, 2
        assert grid.shape == (3 * (r + pad) + pad, 3 * (r + pad) + pad, 3)
        rows = [gen.sample(3, 1, 0.7), gen.style_mix(1, 2, 3, 2, 0.7), gen.sample(3, 2, 0.7)]
        for i, row in enumerate(rows):
            y = pad + i * (r + pad)
            np.testing.assert_array_equal(grid[y:y + r, pad:pad + r], row[0])
        # the CLI over gRPC: --psi 0.7 --truncation-cutoff 2
        out = tmp_path / "cut.png"
        args = parser.parse_args(["--server", f"127.0.0.1:{srv.port}", "--model", "sg", "--num", "1", "--seed", "5",
                                  "--psi", "0.7", "--truncation-cutoff", "2", "--out", str(out)])
        assert client_lib.main(args) == 0
        np.testing.assert_array_equal(decode_png(out.read_bytes())[pad:pad + r, pad:pad + r],
                                      gen.sample(1, 5, 0.7, truncation_cutoff=2)[0])
        # --style-mix with --truncation-cutoff: the crossover row is style_mix_cutoff's
        out = tmp_path / "mixcut.png"
        args = parser.parse_args(["--server", f"127.0.0.1:{srv.port}", "--model", "sg", "--num", "3",
                                  "--style-mix", "1,2", "--crossover", "2", "--psi", "0.7",
                                  "--truncation-cutoff", "3", "--out", str(out)])
        assert client_lib.main(args) == 0
        y = pad + (r + pad)
        np.testing.assert_array_equal(decode_png(out.read_bytes())[y:y + r, pad:pad + r], want[0])
    finally:
        srv.stop()


@pytest.mark.parametrize("arch,mode", [("stylegan2", "modulated"), ("stylegan", "adain")])
def test_registered_builders_map_the_network_config(arch, mode):
    import tensorflow as tf
    from facegan.trainer.networks import build_networks
    cfg = get_preset("smoke_stylegan2", dict(TINY, **{"network.architecture": arch, "network.mapping_layers": 3}))
    nets = build_networks(cfg)
    G, D = nets.generator, nets.discriminator
    assert G.cfg.style_mode == mode and len(G.mapping.fcs) == 3 and G.cfg.w_dim == 16
    assert G.cfg.nf(16) == 4 and G.cfg.nf(4) == 16          # min(channel_max 16, channel_base 64 // r)
    out = G(tf.zeros([2, 16]), training=False)
    assert out.shape == (2, 16, 16, 3) and float(tf.reduce_max(tf.abs(out))) <= 1.0
    assert D(out)["logits"].shape == (2, 1)


def test_bench_stylegan_window_holds_lazy_steps_in_training_proportion():
    """bench/train.py --stylegan times a window whose R1 / path-length steps match training's 1/16, 1/4."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("bench_train", os.path.join(REPO, "bench", "train.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    loss = get_preset("stylegan2_small").loss
    assert (loss.r1_interval, loss.pl_interval) == (16, 4)
    for warmup in range(5, 21):   # any phase: 16 consecutive steps hold one R1 and four path-length steps
        w = bench.lazy_window(loss, warmup, 16)
        assert (w["r1_steps"], w["pl_steps"], w["training_proportion"]) == (1, 4, True)
    # the earlier 6-step window (steps 5..10): one path-length step (8), no R1 step
    w = bench.lazy_window(loss, 5, 6)
    assert (w["r1_steps"], w["pl_steps"], w["training_proportion"]) == (0, 1, False)
