"""Pipeline pieces that need no TFX: Beam args per runner, CLI parsing, demo data, defaults."""
import argparse
import json
import os

import numpy as np
import pytest

from facegan.metrics import blessing
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


# -- a compiled pipeline is a real run, and never gates on FID from a random network ------------
INCEPTION_METRICS = {"fid", "kid", "is"}


@pytest.mark.parametrize("engine", ["kubeflow", "vertex"])
def test_compile_defaults_are_a_real_preset_and_step_count_at_its_resolution(engine):
    from facegan.pipeline import kubeflow_runner as k
    from facegan.trainer.config import get_preset
    kw = k.cluster_settings(engine, "reg/img:1", {}, {}, lambda line: None)
    cfg = get_preset(kw["preset"])
    # not a smoke/CI preset, and at least the 128 kimg of one quality-study row
    assert not kw["preset"].startswith("smoke") and cfg.eval.every_images > 0
    assert kw["preset"] == "dcgan" and kw["train_steps"] == configs.TRAIN_STEPS
    assert kw["train_steps"] * cfg.optim.batch_size >= 128_000
    # the resolution ingested at is the trainer's: the preset's own, or FACEGAN_RESOLUTION
    assert configs.check_training(kw["preset"], kw["train_steps"], kw["resolution"]) == 64
    env = {"FACEGAN_PRESET": "stylegan2_small", "FACEGAN_TRAIN_STEPS": "5000", "FACEGAN_RESOLUTION": "128"}
    kw = k.cluster_settings(engine, "reg/img:1", {}, env, lambda line: None)
    assert (kw["preset"], kw["train_steps"], kw["resolution"]) == ("stylegan2_small", 5000, 128)
    # flags beat the environment
    kw = k.cluster_settings(engine, "reg/img:1", {"preset": "progan", "train_steps": 7}, env, lambda line: None)
    assert (kw["preset"], kw["train_steps"]) == ("progan", 7)


@pytest.mark.parametrize("engine", ["kubeflow", "vertex"])
def test_compile_without_inception_weights_has_no_inception_metric_and_refuses_one(engine):
    from facegan.pipeline import kubeflow_runner as k
    quiet = lambda line: None  # noqa: E731
    kw = k.cluster_settings(engine, "reg/img:1", {}, {}, quiet)
    assert kw["extractor"] == "random_tiny"
    assert kw["metrics"] == ["swd", "ms_ssim", "face_detection"]
    assert not INCEPTION_METRICS & set(kw["metrics"])
    for asked in (["swd", "fid"], ["kid"], ["is:downscale=64"]):
        with pytest.raises(ValueError) as e:
            k.cluster_settings(engine, "reg/img:1", {"metrics": asked}, {}, quiet)
        msg = str(e.value)
        assert "need an Inception network with trained weights" in msg
        assert "--extractor inception" in msg and "classify_image_graph_def.pb" in msg
        assert "FACEGAN_EXTRACTOR" in msg
    with pytest.raises(ValueError, match="fid need an Inception"):          # through the environment too
        k.cluster_settings(engine, "reg/img:1", {}, {"FACEGAN_METRICS": "swd,fid"}, quiet)
    with pytest.raises(ValueError, match="fid need an Inception"):          # a random InceptionV3 is no better
        k.cluster_settings(engine, "reg/img:1", {"metrics": ["fid"], "extractor": "random"}, {}, quiet)
    # With weights: FID joins the defaults, and asking for KID is fine.
    for extractor in ("inception", "gs://b/inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
                      "gs://b/classify_image_graph_def.pb"):
        kw = k.cluster_settings(engine, "reg/img:1", {"extractor": extractor}, {}, quiet)
        assert kw["metrics"] == ["swd", "ms_ssim", "face_detection", "fid"]
    kw = k.cluster_settings(engine, "reg/img:1", {}, {"FACEGAN_EXTRACTOR": "inception",
                                                      "FACEGAN_METRICS": "swd,kid"}, quiet)
    assert kw["metrics"] == ["swd", "kid"]
    with pytest.raises(ValueError, match="unknown metric"):
        k.cluster_settings(engine, "reg/img:1", {"metrics": ["fidd"]}, {}, quiet)


