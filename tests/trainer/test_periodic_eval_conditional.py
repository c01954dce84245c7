"""Issue 11: metrics during training score a conditional run with attribute_control too
(trainer/periodic_eval.py + metrics/attributes.py), written to metrics.jsonl and TensorBoard (read
back with TensorBoard's own reader), and equal to the evaluator's number on the export."""
import json
import os

import numpy as np
import pytest

from facegan.trainer.config import get_preset
from tests.testlib.conditional import CONDITIONAL_TINY
from tests.testlib.examples import write_synthetic_examples

EVAL = {"eval.every_images": 16, "eval.metrics": "swd", "eval.num_images": 32, "eval.batch_size": 16,
        "eval.memorization": 0, "eval.extractor": "random_tiny", "eval.best_metric": "swd",
        "condition.classifier_steps": 20}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from facegan.trainer import train_lib
    root = tmp_path_factory.mktemp("condeval")
    data = write_synthetic_examples(str(root / "examples"), n_train=32, n_eval=32, resolution=32,
                                                attributes=("male", "smiling"))
    cfg = get_preset("smoke_conditional", {**CONDITIONAL_TINY, **EVAL})
    result = train_lib.train(cfg, data, str(root / "run"), steps=4, progress=False)   # 32 images: 2 evaluations
    export = train_lib.export(result, str(root / "export"))
    return data, str(root / "run"), export


def _records(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def test_attribute_control_is_recorded_and_written_to_tensorboard(run):
    import tensorflow as tf
    from tensorboard.backend.event_processing import event_accumulator
    _, run_dir, _ = run
    recs = _records(run_dir)
    assert [r["step"] for r in recs] == [2, 4]
    for r in recs:
        assert 0.0 <= r["headline"]["attribute_control"] <= 1.0 and "swd" in r["headline"]
        assert r["scalars"]["attribute_control32/all_as_requested"] <= r["headline"]["attribute_control"] + 1e-9
        assert r["real_excluded_synthetic"] == 0
    ea = event_accumulator.EventAccumulator(os.path.join(run_dir, "logs"), size_guidance={"tensors": 0})
    ea.Reload()
    series = {e.step: float(tf.make_ndarray(e.tensor_proto)) for e in ea.Tensors("eval/attribute_control")}
    assert series == pytest.approx({r["step"]: r["headline"]["attribute_control"] for r in recs})
    detail = {e.step for e in ea.Tensors("eval_detail/attribute_control32/per_attribute/male/present")}
    assert detail == {2, 4}


def test_training_time_control_equals_the_evaluators_on_the_export(run):
    """The last evaluation scores the exported weights with the evaluator's requests, latents and
    (cached) classifier: the evaluator's path on the SavedModel gives the same number."""
    from facegan.generator import load_generator
    from facegan.metrics.attributes import evaluate_attribute_control
    data, run_dir, export = run
    got = evaluate_attribute_control(load_generator(export), data, num=32, seed=0, batch_size=16,
                                     cache_dir=os.path.join(run_dir, "eval_cache"), steps=20)
    assert got["attribute_control32"]["classifier_cache"] == "hit"
    last = _records(run_dir)[-1]
    assert got["attribute_control32"]["control"] == pytest.approx(last["headline"]["attribute_control"], abs=1e-12)
    np.testing.assert_allclose(got["attribute_control32"]["all_as_requested"],
                               last["scalars"]["attribute_control32/all_as_requested"])
