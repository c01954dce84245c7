"""facegan/project.py's loss terms on raw images (no generator): the structural term (MS-SSIM
where 5 scales fit, SSIM below), LPIPS from a weights file (format, one-line refusals, its value),
and that each term changes the loss."""
import argparse

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from facegan import project as P  # noqa: E402
from tests.testlib.explore import lpips_arrays, write_lpips_npz  # noqa: E402


def _images(n, size, seed):
    return tf.constant(np.random.default_rng(seed).uniform(-1, 1, (n, size, size, 3)).astype(np.float32))


def test_structural_term_is_ms_ssim_only_where_five_scales_fit():
    assert P.structural_term(32) == "ssim" and P.structural_term(128) == "ssim"
    assert P.structural_term(160) == "ssim" and P.structural_term(256) == "ms_ssim"
    # 32 px: tf's 5-scale MS-SSIM refuses the size, which is why the term falls back to SSIM.
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError)):
        tf.image.ssim_multiscale(_images(1, 32, 0), _images(1, 32, 1), 2.0, filter_size=11)
    y, x = _images(2, 176, 0), _images(2, 176, 1)
    want = 1.0 - tf.image.ssim_multiscale(y, x, 2.0, power_factors=(0.0448, 0.2856, 0.3001, 0.2363, 0.1333))
    np.testing.assert_allclose(P.structural_distance(y, x, "ms_ssim").numpy(), want.numpy(), rtol=1e-6)
    y, x = _images(2, 32, 0), _images(2, 32, 1)
    np.testing.assert_allclose(P.structural_distance(y, x, "ssim").numpy(),
                               1.0 - tf.image.ssim(y, x, 2.0).numpy(), rtol=1e-6)


def _lpips_by_hand(arrays, y, x):
    """LPIPS from the file's arrays in numpy-order TF ops written out separately (the reference)."""
    def feats(img):
        h = (img - np.array([-0.030, -0.088, -0.188], np.float32)) / np.array([0.458, 0.448, 0.450], np.float32)
        out = []
        for b, n in enumerate((2, 2, 3, 3, 3)):
            for c in range(n):
                k = arrays[f"block{b + 1}_conv{c + 1}/kernel"]
                h = tf.nn.relu(tf.nn.conv2d(h, k, 1, "SAME") + arrays[f"block{b + 1}_conv{c + 1}/bias"])
            out.append(h)
            h = tf.nn.max_pool2d(h, 2, 2, "SAME")
        return out
    total = 0.0
    for i, (a, b) in enumerate(zip(feats(y), feats(x))):
        a = a.numpy() / (np.linalg.norm(a.numpy(), axis=-1, keepdims=True) + 1e-10)
        b = b.numpy() / (np.linalg.norm(b.numpy(), axis=-1, keepdims=True) + 1e-10)
        total = total + ((a - b) ** 2 * arrays[f"lin{i}"]).sum(-1).mean(axis=(1, 2))
    return total


def test_lpips_file_loads_and_computes_lpips(tmp_path):
    path = write_lpips_npz(tmp_path / "lpips.npz")
    term = P.load_lpips(path, 1.0)
    y, x = _images(2, 16, 0), _images(2, 16, 1)
    got = term.distance(term.features(y), term.features(x)).numpy()
    np.testing.assert_allclose(got, _lpips_by_hand(lpips_arrays(), y, x), rtol=1e-4)
    assert np.all(got > 0)
    np.testing.assert_allclose(term.distance(term.features(y), term.features(y)).numpy(), 0.0, atol=1e-6)
    assert [f.shape[1] for f in term.features(y)] == [16, 8, 4, 2, 1]       # SAME pooling reaches relu5_3
    caffe = P.load_lpips(write_lpips_npz(tmp_path / "caffe.npz", preprocess=np.array("caffe")), 1.0)
    assert caffe.info["preprocess"] == "caffe"
    assert not np.allclose(caffe.distance(caffe.features(y), caffe.features(x)).numpy(), got)


@pytest.mark.parametrize("make,fragment", [
    (lambda p: str(p / "none.npz"), "no such file"),
    (lambda p: (p / "bad.npz").write_bytes(b"not a zip") and str(p / "bad.npz"), "not a .npz file"),
    (lambda p: write_lpips_npz(p / "x.npz", drop=("block3_conv2/kernel",)), "missing block3_conv2/kernel"),
    (lambda p: write_lpips_npz(p / "x.npz", drop=("lin4",)), "missing lin4"),
    (lambda p: write_lpips_npz(p / "x.npz", lin2=np.ones(5, np.float32)), "lin2 must be 6 finite weights"),
    (lambda p: write_lpips_npz(p / "x.npz", **{"block2_conv1/kernel": np.ones((3, 3, 5, 4), np.float32)}),
     "block2_conv1/kernel [3, 3, 5, 4]"),
    (lambda p: write_lpips_npz(p / "x.npz", preprocess=np.array("torch")), "preprocess 'torch'"),
])
def test_lpips_bad_file_is_one_line_naming_it(tmp_path, make, fragment):
    path = make(tmp_path)
    with pytest.raises(ValueError) as e:
        P.load_lpips(path, 1.0)
    assert str(e.value).startswith(f"--lpips-weights {path}: ") and fragment in str(e.value)
    assert "\n" not in str(e.value)


