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



def test_beam_args_from_env_is_the_one_env_mapping():
    env = {"FACEGAN_BEAM_RUNNER": "dataflow", "FACEGAN_GCP_PROJECT": "p", "FACEGAN_GCP_REGION": "r",
           "FACEGAN_BEAM_TEMP": "gs://b/t", "FACEGAN_PIPELINE_IMAGE": "img"}
    assert configs.beam_args_from_env(env=env) == configs.beam_args(
        "dataflow", project="p", region="r", temp_location="gs://b/t", image="img")
    assert configs.beam_args_from_env("direct", env=env) == configs.LOCAL_BEAM_ARGS
    assert configs.beam_args_from_env(env={}) == configs.LOCAL_BEAM_ARGS
    flink = configs.beam_args_from_env("flink", env={"FACEGAN_FLINK_MASTER": "jm:8081"})
    assert "--flink_master=jm:8081" in flink
    with pytest.raises(ValueError, match="dataflow needs project, region, temp_location"):
        configs.beam_args_from_env("dataflow", env={})
    # Both entry points read it: the CLI flag and the Kubeflow settings.
    from facegan.pipeline import kubeflow_runner as k
    assert k.settings_from_env(env)["beam_pipeline_args"] == configs.beam_args_from_env(env=env)


def test_kubeflow_settings_derive_the_log_dir_from_the_final_pipeline_root():
    from facegan.pipeline import kubeflow_runner as k
    lines = []
    env = {"FACEGAN_PIPELINE_ROOT": "gs://env-bucket/root"}
    v2 = k.cluster_settings("vertex", "img", {"pipeline_root": "gs://flag-bucket/root"}, env, lines.append)
    assert v2["pipeline_root"] == "gs://flag-bucket/root"
    assert v2["log_dir"] == "gs://flag-bucket/root/tensorboard"     # not the env's or the default's
    v1 = k.cluster_settings("kubeflow", "img", {"pipeline_root": "gs://flag-bucket/root"}, env, lines.append)
    assert v1["log_dir"] == k.KFP_V1_PIPELINE_ROOT + "/tensorboard"  # the workflow parameter
    explicit = k.cluster_settings("vertex", "img", {"log_dir": "gs://tb/x"}, env, lines.append)
    assert explicit["log_dir"] == "gs://tb/x"
    assert k.cluster_settings("vertex", "img", {}, dict(env, FACEGAN_LOG_DIR="gs://tb/y"),
                              lines.append)["log_dir"] == "gs://tb/y"
    # A flag left out (None) keeps the environment's value.
    assert k.cluster_settings("vertex", "img", {"pipeline_root": None}, env,
                              lines.append)["pipeline_root"] == "gs://env-bucket/root"
    with pytest.raises(ValueError, match="unknown engine 'argo'"):
        k.cluster_settings("argo", "img", {}, env, lines.append)


def test_compile_warns_once_per_placeholder_and_local_path_naming_flag_and_variable():
    from facegan.pipeline import kubeflow_runner as k
    lines = []
    k.cluster_settings("vertex", configs.PLACEHOLDER_IMAGE, {"data_root": "/home/me/faces"}, {},
                       lines.append)
    assert len(lines) == 4, lines      # image, local data, placeholder root, placeholder serving dir
    image, data, root, serving = lines
    assert "gcr.io/my-project" in image and "--image" in image and "FACEGAN_PIPELINE_IMAGE" in image
    assert "/home/me/faces" in data and "pods cannot reach" in data
    assert "--data" in data and "FACEGAN_DATA_ROOT" in data
    assert "gs://my-bucket/facegan/root" in root and "--pipeline-root" in root
    assert "FACEGAN_PIPELINE_ROOT" in root
    assert "--serving-dir" in serving and "FACEGAN_SERVING_DIR" in serving
    # A local pipeline root: one line for it (its derived log dir says nothing more).
    lines.clear()
    k.cluster_settings("vertex", "reg/img:1", {"pipeline_root": "out/root", "data_root": "gs://b/f",
                                               "serving_dir": "s3://b/s"}, {}, lines.append)
    assert len(lines) == 1 and "out/root" in lines[0] and "--pipeline-root" in lines[0]
    # All real: nothing to say.
    lines.clear()
    k.cluster_settings("kubeflow", "reg/img:1", {"pipeline_root": "gs://b/r", "data_root": "gs://b/f",
                                                 "serving_dir": "gs://b/s"}, {}, lines.append)
    assert lines == []


def test_compiled_package_goes_to_the_tfx_cli_home_not_the_working_directory(tmp_path):
    from facegan.pipeline import kubeflow_runner as k
    assert k.default_output_dir("kubeflow", "facegan", {"FACEGAN_COMPILE_DIR": "/c"}) == "/c"
    assert k.default_output_dir("vertex", "fg", {"VERTEX_HOME": "/v"}) == os.path.join("/v", "fg")
    home = os.path.expanduser("~")
    assert k.default_output_dir("kubeflow", "fg", {}) == os.path.join(home, "tfx", "kubeflow", "fg")


def test_pipeline_cli_compile_passes_only_given_flags():
    p = argparse.ArgumentParser()
    cli.add_arguments(p)
    c = p.parse_args(["compile", "--pipeline-root", "gs://b/r", "--log-dir", "gs://b/tb"])
    kw = cli._pipeline_kwargs(c)
    assert kw["log_dir"] == "gs://b/tb" and c.pipeline_root == "gs://b/r"
    assert c.data is None and c.serving_dir is None and c.out == "build"


def test_local_runner_has_no_command_line_of_its_own():
    """One local entry point: `facegan pipeline run` (and `facegan demo` calling run_local)."""
    from facegan.pipeline import local_runner
    assert not hasattr(local_runner, "main") and not hasattr(local_runner, "add_arguments")
    import facegan.pipeline.kubeflow_runner as k
    src = open(k.__file__).read()
    assert "sys.path" not in src and "argparse" not in src


def test_decision_rules_read_the_newest_evaluation(tmp_path):
    from facegan.pipeline.local_runner import decision_rules
    rules = [{"rule": "swd", "passed": False, "reason": "swd 9 > 3"}]
    (tmp_path / "decision.json").write_text(json.dumps({"blessed": False, "rules": rules}))
    assert decision_rules({"ModelEvaluation": {"uri": str(tmp_path)}}) == rules
    assert decision_rules({}) == []
    assert decision_rules({"ModelEvaluation": {"uri": str(tmp_path / "missing")}}) == []
