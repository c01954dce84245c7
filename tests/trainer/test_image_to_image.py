"""Image-to-image (issue 12), unit level: paired transforms, networks, losses, the pix2pix step on
the one training loop, export through the contract's image_to_image kind. Tiny widths, 32 px."""
import dataclasses
import json
import math
import os

import numpy as np
import pytest

from facegan import examples_io, schema
from facegan.ingest import paired as P
from facegan.ingest import options as O
from facegan.ingest import image_ops as IM
from tests.testlib.examples import write_synthetic_examples

RES = 32


def _face(seed=0, r=RES):
    """A smooth picture with some texture (distinct per seed)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:r, 0:r] / r
    c = rng.uniform(0, 255, (3, 3))
    img = c[0] * yy[..., None] + c[1] * xx[..., None] + rng.uniform(-20, 20, (r, r, 3))
    return np.clip(img / 2 + 40, 0, 255).astype(np.uint8)


# -- paired transforms --------------------------------------------------------------------------
@pytest.mark.parametrize("spec", ["grayscale", "lowres:factor=4", "lowres:factor=8", "edges", "masked"])
def test_paired_transform_deterministic_per_seed(spec):
    img = _face(1)
    a, b = P.apply(img, spec, seed=5), P.apply(img, spec, seed=5)
    np.testing.assert_array_equal(a.image, b.image)
    assert a.seed == b.seed and a.image.dtype == np.uint8 and a.image.shape == img.shape
    assert not np.array_equal(a.image, img)              # it changes the face
    other = P.apply(img, spec, seed=6)
    assert other.seed != a.seed
    if spec == "masked":                                  # the only transform that draws
        assert not np.array_equal(other.image, a.image)
    else:
        np.testing.assert_array_equal(other.image, a.image)


def test_grayscale_is_bt601_luma():
    img = np.zeros((2, 2, 3), np.uint8)
    img[0, 0] = (255, 0, 0)
    img[0, 1] = (10, 200, 30)
    out = P.grayscale(img)
    assert out[0, 0].tolist() == [76, 76, 76]                       # 0.299 * 255 = 76.2
    assert out[0, 1, 0] == round(0.299 * 10 + 0.587 * 200 + 0.114 * 30)   # 123.79 -> 124
    assert out[1, 1].tolist() == [0, 0, 0]


def test_lowres_removes_detail_below_the_factor_and_keeps_smooth_content():
    checker = ((np.indices((RES, RES)).sum(0) % 2) * 255).astype(np.uint8)[..., None].repeat(3, -1)
    out = P.lowres(checker, 4)
    assert checker.std() > 120 and out.std() < 10                  # 1-px pattern gone
    ramp = np.linspace(0, 255, RES)[None, :, None].repeat(RES, 0).repeat(3, 2).astype(np.uint8)
    interior = np.abs(P.lowres(ramp, 4).astype(int) - ramp)[:, 6:-6]
    assert interior.max() <= 3                                     # a smooth ramp survives


def test_edges_mark_a_step_and_nothing_else():
    img = np.zeros((8, 8, 3), np.uint8)
    img[:, 4:] = 255
    out = P.edges(img, threshold=32)
    line = out[..., 0] == 0
    assert line[:, 3].all() and line[:, 4].all()                   # both sides of the step
    assert not line[:, :3].any() and not line[:, 5:].any()
    # the magnitude is scaled so a full 0 -> 255 step reads 255
    assert P.sobel_magnitude(P.luma(img)).max() == pytest.approx(255.0)


def test_masked_fills_one_box_of_the_documented_size():
    img = _face(2)
    pair = P.apply(img, "masked:min_frac=0.25,max_frac=0.5,fill=127", seed=0)
    top, left, side = P.mask_box(img.shape, pair.seed, 0.25, 0.5)
    assert 8 <= side <= 16
    changed = np.any(pair.image != img, axis=-1)
    box = np.zeros_like(changed)
    box[top:top + side, left:left + side] = True
    assert not changed[~box].any()
    assert (pair.image[box] == 127).all()
    # the mirrored example's pair is the mirrored input (box flipped with the face)
    np.testing.assert_array_equal(pair.mirrored().image, pair.image[:, ::-1])


@pytest.mark.parametrize("spec, fragment", [("blur", "not one of grayscale"), ("lowres:factor=3", "4 or 8"),
                                            ("edges:sigma=2", "known key"), ("masked:min_frac=0.6,max_frac=0.5", "min_frac <= max_frac"),
                                            ("lowres:factor=x", "must be a number")])
def test_bad_specs_are_refused_naming_the_problem(spec, fragment):
    with pytest.raises(ValueError, match="paired transform") as e:
        P.parse_spec(spec)
    assert fragment in str(e.value)
    with pytest.raises(O.IngestError, match=fragment):
        O.IngestConfig(resolution=RES, paired=spec)


def test_examples_carry_the_pair_its_parameters_and_seed():
    import tensorflow as tf
    from facegan.images import decode_png, encode_png
    cfg = O.IngestConfig(resolution=RES, paired="lowres:factor=8", paired_seed=3)
    assert cfg.paired == "lowres:factor=8"
    p = IM.process_bytes(encode_png(_face(3, 48)), cfg)
    want = P.apply(p.image, "lowres:factor=8", 3)
    for proc, mirrored in ((p, False), (IM.mirror(p), True)):
        ex = tf.train.Example.FromString(IM.encode_example(IM.example_features(proc, "x.png", "ab", mirrored)))
        f = ex.features.feature
        got = decode_png(f[schema.INPUT_IMAGE].bytes_list.value[0])
        np.testing.assert_array_equal(got, want.image[:, ::-1] if mirrored else want.image)
        assert f[P.PAIR_TRANSFORM].bytes_list.value[0] == b"lowres"
        assert json.loads(f[P.PAIR_PARAMS].bytes_list.value[0]) == {"factor": 8}
        assert f[P.PAIR_SEED].int64_list.value[0] == want.seed
    assert P.summary(cfg.paired, 3) == {"transform": "lowres", "params": {"factor": 8}, "seed": 3,
                                        "spec": "lowres:factor=8", "feature": schema.INPUT_IMAGE}
    # no --paired: no extra features
    plain = IM.example_features(IM.process_bytes(encode_png(_face(3, 48)), O.IngestConfig(resolution=RES)), "x", "ab", False)
    assert schema.INPUT_IMAGE not in plain


# -- networks -----------------------------------------------------------------------------------
def test_unet_patchgan_resnet_shapes():
    import tensorflow as tf
    from facegan.trainer.networks import image_to_image as N
    x = tf.zeros([2, RES, RES, 3])
    g = N.unet_generator(RES, filters=4, max_filters=16)
    assert g(x).shape == (2, RES, RES, 3)
    # encoder down to 1x1: log2(32) = 5 stride-2 layers, 4 skip concatenations
    assert len([l for l in g.layers if l.name.startswith("down") and l.name[4:].isdigit()]) == 5
    assert len([l for l in g.layers if isinstance(l, tf.keras.layers.Concatenate)]) == 4
    assert g.get_layer("down4").output.shape[1:3] == (1, 1)
    assert len([l for l in g.layers if isinstance(l, tf.keras.layers.Dropout)]) == 3
    d = N.patch_discriminator(RES, 6, filters=4, max_filters=16)
    assert d(tf.zeros([2, RES, RES, 6]))["logits"].shape == (2, 16, 16, 1)    # one stride-2 layer at 32
    d256 = N.patch_discriminator(256, 6, filters=2, max_filters=8)
    assert d256(tf.zeros([1, 256, 256, 6]))["logits"].shape == (1, 32, 32, 1)  # three at 256
    # the paper's 70x70 at 256 px; a quarter-ish of the side below
    assert N.patch_receptive_field(N.patch_layers(256)) == 70
    assert [N.patch_layers(r) for r in (32, 64, 128, 256, 512)] == [1, 1, 2, 3, 3]
    r = N.resnet_generator(RES, filters=4, blocks=2)
    assert r(x).shape == (2, RES, RES, 3)
    assert len([l for l in r.layers if isinstance(l, tf.keras.layers.Add)]) == 2
    # distinct initial weights per layer (no shared unseeded initializer)
    k = [w.numpy() for w in g.weights if "kernel" in w.name and w.shape == (4, 4, 16, 16)]
    assert len(k) >= 2 and not np.array_equal(k[0], k[1])


def test_instance_norm_normalizes_each_image_and_channel():
    import tensorflow as tf
    from facegan.trainer.networks.image_to_image import InstanceNorm
    x = tf.random.stateless_normal([2, 8, 8, 3], seed=[1, 2]) * 5 + 3
    y = InstanceNorm()(x).numpy()
    np.testing.assert_allclose(y.mean(axis=(1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(y.std(axis=(1, 2)), 1, atol=1e-3)


# -- losses (hand-computed) -----------------------------------------------------------------------
def _sp(v):
    return math.log1p(math.exp(v))


def test_pix2pix_losses_match_hand_computed_values():
    from facegan.trainer import image_to_image_losses as L
    real = np.array([[[[1.0], [-2.0]], [[0.5], [0.0]]]], np.float32)      # [1, 2, 2, 1]
    fake = np.array([[[[-1.0], [3.0]], [[0.0], [2.0]]]], np.float32)
    d = L.patch_ns_discriminator_loss(real, fake).numpy()
    want_d = 0.5 * (np.mean([_sp(-v) for v in (1, -2, 0.5, 0)]) + np.mean([_sp(v) for v in (-1, 3, 0, 2)]))
    assert d.shape == (1,) and d[0] == pytest.approx(want_d, rel=1e-6)
    g = L.patch_ns_generator_loss(fake).numpy()
    assert g[0] == pytest.approx(np.mean([_sp(-v) for v in (-1, 3, 0, 2)]), rel=1e-6)
    y = np.zeros([2, 2, 2, 3], np.float32)
    out = np.zeros_like(y)
    out[0, 0, 0, 0] = 0.8
    out[1] = -0.5
    np.testing.assert_allclose(L.l1_per_example(y, out).numpy(), [0.8 / 12, 0.5], rtol=1e-6)
    # the full objective the model minimizes for G: adv + 100 * L1
    from facegan.trainer import registry
    from facegan.trainer.config import get_preset
    g_fn, _ = registry.loss_family("pix2pix").bind(get_preset("pix2pix").loss)
    assert get_preset("pix2pix").loss.l1_weight == 100.0
    assert g_fn(fake).numpy()[0] == pytest.approx(g[0])


def test_cyclegan_losses_match_hand_computed_values():
    from facegan.trainer import image_to_image_losses as L
    real, fake = np.array([[0.5, 1.5]], np.float32), np.array([[0.25, -1.0]], np.float32)
    d = L.patch_lsgan_discriminator_loss(real, fake).numpy()[0]
    assert d == pytest.approx(0.5 * ((0.25 + 0.25) / 2 + (0.0625 + 1.0) / 2))
    assert L.patch_lsgan_generator_loss(fake).numpy()[0] == pytest.approx((0.5625 + 4.0) / 2)
    x = np.zeros([1, 2, 2, 3], np.float32)
    y = np.ones([1, 2, 2, 3], np.float32)
    x_cyc = x + 0.3
    y_cyc = y - 0.1
    assert L.cycle_loss(x, x_cyc, y, y_cyc).numpy()[0] == pytest.approx(0.3 + 0.1)
    assert L.identity_loss(x, x - 0.2, y, y + 0.4).numpy()[0] == pytest.approx(0.4 + 0.2)


# -- config ---------------------------------------------------------------------------------------
def test_config_refuses_mismatched_kinds_and_z_tricks():
    from facegan.trainer.config import ConfigError, get_preset
    with pytest.raises(ConfigError, match="loss.family pix2pix is for image_to_image"):
        get_preset("smoke", {"loss.family": "pix2pix"})
    with pytest.raises(ConfigError, match="loss.family ns is for unconditional"):
        get_preset("smoke_pix2pix", {"loss.family": "ns"})
    with pytest.raises(ConfigError, match="tricks.feature_matching: not implemented for the image-to-image"):
        get_preset("smoke_pix2pix", {"tricks.feature_matching": 1.0})
    cfg = get_preset("pix2pix")
    assert (cfg.optim.g_learning_rate, cfg.optim.beta1, cfg.loss.l1_weight, cfg.network.dropout) == (2e-4, 0.5, 100.0, 0.5)


# -- the pix2pix step on the one loop, export -----------------------------------------------------
def _paired_examples(root, n=8, spec="grayscale"):
    from facegan.images import encode_png
    cfg = O.IngestConfig(resolution=RES, paired=spec)
    recs = [IM.encode_example(IM.example_features(IM.process_bytes(encode_png(_face(k)), cfg), f"{k}.png", f"{k:02d}", False))
            for k in range(n)]
    for split in (schema.TRAIN_SPLIT, schema.EVAL_SPLIT):
        examples_io.write_examples(os.path.join(examples_io.split_dir(root, split), "data-00000.gz"), recs)
    return root


def test_paired_dataset_is_input_then_target(tmp_path):
    from facegan.trainer import data as data_lib
    root = _paired_examples(str(tmp_path / "ex"))
    files = data_lib.resolve_files(root)
    info = data_lib.inspect_files(files)
    assert info["paired"]
    batch = next(iter(data_lib.train_dataset(files, RES, 4, seed=0, input_key=schema.INPUT_IMAGE, info=info))).numpy()
    assert batch.shape == (4, RES, RES, 6)
    u8 = np.round((batch + 1) * 127.5).astype(np.uint8)
    np.testing.assert_array_equal(u8[..., :3], np.stack([P.grayscale(t) for t in u8[..., 3:]]))
    plain = str(tmp_path / "plain")
    write_synthetic_examples(plain, 4, 2, RES)
    with pytest.raises(ValueError, match="re-ingest with --paired"):
        data_lib.train_dataset(data_lib.resolve_files(plain), RES, 2, input_key=schema.INPUT_IMAGE)


def _count_calls(monkeypatch, module, name):
    """Wrap module.name to count its calls; returns the one-element counter list."""
    calls, real = [0], getattr(module, name)

    def counted(*a, **kw):
        calls[0] += 1
        return real(*a, **kw)
    monkeypatch.setattr(module, name, counted)
    return calls


def test_pix2pix_trains_on_the_loop_and_exports_the_contract(tmp_path, monkeypatch):
    from facegan.generator import load_generator
    from facegan.generator.ops import from_uint8, to_uint8
    from facegan.trainer import config, train_lib
    root = _paired_examples(str(tmp_path / "ex"))
    cfg = config.get_preset("smoke_pix2pix", {"run.steps": 4, "run.checkpoint_every": 2,
                                              "run.image_every": 4, "run.log_every": 2})
    res = train_lib.train(cfg, root, str(tmp_path / "run"), progress=False)
    assert res.steps == 4 and res.images_shown == 4 * cfg.optim.batch_size
    for k in ("loss/d", "loss/g", "loss/g_adv", "loss/l1"):
        assert np.isfinite(res.metrics[k]), k
    assert res.metrics["loss/g"] == pytest.approx(res.metrics["loss/g_adv"] + 100 * res.metrics["loss/l1"], rel=1e-5)
    assert os.path.exists(tmp_path / "run" / "samples" / "step_0000004.png")
    # resume continues from the checkpoint (the GAN's state is the loop's)
    res2 = train_lib.train(cfg.override({"run.steps": 6}), root, str(tmp_path / "run"), progress=False)
    assert res2.steps == 6
    out = train_lib.export(res2, str(tmp_path / "export"))
    g = load_generator(out)
    assert g.kind == "image_to_image" and g.metadata["input_resolution"] == RES
    assert g.metadata["architecture"] == "pix2pix"
    x = np.random.default_rng(0).integers(0, 256, (3, RES, RES, 3), dtype=np.uint8)
    want = to_uint8(res2.gan.G(from_uint8(x), training=False)).numpy()
    np.testing.assert_array_equal(g.translate(x), want)
    with pytest.raises(ValueError, match="images must be uint8"):     # the loader's check (the
        g.translate(x[:, :16, :16])                                      # graph's: contract tests)
    # a multi-worker chief exports a copy rebuilt outside the strategy: the same translation
    built = _count_calls(monkeypatch, train_lib, "build_networks")
    g2 = load_generator(train_lib.export(dataclasses.replace(res2, workers=2), str(tmp_path / "export_mw")))
    assert built == [1]
    np.testing.assert_array_equal(g2.translate(x), want)


# -- paired evaluation (metrics/paired.py, the evaluator, the blessing) ----------------------------
def test_psnr_l1_ssim_against_hand_values_and_tf():
    import tensorflow as tf
    from facegan.metrics import paired as M
    a = np.full((1, 16, 16, 3), 100, np.uint8)
    b = a.copy()
    b[0, :8] = 110                                           # half the pixels off by 10: MSE 50
    assert M.l1(b, a)[0] == pytest.approx(5.0)
    assert M.psnr(b, a)[0] == pytest.approx(10 * math.log10(255 ** 2 / 50.0))
    assert M.psnr(a, a)[0] == M.PSNR_CAP
    # constant images: SSIM = luminance term (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1)
    c1 = (0.01 * 255) ** 2
    assert M.ssim(a, a + 20)[0] == pytest.approx((2 * 100 * 120 + c1) / (100 ** 2 + 120 ** 2 + c1), rel=1e-3)
    x = np.random.default_rng(0).integers(0, 256, (3, RES, RES, 3), dtype=np.uint8)
    y = np.clip(x.astype(int) + np.random.default_rng(1).integers(-40, 40, x.shape), 0, 255).astype(np.uint8)
    want = tf.image.ssim(tf.constant(x, tf.float32), tf.constant(y, tf.float32), 255.0).numpy()  # reference
    np.testing.assert_allclose(M.ssim(x, y), want, rtol=1e-4)
    np.testing.assert_allclose(M.ssim(x, x), 1.0, rtol=1e-6)


def test_blessing_rule_beat_the_input():
    from facegan.metrics import blessing
    div = {"between_std": 30.0, "within_std": 30.0}
    protocols = {k: {"request": k} for k in ("psnr", "ssim", "l1")}
    res = {"psnr": 26.0, "ssim": 0.80, "l1": 6.0, blessing.DIVERSITY_KEY: div, blessing.PROTOCOLS_KEY: protocols,
           blessing.INPUT_BASELINE_KEY: {"psnr": 25.0, "ssim": 0.85, "l1": 7.0}}
    d = blessing.decide(res, {"psnr": {"min_gain_over_input": 0.5}, "l1": {"min_gain_over_input": 0.5},
                              "ssim": {"min_gain_over_input": 0.0}})
    verdict = {r.rule: r.passed for r in d.rules}
    assert verdict["psnr beats the input by >= 0.5"] and verdict["l1 beats the input by >= 0.5"]
    assert not verdict["ssim beats the input by >= 0"] and not d.blessed
    with pytest.raises(ValueError, match="unknown rule"):
        blessing.parse_thresholds({"psnr": {"max_noise_fraction": 1}})
    # vs a baseline model: PSNR higher is better
    d = blessing.decide(res, {}, {"psnr": 0.5}, baseline_results={"psnr": 25.0, blessing.PROTOCOLS_KEY: protocols})
    assert [r.passed for r in d.rules if r.rule.startswith("psnr beats baseline")] == [True]


def test_evaluate_image_to_image_model(tmp_path):
    from facegan.metrics.evaluation import evaluate_model
    from facegan.generator import IMAGE_TO_IMAGE, export_generator
    from facegan.metrics import paired as M
    from tests.testlib.serving import tiny_translator
    import tensorflow as tf
    root = _paired_examples(str(tmp_path / "ex"), n=6, spec="lowres:factor=4")
    identity = tf.keras.Sequential([tf.keras.Input([RES, RES, 3]), tf.keras.layers.Lambda(lambda x: x)])
    export_generator(identity, str(tmp_path / "id"), kind=IMAGE_TO_IMAGE)
    export_generator(tiny_translator(RES), str(tmp_path / "tiny"), kind=IMAGE_TO_IMAGE)
    ev = evaluate_model(str(tmp_path / "id"), root, str(tmp_path / "out"), num_images=100,
                        thresholds={"psnr": {"min_gain_over_input": 0.0}, "ssim": {"min": 0.1}},
                        baseline_dir=str(tmp_path / "tiny"), min_improvement={"l1": 1.0}, log=lambda *_: None)
    r = ev.results
    # the identity model's output IS the input (the bicubic upscale): same scores as the baseline
    assert r["num_pairs"] == 6
    for k in ("l1", "psnr", "ssim"):
        assert r[k] == pytest.approx(r["input_baseline"][k])
    ins, tgs = zip(*M.paired_batches(root, "eval", 64))
    assert r["psnr"] == pytest.approx(float(np.mean(M.psnr(ins[0], tgs[0]))))
    assert r["swd"]["avg"] > 0
    verdict = {x.rule: x.passed for x in ev.decision.rules}
    assert verdict["psnr beats the input by >= 0"] and verdict["ssim >= 0.1"]
    assert verdict["l1 beats baseline by >= 1"]             # a random tiny translator is far worse
    assert os.path.exists(ev.files["sample_grid"]) and json.load(open(ev.files["metrics"]))["results"]["num_pairs"] == 6


# -- CycleGAN -------------------------------------------------------------------------------------
def test_history_pool_behaviour():
    import tensorflow as tf
    from facegan.trainer.image_to_image import history_pool_query
    P_ = 3
    pool, count = tf.zeros([P_, 1]), tf.constant(0, tf.int64)
    imgs = tf.constant([[1.0], [2.0]])
    # not full: images are stored in order and returned unchanged, whatever the draws say
    out, pool, count = history_pool_query(pool, count, imgs, tf.constant([0.9, 0.9]), tf.constant([0, 0], tf.int64))
    assert out.numpy().ravel().tolist() == [1, 2] and int(count) == 2
    out, pool, count = history_pool_query(pool, count, tf.constant([[3.0], [4.0]]), tf.constant([0.9, 0.9]),
                                          tf.constant([0, 0], tf.int64))
    # 3 fills the pool; 4 meets a full pool with u > 0.5: it gets the stored image at index 0 (1) back
    assert out.numpy().ravel().tolist() == [3, 1] and int(count) == 3
    assert pool.numpy().ravel().tolist() == [4, 2, 3]
    # u <= 0.5: the new image is returned and the pool is untouched
    out, pool2, _ = history_pool_query(pool, count, tf.constant([[5.0]]), tf.constant([0.2]), tf.constant([1], tf.int64))
    assert out.numpy().ravel().tolist() == [5] and pool2.numpy().ravel().tolist() == [4, 2, 3]
    # u > 0.5 with index 2: swap with slot 2
    out, pool3, _ = history_pool_query(pool, count, tf.constant([[6.0]]), tf.constant([0.7]), tf.constant([2], tf.int64))
    assert out.numpy().ravel().tolist() == [3] and pool3.numpy().ravel().tolist() == [4, 2, 6]


def test_linear_lr_decay():
    from facegan.trainer.image_to_image import linear_decay
    assert [linear_decay(s, 200, 0.5) for s in (0, 100, 150, 200)] == [1.0, 1.0, 0.5, 0.0]
    assert linear_decay(150, 200, 1.0) == 1.0


def test_cyclegan_trains_and_exports_both_directions(tmp_path, monkeypatch):
    from facegan.generator import load_generator
    from facegan.generator.ops import from_uint8, to_uint8
    from facegan.trainer import config, train_lib
    rng = np.random.default_rng(0)
    ex = [examples_io.make_example(_face(k), sha256=str(k), attrs={"eyeglasses": int(k % 3 == 0)}) for k in range(9)]
    for split in (schema.TRAIN_SPLIT, schema.EVAL_SPLIT):
        examples_io.write_examples(os.path.join(examples_io.split_dir(str(tmp_path / "ex"), split), "d.gz"), ex)
    cfg = config.get_preset("smoke_cyclegan", {"run.steps": 4, "run.checkpoint_every": 2, "run.image_every": 4,
                                               "network.resnet_blocks": 1, "network.filters": 4})
    res = train_lib.train(cfg, str(tmp_path / "ex"), str(tmp_path / "run"), progress=False)
    assert json.load(open(tmp_path / "run" / "domains.json")) == {"a": 6, "b": 3, "unlabeled": 0, "attribute": "eyeglasses"}
    m = res.metrics
    assert m["loss/g"] == pytest.approx(m["loss/g_adv"] + 10 * m["loss/cycle"] + 5 * m["loss/identity"], rel=1e-5)
    assert m["lr/g"] == pytest.approx(2e-4 * 0.5)          # step 3 of 4, decay from step 2: half way
    assert int(res.gan.pool_b.count.numpy()) == 8          # 4 steps x 2 fakes, pool of 50 not full
    out = train_lib.export(res, str(tmp_path / "export"))
    g = load_generator(out)
    assert g.directions == ["a_to_b", "b_to_a"]
    assert g.metadata["domains"] == {"a": 6, "b": 3, "unlabeled": 0, "attribute": "eyeglasses"}
    x = rng.integers(0, 256, (2, RES, RES, 3), dtype=np.uint8)
    for d, net in (("a_to_b", res.gan.G), ("b_to_a", res.gan.F)):
        np.testing.assert_array_equal(g.translate(x, d), to_uint8(net(from_uint8(x), training=False)).numpy())
    # the multi-worker chief's path (MultiWorkerMirroredStrategy variables cannot be saved): both
    # directions rebuilt outside the strategy with their own weights, same outputs
    built = _count_calls(monkeypatch, train_lib, "build_networks")
    g2 = load_generator(train_lib.export(dataclasses.replace(res, workers=2), str(tmp_path / "export_mw")))
    assert built == [1] and g2.directions == ["a_to_b", "b_to_a"]
    for d in g2.directions:
        np.testing.assert_array_equal(g2.translate(x, d), g.translate(x, d))
    # facegan evaluate on a CycleGAN: the eval split's domains, SWD per direction, cycle error
    from facegan.metrics.evaluation import evaluate_model
    ev = evaluate_model(out, str(tmp_path / "ex"), str(tmp_path / "eval"), thresholds={"swd": {"max": 1e6}},
                        log=lambda *_: None)
    r = ev.results
    a = np.stack([_face(k) for k in range(9) if k % 3 != 0])
    rec = g.translate(g.translate(a, "a_to_b"), "b_to_a")
    assert r["directions"]["a_to_b"]["cycle_l1"] == pytest.approx(np.abs(rec.astype(float) - a).mean(), rel=1e-6)
    assert (r["directions"]["a_to_b"]["num_inputs"], r["directions"]["b_to_a"]["num_inputs"]) == (6, 3)
    assert r["swd"]["avg"] == pytest.approx((r["directions"]["a_to_b"]["swd"] + r["directions"]["b_to_a"]["swd"]) / 2)
    assert [x.passed for x in ev.decision.rules if x.rule.startswith("swd")] == [True]
    with pytest.raises(ValueError, match="both need some"):
        train_lib.train(cfg.override({"network.domain_attribute": "smiling"}), str(tmp_path / "ex"),
                        str(tmp_path / "run2"), progress=False).steps


# -- CycleGAN target-attribute rate -----------------------------------------------------------------
def _domain_examples(root, n_per_domain=12, seed=0):
    """Domain A (attr/eyeglasses 0): dark noisy images (values 10..60); B (1): their negatives
    (195..245), so `255 - x` maps A onto B's distribution. Same images in both splits."""
    rng = np.random.default_rng(seed)
    dark = rng.integers(10, 61, (n_per_domain, RES, RES, 3)).astype(np.uint8)
    bright = (255 - rng.integers(10, 61, (n_per_domain, RES, RES, 3))).astype(np.uint8)
    ex = [examples_io.make_example(im, sha256=f"{d}{k}", attrs={"eyeglasses": d})
          for d, ims in ((0, dark), (1, bright)) for k, im in enumerate(ims)]
    for split in (schema.TRAIN_SPLIT, schema.EVAL_SPLIT):
        examples_io.write_examples(os.path.join(examples_io.split_dir(root, split), "d.gz"), ex)
    return root