def test_compile_refuses_a_run_that_cannot_train_naming_the_setting():
    from facegan.pipeline import kubeflow_runner as k
    quiet = lambda line: None  # noqa: E731
    with pytest.raises(ValueError, match="FACEGAN_TRAIN_STEPS='2k' is not an integer"):
        k.cluster_settings("kubeflow", "reg/img:1", {}, {"FACEGAN_TRAIN_STEPS": "2k"}, quiet)
    with pytest.raises(ValueError, match="train steps must be >= 1"):
        k.cluster_settings("kubeflow", "reg/img:1", {"train_steps": 0}, {}, quiet)
    with pytest.raises(ValueError, match="unknown preset 'dcgna'"):
        k.cluster_settings("vertex", "reg/img:1", {}, {"FACEGAN_PRESET": "dcgna"}, quiet)
    with pytest.raises(ValueError, match="network.resolution"):
        k.cluster_settings("vertex", "reg/img:1", {"resolution": 48}, {}, quiet)


def test_pipeline_cli_compile_leaves_unset_flags_to_the_environment_and_run_checks_early(capsys):
    p = argparse.ArgumentParser()
    cli.add_arguments(p)
    c = p.parse_args(["compile"])
    kw = cli._pipeline_kwargs(c)
    assert kw["preset"] is None and kw["train_steps"] is None and kw["metrics"] is None
    assert kw["extractor"] is None
    r = p.parse_args(["run", "--data", "d", "--out", "o"])
    kw = cli._pipeline_kwargs(r)
    assert (kw["preset"], kw["train_steps"]) == (configs.PRESET, configs.TRAIN_STEPS)
    assert kw["metrics"] == list(configs.METRICS)
    # Refused in one line, before TFX is imported (conftest fails any unit test that imports it).
    for argv in (["run", "--data", "d", "--out", "o", "--metrics", "swd,fid"],
                 ["compile", "--metrics", "fid"]):
        assert cli.main(p.parse_args(argv)) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("facegan pipeline: metrics fid need an Inception")


def test_readme_kubeflow_section_lists_every_facegan_variable_the_pipeline_reads():
    """Each FACEGAN_* variable in pipeline/*.py code is in the README's Kubeflow section."""
    import re
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    names = set()
    for f in ("configs.py", "kubeflow_runner.py", "cli.py", "local_runner.py", "pipeline.py", "demo.py"):
        names |= set(re.findall(r"\bFACEGAN_[A-Z0-9_]*[A-Z0-9]\b", open(os.path.join(here, "pipeline", f)).read()))
    assert {"FACEGAN_PRESET", "FACEGAN_TRAIN_STEPS", "FACEGAN_RESOLUTION", "FACEGAN_TRAINER_GPU_TYPE",
            "FACEGAN_TRAINER_CPU", "FACEGAN_TRAINER_MEMORY"} <= names
    readme = open(os.path.join(here, "README.md")).read()
    start = readme.index("## Running on Kubeflow Pipelines")
    section = readme[start:readme.index("\n## ", start + 1)]
    missing = sorted(n for n in names if n not in section)
    assert not missing, f"README's Kubeflow section does not list {missing}"


def test_readme_kubeflow_table_lists_every_compile_flag_and_each_default():
    import re
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    readme = open(os.path.join(here, "README.md")).read()
    start = readme.index("## Running on Kubeflow Pipelines")
    section = readme[start:readme.index("\n## ", start + 1)]
    p = argparse.ArgumentParser()
    cli.add_arguments(p)
    compile_parser = p._subparsers._group_actions[0].choices["compile"]
    flags = {o for a in compile_parser._actions for o in a.option_strings if o.startswith("--")} - {"--help"}
    missing = sorted(f for f in flags if f"`{f}`" not in section)
    assert not missing, f"README's Kubeflow section does not list {missing}"
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\|[^|]*\| `(FACEGAN_[A-Z_]+)` \| ([^|]+) \|$",
                                                         section, flags=re.M)}
    for var, default in (("FACEGAN_PRESET", configs.PRESET), ("FACEGAN_TRAIN_STEPS", configs.TRAIN_STEPS),
                         ("FACEGAN_EXTRACTOR", configs.EXTRACTOR), ("FACEGAN_PIPELINE_NAME", configs.PIPELINE_NAME),
                         ("FACEGAN_TRAINER_GPUS", configs.TRAINER_GPUS),
                         ("FACEGAN_TRAINER_GPU_TYPE", configs.TRAINER_GPU_TYPE),
                         ("FACEGAN_TRAINER_CPU", configs.TRAINER_CPU),
                         ("FACEGAN_TRAINER_MEMORY", configs.TRAINER_MEMORY),
                         ("FACEGAN_METRICS", ",".join(configs.METRICS))):
        assert rows.get(var, "").startswith(f"`{default}`"), (var, rows.get(var))
