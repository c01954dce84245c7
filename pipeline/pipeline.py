"""The facegan TFX pipeline: ImageExampleGen -> Trainer -> GanEvaluator -> Pusher.

    face images --ImageExampleGen (Beam)--> Examples
      Examples --Trainer (standard, run_fn=trainer.run_fn.run_fn)--> Model (generator SavedModel)
      latest blessed Model --Resolver (LatestBlessedModelStrategy)--> baseline
      Examples + Model + baseline --GanEvaluator--> evaluation (metrics, grid), ModelBlessing
      Model + ModelBlessing --Pusher (standard)--> <serving dir>/<model name>/<version>/

`create_pipeline` takes every setting as a typed argument (defaults in configs.py) and builds a
`tfx.dsl.Pipeline` that any runner executes: local_runner.py (LocalDagRunner, SQLite MLMD, Beam
DirectRunner) or kubeflow_runner.py (Kubeflow Pipelines v1 and v2/Vertex).

TensorBoard: the Trainer (custom_config["log_dir"]) and the GanEvaluator (`<log_dir>/evaluation`)
write into the same `log_dir`, so one `tensorboard --logdir <log_dir>` shows a run's curves, the
evaluation scalars and sample grids. TFX caching is on by default: a component whose inputs and
parameters are unchanged is not re-run (the log dir is a parameter, so runners that pick a fresh
log dir per run re-run Trainer and evaluator but keep the ingested Examples).
"""
import inspect
import os
from typing import Any, Dict, List, Optional, Sequence

from tfx import v1 as tfx
from tfx.proto import pusher_pb2, trainer_pb2

from facegan.components.gan_evaluator.component import GanEvaluator
from facegan.pipeline import configs

RUN_FN = "facegan.trainer.run_fn.run_fn"
RESOLVER_ID = "latest_blessed_model_resolver"


def _check_ingest_options(component_cls, options: Dict[str, Any]) -> None:
    params = inspect.signature(component_cls.__init__).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(set(options) - set(params))
    if unknown:
        raise ValueError(f"ingest_options: ImageExampleGen has no parameter(s) {', '.join(unknown)}; "
                         f"it takes {', '.join(p for p in params if p != 'self')}")


def trainer_config(preset: str, overrides: Optional[Dict[str, Any]], resolution: Optional[int]) -> Dict[str, Any]:
    """Validated preset + dotted overrides (resolution folded in as network.resolution)."""
    from facegan.trainer.config import get_preset
    from facegan.trainer.registry import architecture, import_by_name, stage_resolutions
    ov = dict(overrides or {})
    if resolution is not None:
        ov["network.resolution"] = int(resolution)
    cfg = get_preset(preset, ov)      # raises ConfigError naming the field
    net = cfg.network
    # Progressive growing reads each stage's stored lower resolution (PGGAN's 2x2 box pyramid).
    extra = list(stage_resolutions(net)[:-1])
    # image-to-image models that train on pairs (pix2pix) need ingestion's `paired` option
    pairs = getattr(import_by_name(architecture(net.architecture).model), "input_kind", "images") == "pairs"
    return {"overrides": ov, "resolution": net.resolution, "extra_resolutions": extra, "needs_pairs": pairs}


def create_pipeline(*, pipeline_name: str, pipeline_root: str, data_root: str, serving_dir: str,
                    metadata_path: Optional[str] = None, metadata_connection_config=None,
                    preset: str = configs.PRESET, train_steps: int = configs.TRAIN_STEPS,
                    resolution: Optional[int] = None, overrides: Optional[Dict[str, Any]] = None,
                    metrics: Sequence[str] = configs.METRICS,
                    num_eval_images: int = configs.NUM_EVAL_IMAGES,
                    thresholds: Optional[Dict[str, Any]] = None,
                    min_improvement: Optional[Dict[str, Any]] = None,
                    extractor: str = configs.EXTRACTOR,
                    beam_pipeline_args: Optional[List[str]] = None,
                    log_dir: Optional[str] = None, enable_cache: bool = True,
                    model_name: str = configs.MODEL_NAME,
                    ingest_options: Optional[Dict[str, Any]] = None,
                    trainer_platform_config=None,
                    metrics_cache_dir: Optional[str] = None) -> tfx.dsl.Pipeline:
    """Build the facegan pipeline. See the module docstring for the graph.

    `thresholds` None means configs.THRESHOLDS; pass {} for only the built-in degenerate check.
    `log_dir` None means `<pipeline_root>/tensorboard`. `trainer_platform_config` is a Vertex
    ResourceSpec (used by the KFP v2 compile for GPUs); local runs leave it None.
    """
    from facegan.components.image_example_gen.component import ImageExampleGen

    if not pipeline_name:
        raise ValueError("pipeline_name must be non-empty")
    if int(train_steps) < 1:
        raise ValueError(f"train_steps must be >= 1, got {train_steps}")
    tc = trainer_config(preset, overrides, resolution)
    res = tc["resolution"]
    log_dir = log_dir or os.path.join(pipeline_root, "tensorboard")
    thresholds = configs.THRESHOLDS if thresholds is None else thresholds

    ingest = dict(configs.INGEST_OPTIONS if ingest_options is None else ingest_options)
    if tc["extra_resolutions"] and "extra_resolutions" not in ingest:
        ingest["extra_resolutions"] = tc["extra_resolutions"]
    _check_ingest_options(ImageExampleGen, ingest)
    if tc["needs_pairs"] and not ingest.get("paired"):
        raise ValueError(f"preset {preset!r} trains on image-to-image pairs: pass ingest_options "
                         "{'paired': SPEC} (e.g. 'lowres:factor=4'; see facegan/ingest/paired.py)")
    example_gen = ImageExampleGen(input_base=data_root, resolution=res, **ingest)

    trainer = tfx.components.Trainer(
        run_fn=RUN_FN,
        examples=example_gen.outputs["examples"],
        train_args=trainer_pb2.TrainArgs(num_steps=int(train_steps)),
        eval_args=trainer_pb2.EvalArgs(num_steps=0),
        custom_config={"preset": preset, "overrides": tc["overrides"], "log_dir": log_dir})
    if trainer_platform_config is not None:
        trainer.with_platform_config(trainer_platform_config)

    baseline = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id(RESOLVER_ID)

    evaluator = GanEvaluator(
        examples=example_gen.outputs["examples"], model=trainer.outputs["model"],
        baseline_model=baseline.outputs["model"], metrics=list(metrics),
        num_images=int(num_eval_images), thresholds=thresholds,
        min_improvement=min_improvement or None, extractor=extractor, log_dir=log_dir,
        cache_dir=metrics_cache_dir)

    pusher = tfx.components.Pusher(
        model=trainer.outputs["model"], model_blessing=evaluator.outputs["blessing"],
        push_destination=pusher_pb2.PushDestination(
            filesystem=pusher_pb2.PushDestination.Filesystem(
                base_directory=os.path.join(serving_dir, model_name))))

    if metadata_connection_config is None and metadata_path:
        metadata_connection_config = tfx.orchestration.metadata.sqlite_metadata_connection_config(
            metadata_path)
    return tfx.dsl.Pipeline(
        pipeline_name=pipeline_name, pipeline_root=pipeline_root,
        components=[example_gen, trainer, baseline, evaluator, pusher],
        enable_cache=enable_cache, metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(configs.LOCAL_BEAM_ARGS if beam_pipeline_args is None
                                else beam_pipeline_args))
