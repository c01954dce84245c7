"""The ingestion Beam pipeline (ImageExampleGen's, `facegan ingest --beam-args`): files -> tf.Examples in Split-train/ and Split-eval/.

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
would mean decompressing the archive again). All per-file work is in image_ops.py (and
archives.py, labels.py) and every stage is a plain function in stages.py: the DoFns here only
route its outputs, so the local runner (pool_runner.py) writes the same records.

`run_beam` runs this pipeline (Beam args unchanged: DirectRunner multi-processing, Dataflow,
Flink, Spark); `runner.ingest` is the entry the TFX executor and `facegan ingest` use (it
validates, stages the output, picks the runner and checks the summary).
"""
import collections
import logging
import os
import threading
from typing import Dict, List, Optional, Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

from facegan.ingest import stages as S
from facegan.ingest import options as O
from facegan.ingest import listing as L

log = logging.getLogger(__name__)
IngestError = O.IngestError
HASHED, REJECTED, DUPLICATE, COUNTS, STATS, SAMPLE, SHARDS = (
    S.HASHED, S.REJECTED, S.DUPLICATE, S.COUNTS, S.STATS, S.SAMPLE, S.SHARDS)
TFRECORD_PREFIX, TMP_DIR = S.TFRECORD_PREFIX, S.TMP_DIR
# Set when the driver is interrupted: DoFns running in this process (the in-memory runner) stop
# at their next element instead of writing into a folder that is being removed.
CANCELLED = threading.Event()


class Cancelled(Exception):
    pass


def _bundle_output(tag: str, value):
    """A finish_bundle output (needs an explicit window; everything here is in the global one)."""
    return beam.pvalue.TaggedOutput(tag, WindowedValue(value, GlobalWindow().max_timestamp(),
                                                       [GlobalWindow()]))


def _route(events):
    for tag, value in events:
        yield value if tag == HASHED else beam.pvalue.TaggedOutput(tag, value)


class ReadAndHashFn(beam.DoFn):
    """unit path -> (sha256, (source, inline bytes or None)); archives yield one per member.
    Counters are kept per bundle and emitted once in finish_bundle (cheaper than per element)."""

    def start_bundle(self):
        self.counts = collections.Counter()

    def process(self, unit: str):
        if CANCELLED.is_set():
            raise Cancelled()
        yield from _route(S.read_and_hash(unit, self.counts))

    def finish_bundle(self):
        for k, v in self.counts.items():
            yield _bundle_output(COUNTS, (k, v))


class ProcessGroupFn(beam.DoFn):
    """(sha256, [(source, bytes|None)...]) -> records in this bundle's temp shard per split,
    plus report side outputs (stages.GroupProcessor)."""

    def __init__(self, cfg: O.IngestConfig, tmp_dir: str, progress_dir: Optional[str] = None):
        self.cfg, self.tmp_dir, self.progress_dir = cfg, tmp_dir, progress_dir

    def setup(self):
        self.proc = S.GroupProcessor(self.cfg)
        self.progress = S.ProgressFile(self.progress_dir)

    def start_bundle(self):
        self.proc.start()
        self.shards = S.ShardWriters(self.tmp_dir)

    def process(self, element):
        if CANCELLED.is_set():
            raise Cancelled()
        sha, items = element
        items = list(items)
        self.progress.add(len(items))
        yield from _route(self.proc.process(sha, items, self.shards.write))

    def finish_bundle(self):
        self.progress.add(0, force=True)
        for shard in self.shards.close():
            yield _bundle_output(SHARDS, shard)
        for k, v in self.proc.counts.items():
            yield _bundle_output(COUNTS, (k, v))
        if self.proc.stats[2]:
            yield _bundle_output(STATS, tuple(self.proc.stats))
        for entry in self.proc.sample:
            yield _bundle_output(SAMPLE, entry)


class ChannelStatsFn(beam.CombineFn):
    def create_accumulator(self):
        return S.sum_stats([])

    def add_input(self, acc, x):
        return S.sum_stats([acc, x])

    def merge_accumulators(self, accs):
        return S.sum_stats(accs)

    def extract_output(self, acc):
        return S.combine_stats([acc])


def _finalize(_, output_uri, tmp_dir, cfg, input_base, n_units, listing, counts, stats,
              rejections, sample, shards):
    return S.write_reports(output_uri, tmp_dir, cfg, input_base, n_units, counts, stats,
                           rejections, S.smallest_sample(sample, cfg.grid_size), shards, listing)


