"""The evaluator library (metrics/evaluation.py) without TFX.

Synthetic Examples (smooth blobs) and two tiny generators exported through trainer/export.py:
`blob` draws from the same family of images (a good generator), `constant` outputs one flat image.
"""
import json
import os

import numpy as np
import pytest

from facegan.metrics import evaluation as EL
from tests.testlib.evaluator import export_test_generator
from tests.testlib.examples import write_synthetic_examples
from facegan.images import decode_png

RES = 32
THRESHOLDS = {"swd": {"max_noise_fraction": 0.8}, "ms_ssim": {"max_above_real": 0.2}}
FAST = dict(metrics=["swd", "ms_ssim"], num_images=48, extractor="random_tiny", batch_size=32)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluator")
    examples = write_synthetic_examples(str(root / "examples"), n_train=24, n_eval=32, resolution=RES)
    gens = {k: export_test_generator(k, str(root / "gens" / k), resolution=RES, steps=7)
            for k in ("blob", "constant")}
    return {"root": root, "examples": examples, **gens}


@pytest.fixture(scope="module")
def blob_eval(world):
    out = world["root"] / "out_blob"
    return EL.evaluate_model(world["blob"], world["examples"], str(out), thresholds=THRESHOLDS,
                             log_dir=str(world["root"] / "tb"), **FAST), out


def test_good_generator_is_blessed_and_everything_is_written(world, blob_eval):
    ev, out = blob_eval
    assert ev.decision.blessed, ev.decision.summary()
    # metrics.json: protocol-named results, diversity, the noise reference, provenance.
    report = json.loads((out / "metrics.json").read_text())
    swd_key = [k for k in report["results"] if k.startswith("swd")][0]
    assert swd_key == "swd48"
    assert report["results"]["noise_reference"]["swd"] > report["results"][swd_key]["avg"]
    assert report["generator"]["steps"] == 7 and report["blessed"] is True
    assert report["protocol"]["num_images"] == 48
    # decision.json: one reason per rule, all passed.
    decision = json.loads((out / "decision.json").read_text())
    assert decision["blessed"] and decision["failed"] == []
    assert {r["rule"] for r in decision["rules"]} >= {"swd <= 0.8 x noise", "ms_ssim <= real pairs + 0.2"}
    # The sample grid: 64 samples of 32x32 in an 8x8 grid with 2-pixel padding.
    grid = decode_png((out / "sample_grid.png").read_bytes())
    assert grid.shape == (8 * (RES + 2) + 2, 8 * (RES + 2) + 2, 3)
    assert (out / "memorization.png").exists() and ev.results["memorization"]["num_generated"] == 8
    # HDCGAN's figure: each sample, its 5 nearest training images in feature space, a gap, 5 in pixels.
    sheet = decode_png((out / "memorization.png").read_bytes())
    assert ev.results["memorization"]["k"] == 5
    assert sheet.shape == (8 * (RES + 2) + 2, (1 + 5 + 1 + 5) * (RES + 2) + 2, 3)
    # Headline scalars exclude protocol counts.
    assert "swd48/avg" in ev.scalars and "ms_ssim48_pairs/generated" in ev.scalars
    assert not any(k.endswith("/num_images") or k.startswith("protocols") for k in ev.scalars)


def test_tensorboard_summaries_are_readable_by_tensorboard(world, blob_eval):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    ev, _ = blob_eval
    acc = EventAccumulator(ev.files["tensorboard"], size_guidance={"tensors": 0, "images": 0})
    acc.Reload()
    tags = acc.Tags()["tensors"]
    assert "eval/blessed" in tags and "eval/swd48/avg" in tags and "eval/samples" in tags
    blessed = acc.Tensors("eval/blessed")[0]
    assert blessed.step == 7  # the generator's training steps
    import tensorflow as tf
    assert float(tf.make_ndarray(blessed.tensor_proto)) == 1.0
    swd = float(tf.make_ndarray(acc.Tensors("eval/swd48/avg")[0].tensor_proto))
    assert swd == pytest.approx(ev.scalars["swd48/avg"], rel=1e-6)


