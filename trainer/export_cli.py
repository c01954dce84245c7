"""`facegan export`: a run's checkpoint as the next numbered version of a servable model.

    facegan export --run runs/dcgan-64px-1a2b3c4d [--checkpoint last|best|N] --to serving/faces

Writes BASE/NAME/<N>/ (N = 1 + the highest version there; written beside it and renamed into
place, so a polling server never loads half of it): the layout `facegan serve --model_base_path
BASE/NAME` and TF Serving load. The checkpoint: `last` (the newest in the run's checkpoints/),
`best` (the best evaluation by the run's `eval.best_metric` in metrics.jsonl, whose checkpoint
best/ holds -- the same one `eval.export=best` exports), or a step number. The version's
metadata (assets/facegan_metadata.json) carries `checkpoint` (selected, step, path), `steps`,
`images_shown` and `metrics` (the headline numbers of the evaluation at that step, from
metrics.jsonl; empty when that step was not evaluated) with `metrics_record`. Prints the
version path on stdout.

The run folder is only read (a run may still be training into it). Bad flags, a folder that is
not a run, a checkpoint it does not have and a base path that cannot hold versions are refused
in one line before TensorFlow loads.
"""
from __future__ import annotations

import logging
import sys

from facegan.trainer import runs

EXAMPLES = """examples:
  facegan export --run runs/smoke --to serving/faces                  # the last checkpoint
  facegan export --run runs/smoke --checkpoint best --to serving/faces
  facegan serve --model_base_path serving/faces --model_name faces --port 8500"""


def add_arguments(parser):
    parser.add_argument("--run", required=True, metavar="DIR", help="a `facegan train` run folder")
    parser.add_argument("--checkpoint", default="last", metavar="last|best|N",
                        help="which checkpoint: the newest, the best by eval.best_metric, or step N "
                             "(default: last)")
    parser.add_argument("--to", required=True, metavar="BASE/NAME",
                        help="model base path; the export becomes its next version BASE/NAME/<N>/")


def main(args) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = runs.read_config(args.run)
        selection = runs.select_checkpoint(args.run, str(args.checkpoint), config)
        runs.check_serving_base(args.to, "--to")
    except runs.Refusal as e:
        print(f"facegan export: {e}", file=sys.stderr)
        return 2
    from facegan.trainer import train_lib      # TensorFlow: only once there is something to export
    from facegan.trainer.config import Config, ConfigError
    try:
        cfg = Config.from_dict(config)
    except ConfigError as e:
        print(f"facegan export: {args.run}/{runs.CONFIG_FILE}: {e}", file=sys.stderr)
        return 2
    trainer = train_lib.Trainer.from_checkpoint(args.run, selection["path"], cfg)
    result = trainer.result(selected=selection["selected"])
    if result.steps != selection["step"]:
        print(f"facegan export: {selection['path']} holds step {result.steps}, not {selection['step']}",
              file=sys.stderr)
        return 1
    path = train_lib.export_version(result, args.to, runs.version_metadata(selection, args.run))
    metrics = selection["record"]["headline"] if selection["record"] else "not evaluated at this step"
    print(f"facegan export: step {result.steps} ({selection['selected']}) of {args.run}, metrics: {metrics}",
          file=sys.stderr)
    print(path)
    return 0
