"""Run folders, TensorFlow-free: what a run was started with, which folder a command trains in,
which checkpoint an export takes, and the checks that refuse bad input before TensorFlow loads.

What a run folder records. `facegan train` writes `run.json` beside the trainer's `config.json`:
the config the command asked for (preset + `--config` + `--set` + `--resolution`, before the
trainer resolves `run.mixed_precision=auto` by hardware), the data path (absolute) and one
history entry per start (time, steps, the command line, and the fields a start changed with
`--continue-with-changes`). A later command into the same folder is compared with it field by
field (`differences`):

- `run.steps` never counts: the same command with a higher `--steps` continues to the new total.
- `CONTINUABLE` fields (evaluation cadence and metrics, logging/checkpoint cadence, learning
  rates and loss weights, batch size, the data path, the preset's name) may change only with
  `--continue-with-changes`: the checkpoint still loads, but the run is no longer the one it
  was, so the change is explicit and recorded in the history.
- Every other field (the architecture, resolution, widths, z size, loss family, optimizer,
  EMA, lens, conditioning, seed, precision) defines the run: it is refused with both flags, and
  the way forward is a new `--out`.

A folder trained before `run.json` existed (or by the TFX Trainer / `train_lib.train`) is
compared with its `config.json`.

Which folder a command trains in. Default `--out`: `runs/<preset>-<resolution>px-<hash>`, the
hash being the first 8 hex digits of the SHA-256 of the resolved config (without `run.steps`)
and the data path. The same command (also with more `--steps`) therefore lands in the same folder
and resumes, and two commands that differ in anything that would be refused land in different
folders and never collide. stylegan3 numbers its run folders (`00000-...`, `00001-...`, the next
free number at start): every start is a new run, so it cannot resume by repeating the command,
and a killed run is continued only by pointing `--resume` at a pickle. Here resuming is the
common case (`kill -9` and the same command continue exactly), so the folder is a function of
what is trained, not of when.

Checkpoints for `facegan export`: `last` is the newest checkpoint named in
`checkpoints/checkpoint`; `best` is the best evaluation in `metrics.jsonl` by `eval.best_metric`
(direction from the metric registry; a progressive run compares only its latest resolution) whose
checkpoint `best/` holds (trainer/periodic_eval.py keeps it); `N` is the checkpoint of step N in
either folder. Serving versions: `BASE/NAME/<N>/`, N one above the highest existing version
(TF Serving's layout; `facegan serve --model_base_path BASE/NAME` loads it).
"""
from __future__ import annotations

import datetime
import glob
import hashlib
import json
import math
import os
import re
import sys
from typing import Any, Dict, List, Optional, Tuple

from facegan.jsonable import write_json_atomic
from facegan import examples_io, schema
from facegan.trainer.config import without_other_models_defaults

RUN_FILE = "run.json"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
BEST_DIR = "best"
CHECKPOINT_DIR = "checkpoints"
DEFAULT_RUNS_DIR = "runs"
RECORD_FORMAT = 1

# Never part of a run's identity: the total to train to, and what the trainer writes about itself.
IGNORED = ("run.steps", "run.precision_reason", "notes")
# May change within a run with --continue-with-changes (see the module docstring); a trailing
# "." is a prefix.
CONTINUABLE = (
    "eval.", "preset", "data",
    "run.checkpoint_every", "run.keep_checkpoints", "run.log_every", "run.image_every",
    "run.max_nan_recoveries", "run.nan_lr_factor", "run.xla", "run.shuffle_buffer", "run.strategy",
    "optim.batch_size", "optim.g_learning_rate", "optim.d_learning_rate", "optim.beta1", "optim.beta2",
    "optim.epsilon", "optim.lr_decay_start",
    "loss.gp_weight", "loss.drift", "loss.r1_gamma", "loss.r1_interval", "loss.pl_interval",
    "loss.l1_weight", "loss.cycle_weight", "loss.identity_weight", "loss.lsgan_a", "loss.lsgan_b",
    "loss.lsgan_c", "loss.clip_value",
    "tricks.label_smoothing", "tricks.instance_noise", "tricks.instance_noise_steps",
    "tricks.feature_matching", "tricks.repelling", "tricks.temperature", "tricks.truncation_cutoff",
    "tricks.d_steps", "tricks.lens.learning_rate", "tricks.lens.anneal_steps",
    "tricks.augment.p", "tricks.augment.target", "tricks.augment.interval", "tricks.augment.speed_images",
    "condition.acgan_weight", "condition.classifier_steps",
    "data.synthetic_ratio",
)


