"""TF Serving's gRPC API over a ModelManager: PredictionService (`Predict`, `GetModelMetadata`;
Classify/Regress/MultiInference answer UNIMPLEMENTED, a generator has no such signatures) and
ModelService (`GetModelStatus`; HandleReloadConfigRequest answers UNIMPLEMENTED), on the generated
servicers of `tensorflow-serving-api`. Status codes follow TF Serving: unknown model or version
NOT_FOUND, unknown signature FAILED_PRECONDITION (TF Serving's predict_util), bad inputs
INVALID_ARGUMENT."""
from __future__ import annotations

import logging

import grpc

from facegan.serving.manager import ModelManager, ServingError

log = logging.getLogger("facegan.serving")

# TF Serving's server builder sets the gRPC message limit to INT32_MAX (~2 GB), not gRPC's 4 MB.
GRPC_MAX_RECEIVE_BYTES = 2 ** 31 - 1

_STATE_CODES = {"UNKNOWN": 0, "START": 10, "LOADING": 20, "AVAILABLE": 30, "UNLOADING": 40, "END": 50}


def _version_of(spec):
    """(version or None, label) from a ModelSpec proto's version choice."""
    choice = spec.WhichOneof("version_choice")
    if choice == "version":
        return int(spec.version.value), ""
    if choice == "version_label":
        return None, spec.version_label
    return None, ""


def servicers():
    # Imported lazily: tensorflow_serving.apis pulls in TensorFlow (~11 s).
    import tensorflow as tf
    from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_service_pb2_grpc,
                                         predict_pb2, prediction_service_pb2_grpc)

    class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
        def __init__(self, manager: ModelManager, run):
            self.manager, self.run = manager, run

        def Predict(self, request, context):
            try:
                version, label = _version_of(request.model_spec)
                servable = self.manager.get(request.model_spec.name, version, label)
                signature = request.model_spec.signature_name or "serving_default"
                inputs = {}
                for alias, proto in request.inputs.items():
                    try:
                        inputs[alias] = tf.make_ndarray(proto)
                    except Exception as e:  # noqa: BLE001 - malformed TensorProto
                        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                           f"tensor parsing error: {alias}: {e}") from None
                outputs = self.run(servable, signature, inputs, list(request.output_filter))
                response = predict_pb2.PredictResponse()
                response.model_spec.name = servable.name
                response.model_spec.version.value = servable.version
                response.model_spec.signature_name = signature
                for k, v in outputs.items():
                    response.outputs[k].CopyFrom(tf.make_tensor_proto(v))
                return response
            except ServingError as e:
                context.abort(e.code, e.message)

        def GetModelMetadata(self, request, context):
            try:
                fields = list(request.metadata_field)
                if not fields:
                    raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                       "GetModelMetadataRequest must specify at least one metadata_field")
                for f in fields:
                    if f != "signature_def":
                        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"Metadata field {f} is not supported")
                version, label = _version_of(request.model_spec)
                servable = self.manager.get(request.model_spec.name, version, label)
                sig_map = get_model_metadata_pb2.SignatureDefMap()
                for k, v in servable.signature_defs.items():
                    sig_map.signature_def[k].CopyFrom(v)
                response = get_model_metadata_pb2.GetModelMetadataResponse()
                response.model_spec.name = servable.name
                response.model_spec.version.value = servable.version
                response.metadata["signature_def"].Pack(sig_map)
                return response
            except ServingError as e:
                context.abort(e.code, e.message)

        def Classify(self, request, context):
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "facegan serve implements Predict only")

        def Regress(self, request, context):
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "facegan serve implements Predict only")

        def MultiInference(self, request, context):
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "facegan serve implements Predict only")

    class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
        def __init__(self, manager: ModelManager):
            self.manager = manager

        def GetModelStatus(self, request, context):
            try:
                version, label = _version_of(request.model_spec)
                if label:
                    version = self.manager.get(request.model_spec.name, None, label).version
                states = self.manager.status(request.model_spec.name, version)
                response = get_model_status_pb2.GetModelStatusResponse()
                for v in sorted(states):
                    st = states[v]
                    mvs = response.model_version_status.add()
                    mvs.version = v
                    mvs.state = _STATE_CODES[st.state]
                    mvs.status.error_code = 2 if st.error else 0   # UNKNOWN for a failed load
                    mvs.status.error_message = st.error
                return response
            except ServingError as e:
                context.abort(e.code, e.message)

        def HandleReloadConfigRequest(self, request, context):
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "restart facegan serve to change its model config")

    return PredictionServicer, ModelServicer, prediction_service_pb2_grpc, model_service_pb2_grpc
