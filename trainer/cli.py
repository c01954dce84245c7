"""`facegan train`: train a GAN from an Examples directory, outside TFX, with progress.

    facegan train --preset hdcgan --data <examples dir> --steps N [--out DIR]
                  [--set optim.batch_size=32 --set tricks.lens.enabled=true ...]

Runs trainer.train_lib.train (the same code the TFX Trainer's run_fn runs): checkpoints and
TensorBoard logs under DIR (re-running with the same DIR resumes, also after a kill -9), the EMA
generator exported as a SavedModel to DIR/export (unless --no-export; a progressive run stopped
early exports its current stage upsampled). With `--set run.strategy='"multiworker"'` and
TF_CONFIG, start the same command once per worker (README: "Training on several machines").
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from facegan.cli_args import parse_set
from facegan.trainer import registry
from facegan.trainer.config import ConfigError, get_preset, preset_names


EXAMPLE = """example:
  facegan train --preset smoke --data out/examples --steps 20 --out runs/smoke \\
                --set optim.batch_size=8 --set tricks.ema_decay=0.99"""


def _epilog() -> str:
    presets = [get_preset(name) for name in preset_names()]
    lines = [f"  {c.preset:<14} {c.network.architecture}/{c.loss.family}, {c.network.resolution}px, "
             f"batch {c.optim.batch_size}, {c.run.steps} steps" for c in presets]
    return "presets (architecture/loss):\n" + "\n".join(lines) + f"\n{registry.describe()}\n\n{EXAMPLE}"


def add_arguments(parser):
    # Reads only the TensorFlow-free config and registry, so `facegan train --help` is instant.
    parser.epilog = _epilog()
    parser.add_argument("--preset", required=True, choices=preset_names(), metavar="PRESET",
                        help="named config (see presets below); --set overrides its fields")
    parser.add_argument("--data", help="Examples artifact directory (with Split-train/) or TFRecord pattern")
    parser.add_argument("--synthetic", action="store_true", help="random input instead of --data (benchmarks)")
    parser.add_argument("--steps", type=int, default=None,
                        help="generator steps (default: the preset's run.steps)")
    parser.add_argument("--out", default="train_out",
                        help="run directory, resumes if it holds checkpoints (default: %(default)s)")
    parser.add_argument("--log-dir", default=None, help="TensorBoard directory (default: OUT/logs)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="config override (JSON value), repeatable, e.g. network.architecture=\"progan\"")
    parser.add_argument("--no-export", action="store_true",
                        help="skip the SavedModel export (default: export to OUT/export)")


def _disk_full(e: Exception, out: str, export_dir=None) -> int:
    """A full disk: one line (device, where the run resumes), exit 1; anything else re-raised."""
    from facegan import diskspace
    if not diskspace.is_disk_full(e):
        raise e
    from facegan.trainer import train_lib
    print(f"facegan train: {train_lib.disk_full_message(out, export_dir)}", file=sys.stderr)
    return 1


def main(args) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = get_preset(args.preset, parse_set(args.set, error=ConfigError))
    except ConfigError as e:
        print(f"facegan train: {e}", file=sys.stderr)
        return 2
    if not args.data and not args.synthetic:
        print("facegan train: --data is required (or --synthetic)", file=sys.stderr)
        return 2
    from facegan.trainer import train_lib   # TensorFlow: only once there is something to train
    try:
        result = train_lib.train(cfg, args.data, args.out, steps=args.steps, log_dir=args.log_dir,
                                 synthetic=args.synthetic, progress=True)
    except (FileNotFoundError, ValueError) as e:
        print(f"facegan train: {e}", file=sys.stderr)
        return 2
    except train_lib.TrainingDiverged as e:
        print(f"facegan train: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - only a full disk is answered here
        return _disk_full(e, args.out)
    summary = {"run_dir": result.run_dir, "steps": result.steps, "images_shown": result.images_shown,
               "resolution": result.resolution, "replicas": result.replicas, "nan_recoveries": result.nan_recoveries,
               "checkpoint": result.checkpoint, "log_dir": result.log_dir, "selected": result.selected,
               "metrics": {k: round(v, 5) for k, v in result.metrics.items()}}
    if result.stage_alpha is not None:
        summary["stage_alpha"] = result.stage_alpha
    try:
        if not args.no_export:
            summary["export"] = train_lib.export(result, os.path.join(args.out, "export"))
    except Exception as e:  # noqa: BLE001 - only a full disk is answered here
        return _disk_full(e, args.out, os.path.join(args.out, "export"))
    finally:
        train_lib.release(result)
    if not result.chief:
        summary["role"] = "non-chief worker: the chief writes the run directory and the export"
        summary.update(export=None, checkpoint=None, log_dir=None)   # its scratch is gone
    print(json.dumps(summary, indent=2))
    return 0
