"""GanEvaluator: a custom TFX component that measures a generator and blesses it (or not).

Inputs
- `examples`: Examples (the eval split is the real reference; train is used for memorization);
- `model`: the candidate Model (the Trainer's generator SavedModel);
- `baseline_model` (optional): the latest blessed Model, from TFX's resolver
  (`LatestBlessedModelStrategy`); evaluated with the same protocol in the same execution so the
  "beat the baseline" rule compares like with like.

Outputs
- `evaluation` (ModelEvaluation): metrics.json, decision.json, sample_grid.png, memorization.png;
  every scalar result is also an MLMD custom property (e.g. `swd16k`, `ms_ssim10k_pairs/generated`).
- `blessing` (ModelBlessing): custom property `blessed` = 1/0 and files BLESSED / NOT_BLESSED,
  with `current_model`/`current_model_id` (and baseline ones), exactly as TFX's Evaluator writes
  them, so the standard Pusher honours it and `LatestBlessedModelStrategy` finds it.

Parameters: `metrics` (list or comma string of registry names, options allowed:
`fid:downscale=64`), `num_images`, `thresholds` (dict/JSON, see facegan/metrics/blessing.py), `min_improvement`
(dict/JSON), `extractor` ("inception" | "random" | "random_tiny" | .h5 weights path | 2015 FID
graph .pb path; the default random_tiny only feeds the memorization sheet and `_random`-labelled
extras), `log_dir` (TensorBoard dir shared by the pipeline run), `seed`, `batch_size`, `cache_dir`.
Metrics and rules are validated when the pipeline is built (ValueError naming the bad metric or
rule); channel names are TFX's standard ones (`standard_component_specs`).
"""
from typing import Any, Dict, Optional, Sequence, Union

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from facegan.metrics import blessing
from facegan.metrics import evaluation as evaluation_lib
from facegan.components.gan_evaluator.executor import Executor

# TFX's own channel names (the standard Evaluator uses the same ones).
EXAMPLES_KEY = standard_component_specs.EXAMPLES_KEY
MODEL_KEY = standard_component_specs.MODEL_KEY
BASELINE_MODEL_KEY = standard_component_specs.BASELINE_MODEL_KEY
EVALUATION_KEY = standard_component_specs.EVALUATION_KEY
BLESSING_KEY = standard_component_specs.BLESSING_KEY


class GanEvaluatorSpec(types.ComponentSpec):
    PARAMETERS = {
        "metrics": ExecutionParameter(type=str),
        "num_images": ExecutionParameter(type=int),
        "thresholds": ExecutionParameter(type=str, optional=True),
        "min_improvement": ExecutionParameter(type=str, optional=True),
        "extractor": ExecutionParameter(type=str),
        "log_dir": ExecutionParameter(type=str, optional=True),
        "seed": ExecutionParameter(type=int, optional=True),
        "batch_size": ExecutionParameter(type=int, optional=True),
        "cache_dir": ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {
        EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
        MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
        BASELINE_MODEL_KEY: ChannelParameter(type=standard_artifacts.Model, optional=True),
    }
    OUTPUTS = {
        EVALUATION_KEY: ChannelParameter(type=standard_artifacts.ModelEvaluation),
        BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing),
    }


class GanEvaluator(base_component.BaseComponent):
    """Computes GAN metrics for a generator, writes pictures and blesses it by rules."""

    SPEC_CLASS = GanEvaluatorSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, examples: types.BaseChannel, model: types.BaseChannel,
                 baseline_model: Optional[types.BaseChannel] = None,
                 metrics: Union[str, Sequence[str]] = ("swd", "ms_ssim"),
                 num_images: int = 1000,
                 thresholds: Union[None, str, Dict[str, Any]] = None,
                 min_improvement: Union[None, str, Dict[str, Any]] = None,
                 extractor: str = "random_tiny",
                 log_dir: Optional[str] = None,
                 seed: int = 0, batch_size: int = 64, cache_dir: Optional[str] = None):
        # Validated here, at pipeline construction, with errors naming the bad metric or rule.
        try:
            names = evaluation_lib.parse_metric_names(metrics)
            rules = blessing.parse_rules(thresholds, min_improvement)
        except ValueError as e:
            raise ValueError(f"GanEvaluator: {e}") from None
        missing = [m for m in rules.metrics() if m not in names]
        if missing:
            raise ValueError(f"GanEvaluator: thresholds/min_improvement name metric(s) "
                             f"{', '.join(missing)} that are not computed (metrics: {', '.join(names)})")
        if int(num_images) < 2:
            raise ValueError(f"GanEvaluator: num_images must be >= 2, got {num_images}")
        spec = GanEvaluatorSpec(
            examples=examples, model=model, baseline_model=baseline_model,
            metrics=",".join(names), num_images=int(num_images),
            thresholds=rules.thresholds_json(), min_improvement=rules.min_improvement_json(),
            extractor=str(extractor), log_dir=log_dir or "", seed=int(seed),
            batch_size=int(batch_size), cache_dir=cache_dir or "",
            evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
            blessing=types.Channel(type=standard_artifacts.ModelBlessing))
        super().__init__(spec=spec)
