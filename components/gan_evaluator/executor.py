"""GanEvaluator executor: runs the evaluation library on the resolved artifacts and records the outcome.

Everything interesting is in facegan.metrics (evaluation.py, blessing.py); this file maps TFX
artifacts to paths and writes the results back the way TFX's own Evaluator does (blessing custom
properties and BLESSED / NOT_BLESSED marker files, named by `tfx.components.evaluator.constants`),
so the standard Pusher and LatestBlessedModelStrategy work.
"""
import json
import os
from typing import Any, Dict, List

from absl import logging
from tfx import types
from tfx.components.evaluator import constants as C
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.types import standard_component_specs as keys
from tfx.utils import io_utils, path_utils

from facegan.metrics import evaluation as evaluation_lib


def _prop_name(name: str) -> str:
    # MLMD property names: keep them readable but free of characters some UIs dislike.
    return name.replace("/", "__")


class Executor(base_executor.BaseExecutor):

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        examples = artifact_utils.get_single_instance(input_dict[keys.EXAMPLES_KEY])
        model = artifact_utils.get_single_instance(input_dict[keys.MODEL_KEY])
        baselines = input_dict.get(keys.BASELINE_MODEL_KEY) or []
        baseline = baselines[0] if baselines else None
        evaluation = artifact_utils.get_single_instance(output_dict[keys.EVALUATION_KEY])
        blessing_art = artifact_utils.get_single_instance(output_dict[keys.BLESSING_KEY])

        model_dir = path_utils.serving_model_path(model.uri)
        baseline_dir = path_utils.serving_model_path(baseline.uri) if baseline else None
        if baseline is not None and baseline.id == model.id:
            baseline_dir = None  # the candidate was already blessed (re-run); nothing to beat

        result = evaluation_lib.evaluate_model(
            model_dir, examples.uri, evaluation.uri,
            metrics=exec_properties["metrics"],
            num_images=int(exec_properties["num_images"]),
            extractor=exec_properties.get("extractor") or "random",
            thresholds=exec_properties.get("thresholds") or None,       # JSON strings: parsed
            min_improvement=exec_properties.get("min_improvement") or None,  # once, in the library
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
        evaluation.set_int_custom_property(C.ARTIFACT_PROPERTY_BLESSED_KEY, int(result.decision.blessed))

        # The blessing, as TFX's Evaluator writes it.
        decision = result.decision
        blessing_art.set_string_custom_property(C.ARTIFACT_PROPERTY_CURRENT_MODEL_URI_KEY, model.uri)
        blessing_art.set_int_custom_property(C.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY, model.id)
        if baseline_dir:
            blessing_art.set_string_custom_property(C.ARTIFACT_PROPERTY_BASELINE_MODEL_URI_KEY, baseline.uri)
            blessing_art.set_int_custom_property(C.ARTIFACT_PROPERTY_BASELINE_MODEL_ID_KEY, baseline.id)
        failed = [r.reason for r in decision.rules if not r.passed]
        blessing_art.set_string_custom_property(C.ARTIFACT_PROPERTY_BLESSING_MESSAGE_KEY,
                                                "all rules passed" if decision.blessed
                                                else "; ".join(failed))
        io_utils.write_string_file(os.path.join(blessing_art.uri, evaluation_lib.DECISION_FILE),
                                   json.dumps(decision.to_dict(), indent=2))
        marker = C.BLESSED_FILE_NAME if decision.blessed else C.NOT_BLESSED_FILE_NAME
        io_utils.write_string_file(os.path.join(blessing_art.uri, marker), "")
        blessing_art.set_int_custom_property(
            C.ARTIFACT_PROPERTY_BLESSED_KEY, C.BLESSED_VALUE if decision.blessed else C.NOT_BLESSED_VALUE)
        logging.info("GanEvaluator: %s (%s)", marker, blessing_art.uri)
