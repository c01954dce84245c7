"""JSON for TF Serving's REST API at array speed (TensorFlow-free; the server and the REST client).

`loads` parses with orjson where it is installed (it comes with Apache Beam) and falls back to the
standard parser for what orjson refuses or reads differently but Python's JSON accepts (NaN /
Infinity literals, integers beyond 64 bits), so the accepted bodies and their values are the
standard parser's. `dumps` writes
numpy arrays straight from their buffers (orjson's OPT_SERIALIZE_NUMPY) instead of building one
Python object per value; anything else numpy goes through `.tolist()`.

`numeric_array` turns a parsed JSON value into an array of a numeric dtype with whole-array
checks (one `np.asarray`, then the dtype kind and min/max), the way TF Serving's JSON parser
decides: no coercion (an integer input takes JSON integers only, within range; a float input any
number; a bool input booleans). It returns None when the fast check cannot decide, and the
caller then checks value by value (that slower path produces the error message).
"""
from __future__ import annotations

import json
import re
from typing import Optional

import numpy as np

try:
    import orjson
except ImportError:  # pragma: no cover - orjson is in the pinned stack; the standard parser still works
    orjson = None


def _default(o):
    if isinstance(o, (np.ndarray, np.generic)):
        return o.tolist()
    raise TypeError(f"{type(o).__name__} is not JSON serializable")


# orjson reads an integer beyond 64 bits as a float; the standard parser keeps it exact (and the
# server then names it "outside int64's range" instead of calling it a number).
_LONG_INTEGER = re.compile(rb"\d{20,}")


def loads(data: bytes):
    """Parse a JSON document (bytes); json.JSONDecodeError when it is not JSON."""
    if orjson is not None and not _LONG_INTEGER.search(data):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass   # NaN/Infinity literals, integers beyond 64 bits: let the standard parser decide
    return json.loads(data)


def exact(arr: np.ndarray) -> np.ndarray:
    """float16/32 arrays as float64 (exact), so the shortest text of each value is the float64
    one: parsed back as a double and cast down, it gives the same float32 bits (the shortest
    float32 text need not survive that double rounding)."""
    return arr.astype(np.float64) if arr.dtype.kind == "f" and arr.dtype.itemsize < 8 else arr


def _prepare(obj):
    if isinstance(obj, dict):
        return {k: _prepare(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):   # only lists of containers are walked (not lists of numbers)
        return [_prepare(v) for v in obj] if obj and isinstance(obj[0], (dict, list, tuple, np.ndarray)) else obj
    if isinstance(obj, np.ndarray):
        return exact(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    return obj


def dumps(obj) -> bytes:
    """JSON bytes of `obj`; numpy arrays and scalars are written as (nested) lists / numbers
    (float32 through float64: see `exact`)."""
    obj = _prepare(obj)
    if orjson is not None:
        return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY, default=_default)
    return json.dumps(obj, default=_default).encode("utf-8")


def may_hold_booleans(raw: bytes) -> bool:
    """Whether a JSON text can contain a boolean literal (numpy would silently read it as 0/1)."""
    return b"true" in raw or b"false" in raw


def numeric_array(value, np_dtype) -> Optional[np.ndarray]:
    """`value` as an array of np_dtype if the whole array is of the right JSON kind, else None.

    Must only be called when `value` holds no JSON booleans unless np_dtype is bool (see
    may_hold_booleans): np.asarray reads [1, true] as [1, 1]."""
    np_dtype = np.dtype(np_dtype)
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError, OverflowError):   # ragged lists, mixed objects
        return None
    kind = arr.dtype.kind
    if np_dtype.kind == "b":
        return arr if kind == "b" else None
    if np_dtype.kind in "iu":
        if kind not in "iu":
            return None
        info = np.iinfo(np_dtype)
        if arr.size and (arr.min() < info.min or arr.max() > info.max):
            return None
        return arr.astype(np_dtype, copy=False)
    if np_dtype.kind == "f":
        if kind not in "iuf":
            return None
        with np.errstate(over="ignore"):   # beyond float32's range is inf, as a float cast gives
            return arr.astype(np_dtype, copy=False)
    return None

