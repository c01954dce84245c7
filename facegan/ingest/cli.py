"""`facegan ingest`: run the ImageExampleGen pipeline outside TFX, with a progress display.

The output directory has the Examples layout the pipeline's artifact has (Split-train/,
Split-eval/, ingest_summary.json, rejections.jsonl, sample_grid.png), so `facegan train` and
`facegan evaluate` read it directly. An existing output is replaced only when the new run
succeeds (output.Staging); a failed or interrupted run leaves it byte-identical.

Ctrl-C / SIGTERM: one line, no partial files left (the staging folder, its .ingest-tmp and the
progress folder are removed), exit 130 / 143.
"""
import argparse
import json
import os
import shlex
import signal
import sys
import time

from facegan.ingest import options as O

DEFAULT_BEAM_ARGS = f"--direct_running_mode=multi_processing --direct_num_workers={os.cpu_count() or 1}"

# configuration field (library and TFX component parameter) -> this command's flag
FLAGS = {"input_base": "--input", "output": "--output", "output_uri": "--output",
         "resolution": "--resolution", "crop": "--crop", "filter": "--filter",
         "mirror": "--mirror", "extra_resolutions": "--extra-resolutions",
         "eval_fraction": "--eval-fraction", "min_side": "--min-side",
         "max_pixels": "--max-pixels", "max_rejected_fraction": "--max-rejected-fraction",
         "background": "--background", "labels": "--labels", "paired": "--paired",
         "paired_seed": "--paired-seed"}

DESCRIPTION = """\
Ingest face images (a folder tree, .zip/.tar/.tar.gz archives or one image) into the Examples
layout (gzipped TFRecords of tf.Example in Split-train/ and Split-eval/, plus
ingest_summary.json, rejections.jsonl and sample_grid.png) that `facegan train` and
`facegan evaluate` read. Every file is written or listed in rejections.jsonl with a reason.

An existing --output is replaced, but only when the new run succeeds: the new output is built
beside it and swapped in at the end; a failed or interrupted run leaves it unchanged."""

EPILOG = """\
example:
  facegan ingest --input ~/faces --output out/examples --resolution 64 --mirror \\
      --extra-resolutions 4,8,16,32 --labels list_attr_celeba.txt

Large sets on a cluster: the same pipeline on another Beam runner, e.g.
  --beam-args "--runner=DataflowRunner --project=P --region=R --temp_location=gs://B/tmp \\
      --setup_file=./setup.py" --input gs://B/faces --output gs://B/examples"""