def build_pipeline(p: beam.Pipeline, units: Sequence[str], output_uri: str, cfg: O.IngestConfig,
                   input_base: str = "", progress_dir: Optional[str] = None,
                   listing: Optional[L.InputListing] = None):
    """Add the ingestion transforms to `p`: read `units`, write the Examples layout at `output_uri`."""
    import uuid
    hashed = (p | "ListInputs" >> beam.Create(list(units))
              | "ReadAndHash" >> beam.ParDo(ReadAndHashFn()).with_outputs(
                  REJECTED, COUNTS, main=HASHED))
    tmp_dir = S.join(output_uri, TMP_DIR, uuid.uuid4().hex)
    results = (hashed[HASHED]
               | "GroupBySha256" >> beam.GroupByKey()
               | "ProcessGroup" >> beam.ParDo(ProcessGroupFn(cfg, tmp_dir, progress_dir)).with_outputs(
                   SHARDS, REJECTED, DUPLICATE, COUNTS, STATS, SAMPLE))
    counts = ((hashed[COUNTS], results[COUNTS]) | "AllCounts" >> beam.Flatten()
              | "SumCounts" >> beam.CombinePerKey(sum))
    rejections = ((hashed[REJECTED], results[REJECTED], results[DUPLICATE])
                  | "AllRejections" >> beam.Flatten())
    stats = results[STATS] | "ChannelStats" >> beam.CombineGlobally(ChannelStatsFn())
    sample = results[SAMPLE] | "GridSample" >> beam.combiners.Top.Largest(
        cfg.grid_size, key=lambda kv: kv[0])      # largest -key = smallest key
    return (p | "FinalizeTrigger" >> beam.Create([None])
            | "Finalize" >> beam.Map(
                _finalize, output_uri, tmp_dir, cfg, input_base, len(units), listing,
                counts=beam.pvalue.AsDict(counts), stats=beam.pvalue.AsSingleton(stats),
                rejections=beam.pvalue.AsList(rejections), sample=beam.pvalue.AsSingleton(sample),
                shards=beam.pvalue.AsList(results[SHARDS])))


def _child_pids(pid: int) -> List[int]:
    """Descendant process ids of `pid` (Linux /proc; empty elsewhere)."""
    kids: Dict[int, List[int]] = collections.defaultdict(list)
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    for n in names:
        if n.isdigit():
            try:
                with open(f"/proc/{n}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                kids[ppid].append(int(n))
            except (OSError, ValueError, IndexError):
                pass
    out, todo = [], [pid]
    while todo:
        for c in kids.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def stop_workers() -> None:
    """SIGKILL the worker subprocesses this driver started (by pid; silent, no traceback)."""
    import signal
    import time
    for _ in range(3):              # again for any worker the runner started meanwhile
        for pid in _child_pids(os.getpid()):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.2)


def run_in_thread(target, poll=None) -> None:
    """Run `target()` in a thread with SIGINT/SIGTERM blocked there, so the worker subprocesses
    it starts inherit the block: a Ctrl-C reaches only the driver, which then stops them silently
    (no worker tracebacks). `poll()` is called every 0.5 s from this (the main) thread."""
    import signal
    err = []

    def _run():
        try:
            if hasattr(signal, "pthread_sigmask"):
                signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
            target()
        except BaseException as e:  # noqa: BLE001 - re-raised in the driver thread
            err.append(e)

    th = threading.Thread(target=_run, daemon=True, name="facegan-ingest")
    th.start()
    try:
        while th.is_alive():
            th.join(0.5)
            if poll is not None:
                poll()
    except BaseException:
        CANCELLED.set()
        # Beam's own threads report the killed workers ("Worker subprocess exited with return
        # code -9"): expected now, so not printed.
        threading.excepthook = lambda hook_args: None
        logging.getLogger("apache_beam").setLevel(logging.CRITICAL + 1)   # workers' last words
        stop_workers()
        th.join(5.0)
        raise
    if err:
        raise err[0]


def run_beam(listing: L.InputListing, stage_path: str, cfg: O.IngestConfig, input_base: str,
             beam_args: Optional[List[str]] = None, pipeline: Optional[beam.Pipeline] = None,
             progress_dir: Optional[str] = None, poll=None) -> None:
    """Build and run the pipeline into `stage_path` (Beam args passed to PipelineOptions as given)."""
    CANCELLED.clear()
    p = pipeline if pipeline is not None else beam.Pipeline(options=PipelineOptions(beam_args or []))
    build_pipeline(p, listing.units, stage_path, cfg, input_base=input_base,
                   progress_dir=progress_dir, listing=listing)
    from facegan.ingest.watchdog import watch_descendants
    with watch_descendants():   # Beam's own worker processes die with this one, even on kill -9
        run_in_thread(lambda: p.run().wait_until_finish(), poll)
