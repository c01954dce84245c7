"""Metrics during training under two replicas (a subprocess with two logical CPU devices)."""
import contextlib
import io
import json
import os
import re
import textwrap

import numpy as np
import pytest

from facegan import examples_io
from facegan.trainer.config import ConfigError, get_preset
from tests.testlib.train import replica_progan, run_replica_script
from tests.testlib.examples import write_synthetic_examples



# -- under a 2-replica MirroredStrategy ---------------------------------------------------------
REPLICA_BODY = textwrap.dedent("""
    recs = {}
    for n in (1, 2):
        strategy = tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(n)])
        r = train_lib.train(cfg, uri, f"{out}/r{n}", steps=2, progress=False, strategy=strategy)
        recs[n] = {"replicas": r.replicas,
                   "records": [json.loads(l) for l in open(f"{out}/r{n}/metrics.jsonl")]}
    print(json.dumps(recs))
""")


@pytest.mark.e2e
def test_eval_under_two_replicas(tmp_path):
    """The evaluation runs outside the replica step: with 2 replicas it scores what 1 does."""
    uri = write_synthetic_examples(str(tmp_path / "ex16"), n_train=16, n_eval=32, resolution=16)
    out = run_replica_script(REPLICA_BODY, replica_progan(
        16, **{"eval.every_images": 8, "eval.metrics": "swd,ms_ssim", "eval.num_images": 16,
               "eval.memorization": 0, "eval.best_metric": "swd"}), uri, str(tmp_path / "out"))
    assert [out[k]["replicas"] for k in ("1", "2")] == [1, 2]
    one, two = out["1"]["records"], out["2"]["records"]
    assert [r["step"] for r in one] == [r["step"] for r in two] == [1, 2]
    for a, b in zip(one, two):
        assert a["weights"] == b["weights"]
        for k in ("swd", "ms_ssim"):
            assert b["headline"][k] == pytest.approx(a["headline"][k], rel=1e-3), k
        assert a["best"] == b["best"]
