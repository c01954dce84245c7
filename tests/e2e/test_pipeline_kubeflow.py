"""Both Kubeflow compilations of the pipeline, checked in their output files.

- v1 (kfp 1.8 / Argo YAML via KubeflowDagRunner): every component is a step running the pipeline
  image with TFX's container entrypoint and its node id; the Trainer alone requests and is
  limited to GPUs (and tolerates GPU-node taints); the Beam args reach the ingestion step.
- v2 (KubeflowV2DagRunner JSON): parses as a kfp PipelineSpec (google.protobuf json_format);
  every component has an executor on the pipeline image with its executor class; the Trainer's
  resources carry the accelerator.
- The TensorBoard log dir of the Trainer and the GanEvaluator follows the pipeline root: the
  compiled root (both engines) and, on v1, a root overridden when a run starts.
- The file works the way `tfx pipeline compile|create --engine kubeflow|vertex --pipeline_path ...`
  runs it (as __main__ with its own directory first on sys.path, the engine's runner wrapped by
  the CLI), and the package goes to the TFX CLI's home, not the working directory.
"""
import json
import os
import sys
import types

import pytest

pytestmark = pytest.mark.e2e

IMAGE = "registry.example.com/facegan-pipeline:test"
COMPONENTS = {"ImageExampleGen", "Trainer", "latest_blessed_model_resolver", "GanEvaluator", "Pusher"}


def _kwargs():
    from facegan.pipeline import configs
    return dict(pipeline_name="facegan-kf", pipeline_root="gs://bucket/root", data_root="gs://bucket/faces",
                serving_dir="gs://bucket/serving", preset="smoke", train_steps=1234, resolution=32,
                beam_pipeline_args=configs.beam_args("dataflow", project="proj", region="europe-west4",
                                                     temp_location="gs://bucket/tmp", image=IMAGE))


def _arg(args, flag):
    return args[args.index(flag) + 1]


def _v1_log_dirs(wf, substitute=None):
    """{node: log_dir} of the Trainer (custom_config) and GanEvaluator (exec property), read from
    each step's IR after Argo's substitution of the workflow parameters in `substitute`."""
    out = {}
    for t in wf["spec"]["templates"]:
        c = t.get("container")
        if not c:
            continue
        ir_text = _arg(c["args"], "--tfx_ir")
        for name, value in (substitute or {}).items():
            ir_text = ir_text.replace("{{inputs.parameters.%s}}" % name, value)
        node = json.loads(ir_text)["nodes"][0]["pipelineNode"]
        params = node.get("parameters", {}).get("parameters", {})
        node_id = _arg(c["args"], "--node_id")
        if node_id == "Trainer":
            out[node_id] = json.loads(params["custom_config"]["fieldValue"]["stringValue"])["log_dir"]
        elif node_id == "GanEvaluator":
            out[node_id] = params["log_dir"]["fieldValue"]["stringValue"]
    return out


def test_kubeflow_v1_compile(tmp_path):
    import yaml
    from facegan.pipeline import kubeflow_runner as k

    path = k.compile_v1(str(tmp_path), image=IMAGE, gpus=2, **_kwargs())
    wf = yaml.safe_load(open(path))
    steps = {}
    for t in wf["spec"]["templates"]:
        c = t.get("container")
        if c:
            steps[_arg(c["args"], "--node_id")] = (t, c)
    assert set(steps) == COMPONENTS
    for node, (t, c) in steps.items():
        assert c["image"] == IMAGE
        assert c["command"][-1].endswith("container_entrypoint") or "container_entrypoint" in " ".join(c["command"])
        gpu = (c.get("resources") or {}).get("limits", {}).get("nvidia.com/gpu")
        if node == "Trainer":
            assert gpu == "2" and c["resources"]["requests"]["nvidia.com/gpu"] == "2"
            assert c["resources"]["requests"]["cpu"] and c["resources"]["limits"]["memory"]
            assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in t["tolerations"]
        else:
            assert gpu is None, node
    # The pipeline IR each step carries: the Trainer's run_fn/steps, the evaluator's rules,
    # the Beam args for Dataflow.
    trainer_ir = _arg(steps["Trainer"][1]["args"], "--tfx_ir")
    assert "facegan.trainer.run_fn.run_fn" in trainer_ir and "1234" in trainer_ir
    ev_ir = _arg(steps["GanEvaluator"][1]["args"], "--tfx_ir")
    assert "facegan.components.gan_evaluator.executor.Executor" in ev_ir and "max_noise_fraction" in ev_ir
    ingest_ir = _arg(steps["ImageExampleGen"][1]["args"], "--tfx_ir")
    assert "--runner=DataflowRunner" in ingest_ir and "--project=proj" in ingest_ir
    pusher_ir = _arg(steps["Pusher"][1]["args"], "--tfx_ir")
    assert "gs://bucket/serving/facegan" in pusher_ir