def add_arguments(parser):
    parser.description = DESCRIPTION
    parser.epilog = EPILOG
    parser.formatter_class = _Formatter
    parser.add_argument("--input", required=True,
                        help="folder (searched recursively, symlinks followed once), archive "
                             "(.zip/.tar/.tar.gz) or one image file; gs:// and other Beam "
                             "filesystems work too")
    parser.add_argument("--output", required=True,
                        help="output folder (Examples layout); replaced only if the run succeeds")
    parser.add_argument("--resolution", type=int, required=True,
                        help="side of the stored square images, a power of two in [8, 1024]")
    parser.add_argument("--crop", default="center", choices=O.CROPS,
                        help="center: largest centred square; celeba: the square on the face of "
                             "an aligned CelebA frame; none: pad to a square with --background")
    parser.add_argument("--filter", default=O.DEFAULT_FILTER, choices=O.FILTERS,
                        help="resize filter (lanczos: antialiased, what FID tools expect)")
    parser.add_argument("--mirror", action="store_true",
                        help="also store a mirrored copy of every image (same split)")
    parser.add_argument("--extra-resolutions", default="",
                        help="comma list of lower resolutions to store too (2x2 box averages, "
                             "for progressive growing), e.g. 4,8,16,32")
    parser.add_argument("--eval-fraction", type=float, default=O.DEFAULT_EVAL_FRACTION,
                        help="share of images in the eval split, in [0, 1); chosen by content "
                             "hash, so deterministic")
    parser.add_argument("--min-side", type=int, default=O.DEFAULT_MIN_SIDE,
                        help="reject images whose shorter side is below this (too_small)")
    parser.add_argument("--max-pixels", type=int, default=O.DEFAULT_MAX_PIXELS,
                        help="reject images with more pixels than this (oversized); the one "
                             "decompression-bomb limit (PIL's own is raised to match)")
    parser.add_argument("--max-rejected-fraction", type=float,
                        default=O.DEFAULT_MAX_REJECTED_FRACTION,
                        help="fail (keeping any previous output) when more than this share of "
                             "the files is rejected, in [0, 1]")
    parser.add_argument("--background", default="255,255,255",
                        help="R,G,B that transparent pixels are composited on and --crop none "
                             "pads with")
    parser.add_argument("--labels", default=None,
                        help="list_attr_celeba.txt, a JSON file, or a folder of per-image JSON "
                             "(stored as attr/<name> features)")
    parser.add_argument("--paired", default="",
                        help="also store a derived input image per example for image-to-image "
                             "training: grayscale, lowres[:factor=4|8], edges[:threshold=32], "
                             "masked[:min_frac=0.25,max_frac=0.5,fill=127] (see paired.py)")
    parser.add_argument("--paired-seed", type=int, default=0, help="seed of the paired transform")
    parser.add_argument("--runner", default="auto", choices=("auto", "local", "beam"),
                        help="local: this machine's cores without Beam (fork pool; no worker "
                             "start-up); beam: the Beam pipeline on --beam-args; auto: local "
                             "unless --beam-args names another runner")
    parser.add_argument("--beam-args", default=None,
                        help="Beam pipeline args, passed unchanged, e.g. "
                             "'--runner=DataflowRunner ...' for large sets; with --runner beam "
                             f"and none given: '{DEFAULT_BEAM_ARGS}'")
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    parser.add_argument("--verbose", action="store_true",
                        help="show third-party warnings and Beam's logs (quiet by default)")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's line breaks and shows every flag's default (or that it is required)."""

    def _get_help_string(self, action):
        h = action.help or ""
        if action.option_strings and action.default is not argparse.SUPPRESS:
            h += " (required)" if action.required else " (default: %(default)r)"
        return h


def _quiet_third_party():
    """Beam's and google-api-core's start-up chatter (FutureWarnings, worker log lines) is not
    ours: hidden unless --verbose. Our own messages and real errors are unaffected."""
    import logging
    import warnings
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    # Beam's worker interpreters inherit this (their import-time FutureWarnings)
    os.environ["PYTHONWARNINGS"] = ",".join(
        w for w in (os.environ.get("PYTHONWARNINGS"), "ignore::FutureWarning") if w)
    # CRITICAL: a failed bundle is logged at ERROR (with its traceback) before the runner
    # raises it; the raised error is what we report, in one line where we know what it means
    logging.getLogger("apache_beam").setLevel(logging.CRITICAL)


class _WorkerStderrToFile:
    """Point file descriptor 2 at a temp file while the run goes, keeping `sys.stderr` (our own
    messages) on the terminal. Beam's worker interpreters inherit fd 2 and print tracebacks when
    a Ctrl-C reaches the whole process group; those now land in the file, removed afterwards."""

    def __enter__(self):
        import tempfile
        sys.stderr.flush()
        self.saved = os.dup(2)
        # the pid in the name lets a later run remove the file of a run killed outright
        # (output.sweep_stale_temp_files)
        fd, self.path = tempfile.mkstemp(prefix=f"facegan-ingest-workers-{os.getpid()}-",
                                         suffix=".log")
        os.dup2(fd, 2)
        os.close(fd)
        self.old = sys.stderr
        sys.stderr = os.fdopen(os.dup(self.saved), "w", buffering=1)
        return self

    def __exit__(self, *exc):
        sys.stderr.flush()
        os.dup2(self.saved, 2)
        os.close(self.saved)
        sys.stderr.close()
        sys.stderr = self.old
        try:
            os.remove(self.path)
        except OSError:
            pass
        return False


PHASE_WORDS = {"list": "listing", "hash": "hashing", "process": ""}


def progress_line(phase: str, done: int, total, started, now, what: str = "") -> str:
    """One progress line: files done (of total), files/s and ETA with the clock started when
    the phase's first file started (`started`, None before; `now` on the same clock)."""
    from facegan.progress import format_eta, rate_eta
    word = PHASE_WORDS.get(phase, phase)
    head = f"ingest ({word})" if word else "ingest"
    if phase == "list":
        return f"{head} {what}".rstrip()
    parts = [head, f"{done}" + (f"/{total}" if total else "") + " files"]
    rate, eta = rate_eta(done, total, started, now)
    if started is None or done <= 0:
        parts.append("starting")
    else:
        parts.append(f"{rate:.1f} files/s")
        if eta is not None:
            parts.append(f"ETA {format_eta(eta)}")
    return "  ".join(parts)


