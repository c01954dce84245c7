"""Pipeline pieces that need no TFX: Beam args per runner, CLI parsing, demo data, defaults."""
import argparse
import json
import os

import numpy as np
import pytest

from facegan.components.gan_evaluator import blessing
from facegan import cli_args
from facegan.pipeline import cli, configs, demo
from facegan.pipeline.local_runner import LocalLayout


def test_beam_args_per_runner():
    assert configs.beam_args("direct") == ["--direct_running_mode=multi_processing",
                                           "--direct_num_workers=0"]
    df = configs.beam_args("dataflow", project="p", region="r", temp_location="gs://b/t", image="img")
    assert "--runner=DataflowRunner" in df and "--project=p" in df and "--sdk_container_image=img" in df
    fl = configs.beam_args("flink", flink_master="jm:8081", image="img", workers=4)
    assert fl[:2] == ["--runner=FlinkRunner", "--flink_master=jm:8081"] and "--parallelism=4" in fl
    sp = configs.beam_args("spark", spark_master="spark://m:7077")
    assert "--spark_master_url=spark://m:7077" in sp
    assert configs.beam_args("spark", job_endpoint="js:8099")[0] == "--runner=PortableRunner"
    with pytest.raises(ValueError, match="dataflow needs project, temp_location"):
        configs.beam_args("dataflow", region="r")
    with pytest.raises(ValueError, match="flink_master"):
        configs.beam_args("flink")
    with pytest.raises(ValueError, match="unknown beam runner 'samza'"):
        configs.beam_args("samza")


def test_default_thresholds_are_valid_rules():
    assert blessing.parse_thresholds(configs.THRESHOLDS)
    assert blessing.parse_thresholds(demo.DEMO_THRESHOLDS)
    # Every rule the defaults name is computed by the default metric set.
    named = set(configs.THRESHOLDS) - {"degenerate"}
    assert named <= set(configs.METRICS)


def test_parse_set_values_as_json_when_possible():
    assert cli_args.parse_set(["optim.batch_size=32", "network.architecture=dcgan", "tricks.x=0.5",
                           "a.b=true"]) == {"optim.batch_size": 32, "network.architecture": "dcgan",
                                            "tricks.x": 0.5, "a.b": True}
    with pytest.raises(ValueError, match="FIELD=VALUE"):
        cli_args.parse_set(["nonsense"])


def test_json_args_from_text_or_file(tmp_path):
    f = tmp_path / "t.json"
    f.write_text(json.dumps({"swd": {"max": 3}}))
    assert cli_args.json_arg(str(f), "--thresholds") == {"swd": {"max": 3}}
    assert cli_args.json_arg('{"fid": "5%"}', "--min-improvement") == {"fid": "5%"}
    with pytest.raises(ValueError, match="--thresholds: not valid JSON"):
        cli_args.json_arg("{nope", "--thresholds")


def test_pipeline_cli_parses_run_and_compile():
    p = argparse.ArgumentParser()
    cli.add_arguments(p)
    a = p.parse_args(["run", "--data", "d", "--out", "o", "--set", "optim.batch_size=8", "--steps", "5"])
    kw = cli._pipeline_kwargs(a)
    assert kw["overrides"] == {"optim.batch_size": 8} and kw["train_steps"] == 5
    assert kw["metrics"] == list(configs.METRICS) and kw["thresholds"] is None
    assert kw["beam_pipeline_args"] == configs.LOCAL_BEAM_ARGS
    c = p.parse_args(["compile", "--engine", "vertex", "--gpus", "2"])
    assert c.engine == "vertex" and c.gpus == 2
    assert cli.main(p.parse_args([])) == 2


def test_write_lfw_faces_writes_the_100_face_crops(tmp_path):
    from PIL import Image
    from skimage.data import lfw_subset
    n = demo.write_lfw_faces(str(tmp_path))
    files = sorted(os.listdir(tmp_path))
    assert n == 100 and len(files) == 100 and files[0] == "lfw_000.png"
    with Image.open(tmp_path / files[7]) as im:
        img = np.asarray(im)
    assert img.shape == (25, 25, 3) and img.dtype == np.uint8
    # Grey: the three channels equal; values are the bundled floats scaled to 0..255.
    assert (img[..., 0] == img[..., 2]).all()
    np.testing.assert_array_equal(img[..., 0], np.round(lfw_subset()[7] * 255).astype(np.uint8))


def test_local_layout_keeps_everything_under_out(tmp_path):
    lay = LocalLayout(str(tmp_path))
    for p in (lay.pipeline_root, lay.metadata_path, lay.serving_dir, lay.tensorboard_root):
        assert p.startswith(str(tmp_path))
    assert len({lay.pipeline_root, lay.metadata_path, lay.serving_dir, lay.tensorboard_root}) == 4

