"""The ingestion stages as plain Python, shared by both runners (no Beam, no TFX, no TensorFlow).

    read_and_hash(unit)          -> (sha256, (source, bytes|None)) per file/archive member, or a
                                    rejection
    group by sha256              (the runner: Beam's GroupByKey, or a dict in the local runner)
    GroupProcessor.process(...)  -> records written per split, rejections, duplicates, counts,
                                    channel sums, grid candidates
    write_reports(...)           -> Split-<split>/data_tfrecord-NNNNN-of-MMMMM.gz, summary,
                                    rejection report, grid; check_summary

beam_pipeline.py wraps these in DoFns (any Beam runner: Dataflow, Flink, Spark, DirectRunner);
pool_runner.py runs them in this process or a fork pool (no Beam import: ~3-11 s saved).
Both write the same records, rejection report and summary counts for the same input.

Paths may be local or any Beam filesystem URI (`gs://...`); Beam is imported only for the latter.
"""
import collections
import heapq
import json
import os
import time
import uuid
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from facegan import examples_io, schema
from facegan.ingest import options as O
from facegan.ingest import listing as L
from facegan.ingest import archives as A
from facegan.ingest import image_ops as IM
from facegan.ingest import paired as P
from facegan.ingest import labels as LB

IngestError = O.IngestError
HASHED, REJECTED, DUPLICATE, COUNTS, STATS, SAMPLE, SHARDS = (
    "hashed", "rejected", "duplicate", "counts", "stats", "sample", "shards")
TFRECORD_PREFIX = "data_tfrecord"
TMP_DIR = ".ingest-tmp"
GRID_MAX_SIDE = 128


# ---------------------------------------------------------------------------------------------
# Files: local paths with os, remote URIs with Beam's FileSystems (imported only then).

def is_remote(path: str) -> bool:
    return "://" in path


def join(*parts: str) -> str:
    if is_remote(parts[0]):
        from apache_beam.io.filesystems import FileSystems
        return FileSystems.join(*parts)
    return os.path.join(*parts)


def create(path: str):
    if is_remote(path):
        from apache_beam.io.filesystem import CompressionTypes
        from apache_beam.io.filesystems import FileSystems
        return FileSystems.create(path, mime_type="application/octet-stream",
                                  compression_type=CompressionTypes.UNCOMPRESSED)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return open(path, "wb")


def write_bytes(path: str, data: bytes):
    with create(path) as f:
        f.write(data)


def writer(path: str) -> examples_io.TFRecordGzipWriter:
    return examples_io.TFRecordGzipWriter(create(path), path)


def _match(pattern: str) -> List[str]:
    if is_remote(pattern):
        from apache_beam.io.filesystems import FileSystems
        return [m.path for r in FileSystems.match([pattern]) for m in r.metadata_list]
    import glob
    return glob.glob(pattern)


def _rename(src: List[str], dst: List[str]):
    if src and is_remote(src[0]):
        from apache_beam.io.filesystems import FileSystems
        FileSystems.rename(src, dst)
        return
    for s, d in zip(src, dst):
        os.replace(s, d)


def _delete_tree(path: str):
    if is_remote(path):
        from apache_beam.io.filesystems import FileSystems
        FileSystems.delete([path])
        return
    import shutil
    shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Progress

PHASE_LIST, PHASE_HASH, PHASE_PROCESS = "list", "hash", "process"


class ProgressFile:
    """Per-worker counter file so a local driver can show files/s and ETA (best effort).

    JSON {phase, n, t0, t, cpu0, cpu}: the phase (`hash`: read + sha256, the local runner's
    first pass; `process`: decode to write), files done, wall clock and this process's CPU
    time at the first file and now; the display starts its clock at the earliest `t0`, the
    benchmark derives steady-state rate and CPU per image from them.
    """

    def __init__(self, progress_dir: Optional[str], phase: str = PHASE_PROCESS):
        self.dir, self.n, self.last, self.path = progress_dir, 0, 0.0, None
        self.phase = phase
        self.t0 = self.cpu0 = None

    def add(self, n: int, force: bool = False):
        if not self.dir:
            return
        if self.t0 is None and n:
            self.t0, self.cpu0 = time.time(), time.process_time()
        self.n += n
        now = time.monotonic()
        if force or now - self.last > 0.5:
            self.last = now
            try:
                if self.path is None:
                    self.path = os.path.join(
                        self.dir, f"{self.phase}-{os.getpid()}-{uuid.uuid4().hex}.cnt")
                tmp = self.path + ".tmp"
                with open(tmp, "w") as f:
                    json.dump({"phase": self.phase, "n": self.n, "t0": self.t0, "t": time.time(), "cpu0": self.cpu0,
                               "cpu": time.process_time()}, f)
                os.replace(tmp, self.path)
            except OSError:
                self.dir = None   # not a local filesystem on this worker: stop trying


