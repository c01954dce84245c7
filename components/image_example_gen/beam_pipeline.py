"""The ImageExampleGen Beam pipeline: files -> tf.Examples in Split-train/ and Split-eval/.

Shape (two fused stages around one small shuffle):

    input units (files, archives)                                  beam.Create (reshuffled)
      -> ReadAndHash: read bytes, sha256; archives expand here     (sha256, (source, bytes|None))
      -> GroupByKey(sha256): exact duplicates meet here            only paths/small members move
      -> ProcessGroup: first source (sorted) is the original; decode, crop, resize, PNG,
         tf.Example (+ mirrored copy) -> appended to this bundle's gzipped TFRecord file per
         split (a temp file); the rest of the group are duplicates; a rejected original
         rejects the whole group
      -> side outputs: finished temp files, rejections, counts, channel sums, grid candidates
      -> Finalize (once): temp files -> Split-<split>/data_tfrecord-NNNNN-of-MMMMM.gz,
         ingest_summary.json, rejections.jsonl, sample_grid.png

The workers write the TFRecords themselves (TF's record framing, one gzip stream per file,
compressed in ~1 MB chunks) instead of going through beam.io.WriteToTFRecord: that sink costs
two more operations and three small compress calls per record plus three extra stages, about
twice what the write itself costs here. Files of bundles that fail and are retried stay in the
temp dir, never listed, and are deleted with it.

Plain files travel the shuffle as paths and are re-read after it (page cache), so the runner
process moves only small records; archive members travel as bytes (re-reading a tar.gz member
would mean decompressing the archive again). All per-file work is in transforms.py.

`run_ingest` is the entry both the TFX executor and `facegan ingest` use: it validates and
enumerates inputs first (failing fast, naming the path), runs the pipeline with the given Beam
args unchanged (DirectRunner multi-processing, Dataflow, Flink, Spark), then checks the
accounting invariant and the rejection threshold from the written summary.
"""
import collections
import heapq
import json
import logging
import os
import struct
import threading
import time
import uuid
import zlib
from typing import Dict, List, Optional, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

from facegan.components.image_example_gen import transforms as T
from facegan import schema

log = logging.getLogger(__name__)
IngestError = T.IngestError

HASHED, REJECTED, DUPLICATE, COUNTS, STATS, SAMPLE, SHARDS = (
    "hashed", "rejected", "duplicate", "counts", "stats", "sample", "shards")
TFRECORD_PREFIX = "data_tfrecord"
TMP_DIR = ".ingest-tmp"


def _crc32c_fn():
    try:
        import google_crc32c
        return google_crc32c.value
    except ImportError:                       # Beam's own (crcmod / snappy) fallback
        from apache_beam.io.tfrecordio import _default_crc32c_fn
        return _default_crc32c_fn


