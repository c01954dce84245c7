"""Attribute labels for ingestion: CelebA's attribute table (or its Kaggle CSV), a JSON table,
matched to input files by name; label names follow the conditioning rule (facegan/conditioning.py)."""
import json
import os
from typing import Dict, List, Optional, Tuple

from facegan.conditioning import normalize_name
from facegan.ingest.archives import ARCHIVE_SEP
from facegan.ingest.options import IngestError


# ---------------------------------------------------------------------------------------------
# Labels

_FILE_KEYS = ("file", "filename", "file_name", "image", "image_id", "path", "name")


def parse_celeba_attrs(path: str) -> Tuple[List[str], Dict[str, Dict[str, int]]]:
    """CelebA `list_attr_celeba.txt` -> (attribute names, {file name: {name: 0/1}}).

    Format: line 1 the image count, line 2 the attribute names, then `file v1 v2 ...` with
    values -1/1 (0 accepted as 0). The Kaggle CSV variant (`image_id,5_o_Clock_Shadow,...`
    header, no count line) is accepted too. Errors name the file and line.
    """
    with open(path, "r", encoding="utf-8") as f:
        lines = [ln.rstrip("\n\r") for ln in f]
    lines = [ln for ln in lines if ln.strip()]
    is_csv = path.lower().endswith(".csv") or (lines and "," in lines[0])
    split = (lambda s: [t.strip() for t in s.split(",")]) if is_csv else (lambda s: s.split())
    if not lines:
        raise IngestError(f"labels {path}: empty file")
    start, declared = 0, None
    first = split(lines[0])
    if len(first) == 1 and first[0].isdigit():
        declared, start = int(first[0]), 1
    if start >= len(lines):
        raise IngestError(f"labels {path}: no header line of attribute names")
    header = split(lines[start])
    rows = lines[start + 1:]
    if header and header[0].lower() in _FILE_KEYS:   # Kaggle CSV: header names the file column
        header = header[1:]
    names = [normalize_name(h) for h in header]
    if not names:
        raise IngestError(f"labels {path}: header line {start + 1} names no attributes")
    table = {}
    for i, ln in enumerate(rows, start=start + 2):
        parts = split(ln)
        if len(parts) != len(names) + 1:
            raise IngestError(f"labels {path} line {i}: expected a file name and {len(names)} "
                              f"values, got {len(parts)} fields")
        try:
            vals = [int(v) for v in parts[1:]]
        except ValueError:
            raise IngestError(f"labels {path} line {i}: values must be -1, 0 or 1: {ln[:80]!r}") from None
        if any(v not in (-1, 0, 1) for v in vals):
            raise IngestError(f"labels {path} line {i}: values must be -1, 0 or 1: {ln[:80]!r}")
        table[parts[0]] = {n: int(v == 1) for n, v in zip(names, vals)}
    if declared is not None and declared != len(table):
        raise IngestError(f"labels {path}: line 1 declares {declared} images but {len(table)} rows follow")
    return names, table


def _flatten_json_attrs(obj: Dict, prefix: str = "") -> Dict[str, object]:
    out = {}
    for k, v in obj.items():
        name = normalize_name(prefix + "_" + str(k) if prefix else k)
        if isinstance(v, dict):
            out.update(_flatten_json_attrs(v, name))
        elif v is None:
            continue
        elif isinstance(v, bool):
            out[name] = int(v)
        elif isinstance(v, (int, float, str)):
            out[name] = v
        elif isinstance(v, list):
            out[name] = ",".join(str(x) for x in v)
        else:
            out[name] = str(v)
    return out


def load_json_attrs(path: str) -> Dict[str, Dict[str, object]]:
    """Per-image JSON attributes (Curto & Zarza style) -> {image key: {attr: value}}.

    `path` is a directory of `<image stem>.json` files (searched recursively), or one JSON file
    holding either {"<image file>": {attrs}} or [{"file": "<image file>", attrs...}, ...].
    Attribute names are normalised (`Hair Colour` -> `hair_color`); nested objects flatten with
    '_' (`facial_hair: {beard: true}` -> `facial_hair_beard`). Values: bool -> 0/1, int, float,
    string; then each attribute gets one type over the whole set (int < float < string), so
    every example carries the same feature type (TFX statistics and schemas need that).
    """
    raw: Dict[str, Dict] = {}

    def load(p):
        try:
            with open(p, "r", encoding="utf-8") as f:
                return json.load(f)
        except (OSError, ValueError) as e:
            raise IngestError(f"labels: cannot read JSON {p}: {e}") from e

    if os.path.isdir(path):
        for root, _, names in os.walk(path):
            for n in sorted(names):
                if n.lower().endswith(".json"):
                    obj = load(os.path.join(root, n))
                    if not isinstance(obj, dict):
                        raise IngestError(f"labels: {os.path.join(root, n)} must hold a JSON object")
                    raw[os.path.splitext(n)[0]] = obj.get("attributes", obj) \
                        if isinstance(obj.get("attributes"), dict) else obj
    else:
        obj = load(path)
        if isinstance(obj, dict):
            raw = {k: v for k, v in obj.items()}
        elif isinstance(obj, list):
            for i, rec in enumerate(obj):
                key = next((rec[k] for k in _FILE_KEYS if isinstance(rec, dict) and k in rec), None)
                if key is None:
                    raise IngestError(f"labels {path}: record {i} names no image "
                                      f"(one of {', '.join(_FILE_KEYS)})")
                raw[str(key)] = {k: v for k, v in rec.items() if k not in _FILE_KEYS}
        for k, v in raw.items():
            if not isinstance(v, dict):
                raise IngestError(f"labels {path}: entry {k!r} must be a JSON object of attributes")
    table = {k: _flatten_json_attrs(v) for k, v in raw.items()}
    # one type per attribute over the set
    rank = {int: 0, float: 1, str: 2}
    kind: Dict[str, int] = {}
    for attrs in table.values():
        for n, v in attrs.items():
            kind[n] = max(kind.get(n, 0), rank[type(v)] if type(v) in rank else 2)
    conv = {0: int, 1: float, 2: str}
    return {k: {n: conv[kind[n]](v) for n, v in attrs.items()} for k, attrs in table.items()}


class LabelTable:
    """Labels for image sources, looked up by file name (`000001.jpg`) then stem (`000001`)."""

    def __init__(self, table: Dict[str, Dict[str, object]], kind: str, path: str = ""):
        self.kind, self.path = kind, path
        self._by_name = dict(table)
        self._by_stem = {os.path.splitext(os.path.basename(k))[0]: v for k, v in table.items()}

    def __len__(self):
        return len(self._by_name)

    def lookup(self, source: str) -> Optional[Dict[str, object]]:
        base = source.rsplit(ARCHIVE_SEP, 1)[-1].replace("\\", "/").rsplit("/", 1)[-1]
        hit = self._by_name.get(base)
        if hit is None:
            hit = self._by_stem.get(os.path.splitext(base)[0])
        return hit


def load_labels(path: Optional[str]) -> Optional[LabelTable]:
    """A CelebA table (.txt/.csv) or JSON attributes (a .json file or a directory of them)."""
    if not path:
        return None
    if not os.path.exists(path):
        raise IngestError(f"labels: {path} does not exist")
    if os.path.isdir(path) or path.lower().endswith(".json"):
        return LabelTable(load_json_attrs(path), "json", path)
    return LabelTable(parse_celeba_attrs(path)[1], "celeba", path)