def read_progress_records(progress_dir: str, phase: str = PHASE_PROCESS) -> List[Dict]:
    out = []
    for n in os.listdir(progress_dir):
        if n.endswith(".cnt"):
            try:
                with open(os.path.join(progress_dir, n)) as f:
                    rec = json.load(f)
            except (OSError, ValueError):
                continue
            if rec.get("phase", PHASE_PROCESS) == phase:
                out.append(rec)
    return out


def read_progress(progress_dir: str, phase: str = PHASE_PROCESS) -> int:
    return sum(int(r.get("n", 0)) for r in read_progress_records(progress_dir, phase))


def records_started(records: Sequence[Dict]) -> Optional[float]:
    """Wall-clock time the first file of these counter files started (None: none yet)."""
    t0s = [r["t0"] for r in records if r.get("t0") is not None]
    return min(t0s) if t0s else None


# ---------------------------------------------------------------------------------------------
# Stage 1: read and hash

def _rejection(path: str, reason: str, detail: str) -> Dict:
    return {"path": path, "reason": reason, "detail": detail}


def read_and_hash(unit: str, counts: collections.Counter) -> Iterator[Tuple[str, object]]:
    """unit path -> (HASHED, (sha256, (source, inline bytes or None))) per file / archive member,
    or (REJECTED, record). Plain files travel as paths (re-read after the shuffle, from the page
    cache); archive members as bytes (re-reading would mean decompressing the archive again)."""
    if L.is_archive(unit):
        try:
            for source, data in A.iter_archive(unit):
                counts["files_seen"] += 1
                if isinstance(data, O.Rejected):
                    counts["rejected/" + data.reason] += 1
                    yield REJECTED, _rejection(source, data.reason, data.detail)
                else:
                    yield HASHED, (IM.sha256_hex(data), (source, data))
        except O.Rejected as r:
            # a broken archive counts as one file seen (plus any members read before it broke)
            counts["files_seen"] += 1
            counts["rejected/" + r.reason] += 1
            yield REJECTED, _rejection(unit, r.reason, r.detail)
        return
    counts["files_seen"] += 1
    try:
        data = L.read_bytes(unit)
    except OSError as e:
        counts["rejected/" + O.UNREADABLE] += 1
        yield REJECTED, _rejection(unit, O.UNREADABLE, f"{type(e).__name__}: {e}")
        return
    yield HASHED, (IM.sha256_hex(data), (unit, None))


# ---------------------------------------------------------------------------------------------
# Stage 2: one group of identical files -> examples