def test_kubeflow_v1_tensorboard_dir_follows_the_pipeline_root_at_compile_and_run_time(tmp_path):
    import yaml
    from facegan.pipeline import kubeflow_runner as k

    path = k.compile_v1(str(tmp_path), image=IMAGE, env={}, warn=lambda line: None,
                        **dict(_kwargs(), pipeline_root="gs://flag-bucket/root"))
    wf = yaml.safe_load(open(path))
    params = {p["name"]: p.get("value") for p in wf["spec"]["arguments"]["parameters"]}
    assert params["pipeline-root"] == "gs://flag-bucket/root"
    # As compiled: the parameter's default gives <--pipeline-root>/tensorboard ...
    compiled = _v1_log_dirs(wf, {"pipeline-root": params["pipeline-root"]})
    assert compiled == {"Trainer": "gs://flag-bucket/root/tensorboard",
                        "GanEvaluator": "gs://flag-bucket/root/tensorboard"}
    # ... and a run started with another pipeline root (Argo substitutes the parameter) moves it.
    moved = _v1_log_dirs(wf, {"pipeline-root": "gs://run-bucket/other"})
    assert set(moved.values()) == {"gs://run-bucket/other/tensorboard"}
    assert "my-bucket" not in open(path).read()


def test_kubeflow_v2_compile_parses_as_pipeline_spec(tmp_path):
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    from facegan.pipeline import kubeflow_runner as k

    path = k.compile_v2(str(tmp_path), image=IMAGE, gpus=4, **_kwargs())
    job = json.load(open(path))
    spec = json_format.ParseDict(job["pipelineSpec"], pipeline_spec_pb2.PipelineSpec())
    tasks = set(spec.root.dag.tasks)
    assert {"ImageExampleGen", "Trainer", "GanEvaluator", "Pusher"} <= tasks
    assert any(t.startswith("latest_blessed_model_resolver") for t in tasks)
    executors = spec.deployment_spec  # a Struct: read it as a dict
    execs = json_format.MessageToDict(executors)["executors"]
    classes = {}
    for name, e in execs.items():
        if "container" in e and e["container"].get("args"):
            c = e["container"]
            assert c["image"] == IMAGE, name
            classes[name] = _arg(c["args"], "--executor_class_path")
    assert classes["GanEvaluator_executor"] == "facegan.components.gan_evaluator.executor.Executor"
    assert classes["Trainer_executor"].endswith("GenericExecutor")
    res = execs["Trainer_executor"]["container"]["resources"]
    assert res["accelerator"] == {"type": "NVIDIA_TESLA_T4", "count": "4"}
    assert "resources" not in execs["GanEvaluator_executor"]["container"]
    assert job["runtimeConfig"]["gcsOutputDirectory"] == "gs://bucket/root"
    # The TensorBoard dir of both steps is under the compiled root (not the default bucket).
    tasks = job["pipelineSpec"]["root"]["dag"]["tasks"]

    def constant(task, name):
        return tasks[task]["inputs"]["parameters"][name]["runtimeValue"]["constantValue"]["stringValue"]
    assert constant("GanEvaluator", "log_dir") == "gs://bucket/root/tensorboard"
    trainer_cc = json.loads(constant("Trainer", "custom_config"))
    assert trainer_cc["log_dir"] == "gs://bucket/root/tensorboard"
    assert "my-bucket" not in json.dumps(job)


def _v1_params(wf, node_id):
    for t in wf["spec"]["templates"]:
        c = t.get("container")
        if c and _arg(c["args"], "--node_id") == node_id:
            node = json.loads(_arg(c["args"], "--tfx_ir"))["nodes"][0]["pipelineNode"]
            return {k: v["fieldValue"] for k, v in node["parameters"]["parameters"].items()}
    raise KeyError(node_id)


@pytest.mark.parametrize("engine", ["kubeflow", "vertex"])
def test_default_compile_is_a_real_run_without_random_network_fid(engine, tmp_path):
    """No preset, steps, metrics or extractor given (nor any FACEGAN_* variable): the compiled
    Trainer runs the dcgan preset for configs.TRAIN_STEPS steps at 64x64 (ingested at 64), and
    the evaluator computes SWD, MS-SSIM and the face-detection rate, no FID/KID/IS."""
    from facegan.pipeline import configs
    from facegan.pipeline import kubeflow_runner as k

    kw = dict(pipeline_root="gs://b/root", data_root="gs://b/faces", serving_dir="gs://b/serving")
    path = k.compile_pipeline(engine, str(tmp_path), image=IMAGE, env={}, warn=lambda line: None, **kw)
    if engine == "kubeflow":
        import yaml
        wf = yaml.safe_load(open(path))
        trainer, ev, ingest = (_v1_params(wf, n) for n in ("Trainer", "GanEvaluator", "ImageExampleGen"))
        cc = json.loads(trainer["custom_config"]["stringValue"])
        steps = json.loads(trainer["train_args"]["stringValue"])["num_steps"]
        metrics = ev["metrics"]["stringValue"]
        resolution = ingest["resolution"]["intValue"]
    else:
        tasks = json.load(open(path))["pipelineSpec"]["root"]["dag"]["tasks"]

        def constant(task, name):
            return tasks[task]["inputs"]["parameters"][name]["runtimeValue"]["constantValue"]
        cc = json.loads(constant("Trainer", "custom_config")["stringValue"])
        steps = json.loads(constant("Trainer", "train_args")["stringValue"])["num_steps"]
        metrics = constant("GanEvaluator", "metrics")["stringValue"]
        resolution = constant("ImageExampleGen", "resolution")["intValue"]
    assert cc["preset"] == "dcgan" and int(steps) == configs.TRAIN_STEPS == 20_000
    assert int(resolution) == 64
    assert set(json.loads(metrics) if metrics.startswith("[") else metrics.split(",")) == \
        {"swd", "ms_ssim", "face_detection"}


