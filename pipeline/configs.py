"""Pipeline defaults, in one place (no TFX import: the CLI, the demo and tests read these cheaply).

Everything here is a default for an argument of `pipeline.pipeline.create_pipeline` or of a
runner; nothing is read as a global by the pipeline itself.
"""
import os
from typing import Dict, List, Optional, Sequence, Tuple

PIPELINE_NAME = "facegan"
MODEL_NAME = "facegan"                       # serving name: <serving dir>/<MODEL_NAME>/<version>/
# A real run by default (`facegan demo` keeps its own tiny `smoke` settings, pipeline/demo.py):
# the `dcgan` preset (Radford et al. 2016: batch 128) at its own 64x64, which is also the
# resolution ImageExampleGen ingests at (the pipeline derives it from the trainer config), for
# 20,000 steps = 2.56 M images shown (20x the quality study's 128 kimg budget per row).
# FACEGAN_PRESET / FACEGAN_TRAIN_STEPS / FACEGAN_RESOLUTION (kubeflow_runner.py) or
# --preset / --steps / --resolution change them.
PRESET = "dcgan"
TRAIN_STEPS = 20_000

# Metrics. FID, KID and IS are only meaningful from an Inception network with trained weights, so
# they are computed only when the extractor is one (`inception`: Keras' ImageNet weights, looked up
# or downloaded where the evaluator runs; or a path to .h5 weights / the 2015 FID graph .pb).
# Without one the metrics need no weights: SWD, MS-SSIM and the face-detection rate, and asking for
# FID/KID/IS is refused (`check_metrics`), so no blessing ever gates on a random network's "FID".
# The default extractor `random_tiny` (a small random convnet) only draws the memorization sheet's
# feature-space neighbours (labelled as such, pixel-space neighbours beside them).
METRICS = ("swd", "ms_ssim", "face_detection")
METRICS_WITH_INCEPTION = METRICS + ("fid",)
EXTRACTOR = "random_tiny"
NUM_EVAL_IMAGES = 1000
# - degenerate: samples must differ from each other and not be flat (constant generators fail);
# - swd <= 0.9 x the SWD that uniform noise images score against the same real images;
# - ms_ssim of sample pairs <= that of real pairs + 0.15 (mode collapse makes samples alike).
# (pipeline/demo.py records what a briefly trained smoke model and bad generators score.)
THRESHOLDS: Dict = {
    "degenerate": {"min_between_std": 2.0, "min_within_std": 2.0},
    "swd": {"max_noise_fraction": 0.9},
    "ms_ssim": {"max_above_real": 0.15},
}
MIN_IMPROVEMENT: Dict = {}

# Ingestion options passed through to ImageExampleGen (see components/image_example_gen).
INGEST_OPTIONS: Dict = {"mirror": True, "eval_fraction": 0.1}

# Beam: the embedded default runs the DirectRunner with one worker process per core.
LOCAL_BEAM_ARGS: List[str] = ["--direct_running_mode=multi_processing", "--direct_num_workers=0"]

# The pipeline image (see Dockerfile); the Kubeflow runners reference it. The default and the
# cluster buckets below are placeholders: compiling with them warns (kubeflow_runner.py).
PLACEHOLDER_IMAGE = "gcr.io/my-project/facegan-pipeline:0.1.0"
PLACEHOLDER_BUCKET = "gs://my-bucket"
PIPELINE_IMAGE = os.environ.get("FACEGAN_PIPELINE_IMAGE", PLACEHOLDER_IMAGE)

# GPUs for the Trainer step on Kubeflow (MirroredStrategy uses every GPU of its node).
TRAINER_GPUS = int(os.environ.get("FACEGAN_TRAINER_GPUS", "1"))
TRAINER_GPU_TYPE = os.environ.get("FACEGAN_TRAINER_GPU_TYPE", "NVIDIA_TESLA_T4")   # Vertex name
TRAINER_CPU = os.environ.get("FACEGAN_TRAINER_CPU", "8")
TRAINER_MEMORY = os.environ.get("FACEGAN_TRAINER_MEMORY", "32Gi")

INCEPTION_HELP = ("pass --extractor inception (Keras' ImageNet InceptionV3 weights, downloaded where the "
                  "evaluator runs, or FACEGAN_INCEPTION_WEIGHTS there) or --extractor with a path to "
                  "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5 or the 2015 FID graph "
                  "classify_image_graph_def.pb (e.g. gs://BUCKET/...; FACEGAN_EXTRACTOR for the TFX CLI)")


def has_inception_weights(extractor: Optional[str]) -> bool:
    """True for an Inception extractor with trained weights: `inception` or a .h5 / .pb path
    (the registry's `comparable` extractors); False for `random`, `random_tiny` and None."""
    if not extractor:
        return False
    if extractor in ("inception", "inception2015"):
        return True
    return os.path.splitext(str(extractor))[1].lower() in (".h5", ".pb")