class GroupProcessor:
    """(sha256, [(source, bytes|None)...]) -> records by split (through `write(split, record)`),
    plus rejections, duplicates, counts, channel sums and grid candidates of one bundle.

    The sorted-first source of a group is the original; the rest are duplicates; a rejected
    original rejects the whole group.
    """

    def __init__(self, cfg: O.IngestConfig):
        self.cfg = cfg
        self.labels = LB.load_labels(cfg.labels)
        self.start()

    def start(self):
        self.counts = collections.Counter()
        self.stats = [np.zeros(3), np.zeros(3), 0]
        self.sample: List[Tuple[int, bytes]] = []   # heap of (-key, png): the grid_size smallest

    def process(self, sha: str, items, write) -> Iterator[Tuple[str, Dict]]:
        items = sorted(items, key=lambda it: it[0])
        source, data = items[0]
        try:
            if data is None:
                try:
                    data = L.read_bytes(source)
                except OSError as e:
                    raise O.Rejected(O.UNREADABLE, f"{type(e).__name__}: {e}") from e
            p = IM.process_bytes(data, self.cfg)
        except O.Rejected as r:
            for k, (src, _) in enumerate(items):
                detail = r.detail if k == 0 else f"same bytes as {source}: {r.detail}"
                yield REJECTED, _rejection(src, r.reason, detail)
            self.counts["rejected/" + r.reason] += len(items)
            return
        split = IM.assign_split(sha, self.cfg.eval_fraction)
        attrs = self.labels.lookup(source) if self.labels is not None else None
        if self.labels is not None and attrs is None:
            self.counts["unlabeled"] += 1
        count_attributes(self.counts, attrs)
        feats = IM.example_features(p, source, sha, False, attrs)
        write(split, IM.encode_example(feats))
        self.counts["examples_written"] += 1
        self.counts[f"originals/{split}"] += 1
        self.counts[f"examples/{split}"] += 1
        if self.cfg.mirror:
            write(split, IM.encode_example(IM.example_features(IM.mirror(p), source, sha, True, attrs)))
            self.counts["mirrored"] += 1
            self.counts[f"examples/{split}"] += 1
        for src, _ in items[1:]:
            yield DUPLICATE, _rejection(src, O.DUPLICATE, f"same sha256 as {source}")
        if len(items) > 1:
            self.counts["duplicates"] += len(items) - 1
        s, q, n = IM.channel_sums(p.image)
        self.stats = [self.stats[0] + s, self.stats[1] + q, self.stats[2] + n]
        # grid candidates: smallest keys win; bits 64..127 of the hash (the split uses 0..63).
        # PNG bytes, not pixels: cheap to keep, decoded only for the few in the grid.
        entry = (-int(sha[16:32], 16), feats[schema.IMAGE])
        if len(self.sample) < self.cfg.grid_size:
            heapq.heappush(self.sample, entry)
        elif entry[0] > self.sample[0][0]:
            heapq.heapreplace(self.sample, entry)


class ShardWriters:
    """One gzipped TFRecord temp file per split for a bundle of work; `close` lists them."""

    def __init__(self, tmp_dir: str):
        self.tmp_dir, self.writers = tmp_dir, {}

    def write(self, split: str, record: bytes):
        w = self.writers.get(split)
        if w is None:
            w = self.writers[split] = writer(join(self.tmp_dir, f"{split}-{uuid.uuid4().hex}.gz"))
        w.write(record)

    def close(self) -> List[Tuple[str, str, int]]:
        out = []
        for split, w in sorted(self.writers.items()):
            w.close()
            out.append((split, w.path, w.n))
        self.writers = {}
        return out


# ---------------------------------------------------------------------------------------------
# Combining and finalizing

def sum_stats(accs) -> Tuple[np.ndarray, np.ndarray, int]:
    """Sum of (channel sums, sums of squares, pixel count) accumulators."""
    s, q, n = np.zeros(3), np.zeros(3), 0
    for a in accs:
        s, q, n = s + a[0], q + a[1], n + a[2]
    return s, q, n


def combine_stats(accs) -> Dict:
    """Per-channel mean and std over all accumulators."""
    s, q, n = sum_stats(accs)
    if n == 0:
        return {"mean": None, "std": None, "pixels": 0}
    mean = s / n
    std = np.sqrt(np.maximum(q / n - mean * mean, 0.0))
    return {"mean": [round(float(v), 4) for v in mean], "std": [round(float(v), 4) for v in std],
            "pixels": int(n)}


def smallest_sample(entries, k: int) -> List[Tuple[int, bytes]]:
    """The k grid candidates with the smallest keys, as (key, png), sorted."""
    return heapq.nsmallest(k, ((-neg, png) for neg, png in entries), key=lambda kv: kv[0])


# -- attribute statistics (conditional training's labels) --------------------------------------------------------------
def count_attributes(counts, attrs: Optional[Dict]) -> None:
    """Per original image: counters attr_labelled/<name>, attr_binary/<name> (value 0 or 1) and
    attr_positive/<name> (value 1), combined like every other counter."""
    for name, v in (attrs or {}).items():
        counts[f"attr_labelled/{name}"] += 1
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v in (0, 1):
            counts[f"attr_binary/{name}"] += 1
            counts[f"attr_positive/{name}"] += int(v == 1)


