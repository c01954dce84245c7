"""JSON-safe copies of result dicts (numpy scalars/arrays -> Python numbers/lists) and the one
atomic JSON writer; TF-free at import.

One definition for everything that writes results as JSON: the evaluator's metrics.json /
decision.json (facegan/metrics/evaluation.py), the trainer's metrics.jsonl
(trainer/periodic_eval.py), run folders' config.json and run records (trainer/train_lib.py,
trainer/runs.py) and the quality study's files (bench/quality_study/).
"""
from __future__ import annotations

import json
import math
import os

import numpy as np


def jsonable(obj, nan_as_null: bool = False):
    """`obj` with dict keys as str, tuples as lists, numpy values as Python ones.

    nan_as_null: non-finite floats (NaN, ±inf) become None (JSON null), for files read by strict
    JSON parsers line by line (metrics.jsonl); otherwise they stay floats, which `json.dump`
    writes as `NaN`/`Infinity` (Python's json reads them back).
    """
    if isinstance(obj, dict):
        return {str(k): jsonable(v, nan_as_null) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v, nan_as_null) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist(), nan_as_null)
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return None if nan_as_null and not math.isfinite(v) else v
    return obj


def write_json_atomic(path: str, obj) -> None:
    """Write `obj` as indented, key-sorted JSON (one trailing newline) by rename, so a reader never
    sees half a file; the temp name carries the pid (multi-worker starts may race). Remote paths
    (`gs://...`) go through tf.io.gfile, imported only then."""
    text = json.dumps(obj, indent=2, sort_keys=True) + "\n"
    tmp = f"{path}.tmp{os.getpid()}"
    if "://" in path:
        import tensorflow as tf
        with tf.io.gfile.GFile(tmp, "w") as f:
            f.write(text)
        tf.io.gfile.rename(tmp, path, overwrite=True)
        return
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
