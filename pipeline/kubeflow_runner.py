"""Compile the facegan pipeline for Kubeflow Pipelines (v1, kfp 1.8) and for KFP v2 / Vertex AI.

With the TFX CLI against a cluster:

    tfx pipeline create --engine kubeflow --pipeline_path pipeline/kubeflow_runner.py --endpoint URL
    tfx run create --engine kubeflow --pipeline_name facegan --endpoint URL

The CLI executes this file as a script; settings come from the environment (below) and the
defaults in configs.py. Every step runs in the pipeline image (Dockerfile, FACEGAN_PIPELINE_IMAGE);
the Trainer step requests and is limited to FACEGAN_TRAINER_GPUS GPUs (nvidia.com/gpu) plus CPU
and memory, tolerates GPU-node taints, and its MirroredStrategy uses every GPU of its node;
ingestion runs on the Beam runner FACEGAN_BEAM_RUNNER (direct | dataflow | flink | spark).

    FACEGAN_PIPELINE_ROOT   gs://bucket/facegan/root      (pipeline artifacts)
    FACEGAN_DATA_ROOT       gs://bucket/faces             (input images)
    FACEGAN_SERVING_DIR     gs://bucket/facegan/serving   (Pusher: <dir>/<model>/<version>/)
    FACEGAN_PRESET, FACEGAN_TRAIN_STEPS, FACEGAN_RESOLUTION
    FACEGAN_BEAM_RUNNER, FACEGAN_GCP_PROJECT, FACEGAN_GCP_REGION, FACEGAN_BEAM_TEMP,
    FACEGAN_FLINK_MASTER, FACEGAN_SPARK_MASTER, FACEGAN_SPARK_JOB_ENDPOINT

`python pipeline/kubeflow_runner.py --v2 [--out DIR]` compiles the KFP v2 PipelineJob JSON instead
(submit it with Vertex AI Pipelines' `aiplatform.PipelineJob(template_path=...)` or a KFP v2 UI).
"""
import os
import sys

if __name__ == "__main__":
    # The TFX CLI puts this file's directory first on sys.path, where `pipeline.py` would shadow
    # the `pipeline` package; import from the repository root instead.
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
    sys.path.insert(0, os.path.dirname(_here))

from typing import Any, Callable, Dict, List, Optional  # noqa: E402

from facegan.pipeline import configs  # noqa: E402

V1_FILENAME = "facegan_kubeflow.yaml"
V2_FILENAME = "facegan_pipeline.json"
TRAINER_ID = "Trainer"


def settings_from_env(env=None) -> Dict[str, Any]:
    """create_pipeline arguments for a cluster run, from FACEGAN_* variables (see module doc)."""
    env = os.environ if env is None else env
    root = env.get("FACEGAN_PIPELINE_ROOT", "gs://my-bucket/facegan/root")
    runner = env.get("FACEGAN_BEAM_RUNNER", "direct")
    beam = configs.beam_args(
        runner, project=env.get("FACEGAN_GCP_PROJECT"), region=env.get("FACEGAN_GCP_REGION"),
        temp_location=env.get("FACEGAN_BEAM_TEMP"), flink_master=env.get("FACEGAN_FLINK_MASTER"),
        spark_master=env.get("FACEGAN_SPARK_MASTER"),
        job_endpoint=env.get("FACEGAN_SPARK_JOB_ENDPOINT"),
        image=env.get("FACEGAN_PIPELINE_IMAGE", configs.PIPELINE_IMAGE))
    res = env.get("FACEGAN_RESOLUTION")
    return dict(
        pipeline_name=env.get("FACEGAN_PIPELINE_NAME", configs.PIPELINE_NAME),
        pipeline_root=root,
        data_root=env.get("FACEGAN_DATA_ROOT", "gs://my-bucket/faces"),
        serving_dir=env.get("FACEGAN_SERVING_DIR", "gs://my-bucket/facegan/serving"),
        preset=env.get("FACEGAN_PRESET", configs.PRESET),
        train_steps=int(env.get("FACEGAN_TRAIN_STEPS", configs.TRAIN_STEPS)),
        resolution=int(res) if res else None,
        log_dir=env.get("FACEGAN_LOG_DIR", os.path.join(root, "tensorboard")),
        beam_pipeline_args=beam,
    )


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


def compile_v1(output_dir: str, *, image: str = configs.PIPELINE_IMAGE,
               output_filename: Optional[str] = V1_FILENAME, gpus: int = configs.TRAINER_GPUS,
               **pipeline_kwargs) -> str:
    """Compile to an Argo workflow for Kubeflow Pipelines 1.8; returns the file's path.

    output_filename None lets the runner (or the TFX CLI, which patches it) choose the name.
    """
    from tfx.orchestration.kubeflow import kubeflow_dag_runner as kdr

    from facegan.pipeline.pipeline import create_pipeline

    kwargs = settings_from_env()
    kwargs.update(pipeline_kwargs)
    config = kdr.KubeflowDagRunnerConfig(
        kubeflow_metadata_config=kdr.get_default_kubeflow_metadata_config(),
        tfx_image=image,
        pipeline_operator_funcs=kdr.get_default_pipeline_operator_funcs() + [gpu_operator(gpus=gpus)])
    p = create_pipeline(**kwargs)
    os.makedirs(output_dir, exist_ok=True)
    kdr.KubeflowDagRunner(config=config, output_dir=output_dir,
                          output_filename=output_filename).run(p)
    return os.path.join(output_dir, output_filename or
                        kdr.get_default_output_filename(p.pipeline_info.pipeline_name))


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


def compile_v2(output_dir: str, *, image: str = configs.PIPELINE_IMAGE,
               output_filename: str = V2_FILENAME, gpus: int = configs.TRAINER_GPUS,
               **pipeline_kwargs) -> str:
    """Compile to a KFP v2 PipelineJob JSON (Vertex AI Pipelines); returns the file's path."""
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner as v2

    from facegan.pipeline.pipeline import create_pipeline

    kwargs = settings_from_env()
    kwargs.update(pipeline_kwargs)
    kwargs.setdefault("trainer_platform_config", vertex_trainer_resources(gpus=gpus))
    p = create_pipeline(**kwargs)
    runner = v2.KubeflowV2DagRunner(config=v2.KubeflowV2DagRunnerConfig(default_image=image),
                                    output_dir=output_dir, output_filename=output_filename)
    runner.run(p, write_out=True)
    return os.path.join(output_dir, output_filename)


def main(argv: Optional[List[str]] = None) -> int:
    import argparse
    parser = argparse.ArgumentParser(description="compile the facegan pipeline for Kubeflow")
    parser.add_argument("--v2", action="store_true", help="compile the KFP v2 / Vertex JSON")
    parser.add_argument("--out", default=os.getcwd(), help="output directory")
    parser.add_argument("--image", default=configs.PIPELINE_IMAGE)
    a = parser.parse_args(argv)
    if a.v2:
        path = compile_v2(a.out, image=a.image)
    else:  # no explicit file name: under `tfx pipeline create` the CLI chooses it
        path = compile_v1(a.out, image=a.image, output_filename=None if not argv else V1_FILENAME)
    print(path)
    return 0


if __name__ == "__main__":
    # `tfx pipeline create/compile` runs this with no arguments; its patched KubeflowDagRunner.run
    # picks the output location.
    sys.exit(main(sys.argv[1:]))
