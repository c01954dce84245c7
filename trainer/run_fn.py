"""`run_fn` for the standard TFX Trainer: `tfx.components.Trainer(run_fn='facegan.trainer.run_fn.run_fn')`.

`fn_args` is duck-typed (tfx's FnArgs): nothing from TFX is imported here, so this stays
unit-testable and cheap to import.

- config: `fn_args.custom_config` = {"preset": name, "overrides": {"optim.batch_size": 8, ...},
  "log_dir": optional shared TensorBoard directory, "metadata": extra export metadata} or
  {"config": <a full Config.to_dict()>, "overrides": ...}; unknown keys are refused.
- steps: `fn_args.train_steps` (TrainArgs.num_steps) when set, else the config's `run.steps`.
- data: `fn_args.train_files` (file patterns of the train split; TFX passes `.../Split-train/*`).
- checkpoints + logs: `fn_args.model_run_dir` (a re-run with the same run dir resumes).
- model: the EMA generator exported to `fn_args.serving_model_dir` (trainer/export.py).
"""
from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict, Tuple

from facegan.trainer.config import Config, ConfigError, get_preset

log = logging.getLogger("facegan.run_fn")

CUSTOM_CONFIG_KEYS = ("preset", "config", "overrides", "log_dir", "metadata")


def config_from_custom(custom_config) -> Tuple[Config, Dict[str, Any]]:
    """Parse `custom_config` (dict or JSON string) into (Config, extras). Raises ConfigError."""
    cc = custom_config or {}
    if isinstance(cc, str):
        cc = json.loads(cc)
    if not isinstance(cc, dict):
        raise ConfigError(f"custom_config must be a mapping, got {type(cc).__name__}")
    unknown = sorted(set(cc) - set(CUSTOM_CONFIG_KEYS))
    if unknown:
        raise ConfigError(f"custom_config: unknown key(s) {unknown}; expected {list(CUSTOM_CONFIG_KEYS)}")
    overrides = cc.get("overrides") or {}
    if not isinstance(overrides, dict):
        raise ConfigError("custom_config.overrides must be a mapping of dotted fields to values")
    if ("preset" in cc) == ("config" in cc):
        raise ConfigError("custom_config needs exactly one of 'preset' (a preset name) or 'config' "
                          "(a full config mapping)")
    if "config" in cc:
        cfg = Config.from_dict(cc["config"])
        cfg = cfg.override(overrides) if overrides else cfg
    else:
        cfg = get_preset(cc["preset"], overrides)
    return cfg, {"log_dir": cc.get("log_dir"), "metadata": cc.get("metadata") or {}}


def _attr(fn_args, name, default=None):
    if isinstance(fn_args, dict):
        return fn_args.get(name, default)
    return getattr(fn_args, name, default)


def run_fn(fn_args) -> None:
    # Lazy: TensorFlow loads only when the Trainer runs; importing this module stays cheap.
    from facegan.trainer import train_lib
    cfg, extras = config_from_custom(_attr(fn_args, "custom_config"))
    steps = _attr(fn_args, "train_steps")
    steps = int(steps) if steps else None
    files = _attr(fn_args, "train_files")
    if not files:
        raise ValueError("run_fn: fn_args.train_files is empty (is the Trainer wired to an Examples "
                         "artifact with a 'train' split?)")
    run_dir = _attr(fn_args, "model_run_dir")
    serving_dir = _attr(fn_args, "serving_model_dir")
    if not run_dir or not serving_dir:
        raise ValueError("run_fn: fn_args.model_run_dir and fn_args.serving_model_dir are required")
    log_dir = extras["log_dir"] or os.path.join(run_dir, "logs")
    result = train_lib.train(cfg, files, run_dir, steps=steps, log_dir=log_dir, progress=True)
    try:
        path = train_lib.export(result, serving_dir, extra_metadata=dict(extras["metadata"], run_dir=run_dir))
    finally:
        train_lib.release(result)   # a non-chief worker's scratch (multi-worker Trainer replicas)
    if result.chief:
        log.info("exported generator (step %d) to %s", result.steps, path)
