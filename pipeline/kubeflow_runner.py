"""Compile the facegan pipeline for Kubeflow Pipelines (v1, kfp 1.8) and for KFP v2 / Vertex AI.

Two ways in, one code path (`compile_pipeline`):

    facegan pipeline compile --engine kubeflow|vertex --out DIR [--pipeline-root gs://...] ...
    tfx pipeline compile|create|update --engine kubeflow|vertex --pipeline_path pipeline/kubeflow_runner.py

The TFX CLI executes this file as a script with no arguments, having wrapped the runner class of
its `--engine` (KubeflowDagRunner for kubeflow, KubeflowV2DagRunner for vertex); this file
compiles for whichever the CLI wrapped. Settings then come from the environment (below) and the
defaults in configs.py, and the package goes to $FACEGAN_COMPILE_DIR, else the TFX CLI's own
home for the engine (`$KUBEFLOW_HOME` / `$VERTEX_HOME`, default `~/tfx/<engine>/`) under
`<pipeline name>/`, never into the repository. Every step runs in the pipeline image (Dockerfile,
FACEGAN_PIPELINE_IMAGE); the Trainer step requests and is limited to FACEGAN_TRAINER_GPUS GPUs
(nvidia.com/gpu) plus CPU and memory, tolerates GPU-node taints, and its MirroredStrategy uses
every GPU of its node; ingestion runs on the Beam runner FACEGAN_BEAM_RUNNER.

    FACEGAN_PIPELINE_ROOT   gs://bucket/facegan/root      (pipeline artifacts)
    FACEGAN_DATA_ROOT       gs://bucket/faces             (input images)
    FACEGAN_SERVING_DIR     gs://bucket/facegan/serving   (Pusher: <dir>/<model>/<version>/)
    FACEGAN_LOG_DIR         TensorBoard dir (default: <pipeline root>/tensorboard, see below)
    FACEGAN_PIPELINE_NAME   facegan
    FACEGAN_PRESET          dcgan (configs.PRESET: a real run, not the demo's smoke preset)
    FACEGAN_TRAIN_STEPS     20000 (configs.TRAIN_STEPS)
    FACEGAN_RESOLUTION      the preset's (dcgan: 64); ingestion and training both use it
    FACEGAN_EXTRACTOR       random_tiny: no Inception weights, so the metrics are SWD, MS-SSIM and
                            the face-detection rate; `inception` or a .h5/.pb path adds FID
    FACEGAN_METRICS         comma list (default: configs.default_metrics(extractor)); FID, KID or
                            IS without an Inception extractor with weights is refused at compile time
    FACEGAN_TRAINER_GPUS, FACEGAN_TRAINER_GPU_TYPE, FACEGAN_TRAINER_CPU, FACEGAN_TRAINER_MEMORY
                            the Trainer step's resources (configs.py)
    FACEGAN_PIPELINE_IMAGE, FACEGAN_COMPILE_DIR
    FACEGAN_BEAM_RUNNER and the variables of configs.BEAM_ENV

TensorBoard: the Trainer and the GanEvaluator write to `<pipeline root>/tensorboard`. On Kubeflow
v1 that path is written as the workflow's `pipeline-root` parameter, so overriding the pipeline
root when starting a run moves it too. KFP v2 / Vertex resolve no pipeline-root placeholder inside
a component's parameters (TFX 1.15 writes them as constants), so there the directory is fixed at
compile time: compile with the root you run with (`--pipeline-root`) or pass `--log-dir`.

Compiling warns, one line each, about placeholders left in (the image `gcr.io/my-project/...`,
buckets `gs://my-bucket/...`) and about local paths that pods cannot reach, naming the flag and
the variable to set.
"""
import os
import sys
from typing import Any, Callable, Dict, List, Optional

from facegan.pipeline import configs

V1_FILENAME = "facegan_kubeflow.yaml"
V2_FILENAME = "facegan_pipeline.json"
TRAINER_ID = "Trainer"
ENGINES = ("kubeflow", "vertex")
# How kfp 1.8 serializes the KubeflowDagRunner's `pipeline-root` workflow parameter inside a
# step's arguments; its compiler rewrites it to Argo's {{inputs.parameters.pipeline-root}}.
KFP_V1_PIPELINE_ROOT = "{{pipelineparam:op=;name=pipeline-root}}"
TENSORBOARD_SUBDIR = "tensorboard"

