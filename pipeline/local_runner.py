"""Run the facegan pipeline locally: LocalDagRunner, SQLite ML Metadata, Beam DirectRunner.

The embedded default: every component runs in this process (Beam ingestion fans out to one
DirectRunner worker process per core, `--direct_running_mode=multi_processing`). Each run gets
its own TensorBoard directory `<out>/tensorboard/<run id>` unless one is given.

Its command line is `facegan pipeline run` (pipeline/cli.py); `facegan demo` calls `run_local`.
"""
import datetime
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from facegan.pipeline import configs


@dataclass
class LocalLayout:
    """Where a local pipeline keeps things, all under one output directory."""
    out: str

    @property
    def pipeline_root(self) -> str:
        return os.path.join(self.out, "pipeline")

    @property
    def metadata_path(self) -> str:
        return os.path.join(self.out, "metadata.sqlite")

    @property
    def serving_dir(self) -> str:
        return os.path.join(self.out, "serving")

    @property
    def tensorboard_root(self) -> str:
        return os.path.join(self.out, "tensorboard")


def new_run_id() -> str:
    return datetime.datetime.now().strftime("run-%Y%m%d-%H%M%S")


@dataclass
class RunResult:
    run_id: str
    log_dir: str
    layout: LocalLayout
    model_name: str
    outputs: Dict[str, Any] = field(default_factory=dict)


def run_local(*, data_root: str, out: str, pipeline_name: str = configs.PIPELINE_NAME,
              model_name: str = configs.MODEL_NAME, log_dir: Optional[str] = None,
              beam_pipeline_args: Optional[List[str]] = None, **pipeline_kwargs) -> RunResult:
    """Build and run the pipeline with LocalDagRunner; return where its outputs are."""
    from tfx import v1 as tfx

    from facegan.pipeline.pipeline import create_pipeline

    layout = LocalLayout(os.path.abspath(out))
    run_id = new_run_id()
    log_dir = log_dir or os.path.join(layout.tensorboard_root, run_id)
    os.makedirs(layout.out, exist_ok=True)
    p = create_pipeline(pipeline_name=pipeline_name, pipeline_root=layout.pipeline_root,
                        data_root=os.path.abspath(data_root), serving_dir=layout.serving_dir,
                        metadata_path=layout.metadata_path, log_dir=log_dir, model_name=model_name,
                        beam_pipeline_args=(configs.LOCAL_BEAM_ARGS if beam_pipeline_args is None
                                            else beam_pipeline_args),
                        **pipeline_kwargs)
    tfx.orchestration.LocalDagRunner().run(p)
    return RunResult(run_id=run_id, log_dir=log_dir, layout=layout, model_name=model_name,
                     outputs=pipeline_outputs(layout.metadata_path, pipeline_name))


def decision_rules(outputs: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The blessing rules (each {"passed", "reason", ...}) of the newest evaluation, [] if none."""
    import json

    uri = outputs.get("ModelEvaluation", {}).get("uri")
    try:
        with open(os.path.join(uri, "decision.json")) as f:
            return list(json.load(f).get("rules", []))
    except (OSError, TypeError, ValueError):
        return []


def pipeline_outputs(metadata_path: str, pipeline_name: str) -> Dict[str, Any]:
    """The newest artifact of each kind this pipeline produced, read back from ML Metadata.

    {"Examples": {...}, "Model": {...}, "ModelEvaluation": {...}, "ModelBlessing": {...},
     "PushedModel": {...}} with each entry {"id", "uri", "properties": {custom properties}}.
    """
    import ml_metadata as mlmd
    from ml_metadata.proto import metadata_store_pb2

    cfg = metadata_store_pb2.ConnectionConfig()
    cfg.sqlite.filename_uri = metadata_path
    cfg.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    store = mlmd.MetadataStore(cfg)
    ctx = store.get_context_by_type_and_name("pipeline", pipeline_name)
    if ctx is None:
        return {}
    types = {t.id: t.name for t in store.get_artifact_types()}
    newest: Dict[str, Any] = {}
    for a in store.get_artifacts_by_context(ctx.id):
        kind = types.get(a.type_id, str(a.type_id))
        if kind in newest and newest[kind]["id"] > a.id:
            continue
        props = {}
        for k, v in a.custom_properties.items():
            which = v.WhichOneof("value")
            props[k] = getattr(v, which) if which else None
        newest[kind] = {"id": a.id, "uri": a.uri, "properties": props}
    return newest