def test_constant_generator_is_refused_with_reasons(world, tmp_path):
    ev = EL.evaluate_model(world["constant"], world["examples"], str(tmp_path), thresholds=THRESHOLDS,
                           memorization=False, **FAST)
    assert not ev.decision.blessed
    failed = {r.rule for r in ev.decision.rules if not r.passed}
    assert any("between_std" in f for f in failed)
    assert "swd <= 0.8 x noise" in failed
    assert ev.results["diversity"]["between_std"] == 0.0
    # Samples are all one image: MS-SSIM between generated pairs is ~1.
    assert ev.results["ms_ssim48_pairs"]["generated"] > 0.99
    assert json.loads((tmp_path / "decision.json").read_text())["blessed"] is False


def test_baseline_comparison_uses_the_same_protocol(world, tmp_path):
    # The constant candidate cannot beat the blob baseline ...
    worse = EL.evaluate_model(world["constant"], world["examples"], str(tmp_path / "a"),
                              thresholds={}, min_improvement={"swd": 0.0},
                              baseline_dir=world["blob"], memorization=False, **FAST)
    rule = [r for r in worse.decision.rules if r.rule.startswith("swd beats baseline")][0]
    assert not rule.passed
    assert rule.threshold == pytest.approx(worse.baseline_results["swd48"]["avg"])
    # ... and the blob candidate beats the constant baseline by a wide margin.
    better = EL.evaluate_model(world["blob"], world["examples"], str(tmp_path / "b"),
                               thresholds={}, min_improvement={"swd": "50%"},
                               baseline_dir=world["constant"], memorization=False, **FAST)
    assert better.decision.blessed, better.decision.summary()
    assert better.decision.has_baseline


def test_resolution_mismatch_is_a_clear_error(world, tmp_path):
    ex16 = write_synthetic_examples(str(tmp_path / "ex16"), n_train=4, n_eval=4, resolution=16)
    with pytest.raises(ValueError, match=r"32x32 images but .*ex16.* holds 16x16"):
        EL.evaluate_model(world["blob"], ex16, str(tmp_path / "o"), **FAST)


def test_rules_on_metrics_not_computed_are_refused_before_any_work(world, tmp_path):
    with pytest.raises(ValueError, match="name metric\\(s\\) fid that are not computed"):
        EL.evaluate_model(world["blob"], world["examples"], str(tmp_path), thresholds={"fid": {"max": 1}},
                          **FAST)
    with pytest.raises(ValueError, match="unknown metric 'fdi'; known metrics: attribute_control, face_detection, fid, is, kid, l1, ms_ssim, psnr, ssim, swd"):
        EL.parse_metric_names("swd,fdi")
    with pytest.raises(ValueError, match="bad option 'downscale'; swd accepts: none"):
        EL.parse_metric_names("swd:downscale")
    assert EL.parse_metric_names('["swd", "fid:downscale=64", "swd"]') == ["swd", "fid:downscale=64"]
    assert not os.listdir(tmp_path)


def test_resolve_model_dir_accepts_artifact_and_version_layouts(world, tmp_path):
    import shutil
    art = tmp_path / "model_artifact" / "Format-Serving"
    shutil.copytree(world["blob"], art)
    assert EL.resolve_model_dir(str(art.parent)) == str(art)
    base = tmp_path / "serving" / "facegan"
    shutil.copytree(world["blob"], base / "9")
    shutil.copytree(world["blob"], base / "12")
    assert EL.resolve_model_dir(str(base)) == str(base / "12")
    with pytest.raises(FileNotFoundError, match="no generator SavedModel"):
        EL.resolve_model_dir(str(tmp_path))


