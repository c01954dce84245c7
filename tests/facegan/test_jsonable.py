"""facegan.jsonable: numpy values to JSON, NaN as null only when asked."""
import subprocess
import sys

import numpy as np
import pytest

from facegan import cli, images, schema



def test_jsonable_converts_numpy_and_writes_nan_as_null_only_when_asked():
    import json
    import math
    from facegan.jsonable import jsonable
    obj = {1: np.float32(0.5), "a": (np.int64(3), np.array([1.0, np.nan])), "nan": float("nan"),
           "inf": np.float64(-np.inf), "ok": np.bool_(True), "s": "x"}
    kept = jsonable(obj)   # the evaluator's metrics.json: NaN stays a float (json writes NaN)
    assert kept["1"] == 0.5 and type(kept["1"]) is float and kept["a"][0] == 3 and type(kept["a"][0]) is int
    assert math.isnan(kept["a"][1][1]) and math.isnan(kept["nan"]) and kept["inf"] == -math.inf
    assert kept["ok"] is True and kept["s"] == "x"
    assert "NaN" in json.dumps(kept)
    strict = jsonable(obj, nan_as_null=True)   # metrics.jsonl: strict JSON, NaN/inf as null
    assert strict["a"] == [3, [1.0, None]] and strict["nan"] is None and strict["inf"] is None
    assert strict["1"] == 0.5
    assert json.loads(json.dumps(strict, allow_nan=False)) == strict