def test_target_attribute_rate_on_a_hand_case(tmp_path):
    """a_to_b inverts (dark A -> bright, B's attribute), b_to_a is the identity (bright B stays bright:
    never A's attribute); a classifier reading 'bright' as the attribute: rates 1 and 0, mean 0.5; the
    untranslated inputs never carry the target's value (0, 0); real targets always do (1, 1)."""
    from facegan.metrics.paired import evaluate_cycle
    root = _domain_examples(str(tmp_path / "ex"))
    translate = lambda x, d: 255 - x if d == "a_to_b" else x   # noqa: E731
    bright = lambda x: x.reshape(len(x), -1).mean(1) > 127     # noqa: E731
    out = evaluate_cycle(translate, root, "eyeglasses", batch_size=5, has_attribute=bright)
    assert out["target_attribute_rate"] == {"avg": 0.5, "a_to_b": 1.0, "b_to_a": 0.0}
    for d in ("a_to_b", "b_to_a"):
        assert (out[d]["input_attribute_rate"], out[d]["target_domain_rate"]) == (0.0, 1.0)
    # swapping the directions' behaviour swaps the rates
    out = evaluate_cycle(lambda x, d: x if d == "a_to_b" else 255 - x, root, "eyeglasses", has_attribute=bright)
    assert out["target_attribute_rate"] == {"avg": 0.5, "a_to_b": 0.0, "b_to_a": 1.0}
    assert "target_attribute_rate" not in evaluate_cycle(translate, root, "eyeglasses")   # no classifier: no rate


