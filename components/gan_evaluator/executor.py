"""GanEvaluator executor: runs evaluate_lib on the resolved artifacts and records the outcome.

Everything interesting is in evaluate_lib.py / blessing.py; this file maps TFX artifacts to paths
and writes the results back the way TFX's own Evaluator does (blessing custom properties and
BLESSED / NOT_BLESSED marker files), so the standard Pusher and LatestBlessedModelStrategy work.
"""
import json
import os
from typing import Any, Dict, List

from absl import logging
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils, path_utils

from facegan.components.gan_evaluator import evaluate_lib

# Same keys/values/file names as tfx.components.evaluator.constants.
BLESSED_KEY = "blessed"
CURRENT_MODEL_KEY = "current_model"
CURRENT_MODEL_ID_KEY = "current_model_id"
BASELINE_MODEL_KEY_PROP = "baseline_model"
BASELINE_MODEL_ID_KEY = "baseline_model_id"
BLESSED_FILE = "BLESSED"
NOT_BLESSED_FILE = "NOT_BLESSED"


def _prop_name(name: str) -> str:
    # MLMD property names: keep them readable but free of characters some UIs dislike.
    return name.replace("/", "__")


class Executor(base_executor.BaseExecutor):

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        examples = artifact_utils.get_single_instance(input_dict["examples"])
        model = artifact_utils.get_single_instance(input_dict["model"])
        baselines = input_dict.get("baseline_model") or []
        baseline = baselines[0] if baselines else None
        evaluation = artifact_utils.get_single_instance(output_dict["evaluation"])
        blessing_art = artifact_utils.get_single_instance(output_dict["blessing"])

        model_dir = path_utils.serving_model_path(model.uri)
        baseline_dir = path_utils.serving_model_path(baseline.uri) if baseline else None
        if baseline is not None and baseline.id == model.id:
            baseline_dir = None  # the candidate was already blessed (re-run); nothing to beat

        thresholds = exec_properties.get("thresholds") or None
        min_improvement = exec_properties.get("min_improvement") or None
        result = evaluate_lib.evaluate_model(
            model_dir, examples.uri, evaluation.uri,
            metrics=exec_properties["metrics"],
            num_images=int(exec_properties["num_images"]),
            extractor=exec_properties.get("extractor") or "random",
            thresholds=json.loads(thresholds) if thresholds else None,
            min_improvement=json.loads(min_improvement) if min_improvement else None,
            baseline_dir=baseline_dir,
            log_dir=exec_properties.get("log_dir") or None,
            seed=int(exec_properties.get("seed") or 0),
            batch_size=int(exec_properties.get("batch_size") or 64),
            cache_dir=exec_properties.get("cache_dir") or None,
            log=logging.info)

        # Metrics as MLMD custom properties on the evaluation artifact.
        for name, value in result.scalars.items():
            evaluation.set_float_custom_property(_prop_name(name), value)
        comparable = result.results.get("comparable")
        if isinstance(comparable, bool):
            evaluation.set_int_custom_property("comparable", int(comparable))
        evaluation.set_int_custom_property(BLESSED_KEY, int(result.decision.blessed))

        # The blessing, as TFX's Evaluator writes it.
        decision = result.decision
        blessing_art.set_string_custom_property(CURRENT_MODEL_KEY, model.uri)
        blessing_art.set_int_custom_property(CURRENT_MODEL_ID_KEY, model.id)
        if baseline_dir:
            blessing_art.set_string_custom_property(BASELINE_MODEL_KEY_PROP, baseline.uri)
            blessing_art.set_int_custom_property(BASELINE_MODEL_ID_KEY, baseline.id)
        failed = [r.reason for r in decision.rules if not r.passed]
        blessing_art.set_string_custom_property(
            "blessing_message", "all rules passed" if decision.blessed else "; ".join(failed))
        io_utils.write_string_file(os.path.join(blessing_art.uri, evaluate_lib.DECISION_FILE),
                                   json.dumps(decision.to_dict(), indent=2))
        marker = BLESSED_FILE if decision.blessed else NOT_BLESSED_FILE
        io_utils.write_string_file(os.path.join(blessing_art.uri, marker), "")
        blessing_art.set_int_custom_property(BLESSED_KEY, 1 if decision.blessed else 0)
        logging.info("GanEvaluator: %s (%s)", marker, blessing_art.uri)
