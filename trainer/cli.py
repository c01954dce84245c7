"""`facegan train`: train a GAN from an Examples directory, outside TFX, with progress.

    facegan train --preset dcgan --data <examples dir> [--resolution 64] [--steps N] [--out DIR]
                  [--set optim.batch_size=32 ...] [--serving-dir BASE/NAME]
    facegan train --config runs/<run>/config.json --data <examples dir> [--set ...]

Runs trainer.train_lib.train (the same code the TFX Trainer's run_fn runs).

Which folder: `--out`, by default `runs/<preset>-<resolution>px-<hash>` with the hash taken over
the resolved config (without `run.steps`) and the data path, printed on stderr at the start. The
same command again -- also with a higher `--steps` -- lands in the same folder and resumes
(exactly, also after a kill -9); two commands that differ in a setting land in two folders.
stylegan3 numbers its run folders instead (00000-..., 00001-...), so repeating a command starts a
new run and resuming needs a pointer to a snapshot; here resuming is the common case, so the
folder is a function of what is trained. An explicit `--out` that holds another run is refused
in one line before any work, naming the fields that differ and the ways forward: a new `--out`,
or `--continue-with-changes` for settings a checkpoint survives (evaluation and logging cadence,
learning rates, loss weights, batch size, data); never for what shapes the model (architecture,
resolution, widths, ...). The rules are trainer/runs.py's.

Refused before TensorFlow is imported, leaving nothing on disk: bad flags, `--set` fields or
`--config` files, a missing or unfinished `--data`, data stored below `--resolution` (read from
ingest_summary.json or the first record), a run folder of another run, `--steps 0` (it would
export an untrained generator; `facegan export` exports an existing run's checkpoints). A run
that fails while starting (after TensorFlow loaded, before its first step) removes the folder
it created.

Outputs: checkpoints and TensorBoard logs under the run folder, `run.json` (what the run was
started with, and each start), the EMA generator as a SavedModel in OUT/export (replaced on each
start; unless --no-export; a progressive run stopped early exports its current stage upsampled)
and, with `--serving-dir BASE/NAME`, as the next numbered version BASE/NAME/<N>/ that
`facegan serve --model_base_path BASE/NAME` and TF Serving load. With
`--set run.strategy='"multiworker"'` and TF_CONFIG, start the same command once per worker.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys

from facegan.cli_args import parse_set
from facegan.trainer import registry, runs
from facegan.trainer.config import Config, ConfigError, fit_preset_tables, get_preset, preset_names


EXAMPLE = """example:
  facegan train --preset smoke --data out/examples --steps 20 --out runs/smoke \\
                --set optim.batch_size=8 --set tricks.ema_decay=0.99
  facegan train --preset dcgan --data out/examples --resolution 64 --serving-dir serving/faces
  facegan train --config runs/smoke/config.json --data out/examples --steps 40"""


def _epilog() -> str:
    presets = [get_preset(name) for name in preset_names()]
    lines = [f"  {c.preset:<14} {c.network.architecture}/{c.loss.family}, {c.network.resolution}px, "
             f"batch {c.optim.batch_size}, {c.run.steps} steps" for c in presets]
    return "presets (architecture/loss):\n" + "\n".join(lines) + f"\n{registry.describe()}\n\n{EXAMPLE}"


def add_arguments(parser):
    # Reads only the TensorFlow-free config and registry, so `facegan train --help` is instant.
    parser.epilog = _epilog()
    parser.add_argument("--preset", choices=preset_names(), metavar="PRESET",
                        help="named config (see presets below); required unless --config is given "
                             "(not both); --set, --resolution and --steps override its fields")
    parser.add_argument("--config", metavar="FILE",
                        help="a run's config.json (or its run folder) to train with again, instead of "
                             "--preset; --set, --resolution and --steps override its fields")
    parser.add_argument("--data", help="Examples artifact directory (with Split-train/) or TFRecord pattern")
    parser.add_argument("--synthetic", action="store_true", help="random input instead of --data (benchmarks)")
    parser.add_argument("--resolution", type=int, default=None, metavar="N",
                        help="training resolution (network.resolution); default: the preset's "
                             "(or --config's); must not exceed the data's stored resolution")
    parser.add_argument("--steps", type=int, default=None,
                        help="generator steps in total (default: the preset's run.steps); the same "
                             "command with a higher --steps continues the run to the new total")
    parser.add_argument("--out", default=None,
                        help="run folder; the same command again resumes it (default: "
                             "runs/<preset>-<resolution>px-<hash of the config and data path>)")
    parser.add_argument("--continue-with-changes", action="store_true",
                        help="let --out continue a run started with other settings that a checkpoint "
                             "survives (eval/log cadence, learning rates, loss weights, batch size, "
                             "data); never architecture, resolution or widths")
    parser.add_argument("--serving-dir", metavar="BASE/NAME", default=None,
                        help="at the end, also export the generator as the next version BASE/NAME/<N>/ "
                             "(load it with facegan serve --model_base_path BASE/NAME)")
    parser.add_argument("--log-dir", default=None, help="TensorBoard directory (default: OUT/logs)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="config override (JSON value), repeatable, e.g. network.architecture=\"progan\"")
    parser.add_argument("--no-export", action="store_true",
                        help="skip the SavedModel in OUT/export (default: export there; --serving-dir "
                             "still exports)")


def load_config_file(path: str) -> Config:
    """A run's config.json (or a run folder holding one) -> Config; ConfigError naming the file."""
    if os.path.isdir(path):
        path = os.path.join(path, runs.CONFIG_FILE)
    if not os.path.isfile(path):
        raise ConfigError(f"--config {path}: no such file")
    try:
        with open(path) as f:
            d = json.load(f)
    except (OSError, ValueError) as e:
        raise ConfigError(f"--config {path}: not JSON ({e})") from None
    try:
        return Config.from_dict(d)
    except ConfigError as e:
        raise ConfigError(f"--config {path}: {e}") from None