def test_evaluator_gates_a_cyclegan_on_the_target_attribute_rate(tmp_path, monkeypatch):
    """facegan evaluate's path with the real attribute classifier (metrics/attributes.py, few steps on an
    easy split it must classify perfectly): the hand case above gives 0.5; rules gate on it."""
    import tensorflow as tf
    from facegan.metrics.evaluation import evaluate_model
    from facegan.generator import IMAGE_TO_IMAGE, export_generator
    from facegan.metrics import attributes as A
    monkeypatch.setattr(A, "DEFAULT_STEPS", 80)
    root = _domain_examples(str(tmp_path / "ex"), n_per_domain=32)
    net = lambda f: tf.keras.Sequential([tf.keras.Input([RES, RES, 3]), tf.keras.layers.Lambda(f)])  # noqa: E731
    export_generator({"a_to_b": net(lambda x: -x), "b_to_a": net(lambda x: x)}, str(tmp_path / "m"),
                     kind=IMAGE_TO_IMAGE, metadata={"domains": {"attribute": "eyeglasses"}})
    kw = dict(metrics="swd", cache_dir=str(tmp_path / "cache"), log=lambda *_: None)
    ev = evaluate_model(str(tmp_path / "m"), root, str(tmp_path / "e1"),
                        thresholds={"target_attribute_rate": {"min": 0.6}}, **kw)
    rate = ev.results["target_attribute_rate"]
    assert rate["classifier_accuracy"] == 1.0 and rate["classifier_cache"] == "miss"
    assert (rate["avg"], rate["a_to_b"], rate["b_to_a"]) == (0.5, 1.0, 0.0)
    assert ev.results["directions"]["a_to_b"]["input_attribute_rate"] == 0.0
    assert [(r.rule, r.passed) for r in ev.decision.rules if "target_attribute_rate" in r.rule] == \
        [("target_attribute_rate >= 0.6", False)] and not ev.decision.blessed
    ev = evaluate_model(str(tmp_path / "m"), root, str(tmp_path / "e2"),
                        thresholds={"target_attribute_rate": {"min": 0.4}}, **kw)
    assert ev.results["target_attribute_rate"]["classifier_cache"] == "hit" and ev.decision.blessed
    # asked for only through `metrics`, without a rule: computed, nothing gated
    ev = evaluate_model(str(tmp_path / "m"), root, str(tmp_path / "e3"), **dict(kw, metrics="target_attribute_rate"))
    assert ev.results["target_attribute_rate"]["avg"] == 0.5
    # not asked for: not computed (no classifier is trained)
    assert "target_attribute_rate" not in evaluate_model(str(tmp_path / "m"), root, str(tmp_path / "e4"), **kw).results
    # a one-direction model cannot have it
    export_generator(net(lambda x: x), str(tmp_path / "one"), kind=IMAGE_TO_IMAGE)
    with pytest.raises(ValueError, match="two-direction"):
        evaluate_model(str(tmp_path / "one"), root, str(tmp_path / "e5"), **dict(kw, metrics="target_attribute_rate"))