def test_diversity_stats_by_hand():
    a = np.zeros((2, 2, 2, 1), np.uint8)
    a[1] = 10                                   # two flat images, 0 and 10
    d = EL.diversity_stats(a)
    assert d["between_std"] == pytest.approx(5.0)  # per pixel: std of {0, 10}
    assert d["within_std"] == 0.0
    b = np.array([[[[0], [10]], [[0], [10]]]] * 3, np.uint8)  # identical half/half images
    d = EL.diversity_stats(b)
    assert d["between_std"] == 0.0 and d["within_std"] == pytest.approx(5.0)
    with pytest.raises(ValueError):
        EL.diversity_stats(a[:1])


def test_cli_runs_the_library_and_strict_exit_code(world, tmp_path, capsys):
    import argparse
    from facegan import evaluate_cli as cli
    p = argparse.ArgumentParser()
    cli.add_arguments(p)
    args = p.parse_args(["--model", world["constant"], "--data", world["examples"], "--out", str(tmp_path),
                         "--metrics", "swd", "--num-images", "32", "--extractor", "random_tiny",
                         "--thresholds", json.dumps({"swd": {"max": 1e9}}), "--strict"])
    assert cli.main(args) == 1                      # constant: degenerate, so not blessed
    assert json.loads((tmp_path / "decision.json").read_text())["blessed"] is False
    bad = p.parse_args(["--model", str(tmp_path / "nope"), "--data", world["examples"]])
    assert cli.main(bad) == 2
    assert "no generator SavedModel" in capsys.readouterr().err


def test_missing_inception_weights(world, tmp_path, capsys):
    """No weights: FID is refused with the how-to message (exit 2); metrics that need no weights
    still run and the memorization sheet says why it is missing instead of failing the run."""
    import argparse
    from facegan import evaluate_cli as cli
    missing = str(tmp_path / "no_such_inception.h5")
    p = argparse.ArgumentParser()
    cli.add_arguments(p)
    args = p.parse_args(["--model", world["blob"], "--data", world["examples"], "--out", str(tmp_path / "a"),
                         "--metrics", "fid", "--num-images", "16", "--inception-weights", missing])
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "--metrics swd,ms_ssim" in err
    assert not (tmp_path / "a" / "metrics.json").exists()
    ev = EL.evaluate_model(world["blob"], world["examples"], str(tmp_path / "b"), metrics=["swd"],
                           num_images=16, extractor=missing, batch_size=16)
    assert "does not exist" in ev.results["memorization"]["error"]
    assert "memorization" not in ev.files and ev.results["swd16"]["avg"] > 0
    assert "error" in json.loads((tmp_path / "b" / "metrics.json").read_text())["results"]["memorization"]


def test_cli_help_lists_registered_metrics_defaults_and_an_example(capsys):
    from facegan.cli import main
    from facegan.metrics.registry import METRICS
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    out = " ".join(capsys.readouterr().out.split())   # argparse wraps lines
    assert all(f"{name} (" in out for name in METRICS)        # straight from the registry
    assert "(default: swd,ms_ssim)" in out and "(default: 10000)" in out
    assert "examples:" in out and "facegan evaluate --model" in out
    assert "classify_image_graph_def.pb" in out             # the standard FID network is offered


def test_cli_errors_name_the_users_flags(world, tmp_path, capsys):
    import argparse
    from facegan import evaluate_cli as cli
    p = argparse.ArgumentParser()
    cli.add_arguments(p)
    base = ["--model", world["blob"], "--data", world["examples"], "--out", str(tmp_path)]
    for extra, needle in (
            (["--num-images", "1"], "facegan evaluate: --num-images must be >= 2, got 1"),
            (["--thresholds", '{"fid": {"max": 1}}'], "--thresholds/--min-improvement name metric(s) fid"),
            (["--thresholds", '{"swd": {"max": "x"}}'], "--thresholds: swd.max must be a finite number"),
            (["--metrics", "swd,fdi"], "--metrics: unknown metric 'fdi'")):
        assert cli.main(p.parse_args(base + extra)) == 2
        err = capsys.readouterr().err
        assert needle in err, err
        assert "num_images" not in err and "min_improvement" not in err