def test_each_term_changes_the_loss(tmp_path):
    y, x = _images(2, 16, 0), _images(2, 16, 1)
    base, parts = P.projection_loss(y, x, ssim_weight=0.0, structural="ssim")
    np.testing.assert_allclose(base.numpy(), parts["mse"].numpy())
    with_ssim, parts = P.projection_loss(y, x, ssim_weight=0.5, structural="ssim")
    np.testing.assert_allclose(with_ssim.numpy(), base.numpy() + 0.5 * parts["ssim"].numpy(), rtol=1e-6)
    term = P.load_lpips(write_lpips_npz(tmp_path / "l.npz"), 2.0)
    with_lpips, parts = P.projection_loss(y, x, ssim_weight=0.0, structural="ssim", terms=[term],
                                          target_features=[term.features(x)])
    assert np.all(parts["lpips"].numpy() > 0)
    np.testing.assert_allclose(with_lpips.numpy(), base.numpy() + 2.0 * parts["lpips"].numpy(), rtol=1e-5)


def test_loss_flags_refused_in_one_line(tmp_path):
    args = argparse.Namespace(ssim_weight=0.5, discriminator=None, discriminator_weight=float("nan"),
                              lpips_weights=None, lpips_weight=1.0)
    with pytest.raises(ValueError, match="--discriminator-weight nan"):
        P.loss_terms(args, {})
    args.discriminator_weight, args.discriminator = 0.1, "auto"
    with pytest.raises(ValueError, match="--discriminator auto: the export's metadata records no run folder"):
        P.loss_terms(args, {"config": {}})
    args.discriminator = str(tmp_path / "nowhere")
    with pytest.raises(ValueError, match=f"--discriminator {tmp_path / 'nowhere'}: no such run folder"):
        P.loss_terms(args, {})


def test_project_cli_refuses_a_bad_loss_file_in_one_line(tmp_path, capsys):
    """A wrong --lpips-weights / --discriminator is refused, naming it, before the generator is rebuilt."""
    import json
    model = tmp_path / "model"
    (model / "assets").mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(b"")            # never read: the loss's files come first
    (model / "assets" / "facegan_metadata.json").write_text(json.dumps({"kind": "unconditional", "config": {}}))
    (tmp_path / "face.png").write_bytes(b"x")
    args = argparse.Namespace(model=str(model), image=str(tmp_path / "face.png"), out=str(tmp_path / "o"), steps=5,
                              space=None, crop="center", lr=None, ssim_weight=0.5, discriminator=None,
                              discriminator_weight=0.1, lpips_weights=str(tmp_path / "lpips.npz"), lpips_weight=1.0)
    for change, fragment in (({}, f"--lpips-weights {tmp_path / 'lpips.npz'}: no such file"),
                             ({"lpips_weights": None, "discriminator": "auto"},
                              "--discriminator auto: the export's metadata records no run folder")):
        assert P.main(argparse.Namespace(**{**vars(args), **change})) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and fragment in err[0] and err[0].startswith("facegan project: "), err


def test_same_image_takes_bf16_arithmetic_and_refuses_other_images():
    """The rebuild check: a float32 rebuild of a bf16 export differs by a level on most pixels and by
    up to ~12 on a few (measured on a trained StyleGAN2); PSNR 49 dB here, computed by hand below."""
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (16, 32, 32, 3))
    d = rng.choice([0, 1, -1, 2, -2, 12], size=a.shape, p=[0.55, 0.2, 0.2, 0.025, 0.024, 0.001])
    b = np.clip(a + d, 0, 255)
    assert np.abs(b - a).max() > 3                     # refused by the old "3 levels at most" rule
    mse = np.mean((a - b) ** 2.0)
    assert 10 * np.log10(255.0 ** 2 / mse) > 45
    assert P.same_image(a.astype(np.uint8), b.astype(np.uint8)) and P.same_image(a, a)
    assert not P.same_image(a, rng.integers(0, 256, a.shape))      # other weights: another image
    assert not P.same_image(a, np.clip(a + 10, 0, 255))             # 10 levels everywhere: ~28 dB
    assert not P.same_image(a, a[:8])


def test_reconstruction_scores_psnr_by_hand_and_identical_images_stay_json():
    import json
    import math

    from facegan.metrics.paired import PSNR_CAP
    target = np.zeros((32, 32, 3), np.uint8)
    # every pixel off by 5 levels: MSE 25, PSNR = 10 log10(255^2 / 25)
    s = P.scores(target, target + 5)
    assert s["psnr"] == pytest.approx(10 * math.log10(255.0 ** 2 / 25))
    same = P.scores(target + 7, target + 7)
    assert same["psnr"] == PSNR_CAP and same["ssim"] == pytest.approx(1.0)
    json.dumps(same, allow_nan=False)     # projection.json is strict JSON (no Infinity)
