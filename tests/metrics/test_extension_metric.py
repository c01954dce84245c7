"""A metric that needs a generator's conditioning is one new module + one registration (issue 22,
item 3): a throwaway module written to tmp_path, registered, and run through BOTH `facegan
evaluate`'s library call (metrics.evaluation.evaluate_model on an exported conditional SavedModel)
and metrics during training (trainer/periodic_eval.py). Its value (the mean of the conditioning
vectors it was given) is checked against the requests the generator actually received."""
import json
import os

import numpy as np
import pytest

from facegan import examples_io
from tests.testlib.conditional import CONDITIONAL_TINY
from tests.testlib.examples import write_synthetic_examples

MODULE = '''
"""Throwaway metric: the mean of the conditioning vectors behind the generated images."""
import numpy as np

from facegan.metrics.base import Metric


class MeanConditioning(Metric):
    streaming = False

    def calc(self, G, data, num, opts):
        reqs = [r for _, r in G.generated_batches(num, opts.batch_size, opts.seed, with_requests=True)]
        per = np.concatenate(reqs).mean(axis=0)
        key = self.key(num)
        return {key: {"mean": float(per.mean()), "per_attribute": [float(v) for v in per]},
                "protocols": {key: {"metric": self.name, "request": self.name, "num_generated": int(num)}}}
'''
NAME = "mean_conditioning_x"
NUM = 24


@pytest.fixture
def registered(tmp_path, monkeypatch):
    from facegan.metrics import registry
    (tmp_path / "throwaway_metric.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "METRICS", dict(registry.METRICS))     # undone after the test
    monkeypatch.setattr(registry, "_IMPLS", {})
    registry.register_metric(registry.MetricSpec(
        NAME, "throwaway_metric:MeanConditioning", None, "mean", "images", frozenset({"min", "max"}), NUM,
        needs_real=False, cacheable=False, inputs=frozenset({"samples", "conditioning"})))
    return registry


def _recording(monkeypatch, cls):
    """Record the attribute rows every `generate` call of `cls` receives."""
    seen = []
    original = cls.generate

    def generate(self, z, *args, **kw):
        attrs = kw.get("attributes", args[-1] if args else None)
        if attrs is not None:
            seen.append(np.array(attrs, np.float32, copy=True))
        return original(self, z, *args, **kw)
    monkeypatch.setattr(cls, "generate", generate)
    return seen


def test_registered_metric_runs_through_the_evaluator(registered, tmp_path, monkeypatch):
    from facegan.generator import CONDITIONAL, export_generator
    from facegan.generator.load import ConditionalGenerator
    from facegan.metrics.evaluation import evaluate_model
    from tests.testlib.serving import tiny_conditional_generator
    data = write_synthetic_examples(str(tmp_path / "ex"), n_train=8, n_eval=8, resolution=16,
                                                attributes=("male", "smiling", "young"))
    model = export_generator(tiny_conditional_generator(8, 3, 16), str(tmp_path / "gen"), kind=CONDITIONAL,
                             attributes=["male", "smiling", "young"])
    seen = _recording(monkeypatch, ConditionalGenerator)
    ev = evaluate_model(model, data, str(tmp_path / "eval"), metrics=[NAME], num_images=NUM, batch_size=10,
                        seed=3, memorization=False, thresholds={NAME: {"min": 0.0}}, log=lambda *_: None)
    got = ev.results[f"{NAME}{NUM}"]
    received = np.concatenate(seen)[:NUM]       # the metric's calls come first (then grid, diversity)
    assert received.shape == (NUM, 3)
    np.testing.assert_allclose(got["per_attribute"], received.mean(axis=0), rtol=1e-6)
    assert got["mean"] == pytest.approx(float(received.mean()))
    assert 0.0 < got["mean"] < 1.0                # the requests vary (not all 0 or all 1)
    assert [r.passed for r in ev.decision.rules if r.rule.startswith(NAME)] == [True]
    assert json.load(open(ev.files["metrics"]))["results"][f"{NAME}{NUM}"]["mean"] == got["mean"]
    # an unconditional generator cannot provide it: one clear error before anything is generated
    from facegan.generator import UNCONDITIONAL
    from tests.testlib.serving import tiny_generator
    plain = export_generator(tiny_generator(8, 16), str(tmp_path / "plain"), kind=UNCONDITIONAL)
    with pytest.raises(ValueError, match=f"{NAME}: needs a generator that provides conditioning"):
        evaluate_model(plain, data, str(tmp_path / "eval2"), metrics=[NAME], num_images=NUM,
                       memorization=False, log=lambda *_: None)


def test_registered_metric_runs_during_training(registered, tmp_path, monkeypatch):
    from facegan.generator.stream import SampledGenerator
    from facegan.trainer import train_lib
    from facegan.trainer.config import get_preset
    data = write_synthetic_examples(str(tmp_path / "ex"), n_train=16, n_eval=16, resolution=32,
                                                attributes=("male", "smiling"))
    cfg = get_preset("smoke_conditional", {
        **CONDITIONAL_TINY, "eval.every_images": 16, "eval.metrics": NAME, "eval.num_images": NUM,
        "eval.batch_size": 8, "eval.seed": 5, "eval.memorization": 0, "eval.best_metric": "",
        "eval.extractor": "random_tiny", "condition.classifier_steps": 5})
    seen = _recording(monkeypatch, SampledGenerator)
    train_lib.train(cfg, data, str(tmp_path / "run"), steps=2, progress=False)
    with open(os.path.join(tmp_path / "run", "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f if line.strip()]
    assert [r["step"] for r in records] == [2]
    received = np.concatenate(seen)[:NUM]         # the first request of the evaluation is this metric
    assert received.shape == (NUM, 2)
    rec = records[0]
    assert rec["headline"][NAME] == pytest.approx(float(received.mean()))
    assert rec["scalars"][f"{NAME}{NUM}/mean"] == pytest.approx(float(received.mean()))
    assert rec["protocols"][f"{NAME}{NUM}"]["num_generated"] == NUM
    # attribute_control is still added to a conditional run (the registry's auto_when)
    assert "attribute_control" in rec["headline"]