_crc32c = _crc32c_fn()


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC-32C (tensorflow/tsl/lib/hash/crc32c.h: Mask)."""
    crc = _crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


class TFRecordGzipWriter:
    """Gzipped TFRecord file: per record uint64 length, masked crc of it, data, masked crc."""

    FLUSH_BYTES = 1 << 20

    def __init__(self, path: str):
        self.path, self.n = path, 0
        self._f = FileSystems.create(path, mime_type="application/octet-stream",
                                     compression_type=CompressionTypes.UNCOMPRESSED)
        self._z = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, 31)   # 31: gzip
        self._buf: List[bytes] = []
        self._size = 0

    def write(self, record: bytes):
        head = struct.pack("<Q", len(record))
        self._buf += [head, struct.pack("<I", masked_crc32c(head)), record,
                      struct.pack("<I", masked_crc32c(record))]
        self._size += len(record) + 16
        self.n += 1
        if self._size >= self.FLUSH_BYTES:
            self._flush()

    def _flush(self):
        if self._buf:
            self._f.write(self._z.compress(b"".join(self._buf)))
            self._buf, self._size = [], 0

    def close(self):
        self._flush()
        self._f.write(self._z.flush())
        self._f.close()


def _join(*parts: str) -> str:
    return FileSystems.join(*parts) if "://" in parts[0] else os.path.join(*parts)


class _ProgressFile:
    """Per-worker counter file so a local driver can show images/s and ETA (best effort).

    JSON {n, t0, t, cpu0, cpu}: files done, wall clock and this process's CPU time at the first
    file and now; the benchmark derives steady-state rate and CPU per image from them.
    """

    def __init__(self, progress_dir: Optional[str]):
        self.dir, self.n, self.last, self.path = progress_dir, 0, 0.0, None
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
                    self.path = os.path.join(self.dir, f"{os.getpid()}-{uuid.uuid4().hex}.cnt")
                tmp = self.path + ".tmp"
                with open(tmp, "w") as f:
                    json.dump({"n": self.n, "t0": self.t0, "t": time.time(), "cpu0": self.cpu0,
                               "cpu": time.process_time()}, f)
                os.replace(tmp, self.path)
            except OSError:
                self.dir = None   # not a local filesystem on this worker: stop trying


def read_progress_records(progress_dir: str) -> List[Dict]:
    out = []
    for n in os.listdir(progress_dir):
        if n.endswith(".cnt"):
            try:
                with open(os.path.join(progress_dir, n)) as f:
                    out.append(json.load(f))
            except (OSError, ValueError):
                pass
    return out


def read_progress(progress_dir: str) -> int:
    return sum(int(r.get("n", 0)) for r in read_progress_records(progress_dir))


def _bundle_output(tag: str, value):
    """A finish_bundle output (needs an explicit window; everything here is in the global one)."""
    return beam.pvalue.TaggedOutput(tag, WindowedValue(value, GlobalWindow().max_timestamp(),
                                                       [GlobalWindow()]))


class _BundleCounts(beam.DoFn):
    """Counters kept per bundle and emitted once in finish_bundle: per-element side outputs
    would cost more Beam bookkeeping than the counting itself."""

    def start_bundle(self):
        self.counts = collections.Counter()

    def finish_bundle(self):
        for k, v in self.counts.items():
            yield _bundle_output(COUNTS, (k, v))


class ReadAndHashFn(_BundleCounts):
    """unit path -> (sha256, (source, inline bytes or None)); archives yield one per member."""

    def process(self, unit: str):
        if T.is_archive(unit):
            try:
                for source, data in T.iter_archive(unit):
                    self.counts["files_seen"] += 1
                    yield (T.sha256_hex(data), (source, data))
            except T.Rejected as r:
                # a broken archive counts as one file seen (plus any members read before it broke)
                self.counts["files_seen"] += 1
                self.counts["rejected/" + r.reason] += 1
                yield beam.pvalue.TaggedOutput(REJECTED, {"path": unit, "reason": r.reason,
                                                          "detail": r.detail})
            return
        self.counts["files_seen"] += 1
        try:
            data = T.read_bytes(unit)
        except OSError as e:
            self.counts["rejected/" + T.UNREADABLE] += 1
            yield beam.pvalue.TaggedOutput(REJECTED, {"path": unit, "reason": T.UNREADABLE,
                                                      "detail": f"{type(e).__name__}: {e}"})
            return
        yield (T.sha256_hex(data), (unit, None))


class ProcessGroupFn(_BundleCounts):
    """(sha256, [(source, bytes|None)...]) -> examples by split, plus report side outputs."""

    def __init__(self, cfg: T.IngestConfig, tmp_dir: str, progress_dir: Optional[str] = None):
        self.cfg, self.tmp_dir, self.progress_dir = cfg, tmp_dir, progress_dir

    def setup(self):
        self.labels = T.load_labels(self.cfg.labels)
        self.progress = _ProgressFile(self.progress_dir)

    def start_bundle(self):
        super().start_bundle()
        self.stats = [np.zeros(3), np.zeros(3), 0]
        self.sample = []          # heap of (-key, png): the grid_size smallest keys of the bundle
        self.writers: Dict[str, TFRecordGzipWriter] = {}

    def _write(self, split: str, record: bytes):
        w = self.writers.get(split)
        if w is None:
            w = self.writers[split] = TFRecordGzipWriter(
                _join(self.tmp_dir, f"{split}-{uuid.uuid4().hex}.gz"))
        w.write(record)

    def finish_bundle(self):
        self.progress.add(0, force=True)
        for split, w in sorted(self.writers.items()):
            w.close()
            yield _bundle_output(SHARDS, (split, w.path, w.n))
        yield from super().finish_bundle()
        if self.stats[2]:
            yield _bundle_output(STATS, tuple(self.stats))
        for neg_key, png in self.sample:
            yield _bundle_output(SAMPLE, (-neg_key, png))

    def process(self, element):
        sha, items = element
        items = sorted(items, key=lambda it: it[0])
        source, data = items[0]
        self.progress.add(len(items))
        try:
            if data is None:
                try:
                    data = T.read_bytes(source)
                except OSError as e:
                    raise T.Rejected(T.UNREADABLE, f"{type(e).__name__}: {e}") from e
            p = T.process_bytes(data, self.cfg)
        except T.Rejected as r:
            for k, (src, _) in enumerate(items):
                detail = r.detail if k == 0 else f"same bytes as {source}: {r.detail}"
                yield beam.pvalue.TaggedOutput(REJECTED, {"path": src, "reason": r.reason,
                                                          "detail": detail})
            self.counts["rejected/" + r.reason] += len(items)
            return
        split = T.assign_split(sha, self.cfg.eval_fraction)
        attrs = self.labels.lookup(source) if self.labels is not None else None
        if self.labels is not None and attrs is None:
            self.counts["unlabeled"] += 1
        feats = T.example_features(p, source, sha, False, attrs)
        self._write(split, T.encode_example(feats))
        self.counts["examples_written"] += 1
        self.counts[f"originals/{split}"] += 1
        self.counts[f"examples/{split}"] += 1
        if self.cfg.mirror:
            self._write(split, T.encode_example(
                T.example_features(T.mirror(p), source, sha, True, attrs)))
            self.counts["mirrored"] += 1
            self.counts[f"examples/{split}"] += 1
        for src, _ in items[1:]:
            yield beam.pvalue.TaggedOutput(DUPLICATE, {"path": src, "reason": T.DUPLICATE,
                                                       "detail": f"same sha256 as {source}"})
        if len(items) > 1:
            self.counts["duplicates"] += len(items) - 1
        s, q, n = T.channel_sums(p.image)
        self.stats = [self.stats[0] + s, self.stats[1] + q, self.stats[2] + n]
        # grid candidates: smallest keys win; bits 64..127 of the hash (the split uses 0..63).
        # PNG bytes, not pixels: cheap to keep, decoded only for the few in the grid.
        entry = (-int(sha[16:32], 16), feats[schema.IMAGE])
        if len(self.sample) < self.cfg.grid_size:
            heapq.heappush(self.sample, entry)
        elif entry[0] > self.sample[0][0]:
            heapq.heapreplace(self.sample, entry)


class ChannelStatsFn(beam.CombineFn):
    def create_accumulator(self):
        return (np.zeros(3), np.zeros(3), 0)

    def add_input(self, acc, x):
        return (acc[0] + x[0], acc[1] + x[1], acc[2] + x[2])

    def merge_accumulators(self, accs):
        s, q, n = np.zeros(3), np.zeros(3), 0
        for a in accs:
            s, q, n = s + a[0], q + a[1], n + a[2]
        return (s, q, n)

    def extract_output(self, acc):
        s, q, n = acc
        if n == 0:
            return {"mean": None, "std": None, "pixels": 0}
        mean = s / n
        std = np.sqrt(np.maximum(q / n - mean * mean, 0.0))
        return {"mean": [round(float(v), 4) for v in mean], "std": [round(float(v), 4) for v in std],
                "pixels": int(n)}


def _write_bytes(path: str, data: bytes):
    with FileSystems.create(path, mime_type="application/octet-stream",
                            compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.write(data)


def make_summary(counts: Dict[str, int], stats: Dict, cfg: T.IngestConfig, input_base: str,
                 n_units: int) -> Dict:
    """The ingest_summary.json content from the combined counters."""
    reasons = {r: int(counts.get("rejected/" + r, 0)) for r in T.REJECTION_REASONS}
    seen = int(counts.get("files_seen", 0))
    written = int(counts.get("examples_written", 0))
    dups = int(counts.get("duplicates", 0))
    rejected = sum(reasons.values())
    splits = {s: {"originals": int(counts.get(f"originals/{s}", 0)),
                  "examples": int(counts.get(f"examples/{s}", 0))}
              for s in (schema.TRAIN_SPLIT, schema.EVAL_SPLIT)}
    return {
        "input_base": input_base,
        "input_units": n_units,
        "files_seen": seen,
        "examples_written": written,
        "duplicates": dups,
        "rejected": rejected,
        "rejected_by_reason": reasons,
        "rejected_fraction": round(rejected / seen, 6) if seen else 0.0,
        "mirrored": int(counts.get("mirrored", 0)),
        "unlabeled": int(counts.get("unlabeled", 0)),
        "invariant_holds": seen == written + dups + rejected,
        "splits": splits,
        "channel_mean": stats["mean"],
        "channel_std": stats["std"],
        "resolution": cfg.resolution,
        "resolutions": sorted(set(cfg.extra_resolutions) | {cfg.resolution}),
        "image_keys": {str(r): schema.image_key(r, cfg.resolution)
                       for r in sorted(set(cfg.extra_resolutions) | {cfg.resolution})},
        "crop": cfg.crop,
        "filter": cfg.filter,
        "paired": T.P.summary(cfg.paired, cfg.paired_seed),
        "config": cfg.to_json(),
    }


GRID_MAX_SIDE = 128


def _thumb(img: np.ndarray) -> np.ndarray:
    if img.shape[0] <= GRID_MAX_SIDE:
        return img
    from PIL import Image
    return np.asarray(Image.fromarray(img).resize((GRID_MAX_SIDE, GRID_MAX_SIDE), Image.LANCZOS))


def _finalize_shards(output_uri: str, tmp_dir: str, shards) -> Dict[str, Dict]:
    """Move the workers' temp files to Split-<split>/data_tfrecord-NNNNN-of-MMMMM.gz.

    Old data_tfrecord files in the split dirs (an earlier run into the same directory) are
    deleted first so readers never mix runs; a split with no examples gets one empty file so
    every split directory is readable.
    """
    out = {}
    for split in (schema.TRAIN_SPLIT, schema.EVAL_SPLIT):
        d = _join(output_uri, f"Split-{split}")
        old = [m.path for r in FileSystems.match([_join(d, TFRECORD_PREFIX + "-*")])
               for m in r.metadata_list]
        if old:
            FileSystems.delete(old)
        mine = sorted((path, n) for s, path, n in shards if s == split)
        if not mine:
            empty = TFRecordGzipWriter(_join(tmp_dir, f"{split}-empty.gz"))
            empty.close()
            mine = [(empty.path, 0)]
        if "://" not in d:
            os.makedirs(d, exist_ok=True)
        dst = [_join(d, f"{TFRECORD_PREFIX}-{i:05d}-of-{len(mine):05d}.gz") for i in range(len(mine))]
        FileSystems.rename([p for p, _ in mine], dst)
        out[split] = {"files": len(dst), "records": sum(n for _, n in mine)}
    FileSystems.delete([tmp_dir])
    if "://" not in tmp_dir:
        try:
            os.rmdir(os.path.dirname(tmp_dir))     # .ingest-tmp, if no other run uses it
        except OSError:
            pass
    return out


def _write_reports(_, output_uri, tmp_dir, cfg, input_base, n_units, counts, stats, rejections,
                   sample, shards):
    from facegan.images import decode_png, encode_png, make_grid
    files = _finalize_shards(output_uri, tmp_dir, shards)
    summary = make_summary(counts, stats, cfg, input_base, n_units)
    summary["tfrecord_files"] = files
    for split, f in files.items():
        if f["records"] != summary["splits"][split]["examples"]:   # caught by check_summary
            summary["invariant_holds"] = False
    summary["grid_images"] = len(sample)
    _write_bytes(_join(output_uri, schema.SUMMARY_FILE),
                 json.dumps(summary, indent=2, sort_keys=True).encode())
    lines = "".join(json.dumps(r, sort_keys=True) + "\n"
                    for r in sorted(rejections, key=lambda r: (r["path"], r["reason"])))
    _write_bytes(_join(output_uri, schema.REJECTIONS_FILE), lines.encode())
    if sample:
        imgs = np.stack([_thumb(decode_png(png)) for _, png in sorted(sample, key=lambda kv: kv[0])])
        _write_bytes(_join(output_uri, schema.GRID_FILE), encode_png(make_grid(imgs)))
    return summary


def build_pipeline(p: beam.Pipeline, units: Sequence[str], output_uri: str, cfg: T.IngestConfig,
                   input_base: str = "", progress_dir: Optional[str] = None):
    """Add the ingestion transforms to `p`: read `units`, write the Examples layout at `output_uri`."""
    hashed = (p | "ListInputs" >> beam.Create(list(units))
              | "ReadAndHash" >> beam.ParDo(ReadAndHashFn()).with_outputs(
                  REJECTED, COUNTS, main=HASHED))
    tmp_dir = _join(output_uri, TMP_DIR, uuid.uuid4().hex)
    results = (hashed[HASHED]
               | "GroupBySha256" >> beam.GroupByKey()
               | "ProcessGroup" >> beam.ParDo(ProcessGroupFn(cfg, tmp_dir, progress_dir)).with_outputs(
                   SHARDS, REJECTED, DUPLICATE, COUNTS, STATS, SAMPLE))
    counts = ((hashed[COUNTS], results[COUNTS]) | "AllCounts" >> beam.Flatten()
              | "SumCounts" >> beam.CombinePerKey(sum))
    rejections = ((hashed[REJECTED], results[REJECTED], results[DUPLICATE])
                  | "AllRejections" >> beam.Flatten())
    stats = results[STATS] | "ChannelStats" >> beam.CombineGlobally(ChannelStatsFn())
    sample = results[SAMPLE] | "GridSample" >> beam.combiners.Top.Smallest(
        cfg.grid_size, key=lambda kv: kv[0])
    return (p | "FinalizeTrigger" >> beam.Create([None])
            | "Finalize" >> beam.Map(
                _write_reports, output_uri, tmp_dir, cfg, input_base, len(units),
                counts=beam.pvalue.AsDict(counts), stats=beam.pvalue.AsSingleton(stats),
                rejections=beam.pvalue.AsList(rejections), sample=beam.pvalue.AsSingleton(sample),
                shards=beam.pvalue.AsList(results[SHARDS])))


def read_summary(output_uri: str) -> Dict:
    with FileSystems.open(_join(output_uri, schema.SUMMARY_FILE),
                          compression_type=CompressionTypes.UNCOMPRESSED) as f:
        return json.loads(f.read().decode())


def check_summary(summary: Dict, cfg: T.IngestConfig) -> None:
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
                          f"{s['files_seen']} files seen, rejected: {reasons or 'none'}; "
                          f"see {schema.REJECTIONS_FILE}")
    if s["rejected_fraction"] > cfg.max_rejected_fraction:
        raise IngestError(f"{s['rejected']} of {s['files_seen']} files rejected "
                          f"({s['rejected_fraction']:.1%} > max_rejected_fraction "
                          f"{cfg.max_rejected_fraction:.1%}) in {s['input_base']}: {reasons}; "
                          f"see {schema.REJECTIONS_FILE}")


def prepare(input_base: str, cfg: T.IngestConfig) -> List[str]:
    """Fail-fast checks before any Beam work: input exists and is non-empty, labels parse."""
    if cfg.labels:
        T.load_labels(cfg.labels)   # raises IngestError naming the file/line
    return T.enumerate_inputs(input_base, skip=[cfg.labels] if cfg.labels else [])


def run_ingest(input_base: str, output_uri: str, cfg: T.IngestConfig,
               beam_args: Optional[List[str]] = None, pipeline: Optional[beam.Pipeline] = None,
               on_progress=None) -> Dict:
    """Validate, run the Beam pipeline, check the result; returns the summary dict.

    `pipeline`: an unrun beam.Pipeline to use (the TFX executor passes its own); otherwise one is
    made from `beam_args` (passed to PipelineOptions unchanged). `on_progress(done, total)` is
    called from the driver while a local run is going (per-worker counter files in a temp dir;
    `total` is None when archives make the file count unknown up front).
    """
    units = prepare(input_base, cfg)
    # files to expect (unknown up front when archives are expanded on the workers)
    total = None if any(T.is_archive(u) for u in units) else len(units)
    progress_dir = None
    if on_progress is not None:
        import tempfile
        progress_dir = tempfile.mkdtemp(prefix="facegan-ingest-progress-")
    if "://" not in output_uri:
        os.makedirs(output_uri, exist_ok=True)
    p = pipeline if pipeline is not None else beam.Pipeline(options=PipelineOptions(beam_args or []))
    build_pipeline(p, units, output_uri, cfg, input_base=input_base, progress_dir=progress_dir)
    log.info("ingesting %d input units from %s into %s", len(units), input_base, output_uri)
    if on_progress is None:
        p.run().wait_until_finish()
    else:
        err = []

        def _run():
            try:
                p.run().wait_until_finish()
            except BaseException as e:  # noqa: BLE001 - re-raised in the driver thread
                err.append(e)

        th = threading.Thread(target=_run, daemon=True)
        th.start()
        while th.is_alive():
            th.join(0.5)
            on_progress(read_progress(progress_dir), total)
        on_progress(read_progress(progress_dir), total)
        if hasattr(on_progress, "records"):
            on_progress.records = read_progress_records(progress_dir)
        import shutil
        shutil.rmtree(progress_dir, ignore_errors=True)
        if err:
            raise err[0]
    summary = read_summary(output_uri)
    check_summary(summary, cfg)
    return summary
