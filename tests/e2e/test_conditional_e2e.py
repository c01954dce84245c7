"""Conditional smoke run on real CelebA faces with 2 attributes (issue 11): the real ingestion
(`--labels` = CelebA's table read in place) at 32x32, `smoke_conditional` training, export as the
conditional kind."""
import os

import numpy as np
import pytest

from tests.testlib.conditional import CONDITIONAL_TINY, celeba_rows, link_faces


@pytest.mark.e2e
def test_conditional_smoke_run_on_real_celeba(tmp_path, celeba_dir, celeba_attributes):
    from facegan import generator as contract
    from facegan.ingest import runner as R
    from facegan.ingest import options as O
    from facegan.trainer import data, train_lib
    from facegan.trainer.config import get_preset

    rows = dict(celeba_rows(celeba_attributes, 0, 48))
    src = link_faces(celeba_dir, tmp_path / "faces", sorted(rows))
    examples = str(tmp_path / "examples")
    summary = R.ingest(src, examples, O.IngestConfig(resolution=32, labels=str(celeba_attributes)),
                       runner="local")
    assert summary["unlabeled"] == 0 and summary["examples_written"] == 48
    assert summary["attributes"]["smiling"]["positive_rate"] == pytest.approx(
        np.mean([r["smiling"] for r in rows.values()]), abs=1e-6)

    cfg = get_preset("smoke_conditional", CONDITIONAL_TINY)
    files = data.resolve_files(examples)
    info = data.scan_attributes(files, ["male", "smiling"])
    train_rows = [rows[s] for s in _sources(files)]
    assert info["positive_rate"]["smiling"] == pytest.approx(np.mean([r["smiling"] for r in train_rows]))

    result = train_lib.train(cfg, examples, str(tmp_path / "run"), steps=4, progress=False)
    assert result.steps == 4 and all(np.isfinite(v) for v in result.metrics.values())
    assert os.path.exists(os.path.join(tmp_path, "run", "samples", "step_0000004.png"))
    g = contract.load_generator(train_lib.export(result, str(tmp_path / "export")))
    assert g.kind == "conditional" and g.attributes == ["male", "smiling"]
    smiling = g.sample(4, seed=1, attributes={"smiling": 1})
    neutral = g.sample(4, seed=1, attributes={"smiling": 0})
    assert smiling.shape == (4, 32, 32, 3) and not np.array_equal(smiling, neutral)


def _sources(files):
    import tensorflow as tf
    out = []
    for rec in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        ex = tf.train.Example.FromString(rec.numpy())
        out.append(os.path.basename(ex.features.feature["source"].bytes_list.value[0].decode()))
    return out