# setting -> (flag of `facegan pipeline compile`, environment variable), for messages.
SETTING_SOURCES = {
    "pipeline_root": ("--pipeline-root", "FACEGAN_PIPELINE_ROOT"),
    "data_root": ("--data", "FACEGAN_DATA_ROOT"),
    "serving_dir": ("--serving-dir", "FACEGAN_SERVING_DIR"),
    "log_dir": ("--log-dir", "FACEGAN_LOG_DIR"),
    "image": ("--image", "FACEGAN_PIPELINE_IMAGE"),
}


def _int_env(env, name: str, default: Optional[int]) -> Optional[int]:
    value = env.get(name)
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not an integer") from None


def settings_from_env(env=None) -> Dict[str, Any]:
    """create_pipeline arguments for a cluster run, from FACEGAN_* variables (see module doc).

    `log_dir` is included only when FACEGAN_LOG_DIR is set: its default follows the final
    pipeline root (`cluster_log_dir`), which a flag may still change.
    """
    env = os.environ if env is None else env
    metrics = [m.strip() for m in env.get("FACEGAN_METRICS", "").split(",") if m.strip()]
    settings = dict(
        pipeline_name=env.get("FACEGAN_PIPELINE_NAME", configs.PIPELINE_NAME),
        pipeline_root=env.get("FACEGAN_PIPELINE_ROOT", f"{configs.PLACEHOLDER_BUCKET}/facegan/root"),
        data_root=env.get("FACEGAN_DATA_ROOT", f"{configs.PLACEHOLDER_BUCKET}/faces"),
        serving_dir=env.get("FACEGAN_SERVING_DIR", f"{configs.PLACEHOLDER_BUCKET}/facegan/serving"),
        preset=env.get("FACEGAN_PRESET", configs.PRESET),
        train_steps=_int_env(env, "FACEGAN_TRAIN_STEPS", configs.TRAIN_STEPS),
        resolution=_int_env(env, "FACEGAN_RESOLUTION", None),
        extractor=env.get("FACEGAN_EXTRACTOR", configs.EXTRACTOR),
        metrics=metrics or None,        # None: configs.default_metrics(the final extractor)
        beam_pipeline_args=configs.beam_args_from_env(env=env),
    )
    if env.get("FACEGAN_LOG_DIR"):
        settings["log_dir"] = env["FACEGAN_LOG_DIR"]
    return settings


def cluster_log_dir(engine: str, pipeline_root: str) -> str:
    """The default TensorBoard dir: under the pipeline root as the run will see it."""
    root = KFP_V1_PIPELINE_ROOT if engine == "kubeflow" else pipeline_root.rstrip("/")
    return f"{root}/{TENSORBOARD_SUBDIR}"


def _is_remote(path: str) -> bool:
    return "://" in path or path.startswith(KFP_V1_PIPELINE_ROOT)


def placeholder_warnings(image: str, settings: Dict[str, Any]) -> List[str]:
    """One line per placeholder or pod-unreachable local path left in a cluster compile."""
    lines = []
    if image == configs.PLACEHOLDER_IMAGE:
        flag, var = SETTING_SOURCES["image"]
        lines.append(f"the image {image} is a placeholder: build and push the Dockerfile's image "
                     f"and pass it with {flag} or {var}")
    for key in ("data_root", "pipeline_root", "serving_dir", "log_dir"):
        value = str(settings.get(key) or "")
        root = str(settings.get("pipeline_root") or "")
        if not value or (key == "log_dir" and root and value.startswith(root)):
            continue      # empty, or derived from the root (whose warning says it all)
        flag, var = SETTING_SOURCES[key]
        what = "the " + key.replace("_", " ")
        if value.startswith(configs.PLACEHOLDER_BUCKET + "/"):
            lines.append(f"{what} {value} is a placeholder bucket: set {flag} or {var} to yours")
        elif not _is_remote(value):
            lines.append(f"{what} {value} is a local path that the pipeline's pods cannot reach "
                         f"(no volumes are mounted): set {flag} or {var} to a gs:// (or s3://) URI")
    return lines


