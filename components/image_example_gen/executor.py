"""ImageExampleGen executor: runs ingestion (facegan.ingest.runner.ingest: the Beam pipeline on the
component's Beam args, or the local runner for inputs up to IN_PROCESS_MAX_FILES on the local
DirectRunner) and records the summary counts on the Examples artifact."""
import logging
from typing import Any, Dict, List

from tfx import types
from tfx.types.standard_component_specs import EXAMPLES_KEY
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils

from facegan.ingest import runner as R
from facegan.ingest import options as O
from facegan import schema

# summary key -> MLMD custom property on the Examples artifact
_INT_PROPERTIES = ("files_seen", "examples_written", "duplicates", "rejected", "mirrored",
                   "unlabeled", "resolution")


def config_from_exec_properties(props: Dict[str, Any]) -> O.IngestConfig:
    return O.IngestConfig(
                          resolution=props["resolution"], crop=props.get("crop") or "center",
                          filter=props.get("filter") or O.DEFAULT_FILTER, mirror=bool(props.get("mirror", 0)),
                          extra_resolutions=props.get("extra_resolutions") or "",
                          eval_fraction=props.get("eval_fraction", O.DEFAULT_EVAL_FRACTION),
                          min_side=props.get("min_side", O.DEFAULT_MIN_SIDE),
                          max_pixels=props.get("max_pixels", O.DEFAULT_MAX_PIXELS),
                          background=props.get("background") or O.DEFAULT_BACKGROUND,
                          labels=props.get("labels") or None,
                          max_rejected_fraction=props.get("max_rejected_fraction", O.DEFAULT_MAX_REJECTED_FRACTION),
                          paired=props.get("paired") or "", paired_seed=int(props.get("paired_seed") or 0))


class Executor(base_beam_executor.BaseBeamExecutor):
    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        cfg = config_from_exec_properties(exec_properties)
        examples = artifact_utils.get_single_instance(output_dict[EXAMPLES_KEY])
        examples.split_names = artifact_utils.encode_split_names(
            [schema.TRAIN_SPLIT, schema.EVAL_SPLIT])
        examples_utils.set_payload_format(examples, example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE)
        summary = R.ingest(exec_properties["input_base"], examples.uri, cfg,
                           pipeline=self._make_beam_pipeline(), in_place=True)
        for key in _INT_PROPERTIES:
            examples.set_int_custom_property(key, int(summary[key]))
        for split in (schema.TRAIN_SPLIT, schema.EVAL_SPLIT):
            examples.set_int_custom_property(f"{split}_examples", summary["splits"][split]["examples"])
        examples.set_string_custom_property("crop", summary["crop"])
        examples.set_string_custom_property("input_fingerprint",
                                            exec_properties.get("input_fingerprint") or "")
        examples.set_string_custom_property("runner", summary.get("runner", ""))
        examples.set_string_custom_property("filter", summary["filter"])
        # image-to-image pairs: the canonical spec, "" without pairs
        examples.set_string_custom_property("paired", (summary.get("paired") or {}).get("spec", ""))
        examples.set_string_custom_property(
            "resolutions", ",".join(str(r) for r in summary["resolutions"]))
        logging.info("ImageExampleGen: %d files seen, %d examples written (+%d mirrored), "
                     "%d duplicates, %d rejected", summary["files_seen"],
                     summary["examples_written"], summary["mirrored"], summary["duplicates"],
                     summary["rejected"])