def attribute_summary(counts: Dict[str, int]) -> Dict[str, Dict]:
    """{name: {labelled, positive, positive_rate}} from count_attributes' counters; positive and
    positive_rate are null for attributes that are not all 0/1 (JSON floats, strings)."""
    out = {}
    for key in sorted(counts):
        if key.startswith("attr_labelled/"):
            name = key[len("attr_labelled/"):]
            n, binary = int(counts[key]), int(counts.get(f"attr_binary/{name}", 0))
            pos = int(counts.get(f"attr_positive/{name}", 0)) if binary == n else None
            out[name] = {"labelled": n, "positive": pos,
                         "positive_rate": round(pos / n, 6) if pos is not None and n else None}
    return out


def make_summary(counts: Dict[str, int], stats: Dict, cfg: O.IngestConfig, input_base: str,
                 n_units: int, listing: Optional[L.InputListing] = None) -> Dict:
    """The ingest_summary.json content from the combined counters."""
    reasons = {r: int(counts.get("rejected/" + r, 0)) for r in O.REJECTION_REASONS}
    seen = int(counts.get("files_seen", 0))
    written = int(counts.get("examples_written", 0))
    mirrored = int(counts.get("mirrored", 0))
    dups = int(counts.get("duplicates", 0))
    rejected = sum(reasons.values())
    splits = {s: {"originals": int(counts.get(f"originals/{s}", 0)),
                  "examples": int(counts.get(f"examples/{s}", 0))}
              for s in (schema.TRAIN_SPLIT, schema.EVAL_SPLIT)}
    return {
        "input_base": input_base,
        "input_units": n_units,
        "files_seen": seen,
        "examples_written": written,          # originals (kept for readers of older summaries)
        "originals_written": written,
        "records_written": written + mirrored,  # tf.Examples in the files: originals + mirrored
        "duplicates": dups,
        "rejected": rejected,
        "rejected_by_reason": reasons,
        "rejected_fraction": round(rejected / seen, 6) if seen else 0.0,
        "mirrored": mirrored,
        "unlabeled": int(counts.get("unlabeled", 0)),
        "attributes": attribute_summary(counts),   # per attribute: labelled originals, positive rate
        "invariant_holds": seen == written + dups + rejected,
        "symlink_loops": list(listing.symlink_loops) if listing else [],
        "symlink_aliases_not_counted": len(listing.aliases) if listing else 0,
        "splits": splits,
        "channel_mean": stats["mean"],
        "channel_std": stats["std"],
        "resolution": cfg.resolution,
        "resolutions": sorted(set(cfg.extra_resolutions) | {cfg.resolution}),
        "image_keys": {str(r): schema.image_key(r, cfg.resolution)
                       for r in sorted(set(cfg.extra_resolutions) | {cfg.resolution})},
        "crop": cfg.crop,
        "filter": cfg.filter,
        "paired": P.summary(cfg.paired, cfg.paired_seed),
        "config": cfg.to_json(),
    }


def _thumb(img: np.ndarray) -> np.ndarray:
    if img.shape[0] <= GRID_MAX_SIDE:
        return img
    from PIL import Image
    return np.asarray(Image.fromarray(img).resize((GRID_MAX_SIDE, GRID_MAX_SIDE), Image.LANCZOS))


def finalize_shards(output_uri: str, tmp_dir: str, shards) -> Dict[str, Dict]:
    """Move the workers' temp files to Split-<split>/data_tfrecord-NNNNN-of-MMMMM.gz.

    Old data_tfrecord files in the split dirs (an in-place output written before) are deleted
    first so readers never mix runs; a split with no examples gets one empty file so every split
    directory is readable.
    """
    out = {}
    for split in (schema.TRAIN_SPLIT, schema.EVAL_SPLIT):
        d = join(output_uri, f"Split-{split}")
        old = _match(join(d, TFRECORD_PREFIX + "-*"))
        for f in old:
            _delete_tree(f) if is_remote(f) else os.remove(f)
        # In the order the runner produced them (the local runner: input order), never by the
        # temp files' random names: the files' order is the order training reads the examples
        # in, so two ingests of the same input must name the same shards alike.
        mine = [(path, n) for s, path, n in shards if s == split]
        if not mine:
            empty = writer(join(tmp_dir, f"{split}-empty.gz"))
            empty.close()
            mine = [(empty.path, 0)]
        if not is_remote(d):
            os.makedirs(d, exist_ok=True)
        dst = [join(d, f"{TFRECORD_PREFIX}-{i:05d}-of-{len(mine):05d}.gz") for i in range(len(mine))]
        _rename([p for p, _ in mine], dst)
        out[split] = {"files": len(dst), "records": sum(n for _, n in mine)}
    _delete_tree(tmp_dir)
    if not is_remote(tmp_dir):
        try:
            os.rmdir(os.path.dirname(tmp_dir))     # .ingest-tmp, if no other run uses it
        except OSError:
            pass
    return out


