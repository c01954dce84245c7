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

`gc_paused` holds off Python's cyclic garbage collector while a large JSON document is parsed and
turned into arrays. Parsing an image batch builds tens of thousands of short-lived lists (16 x 64 x
64 x 3 uint8 values are 66 K lists); they trigger collections of the whole heap, which in a
process that imported TensorFlow (the server; most clients) is hundreds of thousands of objects:
measured on the 64 px DCGAN's 16-image answer, 600-900 ms of a ~90 ms parse on most requests.
The lists hold no cycles (refcounting frees them), so nothing is lost by not collecting then.
"""
from __future__ import annotations

import contextlib
import gc
import json
import os
import re
import threading
from typing import Optional

import numpy as np

try:
    import orjson
except ImportError:  # pragma: no cover - orjson is in the pinned stack; the standard parser still works
    orjson = None


_gc_lock = threading.Lock()
_gc_holders = 0
_gc_was_enabled = False


@contextlib.contextmanager
def gc_paused():
    """No cyclic garbage collection inside (module docstring); re-entrant and thread-safe: the
    collector is enabled again (if it was) when the last of overlapping holders leaves."""
    global _gc_holders, _gc_was_enabled
    with _gc_lock:
        if _gc_holders == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_holders += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_holders -= 1
            if _gc_holders == 0 and _gc_was_enabled:
                gc.enable()


def _default(o):
    if isinstance(o, (np.ndarray, np.generic)):
        return o.tolist()
    raise TypeError(f"{type(o).__name__} is not JSON serializable")


# orjson reads an integer beyond 64 bits as a float; the standard parser keeps it exact (and the
# server then names it "outside int64's range" instead of calling it a number).
_LONG_INTEGER = re.compile(rb"\d{20,}")


def loads(data: bytes, arrays: bool = False):
    """Parse a JSON document (bytes); json.JSONDecodeError when it is not JSON.

    arrays=True: large integer arrays (nested lists of at least `ARRAY_MIN_BYTES` of text, every
    value at the same depth, regular) come back as int64 numpy arrays instead of lists of lists
    (see `_integer_arrays`); everything else, and every document that is not JSON, exactly as
    with arrays=False."""
    if arrays and len(data) >= ARRAY_MIN_BYTES:
        found = _integer_arrays(data)
        if found:
            return found
    return _loads(data)


def _loads(data: bytes):
    if orjson is not None and not _LONG_INTEGER.search(data):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass   # NaN/Infinity literals, integers beyond 64 bits: let the standard parser decide
    return json.loads(data)


# -- integer arrays straight from the text ------------------------------------------------------
# An image batch in JSON is one nested list of small integers (16 x 128 x 128 x 3 uint8: 3.3 MB of
# text, 786 K values in 262 K lists). Parsed into lists and then turned into an array it costs
# ~0.7 s on a loaded 2-core machine; read as text by numpy it costs ~60 ms. The fast path takes
# only what it can prove is a regular JSON integer array, and leaves the rest (floats, ragged or
# empty lists, whitespace, documents with string escapes, anything doubtful) to the parser.
ARRAY_MIN_BYTES = 1 << 14
_INT_RUN = re.compile(rb"[\[\]0-9,\-]{%d,}" % ARRAY_MIN_BYTES)
_INT_LIMIT = 10 ** 17
_POWERS_OF_10 = np.array([10 ** i for i in range(1, 18)], dtype=np.int64)
_BRACKETS_TO_SPACES = bytes.maketrans(b"[]", b"  ")


def _integer_arrays(data: bytes):
    """The document with its large integer arrays as numpy arrays, or None (nothing to gain, or
    not provably the same as the parser's answer: the caller then parses the usual way)."""
    if b"\\" in data:        # without escapes, quotes alone say what is inside a string
        return None
    pieces, arrays, pos = [], {}, 0
    tag = "\x00facegan-array-" + os.urandom(6).hex() + "-"
    for m in _INT_RUN.finditer(data):
        start, end = data.find(b"[", m.start(), m.end()), data.rfind(b"]", m.start(), m.end()) + 1
        if start < 0 or end - start < ARRAY_MIN_BYTES or data.count(b'"', 0, start) % 2:
            continue
        arr = _integer_array(data[start:end])
        if arr is None:
            continue
        key = f"{tag}{len(arrays)}"
        arrays[key] = arr
        pieces += [data[pos:start], b'"\\u0000' + key[1:].encode() + b'"']
        pos = end
    if not arrays:
        return None
    pieces.append(data[pos:])
    try:
        doc = _loads(b"".join(pieces))
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        return None             # the rest is not JSON: the parser names the problem
    return _put_back(doc, arrays)


def _put_back(obj, arrays: dict):
    if isinstance(obj, str):
        return arrays.get(obj, obj)
    if isinstance(obj, dict):
        return {k: _put_back(v, arrays) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_put_back(v, arrays) for v in obj]
    return obj


def _integer_array(text: bytes):
    """The regular integer array that is all of `text` (JSON, no whitespace) as int64, or None.

    Proof it is what the parser would read: the text without its digits and minus signs must be
    exactly the brackets and commas of an array of the shape read from it (regular, no empty
    list, no missing value); numpy must read as many values as that shape holds; and the values'
    own shortest texts must have as many digits and minus signs as the text (no leading zeros, no
    "-0", no lone "-", nothing numpy skipped), every value below 10**17 in size (no rounding at
    int64's edge)."""
    if not text.endswith(b"]") or b"[]" in text:
        return None
    skeleton = text.translate(None, b"0123456789-")
    k = len(skeleton) - len(skeleton.lstrip(b"["))
    shape = []
    for level in range(k):          # children of the first list at each level
        span = skeleton[level:skeleton.find(b"]" * (k - level))]
        shape.append(span.count(b"]" * (k - level - 1) + b",") + 1)
    expect = b"[" + b"," * (shape[-1] - 1) + b"]"
    for n in reversed(shape[:-1]):
        expect = b"[" + b",".join([expect] * n) + b"]"
    if skeleton != expect:          # ragged, or a value missing or where a list should be
        return None
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            values = np.fromstring(text.translate(_BRACKETS_TO_SPACES), dtype=np.int64, sep=",")
        except ValueError:
            return None
    if values.size != int(np.prod(shape)):
        return None
    if values.size and (values.max() >= _INT_LIMIT or values.min() <= -_INT_LIMIT):
        return None
    minus = text.count(b"-")
    digits = np.searchsorted(_POWERS_OF_10, np.abs(values), side="right") + 1
    if minus != int(np.count_nonzero(values < 0)) or int(digits.sum()) != len(text) - len(skeleton) - minus:
        return None
    return values.reshape(shape)


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