POOL_REPLICA_BODY = """
res = {}
for n in (1, 2):
    strategy = tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(n)])
    res[n] = train_lib.train(cfg, uri, f"{out}/r{n}", progress=False, strategy=strategy)
pools = {n: [r.gan.pool_b.images.numpy(), r.gan.pool_a.images.numpy()] for n, r in res.items()}
print(json.dumps({"replicas": [res[1].replicas, res[2].replicas],
                  "counts": [int(res[n].gan.pool_b.count.numpy()) for n in (1, 2)],
                  "filled": float(np.abs(pools[1][0]).max()),
                  "max_pool_diff": max(float(np.abs(a - b).max()) for a, b in zip(pools[1], pools[2]))}))
"""


def test_history_pool_is_global_one_vs_two_replicas(tmp_path):
    """Two replicas (global batch 2) keep the same pool as one process: the global batch's fakes in
    batch order with the same draws. A per-replica pool would hold each replica's own images."""
    import sys
    from tests.testlib.train import REPLICA_PRELUDE
    import subprocess
    uri = write_synthetic_examples(str(tmp_path / "ex"), n_train=8, n_eval=2, resolution=16,
                                               attributes=("eyeglasses",))
    overrides = {"network.resolution": 16, "network.filters": 4, "network.resnet_blocks": 1, "network.max_filters": 8,
                 "optim.batch_size": 2, "tricks.history_pool": 3, "run.steps": 4, "run.checkpoint_every": 100,
                 "run.image_every": 100, "run.log_every": 1, "run.mixed_precision": "float32"}
    script = REPLICA_PRELUDE + f"cfg = get_preset('smoke_cyclegan', {overrides!r})\n" + POOL_REPLICA_BODY
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.run([sys.executable, "-c", script, uri, str(tmp_path / "out")], capture_output=True,
                          text=True, timeout=600, cwd=repo, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["replicas"] == [1, 2] and out["counts"] == [3, 3]     # 4 steps x 2 fakes: full, swapping
    assert out["filled"] > 0.0
    assert out["max_pool_diff"] < 1e-4


def test_cyclegan_ema_averages_both_directions(tmp_path):
    """With an EMA, F (B -> A) is averaged like G: after one step of decay 0.5 each EMA weight is
    halfway between its start and the trained weight (a copy would equal the trained weight)."""
    from facegan.trainer import config, train_lib
    ex = [examples_io.make_example(_face(k), sha256=str(k), attrs={"eyeglasses": int(k % 2)}) for k in range(4)]
    for split in (schema.TRAIN_SPLIT, schema.EVAL_SPLIT):
        examples_io.write_examples(os.path.join(examples_io.split_dir(str(tmp_path / "ex"), split), "d.gz"), ex)
    cfg = config.get_preset("smoke_cyclegan", {"run.steps": 1, "run.checkpoint_every": 100, "run.image_every": 100,
                                               "network.resnet_blocks": 1, "network.filters": 4,
                                               "tricks.ema_decay": 0.5})
    start = {}
    import facegan.trainer.image_to_image as i2i
    orig = i2i.CycleGAN.copy_to_ema

    def remember(self):
        orig(self)
        for name in ("G", "F"):
            start[name] = [w.numpy().copy() for w in getattr(self, name).trainable_weights]
    i2i.CycleGAN.copy_to_ema = remember
    try:
        res = train_lib.train(cfg, str(tmp_path / "ex"), str(tmp_path / "run"), progress=False)
    finally:
        i2i.CycleGAN.copy_to_ema = orig
    for name, ema in (("G", res.gan.G_ema), ("F", res.gan.F_ema)):
        net = getattr(res.gan, name)
        moved = 0
        for w0, w, e in zip(start[name], net.trainable_weights, ema.trainable_weights):
            np.testing.assert_allclose(e.numpy(), w.numpy() + 0.5 * (w0 - w.numpy()), rtol=1e-5, atol=1e-6)
            moved += float(np.abs(w.numpy() - w0).sum())
        assert moved > 0, name