def gpu_operator(component_id: str = TRAINER_ID, gpus: int = configs.TRAINER_GPUS,
                 cpu: str = configs.TRAINER_CPU, memory: str = configs.TRAINER_MEMORY) -> Callable:
    """A kfp ContainerOp transform giving one step GPU requests/limits, CPU and memory."""
    from kubernetes import client as k8s

    def apply(op):
        if getattr(op, "human_name", op.name) != component_id:
            return op
        c = op.container
        if gpus > 0:
            c.set_gpu_limit(str(gpus), vendor="nvidia")
            c.add_resource_request("nvidia.com/gpu", str(gpus))
            op.add_toleration(k8s.V1Toleration(key="nvidia.com/gpu", operator="Exists",
                                               effect="NoSchedule"))
        c.set_cpu_request(str(cpu))
        c.set_memory_request(str(memory))
        c.set_memory_limit(str(memory))
        return op
    return apply


def vertex_trainer_resources(gpus: int = configs.TRAINER_GPUS, gpu_type: str = configs.TRAINER_GPU_TYPE,
                             cpu: str = configs.TRAINER_CPU, memory: str = configs.TRAINER_MEMORY):
    """The KFP v2 ResourceSpec for the Trainer (accelerator type/count, vCPU, GiB)."""
    from kfp.pipeline_spec import pipeline_spec_pb2 as ps

    mem = str(memory)
    mem_gb = float(mem[:-2]) if mem.endswith("Gi") else float(mem)
    spec = ps.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec(
        cpu_limit=float(cpu), memory_limit=mem_gb)
    if gpus > 0:
        spec.accelerator.type = gpu_type
        spec.accelerator.count = int(gpus)
    return spec


def cluster_settings(engine: str, image: str, pipeline_kwargs: Dict[str, Any], env=None,
                     warn: Optional[Callable[[str], None]] = None) -> Dict[str, Any]:
    """Environment defaults, overridden by explicit arguments, with the log dir derived from the
    final pipeline root; each placeholder/local-path warning goes to `warn` (stderr)."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose {' or '.join(ENGINES)}")
    kwargs = settings_from_env(env)
    kwargs.update({k: v for k, v in pipeline_kwargs.items() if v is not None})
    kwargs.setdefault("log_dir", cluster_log_dir(engine, kwargs["pipeline_root"]))
    # A real run, refused here (before TFX is imported) when it could not train or would gate on
    # an Inception metric without Inception weights.
    configs.check_training(kwargs["preset"], kwargs["train_steps"], kwargs.get("resolution"),
                           kwargs.get("overrides"))
    kwargs["metrics"] = configs.check_metrics(
        kwargs.get("metrics") or configs.default_metrics(kwargs["extractor"]), kwargs["extractor"])
    warn = warn or (lambda line: print(f"facegan pipeline compile: warning: {line}", file=sys.stderr))
    for line in placeholder_warnings(image, kwargs):
        warn(line)
    return kwargs


def compile_v1(output_dir: str, *, image: str = configs.PIPELINE_IMAGE,
               output_filename: Optional[str] = V1_FILENAME, gpus: int = configs.TRAINER_GPUS,
               env=None, warn=None, **pipeline_kwargs) -> str:
    """Compile to an Argo workflow for Kubeflow Pipelines 1.8; returns the file's path.

    output_filename None lets the runner (or the TFX CLI, which patches it) choose the name.
    """
    kwargs = cluster_settings("kubeflow", image, pipeline_kwargs, env, warn)   # refusals before TFX
    from tfx.orchestration.kubeflow import kubeflow_dag_runner as kdr

    from facegan.pipeline.pipeline import create_pipeline

    config = kdr.KubeflowDagRunnerConfig(
        kubeflow_metadata_config=kdr.get_default_kubeflow_metadata_config(),
        tfx_image=image,
        pipeline_operator_funcs=kdr.get_default_pipeline_operator_funcs() + [gpu_operator(gpus=gpus)])
    p = create_pipeline(**kwargs)
    os.makedirs(output_dir, exist_ok=True)
    runner = kdr.KubeflowDagRunner(config=config, output_dir=output_dir,
                                   output_filename=output_filename)
    runner.run(p)
    # Under the TFX CLI the patched run() may have chosen the name (a temporary package).
    name = runner._output_filename or kdr.get_default_output_filename(p.pipeline_info.pipeline_name)  # noqa: SLF001
    return os.path.join(output_dir, name)


def compile_v2(output_dir: str, *, image: str = configs.PIPELINE_IMAGE,
               output_filename: str = V2_FILENAME, gpus: int = configs.TRAINER_GPUS,
               env=None, warn=None, **pipeline_kwargs) -> str:
    """Compile to a KFP v2 PipelineJob JSON (Vertex AI Pipelines); returns the file's path."""
    kwargs = cluster_settings("vertex", image, pipeline_kwargs, env, warn)     # refusals before TFX
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner as v2

    from facegan.pipeline.pipeline import create_pipeline

    kwargs.setdefault("trainer_platform_config", vertex_trainer_resources(gpus=gpus))
    p = create_pipeline(**kwargs)
    os.makedirs(output_dir, exist_ok=True)
    runner = v2.KubeflowV2DagRunner(config=v2.KubeflowV2DagRunnerConfig(default_image=image),
                                    output_dir=output_dir, output_filename=output_filename)
    runner.run(p, write_out=True)
    # The TFX CLI's `pipeline create` moves the output into its own home.
    return os.path.join(runner._output_dir, runner._output_filename)  # noqa: SLF001


