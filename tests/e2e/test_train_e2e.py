"""The standard TFX Trainer running trainer.run_fn.run_fn inside a LocalDagRunner pipeline.

A synthetic Examples artifact is registered with TFX's Importer (SQLite MLMD); the Trainer trains
for TrainArgs.num_steps, writes checkpoints/logs to its ModelRun artifact and exports the
generator SavedModel (serving signatures) to its Model artifact.
"""
import os

import pytest

from tests.testlib.examples import write_synthetic_examples


@pytest.mark.e2e
def test_tfx_trainer_runs_run_fn_in_local_dag_runner(tmp_path):
    import tensorflow as tf
    from tfx import v1 as tfx
    from tfx.types import standard_artifacts

    examples = write_synthetic_examples(str(tmp_path / "examples"), n_train=32, n_eval=8,
                                                    resolution=32)
    importer = tfx.dsl.Importer(source_uri=examples, artifact_type=standard_artifacts.Examples,
                                properties={"split_names": '["train", "eval"]'}).with_id("import_examples")
    overrides = {"optim.batch_size": 8, "network.filters": 8, "network.z_dim": 16,
                 "run.checkpoint_every": 2, "run.log_every": 1, "run.image_every": 2}
    trainer = tfx.components.Trainer(
        run_fn="facegan.trainer.run_fn.run_fn",
        examples=importer.outputs["result"],
        train_args=tfx.proto.TrainArgs(num_steps=3),
        eval_args=tfx.proto.EvalArgs(num_steps=0),
        custom_config={"preset": "smoke", "overrides": overrides})
    root = str(tmp_path / "pipeline_root")
    metadata_path = str(tmp_path / "metadata.sqlite")
    pipeline = tfx.dsl.Pipeline(
        pipeline_name="facegan_trainer_e2e", pipeline_root=root, components=[importer, trainer],
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path))
    tfx.orchestration.LocalDagRunner().run(pipeline)

    # Read the outputs back through MLMD, as a downstream component would.
    from ml_metadata.metadata_store import metadata_store
    store = metadata_store.MetadataStore(
        tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path))
    by_type = {t: store.get_artifacts_by_type(t) for t in ("Model", "ModelRun")}
    assert len(by_type["Model"]) == 1 and len(by_type["ModelRun"]) == 1
    model_uri = by_type["Model"][0].uri
    run_uri = by_type["ModelRun"][0].uri
    serving = os.path.join(model_uri, "Format-Serving")
    assert os.path.exists(os.path.join(serving, "saved_model.pb"))
    assert os.path.exists(os.path.join(run_uri, "checkpoints", "ckpt-3.index"))
    assert os.path.exists(os.path.join(run_uri, "config.json"))
    assert os.path.exists(os.path.join(run_uri, "samples", "step_0000003.png"))
    loaded = tf.saved_model.load(serving)
    images = loaded.signatures["serving_default"](z=tf.zeros([2, 16]))["images"]
    assert images.dtype == tf.uint8 and images.shape == (2, 32, 32, 3)