def resolve_config(args) -> Config:
    """The config a command asks for: --preset or --config, then --set, --resolution, --steps."""
    overrides = parse_set(args.set, error=ConfigError)
    for flag, field, value in (("--resolution", "network.resolution", args.resolution),
                               ("--steps", "run.steps", args.steps)):
        if value is None:
            continue
        if field in overrides and overrides[field] != value:
            raise ConfigError(f"{flag} {value} and --set {field}={overrides[field]} disagree; give one")
        overrides[field] = value
    if args.config and args.preset:
        raise ConfigError("--preset and --config both name a whole config; give one (use --set to change "
                          "fields of the --config)")
    if args.config:
        base = load_config_file(args.config)
        return base.override(fit_preset_tables(base, overrides)) if overrides else base
    if not args.preset:
        raise ConfigError("--preset is required (or --config with a run's config.json); "
                          f"presets: {', '.join(preset_names())}")
    return get_preset(args.preset, overrides)


def plan(args) -> dict:
    """Every check that needs no TensorFlow; raises ConfigError / runs.Refusal with one line."""
    cfg = resolve_config(args)
    if cfg.run.steps == 0:
        raise runs.Refusal("--steps 0 trains nothing and would export an untrained generator; to export "
                           "a run's checkpoint use `facegan export --run DIR --to BASE/NAME`")
    if args.synthetic:
        data = runs.data_identity(None, synthetic=True)
    elif not args.data:
        raise runs.Refusal("--data is required (the output folder of `facegan ingest`), or --synthetic")
    else:
        info = runs.inspect_data(args.data)
        origin = None      # where the resolution came from when no flag gave it
        if args.resolution is None and not any(s.split("=", 1)[0].strip() == "network.resolution" for s in args.set):
            origin = f"the {args.preset} preset's default" if args.preset else "from --config"
        runs.check_resolution(cfg.network.resolution, info, origin=origin,
                              kind=registry.architecture(cfg.network.architecture).kind)
        data = runs.data_identity(args.data)
    if args.serving_dir:
        runs.check_serving_base(args.serving_dir, "--serving-dir")
    config = cfg.to_dict()
    out = args.out or runs.default_out(config, data)
    folder = runs.check_folder(out, config, data, allow_changes=args.continue_with_changes,
                               default_chosen=args.out is None)
    return {"cfg": cfg, "data": data, "out": out, **folder}


def _fail(message: str, code: int = 2) -> int:
    print(f"facegan train: {message}", file=sys.stderr)
    return code


def main(args) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        p = plan(args)
    except (ConfigError, runs.Refusal) as e:
        return _fail(str(e))
    cfg, out = p["cfg"], p["out"]
    if p["state"] == "new":
        state = "new run"
    else:
        state = f"resuming at step {p['step']}, training to {cfg.run.steps}"
    if p["changes"]:
        state += f"; continuing with changes: {runs.describe_differences(p['changes'])}"
    print(f"facegan train: run folder {out} ({state})", file=sys.stderr)
    chief, local = runs.is_chief(), not runs.is_remote(out)
    created = local and not os.path.exists(out)
    if chief and local:
        runs.write_record(out, cfg.to_dict(), p["data"], steps=cfg.run.steps, changes=p["changes"])
    from facegan.trainer import train_lib   # TensorFlow: only once there is something to train
    try:
        result = train_lib.train(cfg, args.data, out, log_dir=args.log_dir,
                                 synthetic=args.synthetic, progress=True)
    except (FileNotFoundError, ValueError) as e:
        if created and chief and (runs.latest_step(out) or 0) == 0:
            shutil.rmtree(out, ignore_errors=True)     # a start that never trained leaves nothing
        return _fail(str(e))
    except train_lib.TrainingDiverged as e:
        return _fail(str(e), 1)
    summary = {"run_dir": result.run_dir, "steps": result.steps, "images_shown": result.images_shown,
               "resolution": result.resolution, "replicas": result.replicas, "nan_recoveries": result.nan_recoveries,
               "checkpoint": result.checkpoint, "log_dir": result.log_dir, "selected": result.selected,
               "metrics": {k: round(v, 5) for k, v in result.metrics.items()}}
    if result.stage_alpha is not None:
        summary["stage_alpha"] = result.stage_alpha
    ckpt = result.checkpoint
    if result.selected == "best" and result.eval_best:
        ckpt = result.eval_best.get("checkpoint") or ckpt
    selection = {"selected": result.selected, "step": result.steps, "path": ckpt,
                 "record": runs.record_at(runs.read_metrics(out), result.steps) if local else None}
    meta = runs.version_metadata(selection, out)
    try:
        if not args.no_export:
            summary["export"] = train_lib.export_replacing(result, os.path.join(out, "export"), meta)
        if args.serving_dir:
            summary["served_version"] = train_lib.export_version(result, args.serving_dir, meta)
    finally:
        train_lib.release(result)
    if not result.chief:
        summary["role"] = "non-chief worker: the chief writes the run directory and the export"
        summary.update(export=None, checkpoint=None, log_dir=None)   # its scratch is gone
        if args.serving_dir:
            summary["served_version"] = None
    print(json.dumps(summary, indent=2))
    return 0
