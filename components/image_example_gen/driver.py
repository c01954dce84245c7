"""ImageExampleGen's driver: fingerprints the input before the cache is looked up.

Like TFX's FileBasedDriver for its own file-based ExampleGens, it adds `input_fingerprint`
(facegan.ingest.listing.input_fingerprint: every file's path, size and mtime) to the execution properties
before the launcher computes the cache key, so a changed folder re-runs ingestion and an
unchanged one hits the TFX cache. Works on both TFX orchestration paths (IR-based `run`, and
the legacy `resolve_exec_properties`).
"""
import copy
from typing import Any, Dict

from tfx.dsl.components.base import base_driver
from tfx.orchestration.portable import base_driver as ir_base_driver
from tfx.orchestration.portable import data_types as portable_data_types
from tfx.orchestration import data_types_utils
from tfx.proto.orchestration import driver_output_pb2
from tfx.types.standard_component_specs import EXAMPLES_KEY

from facegan.ingest import listing as L

FINGERPRINT_KEY = "input_fingerprint"


class ImageExampleGenDriver(base_driver.BaseDriver, ir_base_driver.BaseDriver):
    def __init__(self, metadata_handle):
        base_driver.BaseDriver.__init__(self, metadata_handle)
        ir_base_driver.BaseDriver.__init__(self, metadata_handle)

    def resolve_exec_properties(self, exec_properties: Dict[str, Any], pipeline_info,
                                component_info) -> Dict[str, Any]:
        exec_properties[FINGERPRINT_KEY] = L.input_fingerprint(
            exec_properties["input_base"], exec_properties.get("labels") or None)
        return exec_properties

    def run(self, execution_info: portable_data_types.ExecutionInfo
            ) -> driver_output_pb2.DriverOutput:
        result = driver_output_pb2.DriverOutput()
        props = self.resolve_exec_properties(dict(execution_info.exec_properties), None, None)
        for k, v in props.items():
            if v is not None:
                data_types_utils.set_metadata_value(result.exec_properties[k], v)
        example = copy.deepcopy(execution_info.output_dict[EXAMPLES_KEY][0].mlmd_artifact)
        example.custom_properties[FINGERPRINT_KEY].string_value = props[FINGERPRINT_KEY]
        result.output_artifacts[EXAMPLES_KEY].artifacts.append(example)
        return result
