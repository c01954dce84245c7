"""Both Kubeflow compilations of the pipeline, checked in their output files.

- v1 (kfp 1.8 / Argo YAML via KubeflowDagRunner): every component is a step running the pipeline
  image with TFX's container entrypoint and its node id; the Trainer alone requests and is
  limited to GPUs (and tolerates GPU-node taints); the Beam args reach the ingestion step.
- v2 (KubeflowV2DagRunner JSON): parses as a kfp PipelineSpec (google.protobuf json_format);
  every component has an executor on the pipeline image with its executor class; the Trainer's
  resources carry the accelerator.
- The file works the way `tfx pipeline create --engine kubeflow --pipeline_path ...` runs it
  (as __main__ with its own directory first on sys.path).
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


def test_runner_file_compiles_as_the_tfx_cli_runs_it(tmp_path, monkeypatch):
    """Mimic `tfx pipeline create --engine kubeflow`: the CLI's patcher + execute_dsl, with the
    `pipeline` package not yet imported (so pipeline/pipeline.py could shadow it)."""
    from tfx.tools.cli import labels
    from tfx.tools.cli.handler import base_handler, kubeflow_dag_runner_patcher

    import facegan.pipeline as pkg
    path = os.path.join(os.path.dirname(pkg.__file__), "kubeflow_runner.py")
    saved = {n: m for n, m in sys.modules.items() if n == "pipeline" or n.startswith("pipeline.")}
    for n in saved:
        del sys.modules[n]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FACEGAN_PIPELINE_IMAGE", IMAGE)
    fake = types.SimpleNamespace(flags_dict={labels.PIPELINE_DSL_PATH: path},
                                 _check_pipeline_dsl_path=lambda: None)
    try:
        patcher = kubeflow_dag_runner_patcher.KubeflowDagRunnerPatcher(call_real_run=True)
        context = base_handler.BaseHandler.execute_dsl(fake, patcher)
    finally:
        for n in [n for n in sys.modules if n == "pipeline" or n.startswith("pipeline.")]:
            del sys.modules[n]
        sys.modules.update(saved)
    out = context[patcher.OUTPUT_FILE_PATH]
    assert context[patcher.PIPELINE_NAME] == "facegan"
    assert os.path.exists(out) and out.endswith(".tar.gz")