@pytest.mark.parametrize("engine", ["kubeflow", "vertex"])
def test_runner_file_compiles_as_the_tfx_cli_runs_it(engine, tmp_path, monkeypatch):
    """Mimic `tfx pipeline compile --engine <engine>`: the CLI's patcher + execute_dsl, with no
    bare `pipeline` package imported (so pipeline/pipeline.py next to the file shadows nothing)."""
    from tfx.tools.cli import labels
    from tfx.tools.cli.handler import (base_handler, kubeflow_dag_runner_patcher,
                                       kubeflow_v2_dag_runner_patcher)

    import facegan.pipeline as pkg
    path = os.path.join(os.path.dirname(pkg.__file__), "kubeflow_runner.py")
    saved = {n: m for n, m in sys.modules.items() if n == "pipeline" or n.startswith("pipeline.")}
    for n in saved:
        del sys.modules[n]
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv(f"{engine.upper()}_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FACEGAN_COMPILE_DIR", raising=False)
    monkeypatch.setenv("FACEGAN_PIPELINE_IMAGE", IMAGE)
    monkeypatch.setenv("FACEGAN_PIPELINE_ROOT", "gs://env-bucket/root")
    fake = types.SimpleNamespace(flags_dict={labels.PIPELINE_DSL_PATH: path},
                                 _check_pipeline_dsl_path=lambda: None)
    patcher = (kubeflow_dag_runner_patcher.KubeflowDagRunnerPatcher(call_real_run=True)
               if engine == "kubeflow" else
               kubeflow_v2_dag_runner_patcher.KubeflowV2DagRunnerPatcher(call_real_run=True))
    try:
        context = base_handler.BaseHandler.execute_dsl(fake, patcher)
    finally:
        for n in [n for n in sys.modules if n == "pipeline" or n.startswith("pipeline.")]:
            del sys.modules[n]
        sys.modules.update(saved)
    out = context[patcher.OUTPUT_FILE_PATH]
    assert context[patcher.PIPELINE_NAME] == "facegan"
    assert os.path.dirname(out) == str(tmp_path / "home" / "facegan") and os.path.isfile(out)
    assert os.listdir(cwd) == []                     # nothing lands where the CLI was run
    if engine == "kubeflow":
        assert out.endswith("facegan.tar.gz")
    else:
        job = json.load(open(out))
        assert job["runtimeConfig"]["gcsOutputDirectory"] == "gs://env-bucket/root"
        assert "gs://env-bucket/root/tensorboard" in json.dumps(job)


def test_tfx_cli_compiles_for_vertex_from_the_repository_without_leaving_files(tmp_path):
    """The exact command of the report: `tfx pipeline compile --engine vertex --pipeline_path
    pipeline/kubeflow_runner.py`, run from the repository root with the venv on PATH."""
    import subprocess
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    bindir = os.path.dirname(sys.executable)
    env = dict(os.environ, PATH=bindir + os.pathsep + os.environ.get("PATH", ""),
               VERTEX_HOME=str(tmp_path / "vertex"), FACEGAN_PIPELINE_IMAGE=IMAGE)
    env.pop("FACEGAN_COMPILE_DIR", None)
    before = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=repo,
                            capture_output=True, text=True).stdout
    r = subprocess.run([os.path.join(bindir, "tfx"), "pipeline", "compile", "--engine", "vertex",
                        "--pipeline_path", "pipeline/kubeflow_runner.py"],
                       cwd=repo, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Pipeline facegan compiled successfully." in r.stdout
    out = tmp_path / "vertex" / "facegan" / "facegan_pipeline.json"
    assert out.is_file() and json.load(open(out))["pipelineSpec"]["pipelineInfo"]["name"] == "facegan"
    # The placeholders are named, one line each (bucket defaults: root and serving dir; data).
    warned = [line for line in r.stderr.splitlines() if "warning:" in line]
    assert any("gs://my-bucket/facegan/root" in w and "FACEGAN_PIPELINE_ROOT" in w for w in warned)
    assert any("FACEGAN_DATA_ROOT" in w for w in warned)
    after = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=repo,
                           capture_output=True, text=True).stdout
    assert after == before