def default_metrics(extractor: Optional[str]) -> Tuple[str, ...]:
    """SWD, MS-SSIM and the face-detection rate; plus FID with an Inception extractor with weights."""
    return METRICS_WITH_INCEPTION if has_inception_weights(extractor) else METRICS


def check_metrics(metrics: Sequence[str], extractor: Optional[str]) -> List[str]:
    """`metrics` validated against the metric registry (ValueError naming an unknown one), refusing
    Inception metrics (FID, KID, IS) without an Inception extractor with weights: their numbers from
    a random network compare with nothing, and a blessing must not gate on them."""
    from facegan.metrics.registry import validate_metric_names
    names = [m for m in metrics if m]
    requests = validate_metric_names(",".join(names)) if names else []
    needs = [r.label for r in requests if r.spec.needs in ("features", "logits")]
    if needs and not has_inception_weights(extractor):
        raise ValueError(f"metrics {', '.join(needs)} need an Inception network with trained weights, "
                         f"but the extractor is {extractor!r}: {INCEPTION_HELP}; or leave them out "
                         f"(without weights the metrics are {', '.join(METRICS)})")
    return names


# FACEGAN_* variable -> beam_args keyword (the one place the environment reaches Beam's args).
BEAM_ENV = {"FACEGAN_GCP_PROJECT": "project", "FACEGAN_GCP_REGION": "region",
            "FACEGAN_BEAM_TEMP": "temp_location", "FACEGAN_FLINK_MASTER": "flink_master",
            "FACEGAN_SPARK_MASTER": "spark_master", "FACEGAN_SPARK_JOB_ENDPOINT": "job_endpoint",
            "FACEGAN_PIPELINE_IMAGE": "image"}


def beam_args_from_env(runner: Optional[str] = None, env=None) -> List[str]:
    """beam_args for `runner` (default FACEGAN_BEAM_RUNNER, else direct) from the FACEGAN_*
    variables in BEAM_ENV."""
    env = os.environ if env is None else env
    runner = runner or env.get("FACEGAN_BEAM_RUNNER", "direct")
    return beam_args(runner, **{kw: env[var] for var, kw in BEAM_ENV.items() if env.get(var)})


def beam_args(runner: str = "direct", *, project: Optional[str] = None, region: Optional[str] = None,
              temp_location: Optional[str] = None, flink_master: Optional[str] = None,
              spark_master: Optional[str] = None, job_endpoint: Optional[str] = None,
              image: str = PIPELINE_IMAGE, workers: int = 0) -> List[str]:
    """Beam pipeline args for ingestion on the chosen runner (ValueError naming what is missing)."""
    runner = runner.lower()
    if runner == "direct":
        return ["--direct_running_mode=multi_processing", f"--direct_num_workers={int(workers)}"]
    if runner == "dataflow":
        missing = [n for n, v in (("project", project), ("region", region),
                                  ("temp_location", temp_location)) if not v]
        if missing:
            raise ValueError(f"beam runner dataflow needs {', '.join(missing)}")
        args = ["--runner=DataflowRunner", f"--project={project}", f"--region={region}",
                f"--temp_location={temp_location}", f"--sdk_container_image={image}",
                "--experiments=use_runner_v2"]
        return args + ([f"--max_num_workers={int(workers)}"] if workers else [])
    if runner == "flink":
        if not flink_master:
            raise ValueError("beam runner flink needs flink_master (host:port of the JobManager)")
        return ["--runner=FlinkRunner", f"--flink_master={flink_master}",
                "--environment_type=DOCKER", f"--environment_config={image}"] + \
               ([f"--parallelism={int(workers)}"] if workers else [])
    if runner == "spark":
        if job_endpoint:   # a Spark job server (portable runner)
            return ["--runner=PortableRunner", f"--job_endpoint={job_endpoint}",
                    "--environment_type=DOCKER", f"--environment_config={image}"]
        if not spark_master:
            raise ValueError("beam runner spark needs spark_master (spark://host:7077) or job_endpoint")
        return ["--runner=SparkRunner", f"--spark_master_url={spark_master}",
                "--environment_type=DOCKER", f"--environment_config={image}"]
    raise ValueError(f"unknown beam runner {runner!r}; choose direct, dataflow, flink or spark")


def check_training(preset: str, train_steps: int, resolution: Optional[int] = None,
                   overrides: Optional[Dict] = None) -> int:
    """Validate a run's preset, steps and resolution before anything is built (no TensorFlow or
    TFX import); returns the training resolution (the preset's unless `resolution` says otherwise),
    which is also the resolution the pipeline ingests at. ValueError naming what is wrong."""
    from facegan.trainer.config import get_preset
    if int(train_steps) < 1:
        raise ValueError(f"train steps must be >= 1, got {train_steps}")
    ov = dict(overrides or {})
    if resolution is not None:
        ov["network.resolution"] = int(resolution)
    return get_preset(preset, ov).network.resolution     # ConfigError (a ValueError) names the field

