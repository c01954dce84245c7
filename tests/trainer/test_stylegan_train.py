"""StyleGAN2 + ADA inside the product (issue 10): the registered `stylegan2` architecture trained
by the one GAN/train loop, resumed exactly (ADA p, w_avg and the path-length mean included), 1 vs 2
replicas, exported through the generator contract (psi in W, `style_mix`) and served pixel-equal.

The module-level properties (shapes, demodulation, truncation/mixing identities, R1 and path length
against hand values, every augmentation) are in tests/trainer/networks/test_stylegan2.py and tests/trainer/test_augment.py.
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
from tests.testlib.train import checkpoint_weights
from tests.testlib.examples import write_synthetic_examples
from tests.testlib.stylegan_train import REPO, TINY, exported, straight, synth16


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


def test_resume_restores_ada_w_avg_and_path_length_mean(straight, synth16, tmp_path, caplog):
    import logging
    import shutil
    import tensorflow as tf
    from facegan.trainer import train_lib
    cfg = get_preset("smoke_stylegan2", TINY)
    # The run as it stood after step 1: the straight run's ckpt-1 (every step saves; a 1-step run
    # saves the same checkpoint at its end), copied into a new run folder, is resumed to step 2 in
    # a new Trainer. (Training that step in its own Trainer would trace the step once more;
    # stopping a process and restarting it is tests/e2e/test_train_hardening_e2e.py's.)
    src, dst = os.path.join(straight.run_dir, "checkpoints"), tmp_path / "split" / "checkpoints"
    dst.mkdir(parents=True)
    kept = [f for f in os.listdir(src) if f.startswith(("ckpt-0.", "ckpt-1."))]
    assert any(f.startswith("ckpt-1.") for f in kept), os.listdir(src)
    for f in kept:
        shutil.copy(os.path.join(src, f), dst / f)
    tf.compat.v1.train.update_checkpoint_state(str(dst), str(dst / "ckpt-1"),
                                               all_model_checkpoint_paths=[str(dst / "ckpt-0"), str(dst / "ckpt-1")])
    run = str(tmp_path / "split")
    with caplog.at_level(logging.INFO, logger="facegan.train"):
        resumed = train_lib.train(cfg, synth16, run, steps=2, progress=False)
    assert any(r.getMessage().startswith("resumed from") and r.getMessage().endswith("ckpt-1 at step 1")
               for r in caplog.records), [r.getMessage() for r in caplog.records]
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
