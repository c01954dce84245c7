"""`facegan ingest`: run the ImageExampleGen Beam pipeline outside TFX, with a progress display.

    facegan ingest --input faces/ --output out/examples --resolution 64 \
        [--crop center|celeba|none] [--mirror] [--extra-resolutions 4,8,16,32] \
        [--labels list_attr_celeba.txt] [--eval-fraction 0.1] \
        [--beam-args "--direct_running_mode=multi_processing --direct_num_workers=2"]

The output directory has the Examples layout the pipeline's artifact has (Split-train/,
Split-eval/, ingest_summary.json, rejections.jsonl, sample_grid.png), so `facegan train` and
`facegan evaluate` read it directly.
"""
import json
import os
import shlex
import sys
import time

from facegan.components.image_example_gen import transforms as T

DEFAULT_BEAM_ARGS = f"--direct_running_mode=multi_processing --direct_num_workers={os.cpu_count() or 1}"


def add_arguments(parser):
    parser.add_argument("--input", required=True, help="directory tree, archive or image file")
    parser.add_argument("--output", required=True, help="output directory (Examples layout)")
    parser.add_argument("--resolution", type=int, required=True, help="power of two in [8, 1024]")
    parser.add_argument("--crop", default="center", choices=T.CROPS)
    parser.add_argument("--filter", default=T.DEFAULT_FILTER, choices=T.FILTERS,
                        help="resize filter (default lanczos: antialiased, what FID tools expect)")
    parser.add_argument("--mirror", action="store_true", help="add mirrored copies (same split)")
    parser.add_argument("--extra-resolutions", default="",
                        help="comma list of lower resolutions to store too, e.g. 4,8,16,32")
    parser.add_argument("--eval-fraction", type=float, default=T.DEFAULT_EVAL_FRACTION)
    parser.add_argument("--min-side", type=int, default=T.DEFAULT_MIN_SIDE)
    parser.add_argument("--max-pixels", type=int, default=T.DEFAULT_MAX_PIXELS)
    parser.add_argument("--max-rejected-fraction", type=float, default=T.DEFAULT_MAX_REJECTED_FRACTION)
    parser.add_argument("--background", default="255,255,255", help="R,G,B for alpha and padding")
    parser.add_argument("--labels", default=None,
                        help="list_attr_celeba.txt, a JSON file, or a directory of per-image JSON")
    parser.add_argument("--paired", default="",
                        help="also store a derived input image per example for image-to-image "
                             "training: grayscale, lowres[:factor=4|8], edges[:threshold=32], "
                             "masked[:min_frac=0.25,max_frac=0.5,fill=127] (see paired.py)")
    parser.add_argument("--paired-seed", type=int, default=0, help="seed of the paired transform")
    parser.add_argument("--beam-args", default=DEFAULT_BEAM_ARGS,
                        help=f"Beam pipeline args, passed unchanged (default: {DEFAULT_BEAM_ARGS})")
    parser.add_argument("--quiet", action="store_true", help="no progress display")


def main(args) -> int:
    from facegan.progress import Progress
    try:
        cfg = T.IngestConfig(
            resolution=args.resolution, crop=args.crop, filter=args.filter, mirror=args.mirror,
            extra_resolutions=args.extra_resolutions, eval_fraction=args.eval_fraction,
            min_side=args.min_side, max_pixels=args.max_pixels, background=args.background,
            labels=args.labels, max_rejected_fraction=args.max_rejected_fraction,
            paired=args.paired, paired_seed=args.paired_seed)
    except T.IngestError as e:
        print(f"facegan ingest: error: {e}", file=sys.stderr)
        return 2
    from facegan.components.image_example_gen import beam_pipeline   # imports Beam (~8 s)

    progress = None

    def on_progress(done, total):
        # Start the clock at the first processed file so images/s and ETA are not diluted by
        # the Beam workers' start-up (several seconds each).
        nonlocal progress
        if progress is None:
            if done == 0:
                return
            progress = Progress(total=total, unit="files", label="ingest")
            progress._last = time.monotonic()   # first line after a real interval, not at t=0
        if done != progress.done:
            progress.update(done - progress.done)

    try:
        summary = beam_pipeline.run_ingest(args.input, args.output, cfg,
                                           beam_args=shlex.split(args.beam_args or ""),
                                           on_progress=None if args.quiet else on_progress)
    except T.IngestError as e:
        print(f"facegan ingest: error: {e}", file=sys.stderr)
        return 1
    if progress is not None:
        progress.close()
    short = {k: summary[k] for k in ("files_seen", "examples_written", "duplicates", "rejected",
                                     "rejected_by_reason", "mirrored", "splits", "channel_mean",
                                     "channel_std", "resolutions", "crop", "filter", "paired")}
    print(json.dumps(short, indent=2))
    print(f"wrote {args.output} (Split-train, Split-eval, ingest_summary.json, rejections.jsonl, "
          f"sample_grid.png)", file=sys.stderr)
    return 0