class ProgressDisplay:
    """`on_progress` for ingest: a line when a phase begins, then one every `every_s` seconds
    (as Beam's own display), and the last state on `close()`."""

    def __init__(self, stream=None, every_s: float = 2.0, clock=time.time, what: str = ""):
        self.stream, self.every_s, self.clock, self.what = stream, every_s, clock, what
        self.phase, self.last, self.state, self.printed = None, None, None, None

    def __call__(self, done, total, phase="process", started=None):
        now = self.clock()
        self.state = (phase, done, total, started)
        if phase != self.phase or self.last is None or now - self.last >= self.every_s:
            self.phase, self.last = phase, now
            self._print(now)

    def _print(self, now):
        phase, done, total, started = self.printed = self.state
        print(progress_line(phase, done, total, started, now, self.what),
              file=self.stream or sys.stderr, flush=True)

    def close(self):
        if self.state is not None and self.state[0] != "list" and self.state != self.printed:
            self._print(self.clock())


class Terminated(BaseException):
    """SIGTERM, raised in the main thread like KeyboardInterrupt is for SIGINT."""


def _on_sigterm(signum, frame):
    raise Terminated()


def main(args) -> int:
    try:
        cfg = O.IngestConfig(
                             resolution=args.resolution, crop=args.crop, filter=args.filter, mirror=args.mirror,
                             extra_resolutions=args.extra_resolutions, eval_fraction=args.eval_fraction,
                             min_side=args.min_side, max_pixels=args.max_pixels, background=args.background,
                             labels=args.labels, max_rejected_fraction=args.max_rejected_fraction,
                             paired=args.paired, paired_seed=args.paired_seed)
    except O.IngestError as e:
        print(f"facegan ingest: error: {O.for_flags(e, FLAGS)}", file=sys.stderr)
        return 2
    if not args.verbose:
        _quiet_third_party()
    previous = os.path.isdir(args.output) and bool(os.listdir(args.output))
    old_term = signal.signal(signal.SIGTERM, _on_sigterm)
    progress = None if args.quiet else ProgressDisplay(what=args.input)

    import contextlib
    quiet = contextlib.nullcontext() if args.verbose else _WorkerStderrToFile()
    try:
        from facegan.ingest import runner as R
        beam_args = None if args.beam_args is None else shlex.split(args.beam_args)
        if args.runner == "beam" and beam_args is None:
            beam_args = shlex.split(DEFAULT_BEAM_ARGS)
        with quiet:
            summary = R.ingest(args.input, args.output, cfg, beam_args=beam_args,
                               on_progress=progress, runner=args.runner)
            if progress is not None:
                progress.close()
    except O.IngestError as e:
        kept = f" (the previous output in {args.output} is unchanged)" if previous else ""
        print(f"facegan ingest: error: {O.for_flags(e, FLAGS)}{kept}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, Terminated) as e:
        name, code = ("SIGTERM", 143) if isinstance(e, Terminated) else ("SIGINT", 130)
        kept = f"; the previous output in {args.output} is unchanged" if previous else ""
        print(f"facegan ingest: interrupted ({name}); partial files removed{kept}",
              file=sys.stderr)
        return code
    finally:
        signal.signal(signal.SIGTERM, old_term)
    short = {k: summary[k] for k in ("files_seen", "originals_written", "records_written",
                                     "examples_written", "duplicates", "rejected",
                                     "rejected_by_reason", "mirrored", "splits", "symlink_loops",
                                     "channel_mean", "channel_std", "resolutions", "crop",
                                     "filter", "paired", "runner")
             if k in summary}
    print(json.dumps(short, indent=2))
    mirror = (f" ({summary['originals_written']} originals + {summary['mirrored']} mirrored = "
              f"{summary['records_written']} records)") if summary.get("mirrored") else ""
    print(f"wrote {args.output}{mirror}: Split-train, Split-eval, ingest_summary.json, "
          f"rejections.jsonl, sample_grid.png", file=sys.stderr)
    for loop in summary.get("symlink_loops", []):
        print(f"facegan ingest: warning: symlink loop not followed: {loop}", file=sys.stderr)
    return 0
