"""GanEvaluator inside a real LocalDagRunner pipeline (SQLite MLMD) with the standard Pusher.

Run 1 imports a good generator (blobs like the synthetic data): blessed, pushed. Run 2 imports a
constant-output generator: the resolver hands run 1's model over as the baseline, the evaluator
refuses the candidate, and the Pusher does not push it. Checked in the serving directory, in the
artifacts' files and in ML Metadata.
"""
import json
import os

import numpy as np
import pytest

pytestmark = pytest.mark.e2e

RES = 32
THRESHOLDS = {"swd": {"max_noise_fraction": 0.8}, "ms_ssim": {"max_above_real": 0.2}}


def _build(name, root, examples_dir, model_dir, serving):
    from tfx import v1 as tfx
    from tfx.proto import pusher_pb2

    from facegan.components.gan_evaluator.component import GanEvaluator

    examples = tfx.dsl.Importer(source_uri=examples_dir, artifact_type=tfx.types.standard_artifacts.Examples,
                                properties={"split_names": '["train", "eval"]'}).with_id("examples_importer")
    model = tfx.dsl.Importer(source_uri=model_dir,
                             artifact_type=tfx.types.standard_artifacts.Model).with_id("model_importer")
    baseline = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id("latest_blessed_model_resolver")
    evaluator = GanEvaluator(examples=examples.outputs["result"], model=model.outputs["result"],
                             baseline_model=baseline.outputs["model"], metrics=["swd", "ms_ssim"],
                             num_images=48, thresholds=THRESHOLDS, min_improvement={"swd": 0.0},
                             extractor="random_tiny", batch_size=32,
                             log_dir=os.path.join(root, "tb"))
    pusher = tfx.components.Pusher(
        model=model.outputs["result"], model_blessing=evaluator.outputs["blessing"],
        push_destination=pusher_pb2.PushDestination(
            filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=serving)))
    return tfx.dsl.Pipeline(
        pipeline_name=name, pipeline_root=os.path.join(root, "pipeline"),
        components=[examples, model, baseline, evaluator, pusher], enable_cache=True,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            os.path.join(root, "metadata.sqlite")))


def _artifacts(metadata_path, type_name):
    import ml_metadata as mlmd
    from ml_metadata.proto import metadata_store_pb2
    cfg = metadata_store_pb2.ConnectionConfig()
    cfg.sqlite.filename_uri = metadata_path
    store = mlmd.MetadataStore(cfg)
    return sorted(store.get_artifacts_by_type(type_name), key=lambda a: a.id)


def _prop(artifact, key):
    v = artifact.custom_properties[key]
    return getattr(v, v.WhichOneof("value"))


