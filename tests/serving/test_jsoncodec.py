"""serving/jsoncodec.py: large integer arrays read straight from the text (the same values and
shapes the JSON parser gives, or the parser's own answer), and the garbage collector held off
while a large document is parsed."""
import gc
import json
import threading

import numpy as np
import pytest

from facegan.serving import jsoncodec


def _same(got, ref) -> bool:
    """`got` (arrays where the fast path read them) holds what the parser's `ref` holds."""
    if isinstance(got, np.ndarray):
        return isinstance(ref, list) and np.asarray(ref).shape == got.shape and \
            np.asarray(ref).dtype.kind == "i" and np.array_equal(np.asarray(ref), got)
    if isinstance(got, dict):
        return isinstance(ref, dict) and got.keys() == ref.keys() and all(_same(got[k], ref[k]) for k in got)
    if isinstance(got, list):
        return isinstance(ref, list) and len(got) == len(ref) and all(_same(a, b) for a, b in zip(got, ref))
    return type(got) is type(ref) and got == ref


def _images(shape=(16, 24, 24, 3), low=0, high=256, seed=0):
    return np.random.default_rng(seed).integers(low, high, shape)


def test_a_large_integer_array_comes_back_as_an_array_with_its_values():
    images = _images(low=-300, high=300)
    doc = jsoncodec.dumps({"outputs": {"images": images, "png": ["a", "b"]}, "model_spec": {"version": 3}})
    assert len(doc) >= jsoncodec.ARRAY_MIN_BYTES
    got = jsoncodec.loads(doc, arrays=True)
    assert isinstance(got["outputs"]["images"], np.ndarray) and got["outputs"]["images"].dtype == np.int64
    np.testing.assert_array_equal(got["outputs"]["images"], images)
    assert got["outputs"]["png"] == ["a", "b"] and got["model_spec"] == {"version": 3}
    assert _same(got, json.loads(doc))
    # rows format, the whole body's value one array; and the default stays lists
    rows = jsoncodec.dumps({"instances": images})
    np.testing.assert_array_equal(jsoncodec.loads(rows, arrays=True)["instances"], images)
    assert isinstance(jsoncodec.loads(doc)["outputs"]["images"], list)


def _big(inner: str) -> str:
    """A document whose one large array holds `inner` somewhere in its middle."""
    values = ",".join(["[1,2,3]"] * 3000)
    return '{"x":[' + values + "," + inner + "," + values + '],"y":"s"}'


@pytest.mark.parametrize("inner", [
    "[1,2,3]",                      # regular: the fast path
    "[1,2]",                        # ragged
    "[1,2,[3]]",                    # a list where a value should be
    "[1,2,3,4]",
    "[]",                           # empty list
    "[01,2,3]",                     # leading zero (not JSON)
    "[-0,2,3]",                     # JSON, but not the shortest text of 0
    "[1,-2,-3]",
    "[1,--2,3]", "[1,2-,3]", "[1,2-3,4]", "[-,2,3]", "[1,,3]",
    "[1.5,2,3]", "[1e5,2,3]",       # floats: the parser's
    "[1, 2,3]",                     # whitespace: the parser's
    "[99999999999999999,2,3]",      # 10**17 - 1: still read from the text
    "[100000000000000000,2,3]",     # 10**17: the parser's (no rounding near int64's edge)
    "[9223372036854775807,2,3]", "[9223372036854775808,2,3]", "[123456789012345678901234,2,3]",
    "[true,2,3]", "[null,2,3]", '["1",2,3]',
])
def test_whatever_the_text_the_values_are_the_parsers(inner):
    doc = _big(inner).encode()
    try:
        ref = json.loads(doc)
    except json.JSONDecodeError:
        with pytest.raises(json.JSONDecodeError):
            jsoncodec.loads(doc, arrays=True)
        return
    got = jsoncodec.loads(doc, arrays=True)
    assert _same(got, ref)
    assert isinstance(got["x"], np.ndarray) == (inner in ("[1,2,3]", "[1,-2,-3]", "[99999999999999999,2,3]"))


@pytest.mark.parametrize("doc", [
    '{"s":"[' + ",".join(["1"] * 9000) + ']"}',                      # an array's text inside a string
    '{"s":"a\\"b","x":[' + ",".join(["1"] * 9000) + "]}",           # escapes: quotes do not say
    '{"x":[' + ",".join(["1"] * 9000) + "]",                       # not JSON: unclosed object
    '{"x":[' + ",".join(["1"] * 9000) + "]]}",                      # not JSON: extra bracket
    "[" + ",".join(["1"] * 9000) + "],[1]",                        # not JSON: two values
])
def test_strings_escapes_and_broken_documents_are_the_parsers(doc):
    _read_as_the_parser_does(doc)


def _read_as_the_parser_does(text):
    """jsoncodec.loads(text, arrays=True) equals json.loads(text), or raises where it raises;
    returns the value read (None for a document the parser refuses)."""
    try:
        ref = json.loads(text)
    except json.JSONDecodeError:
        with pytest.raises(json.JSONDecodeError):
            jsoncodec.loads(text.encode(), arrays=True)
        return None
    got = jsoncodec.loads(text.encode(), arrays=True)
    assert _same(got, ref), text[:200]
    return got


def test_random_edits_never_change_what_is_read():
    """Edits anywhere in a response-like document: the value read, or the error, is the parser's."""
    rng = np.random.default_rng(3)
    text = jsoncodec.dumps({"outputs": {"images": _images((8, 16, 16, 3), -20, 300, 1), "png": ["x"]}}).decode()
    edits = ["[]", ",,", "-", "--", "01", "-0", "1.5", "1e5", " ", "true", "[", "]", "0", "[1]", '"', "{}"]
    fast = 0
    for _ in range(300):
        t = text
        for _ in range(int(rng.integers(1, 3))):
            pos, e = int(rng.integers(0, len(t))), edits[int(rng.integers(len(edits)))]
            t = t[:pos] + e + t[pos + (len(e) if rng.random() < 0.5 else 0):]
        got = _read_as_the_parser_does(t)
        if got is None:
            continue
        fast += any(isinstance(v, np.ndarray) for v in (got.get("outputs") or {}).values()) \
            if isinstance(got, dict) and isinstance(got.get("outputs"), dict) else 0
    assert fast >= 1     # some edits left the array regular (e.g. a digit changed)


def test_gc_paused_holds_off_the_collector_until_the_last_holder_leaves():
    assert gc.isenabled()
    entered, release = threading.Event(), threading.Event()

    def other():
        with jsoncodec.gc_paused():
            entered.set()
            release.wait(10)

    with jsoncodec.gc_paused():
        assert not gc.isenabled()
        t = threading.Thread(target=other)
        t.start()
        assert entered.wait(10)
    assert not gc.isenabled()          # the other thread still parses
    release.set()
    t.join(10)
    assert gc.isenabled()
    gc.disable()                       # a caller that turned it off keeps it off
    try:
        with jsoncodec.gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