class Refusal(ValueError):
    """Input refused before any work; the message is the one line the user sees."""


# -- small helpers ------------------------------------------------------------------------------
def is_remote(path: str) -> bool:
    return "://" in str(path)


def flatten(d: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1} (dicts that are values, e.g. network.batch_sizes, too)."""
    out: Dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v and k != "batch_sizes":
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def data_identity(data: Optional[str], synthetic: bool = False) -> str:
    """The data path as recorded: absolute for local paths, as given for URIs."""
    if synthetic:
        return "synthetic"
    if not data:
        return ""
    return data if is_remote(data) else os.path.abspath(data)


def _read_json(path: str):
    with open(path) as f:
        return json.load(f)


# -- identity and the default folder --------------------------------------------------------------
def identity(config: Dict[str, Any], data: str) -> Dict[str, Any]:
    """The fields that decide which run a command is: the flattened config without IGNORED, + data."""
    flat = {k: v for k, v in flatten(config).items() if k not in IGNORED}
    flat["data"] = data
    return flat


def short_hash(config: Dict[str, Any], data: str) -> str:
    blob = json.dumps(identity(config, data), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:8]


def default_out(config: Dict[str, Any], data: str, root: str = DEFAULT_RUNS_DIR) -> str:
    """runs/<preset>-<resolution>px-<hash of the resolved config and the data path>."""
    name = config.get("preset") or config["network"]["architecture"]
    return os.path.join(root, f"{name}-{int(config['network']['resolution'])}px-{short_hash(config, data)}")


def is_continuable(field: str) -> bool:
    return any(field == c or (c.endswith(".") and field.startswith(c)) for c in CONTINUABLE)


def _same(field: str, old, new, resolved_precision: Optional[str]) -> bool:
    if old == new:
        return True
    if isinstance(old, (int, float)) and isinstance(new, (int, float)) and not isinstance(old, bool) \
            and not isinstance(new, bool):
        return float(old) == float(new)
    # `auto` and the policy it resolved to in this run are the same request (a run's config.json
    # passed back with --config holds the resolved policy)
    if field == "run.mixed_precision" and resolved_precision and "auto" in (old, new):
        return resolved_precision in (old, new)
    return False


def differences(recorded: Dict[str, Any], requested: Dict[str, Any],
                resolved_precision: Optional[str] = None) -> Dict[str, Tuple[Any, Any]]:
    """{field: (recorded, requested)} for every identity field that differs. `recorded["data"]`
    of None (a folder without run.json) is not compared."""
    out = {}
    for k in sorted(set(recorded) | set(requested)):
        if k == "data" and recorded.get("data") is None:
            continue
        old, new = recorded.get(k), requested.get(k)
        if not _same(k, old, new, resolved_precision):
            out[k] = (old, new)
    return out


def _short(v) -> str:
    text = json.dumps(v, sort_keys=True) if not isinstance(v, str) else v
    return text if len(text) <= 40 else text[:37] + "..."


def describe_differences(diffs: Dict[str, Tuple[Any, Any]], limit: int = 4) -> str:
    items = [f"{k} {_short(a)} -> {_short(b)}" for k, (a, b) in diffs.items()]
    more = f" (and {len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


# -- what a folder holds ---------------------------------------------------------------------------
def latest_step(run_dir: str) -> Optional[int]:
    """The step of the newest checkpoint named in checkpoints/checkpoint (None: none)."""
    steps = checkpoint_steps(os.path.join(run_dir, CHECKPOINT_DIR), "ckpt")
    latest = _index_entries(os.path.join(run_dir, CHECKPOINT_DIR)).get("model_checkpoint_path")
    if latest:
        m = re.search(r"-(\d+)$", latest[0])
        if m:
            return int(m.group(1))
    return max(steps) if steps else None


def _index_entries(ckpt_dir: str) -> Dict[str, List[str]]:
    """The text-proto `checkpoint` index of a CheckpointManager folder: {key: [values]}."""
    path = os.path.join(ckpt_dir, "checkpoint")
    out: Dict[str, List[str]] = {}
    if is_remote(ckpt_dir) or not os.path.isfile(path):
        return out
    with open(path) as f:
        for line in f:
            m = re.match(r'\s*(\w+):\s*"(.*)"\s*$', line)
            if m:
                out.setdefault(m.group(1), []).append(m.group(2))
    return out


def checkpoint_steps(ckpt_dir: str, prefix: str) -> Dict[int, str]:
    """{step: checkpoint path} of the checkpoints the index names whose files exist."""
    idx = _index_entries(ckpt_dir)
    names = idx.get("all_model_checkpoint_paths", []) + idx.get("model_checkpoint_path", [])
    out = {}
    for name in names:
        base = os.path.basename(name)
        m = re.fullmatch(rf"{re.escape(prefix)}-(\d+)", base)
        path = os.path.join(ckpt_dir, base)
        if m and os.path.exists(path + ".index"):
            out[int(m.group(1))] = path
    return out


def read_record(run_dir: str) -> Optional[Dict[str, Any]]:
    """run.json, or a record built from config.json (no data) for folders without one; None when
    the folder holds neither (a new run)."""
    if is_remote(run_dir):
        return None           # object stores: checked by the trainer itself, not here
    path = os.path.join(run_dir, RUN_FILE)
    if os.path.isfile(path):
        try:
            rec = _read_json(path)
            rec["config"]
            return rec
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise Refusal(f"{path}: not a run record ({type(e).__name__}: {e}); "
                          "move it away or train into a new --out") from None
    cfg_path = os.path.join(run_dir, CONFIG_FILE)
    if os.path.isfile(cfg_path):
        try:
            return {"config": _read_json(cfg_path), "data": None, "legacy": True}
        except (OSError, ValueError) as e:
            raise Refusal(f"{cfg_path}: not JSON ({e}); train into a new --out") from None
    return None


def resolved_precision(run_dir: str) -> Optional[str]:
    path = os.path.join(run_dir, CONFIG_FILE)
    try:
        cfg = _read_json(path)
        return cfg["run"]["mixed_precision"] if cfg["run"].get("precision_reason") else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check_folder(run_dir: str, config: Dict[str, Any], data: str, *, allow_changes: bool,
                 default_chosen: bool = False) -> Dict[str, Any]:
    """Decide what a start into `run_dir` is: {"state": "new" | "resume", "step": N or None,
    "changes": {field: (old, new)}}. Raises Refusal (one line) when the recorded run differs and
    the difference is not allowed."""
    if is_remote(run_dir):     # object stores: what a folder holds is read by the trainer (TensorFlow)
        return {"state": "remote", "step": None, "changes": {}}
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise Refusal(f"--out {run_dir}: exists and is not a directory")
    rec = read_record(run_dir)
    step = None if is_remote(run_dir) else latest_step(run_dir)
    if rec is None:
        if step is not None:
            raise Refusal(f"--out {run_dir}: holds checkpoints but no {CONFIG_FILE} or {RUN_FILE}, so what "
                          "they were trained with is unknown; train into a new --out")
        return {"state": "new", "step": None, "changes": {}}
    # a record written when one config held every model's fields: their defaults are not settings
    recorded = identity(without_other_models_defaults(rec["config"]), rec.get("data"))
    if rec.get("data") is None:
        recorded["data"] = None
    diffs = differences(recorded, identity(config, data), resolved_precision(run_dir))
    if not diffs:
        return {"state": "resume" if step is not None else "new", "step": step, "changes": {}}
    fixed = {k: v for k, v in diffs.items() if not is_continuable(k)}
    ordered = {**fixed, **{k: v for k, v in diffs.items() if k not in fixed}}   # what decides first
    where = f"{run_dir} was started with other settings: {describe_differences(ordered)}"
    new_out = ("train into a new --out (or leave --out out: the default folder is one per configuration "
               "and data)" if not default_chosen else "train into a new --out")
    if fixed:
        fields = ", ".join(fixed if len(fixed) <= 4 else list(fixed)[:4] + ["..."])
        raise Refusal(f"{where}; {new_out} ({fields} cannot change within a run, not even with "
                      "--continue-with-changes)")
    if not allow_changes:
        raise Refusal(f"{where}; {new_out}, or continue this run with the new settings: "
                      "add --continue-with-changes")
    return {"state": "resume" if step is not None else "new", "step": step, "changes": diffs}


def write_record(run_dir: str, config: Dict[str, Any], data: str, *, steps: int,
                 changes: Dict[str, Tuple[Any, Any]], argv: Optional[List[str]] = None) -> str:
    """Create or update run.json (the chief only; see `is_chief`)."""
    os.makedirs(run_dir, exist_ok=True)
    path = os.path.join(run_dir, RUN_FILE)
    old = None
    if os.path.isfile(path):
        try:
            old = _read_json(path)
        except (OSError, ValueError):
            old = None
    entry = {"time": _now(), "steps": int(steps),
             "command": ["facegan"] + list(sys.argv[1:] if argv is None else argv)}
    if changes:
        entry["changes"] = {k: [a, b] for k, (a, b) in changes.items()}
    if old is None:
        rec = {"format": RECORD_FORMAT, "config": config, "data": data, "created": _now(), "history": [entry]}
    else:
        rec = dict(old, history=list(old.get("history", [])) + [entry])
        if changes:          # the run continues with the new settings: they are what it is now
            rec.update(config=config, data=data)
    write_json_atomic(path, rec)
    return path


def is_chief(env: Optional[Dict[str, str]] = None) -> bool:
    """The process that writes the run folder: task `chief`, or worker 0 in a cluster without one
    (TensorFlow's convention), or any process without TF_CONFIG."""
    raw = (os.environ if env is None else env).get("TF_CONFIG")
    if not raw:
        return True
    try:
        tf_config = json.loads(raw)
        task, cluster = tf_config.get("task", {}), tf_config.get("cluster", {})
    except (ValueError, AttributeError):
        return True
    kind, index = task.get("type"), int(task.get("index", 0) or 0)
    return kind == "chief" or (kind == "worker" and index == 0 and "chief" not in cluster)


# -- data, read without TensorFlow ---------------------------------------------------------------
def _first_example(path: str) -> Optional[bytes]:
    import struct
    head = examples_io._read_head(path, 12)
    if len(head) < 12:
        return None
    length = struct.unpack("<Q", head[:8])[0]
    if length > examples_io.HEAD_BYTES:
        return None
    return examples_io._read_head(path, 12 + length)[12:]


def _int64_feature(record: bytes, name: str) -> Optional[int]:
    """The first value of int64 feature `name` of a serialized tf.Example (None if absent)."""
    w = examples_io._wire_fields
    for f, _, features in w(record):
        if f != 1:
            continue
        for f2, _, entry in w(features):
            if f2 != 1:
                continue
            key, value = None, None
            for f3, wt3, v in w(entry):
                if f3 == 1 and wt3 == 2:
                    key = v.decode("utf-8", "replace")
                elif f3 == 2 and wt3 == 2:
                    value = v
            if key != name or value is None:
                continue
            for f4, _, int64_list in w(value):
                if f4 != 3:
                    continue
                for f5, wt5, v5 in w(int64_list):
                    if f5 == 1 and wt5 == 0:
                        return int(v5)
                    if f5 == 1 and wt5 == 2 and v5:      # packed
                        return int(examples_io._read_varint(v5, 0)[0])
    return None


def inspect_data(data: str) -> Dict[str, Any]:
    """Check `--data` without TensorFlow and read its stored resolution.

    Returns {"files": [...], "resolution": R or None, "source": where R was read, "paired": bool
    or None}. Raises Refusal naming the path when there is nothing to train on. Remote URIs are
    left to the trainer ({"files": None, ...})."""
    if is_remote(data):
        return {"files": None, "resolution": None, "source": None, "paired": None}
    summary_dirs = []
    if os.path.isdir(data):
        split = examples_io.split_dir(data, schema.TRAIN_SPLIT)
        if os.path.isdir(split):
            try:
                files = examples_io.split_files(data, schema.TRAIN_SPLIT)
            except FileNotFoundError as e:
                raise Refusal(f"--data {data}: {e}") from None
            summary_dirs = [data]
        else:
            files = sorted(f for f in glob.glob(os.path.join(data, "*"))
                           if os.path.isfile(f) and not f.endswith((".json", ".jsonl", ".png")))
            if not files:
                raise Refusal(f"--data {data}: no Split-{schema.TRAIN_SPLIT}/ directory and no TFRecord files "
                              "in it (give the output folder of `facegan ingest`)")
            summary_dirs = [os.path.dirname(os.path.abspath(data))]
    elif os.path.isfile(data):
        files = [data]
        summary_dirs = [os.path.dirname(os.path.dirname(os.path.abspath(data)))]
    else:
        files = sorted(f for f in glob.glob(data) if os.path.isfile(f))
        if not files:
            what = "matches no files" if glob.has_magic(data) else "does not exist"
            raise Refusal(f"--data {data}: {what} (give the output folder of `facegan ingest`)")
        summary_dirs = [os.path.dirname(os.path.dirname(os.path.abspath(files[0])))]
    try:
        examples_io.open_checked(files)
    except examples_io.ExamplesError as e:
        raise Refusal(f"--data: {e}") from None
    for d in summary_dirs:
        path = os.path.join(d, schema.SUMMARY_FILE)
        if os.path.isfile(path):
            try:
                s = _read_json(path)
                return {"files": files, "resolution": int(s["resolution"]), "source": path,
                        "paired": bool(s.get("paired"))}
            except (OSError, ValueError, KeyError, TypeError):
                pass          # fall back to the records themselves
    for path in files:
        try:
            rec = _first_example(path)
        except (OSError, ValueError):
            rec = None
        if rec:
            try:
                res = _int64_feature(rec, schema.HEIGHT)
                names = examples_io.example_feature_names(rec)
            except ValueError:
                continue
            return {"files": files, "resolution": res, "source": path, "paired": schema.INPUT_IMAGE in names}
    return {"files": files, "resolution": None, "source": None, "paired": None}


def check_resolution(resolution: int, info: Dict[str, Any], *, kind: str, origin: Optional[str] = None) -> None:
    """Refuse a training resolution the data cannot give, in one line naming --resolution
    (`origin`: where the value came from when no flag gave it, e.g. "the hdcgan preset's default")."""
    stored = info.get("resolution")
    if stored is None:
        return
    origin = f" ({origin})" if origin else ""
    where = info.get("source") or "the data"
    if resolution > stored:
        raise Refusal(f"--resolution {resolution}{origin} is above the data's stored resolution {stored} "
                      f"({where}); pass --resolution {stored} (or lower), or re-ingest with "
                      f"`facegan ingest --resolution {resolution}`")
    if kind == "image_to_image" and resolution != stored:
        raise Refusal(f"--resolution {resolution}{origin}: image-to-image models train at the data's stored "
                      f"resolution {stored} ({where}); pass --resolution {stored}")


# -- checkpoints, metrics and versions for export ------------------------------------------------
def read_metrics(run_dir: str) -> List[Dict[str, Any]]:
    """metrics.jsonl's records (a torn last line, from a kill mid-write, is skipped)."""
    return read_jsonl(os.path.join(run_dir, METRICS_FILE))


def read_jsonl(path: str) -> List[Dict[str, Any]]:
    """The JSON objects of a JSON-lines file, [] when it does not exist; a torn line is skipped."""
    if not os.path.isfile(path):
        return []
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
    return out


def better(direction: str, value: Optional[float], best: Optional[float]) -> bool:
    """Is `value` strictly better than `best` for the registry direction ('lower'/'higher')?"""
    if value is None or not math.isfinite(value):
        return False
    if best is None:
        return True
    return value < best if direction == "lower" else value > best


def best_record(records: List[Dict], metric: str, direction: str) -> Optional[Dict]:
    """The best record by `metric`'s headline at the latest resolution (ties: the earliest)."""
    if not records:
        return None
    res = max(int(r.get("resolution", 0)) for r in records)
    best = None
    for r in records:
        v = (r.get("headline") or {}).get(metric)
        if int(r.get("resolution", 0)) == res and better(direction, v, None if best is None else best["headline"][metric]):
            best = r
    return best


def read_config(run_dir: str) -> Dict[str, Any]:
    path = os.path.join(run_dir, CONFIG_FILE)
    if not os.path.isdir(run_dir):
        raise Refusal(f"--run {run_dir}: no such directory")
    if not os.path.isfile(path):
        raise Refusal(f"--run {run_dir}: no {CONFIG_FILE} in it (not a `facegan train` run folder)")
    try:
        return _read_json(path)
    except (OSError, ValueError) as e:
        raise Refusal(f"{path}: not JSON ({e})") from None


def record_at(records: List[Dict], step: int) -> Optional[Dict]:
    """The metrics.jsonl record of `step` (the last, if a resumed run rewrote it)."""
    found = [r for r in records if int(r.get("step", -1)) == int(step)]
    return found[-1] if found else None


def select_checkpoint(run_dir: str, which: str, config: Dict[str, Any]) -> Dict[str, Any]:
    """{"path", "step", "selected": last|best|step, "record": metrics.jsonl record or None}."""
    ckpts = checkpoint_steps(os.path.join(run_dir, CHECKPOINT_DIR), "ckpt")
    bests = checkpoint_steps(os.path.join(run_dir, BEST_DIR), "best")
    records = read_metrics(run_dir)
    have = sorted(set(ckpts) | set(bests))
    listing = f"checkpoints at steps {', '.join(map(str, have))}" if have else "no checkpoints"
    if which == "last":
        step = latest_step(run_dir)
        if step is None or step not in ckpts:
            raise Refusal(f"--run {run_dir}: no checkpoint in {CHECKPOINT_DIR}/ (did the run start?)")
        return {"path": ckpts[step], "step": step, "selected": "last", "record": record_at(records, step)}
    if which == "best":
        metric = (config.get("eval") or {}).get("best_metric") or ""
        if not metric:
            raise Refusal(f"--checkpoint best: the run has no eval.best_metric; use --checkpoint last or a step ({listing})")
        from facegan.metrics.registry import parse_request     # TensorFlow-free
        direction = parse_request(metric).spec.direction
        best = best_record(records, metric, direction)
        if best is None:
            raise Refusal(f"--checkpoint best: {os.path.join(run_dir, METRICS_FILE)} has no evaluation "
                          f"(eval.every_images is {(config.get('eval') or {}).get('every_images', 0)}); "
                          f"use --checkpoint last or a step ({listing})")
        step = int(best["step"])
        path = bests.get(step) or ckpts.get(step)
        if path is None:
            raise Refusal(f"--checkpoint best: the best evaluation ({metric} at step {step}) has no checkpoint "
                          f"left in {BEST_DIR}/ or {CHECKPOINT_DIR}/ ({listing})")
        return {"path": path, "step": step, "selected": "best", "record": best}
    if not str(which).isdigit():
        raise Refusal(f"--checkpoint {which!r}: expected last, best or a step number")
    step = int(which)
    path = ckpts.get(step) or bests.get(step)
    if path is None:
        raise Refusal(f"--checkpoint {step}: {run_dir} has no checkpoint of step {step} ({listing}; "
                      f"run.keep_checkpoints keeps the newest {((config.get('run') or {}).get('keep_checkpoints'))})")
    return {"path": path, "step": step, "selected": "step", "record": record_at(records, step)}


def version_metadata(selection: Dict[str, Any], run_dir: str) -> Dict[str, Any]:
    """The export metadata a served version carries about its checkpoint: which one, its step
    and images shown, and the metrics of the evaluation at that step (empty if not evaluated)."""
    rec = selection.get("record")
    checkpoint = {"selected": selection["selected"], "step": int(selection["step"]),
                  "path": selection.get("path"), "run_dir": run_dir}
    meta = {"checkpoint": checkpoint, "metrics": dict(rec.get("headline") or {}) if rec else {}}
    if rec:
        meta["metrics_record"] = {k: rec.get(k) for k in ("step", "images_shown", "kimg", "resolution",
                                                          "scored_resolution", "weights", "real_split",
                                                          "protocols", "skipped", "time")}
    else:
        meta["metrics_record"] = None
    return meta


def existing_versions(base: str) -> List[int]:
    if not os.path.isdir(base):
        return []
    return sorted(int(e) for e in os.listdir(base) if e.isdigit() and int(e) > 0)


def check_serving_base(base: str, flag: str) -> None:
    """Refuse a serving base path that cannot hold versions (a file, or a version folder)."""
    if is_remote(base):
        return
    if os.path.exists(base) and not os.path.isdir(base):
        raise Refusal(f"{flag} {base}: exists and is not a directory")
    if os.path.basename(os.path.normpath(base)).isdigit():
        raise Refusal(f"{flag} {base}: give the model's base path BASE/NAME (versions 1, 2, ... are "
                      "written inside it), not a version folder")
    if os.path.isfile(os.path.join(base, "saved_model.pb")):
        raise Refusal(f"{flag} {base}: holds a SavedModel itself; give a base path whose numbered "
                      "subfolders are the versions (e.g. serving/faces)")