def test_component_blesses_good_refuses_constant_and_pusher_obeys(tmp_path):
    from tfx import v1 as tfx

    from tests.testlib.evaluator import export_test_generator
    from tests.testlib.examples import write_synthetic_examples
    from facegan.trainer.export import load_generator

    examples = write_synthetic_examples(str(tmp_path / "examples"), n_train=24, n_eval=32, resolution=RES)
    good = tmp_path / "models" / "good"
    bad = tmp_path / "models" / "constant"
    export_test_generator("blob", str(good / "Format-Serving"), resolution=RES)
    export_test_generator("constant", str(bad / "Format-Serving"), resolution=RES)
    serving = str(tmp_path / "serving" / "faces")
    root = str(tmp_path / "run")
    db = os.path.join(root, "metadata.sqlite")

    # Run 1: the good generator, no baseline yet.
    tfx.orchestration.LocalDagRunner().run(_build("evaltest", root, examples, str(good), serving))
    versions = os.listdir(serving)
    assert len(versions) == 1 and versions[0].isdigit()
    pushed = load_generator(os.path.join(serving, versions[0]))
    original = load_generator(str(good / "Format-Serving"))
    np.testing.assert_array_equal(pushed.sample(4, seed=5), original.sample(4, seed=5))

    blessings = _artifacts(db, "ModelBlessing")
    assert len(blessings) == 1 and _prop(blessings[0], "blessed") == 1
    assert os.path.exists(os.path.join(blessings[0].uri, "BLESSED"))
    models = _artifacts(db, "Model")
    good_id = [m.id for m in models if m.uri == str(good)][0]
    assert _prop(blessings[0], "current_model_id") == good_id
    assert "baseline_model_id" not in blessings[0].custom_properties
    evaluations = _artifacts(db, "ModelEvaluation")
    ev_dir = evaluations[0].uri
    assert {"metrics.json", "decision.json", "sample_grid.png", "memorization.png"} <= set(os.listdir(ev_dir))
    report = json.loads(open(os.path.join(ev_dir, "metrics.json")).read())
    assert _prop(evaluations[0], "swd48__avg") == pytest.approx(report["results"]["swd48"]["avg"])
    decision = json.loads(open(os.path.join(ev_dir, "decision.json")).read())
    assert any("no baseline" in r["reason"] for r in decision["rules"])

    # Run 2: the constant generator; the baseline is run 1's blessed model.
    tfx.orchestration.LocalDagRunner().run(_build("evaltest", root, examples, str(bad), serving))
    assert os.listdir(serving) == versions                 # nothing new pushed
    blessings = _artifacts(db, "ModelBlessing")
    assert len(blessings) == 2
    refused = blessings[-1]
    assert _prop(refused, "blessed") == 0
    assert os.path.exists(os.path.join(refused.uri, "NOT_BLESSED"))
    assert not os.path.exists(os.path.join(refused.uri, "BLESSED"))
    assert _prop(refused, "baseline_model_id") == good_id
    bad_id = [m.id for m in _artifacts(db, "Model") if m.uri == str(bad)][0]
    assert _prop(refused, "current_model_id") == bad_id
    reasons = json.loads(open(os.path.join(refused.uri, "decision.json")).read())
    failed = reasons["failed"]
    assert any("between_std" in f for f in failed) and "swd beats baseline by >= 0" in failed
    pushes = _artifacts(db, "PushedModel")
    assert [_prop(p, "pushed") for p in pushes] == [1, 0]
    # TensorBoard got both evaluations.
    assert os.listdir(os.path.join(root, "tb", "evaluation"))


def test_component_validates_metrics_and_rules_at_pipeline_construction():
    from tfx import v1 as tfx
    from tfx.types import standard_component_specs

    from facegan.components.gan_evaluator import component as C
    examples = tfx.dsl.Channel(type=tfx.types.standard_artifacts.Examples)
    model = tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model)
    for kw, needle in (
            (dict(thresholds={"fid": {"maximum": 1}}, metrics="fid"),
             "GanEvaluator: thresholds.fid: unknown rule 'maximum'; choose from max, max_noise_fraction, min"),
            (dict(metrics="swd,fdi"), "GanEvaluator: metrics: unknown metric 'fdi'"),
            (dict(thresholds={"fid": {"max": 1}}), "GanEvaluator: thresholds/min_improvement name metric(s) fid"),
            (dict(min_improvement={"ms_ssim": 0.1}), "GanEvaluator: min_improvement: 'ms_ssim' has no better")):
        with pytest.raises(ValueError) as e:
            C.GanEvaluator(examples=examples, model=model, **kw)
        assert needle in str(e.value)
    ok = C.GanEvaluator(examples=examples, model=model, metrics=["swd", "fid:downscale=64"],
                        thresholds={"fid:downscale=64": {"max": 40}}, min_improvement={"swd": "5%"})
    assert ok.exec_properties["metrics"] == "swd,fid:downscale=64"
    assert json.loads(ok.exec_properties["thresholds"])["fid:downscale=64"] == {"max": 40.0}
    assert json.loads(ok.exec_properties["min_improvement"]) == {"swd": "5%"}
    assert C.EXAMPLES_KEY == standard_component_specs.EXAMPLES_KEY and "examples" in ok.inputs