COMPILERS = {"kubeflow": compile_v1, "vertex": compile_v2}


def compile_pipeline(engine: str, output_dir: str, **kwargs) -> str:
    """Compile for `engine` ("kubeflow": KFP v1 Argo YAML, "vertex": KFP v2 JSON)."""
    if engine not in COMPILERS:
        raise ValueError(f"unknown engine {engine!r}; choose {' or '.join(ENGINES)}")
    return COMPILERS[engine](output_dir, **kwargs)


def tfx_cli_engine() -> Optional[str]:
    """The engine whose runner the TFX CLI wrapped (its patcher decorates `run` with
    functools.wraps while it executes this file), or None outside the TFX CLI."""
    from tfx.orchestration.kubeflow import kubeflow_dag_runner as v1
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner as v2

    if hasattr(v2.KubeflowV2DagRunner.run, "__wrapped__"):
        return "vertex"
    if hasattr(v1.KubeflowDagRunner.run, "__wrapped__"):
        return "kubeflow"
    return None


def default_output_dir(engine: str, pipeline_name: str, env=None) -> str:
    """$FACEGAN_COMPILE_DIR, else the TFX CLI's home for the engine ($KUBEFLOW_HOME /
    $VERTEX_HOME, default ~/tfx/<engine>/) under <pipeline name>/."""
    env = os.environ if env is None else env
    if env.get("FACEGAN_COMPILE_DIR"):
        return env["FACEGAN_COMPILE_DIR"]
    home = env.get(f"{engine.upper()}_HOME") or os.path.join(os.path.expanduser("~"), "tfx", engine)
    return os.path.join(home, pipeline_name)


def main_as_dsl_file() -> int:
    """What the TFX CLI (or `python pipeline/kubeflow_runner.py`) runs: compile for the CLI's
    engine (kubeflow when run directly) from the environment."""
    engine = tfx_cli_engine() or "kubeflow"
    name = os.environ.get("FACEGAN_PIPELINE_NAME", configs.PIPELINE_NAME)
    out = default_output_dir(engine, name)
    # Kubeflow: no file name, so the CLI's `pipeline create` uses (and deletes) a temporary package.
    extra = {"output_filename": None} if engine == "kubeflow" else {}
    print(compile_pipeline(engine, out, image=configs.PIPELINE_IMAGE, **extra))
    return 0


if __name__ == "__main__":
    sys.exit(main_as_dsl_file())