def write_reports(output_uri: str, tmp_dir: str, cfg: O.IngestConfig, input_base: str,
                  n_units: int, counts: Dict, stats: Dict, rejections: Sequence[Dict],
                  sample: Sequence[Tuple[int, bytes]], shards, listing=None) -> Dict:
    """Finalize (once, after all work): shards into place, summary, rejection report, grid."""
    from facegan.images import decode_png, encode_png, make_grid
    files = finalize_shards(output_uri, tmp_dir, shards)
    summary = make_summary(counts, stats, cfg, input_base, n_units, listing)
    summary["tfrecord_files"] = files
    for split, f in files.items():
        if f["records"] != summary["splits"][split]["examples"]:   # caught by check_summary
            summary["invariant_holds"] = False
    summary["grid_images"] = len(sample)
    write_bytes(join(output_uri, schema.SUMMARY_FILE),
                json.dumps(summary, indent=2, sort_keys=True).encode())
    lines = "".join(json.dumps(r, sort_keys=True) + "\n"
                    for r in sorted(rejections, key=lambda r: (r["path"], r["reason"])))
    write_bytes(join(output_uri, schema.REJECTIONS_FILE), lines.encode())
    if sample:
        imgs = np.stack([_thumb(decode_png(png)) for _, png in sorted(sample, key=lambda kv: kv[0])])
        write_bytes(join(output_uri, schema.GRID_FILE), encode_png(make_grid(imgs)))
    return summary


def read_summary(output_uri: str) -> Dict:
    if is_remote(output_uri):
        from apache_beam.io.filesystems import FileSystems
        with FileSystems.open(join(output_uri, schema.SUMMARY_FILE),
                              compression_type="uncompressed") as f:
            return json.loads(f.read().decode())
    with open(os.path.join(output_uri, schema.SUMMARY_FILE)) as f:
        return json.load(f)


def check_summary(summary: Dict, cfg: O.IngestConfig) -> None:
    """Raise IngestError when nothing survived, the invariant fails, or too much was rejected."""
    s = summary
    for split, f in s.get("tfrecord_files", {}).items():
        if f["records"] != s["splits"][split]["examples"]:
            raise IngestError(f"split {split}: {f['records']} records in the TFRecord files but "
                              f"{s['splits'][split]['examples']} examples counted")
    if not s["invariant_holds"]:
        raise IngestError(f"accounting invariant broken: files_seen {s['files_seen']} != "
                          f"examples_written {s['examples_written']} + duplicates "
                          f"{s['duplicates']} + rejected {s['rejected']}")
    reasons = ", ".join(f"{k}={v}" for k, v in s["rejected_by_reason"].items() if v)
    if s["examples_written"] == 0:
        raise IngestError(f"no image survived ingestion of {s['input_base']}: "
                          f"{s['files_seen']} files seen, rejected: {reasons or 'none'}")
    if s["rejected_fraction"] > cfg.max_rejected_fraction:
        raise IngestError(f"{s['rejected']} of {s['files_seen']} files rejected "
                          f"({s['rejected_fraction']:.1%} > max_rejected_fraction "
                          f"{cfg.max_rejected_fraction:.1%}) in {s['input_base']}: {reasons}",
                          field="max_rejected_fraction")


def prepare(input_base: str, cfg: O.IngestConfig) -> L.InputListing:
    """Fail-fast checks before any work: input exists and is non-empty, labels parse."""
    if cfg.labels:
        LB.load_labels(cfg.labels)   # raises IngestError naming the file/line
    return L.list_inputs(input_base, skip=[cfg.labels] if cfg.labels else [])
