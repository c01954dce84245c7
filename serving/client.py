"""`facegan sample`: sample images from a served generator over TF Serving's gRPC or REST API.

Library first (`GrpcClient`, `RestClient`, `latent_walk`), CLI thin:

    facegan sample --server HOST:8500 --model NAME --num 16 --seed 1 --out grid.png [--truncation 0.7]
    facegan sample --rest HOST:8501 --model NAME --num 16 --seed 1 --out grid.png
    facegan sample --server HOST:8500 --model NAME --interpolate 8 --seed 1 --out walk.png
    facegan sample --server HOST:8500 --model NAME --style-mix 1,2 --num 4 --psi 0.7 --out mix.png
    facegan sample --server HOST:8500 --model NAME --num 16 --psi 0.7 --truncation-cutoff 4 --out grid.png
    facegan sample --server HOST:8500 --model NAME --attr Smiling=1,Eyeglasses=0 --num 16 --out grid.png
    facegan sample --rest HOST:8501 --model NAME --attr-sweep Smiling --num 4 --seed 1 --out sweep.png

StyleGAN generators (metadata truncation "w_space") apply `--psi`/`--truncation` in W toward the
tracked w_avg inside the graph, and `--style-mix SEED_A,SEED_B` calls their `style_mix`
signature: a grid whose first row is SEED_A's images, then one row per `--crossover` layer
(SEED_A's styles below it, SEED_B's from it on), and SEED_B's images last. `--truncation-cutoff K`
truncates only the layers < K of a seed's grid or a style-mixing grid (their `sample_cutoff` /
`style_mix_cutoff` signatures; the default is the cutoff fixed at export).

Conditional generators: `--attr NAME=VALUE,...` sets attributes by name (unnamed ones
take the range's low end, 0); the names and their order come from the model's input-less
`attribute_names` signature (TF Serving's API does not expose the metadata asset). `--attr-sweep
NAME` writes a grid whose rows are `--num` latents of the seed (fixed along a row) and whose
columns step NAME from the low to the high end of the range (`--sweep-steps`), the other
attributes as `--attr` sets them.

Versions written by `facegan directions` (an `edit_sample` signature; their `attribute_names` are
directions, not a conditional generator's inputs): `--attr NAME=STRENGTH,...` calls `edit_sample`,
moving the seed's latents along the named directions by those strengths (unnamed ones 0, so
`--attr` with all zeros gives the plain grid). `--attr-sweep`, `--interpolate`, `--style-mix` and
`--out-dir` with `--attr` on such a version are refused in one line; without `--attr` it samples
like its source.

Grids use the `sample` signature (the server draws z from the seed with a stateless RNG, so a
seed names the same images on every server and client). TF Serving with `--enable_batching`
refuses `sample` (its inputs are scalars); the client then draws the same latents itself
(`facegan.generator.sample_latents`) and calls `serving_default`: same pixels either way. `--interpolate N` draws two latents from
the seed on the client, walks between them with spherical interpolation (slerp: White 2016,
"Sampling Generative Networks", the path that stays on the Gaussian shell) and sends the N
latents to `serving_default`; truncation is applied by scaling z toward the mean (0), exactly
what the exported model's `generate`/`sample` do (see facegan/generator/).

Works unchanged against real TF Serving and `facegan serve` (same protos, same status codes).
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Dict, List, Optional, Tuple

import numpy as np

DEFAULT_TIMEOUT_S = 120.0
MAX_MESSAGE_BYTES = 512 << 20    # gRPC's client default (4 MiB) is too small for 64 images at 256px


class ClientError(RuntimeError):
    """A failed call: `code` is the gRPC status name (or HTTP status for REST), message the server's."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


def latent_walk(z_dim: int, steps: int, seed: int, truncation: float = 1.0) -> np.ndarray:
    """float32 [steps, z_dim]: slerp between two N(0, I) latents drawn from `seed`, scaled by psi."""
    if steps < 2:
        raise ValueError(f"--interpolate needs at least 2 steps, got {steps}")
    if not 0.0 < truncation <= 1.0:
        raise ValueError(f"truncation must be in (0, 1], got {truncation}")
    rng = np.random.default_rng(seed)
    z0, z1 = rng.standard_normal((2, z_dim))
    omega = np.arccos(np.clip(np.dot(z0 / np.linalg.norm(z0), z1 / np.linalg.norm(z1)), -1.0, 1.0))
    t = np.linspace(0.0, 1.0, steps)[:, None]
    if omega < 1e-6:   # (anti)parallel endpoints: slerp degenerates to lerp
        z = (1 - t) * z0 + t * z1
    else:
        z = (np.sin((1 - t) * omega) * z0 + np.sin(t * omega) * z1) / np.sin(omega)
    return (z * truncation).astype(np.float32)


def client_latents(seed: int, num: int, z_dim: int, truncation: float = 1.0) -> np.ndarray:
    """The latents the `sample` signature would use for (seed, num), pre-scaled by truncation."""
    if not 0.0 < truncation <= 1.0:
        raise ValueError(f"truncation must be in (0, 1], got {truncation}")
    from facegan.generator.ops import sample_latents   # the one definition (TensorFlow, imported here only)
    z = sample_latents(int(seed), 0, int(num), int(z_dim)).numpy()
    return z * np.float32(truncation)   # float32 product, as in the graph


def _z_inputs(z, attributes=None) -> Dict[str, np.ndarray]:
    inputs = {"z": np.asarray(z, np.float32)}
    if attributes is not None:   # a conditional generator's serving_default takes both
        inputs["attributes"] = np.asarray(attributes, np.float32)
    return inputs


def _attribute_input(attributes) -> Dict[str, np.ndarray]:
    return {} if attributes is None else {"attributes": np.asarray(attributes, np.float32)}


def _decode_names(values) -> List[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in np.asarray(values).reshape(-1)]


def sweep_inputs(z: np.ndarray, base: np.ndarray, index: int, steps: int, low: float = 0.0, high: float = 1.0):
    """(z [R*steps, Z], attributes [R*steps, A]) for an attribute sweep grid: row r holds latent r
    in every column; column j sets attribute `index` to low + j (high - low) / (steps - 1)."""
    if steps < 2:
        raise ValueError(f"--sweep-steps must be >= 2, got {steps}")
    values = np.linspace(low, high, steps, dtype=np.float32)
    attrs = np.repeat(np.asarray(base, np.float32)[None], len(z) * steps, axis=0)
    attrs[:, index] = np.tile(values, len(z))
    return np.repeat(np.asarray(z, np.float32), steps, axis=0), attrs


def _translate_signature(direction: Optional[str]) -> str:
    from facegan.generator import SIGNATURE_TRANSLATE, translate_signature   # TensorFlow-free
    return translate_signature(direction) if direction else SIGNATURE_TRANSLATE


def style_mix_rows(client, model: str, seed_a: int, seed_b: int, num: int, crossovers, truncation: float,
                   version: Optional[int] = None, truncation_cutoff: Optional[int] = None) -> List[np.ndarray]:
    """Grid rows of --style-mix: seed_a's images (its `sample`: every layer from seed_a, without
    needing the model's layer count), one row per crossover, seed_b's images (crossover 0). A
    crossover above the model's number of layers is refused by the server (INVALID_ARGUMENT)."""
    first = client.sample(model, num, seed_a, truncation, version, truncation_cutoff=truncation_cutoff)
    return [first] + [client.style_mix(model, seed_a, seed_b, num, int(c), truncation, version,
                                       truncation_cutoff=truncation_cutoff) for c in [*crossovers, 0]]


def _rows(attributes, num: int):
    """One attribute vector repeated for `num` images (None stays None)."""
    return None if attributes is None else np.repeat(np.asarray(attributes, np.float32)[None], int(num), axis=0)


def _names_call(call, model: str):
    try:
        out = call()
    except ClientError as e:
        if "attribute_names" in e.message:   # no such signature: not a conditional generator
            raise ValueError(f"model {model!r} takes no attributes (it has no attribute_names signature: "
                             "not a conditional generator)") from None
        raise
    return out["attribute_names"] if isinstance(out, dict) and "attribute_names" in out else out


def _is_batching_refusal(e: "ClientError") -> bool:
    # TF Serving's batching session (--enable_batching) cannot batch rank-0 inputs.
    return e.code == "INVALID_ARGUMENT" and "at least one dimension" in e.message


def _split_target(target: str, default_port: int) -> str:
    target = target.replace("http://", "").rstrip("/")
    return target if ":" in target else f"{target}:{default_port}"


def _scalar_types(np_types):
    """(int32, int64, float32) constructors: numpy scalars for gRPC protos, plain JSON numbers for
    REST (np_types None)."""
    return (np.int32, np.int64, np.float32) if np_types is not None else (int, int, float)


def _style_mix_request(seed_a, seed_b, num, crossover, truncation, truncation_cutoff,
                       np_types) -> Tuple[str, Dict[str, object]]:
    """(signature, inputs) of a style-mixing request: `style_mix`, or `style_mix_cutoff` with a
    per-request cutoff; numpy scalars for gRPC protos, plain JSON numbers for REST (np_types None)."""
    i32, i64, f32 = _scalar_types(np_types)
    inputs = {"seed_a": i64(seed_a), "seed_b": i64(seed_b), "num": i32(num), "crossover": i32(crossover),
              "truncation": f32(truncation)}
    if truncation_cutoff is None:
        return "style_mix", inputs
    return "style_mix_cutoff", {**inputs, "truncation_cutoff": i32(truncation_cutoff)}


def _sample_request(num, seed, truncation, truncation_cutoff, attributes, np_types) -> Tuple[str, Dict[str, object]]:
    """(signature, inputs) of a seed request: `sample`, or `sample_cutoff` with a per-request cutoff
    (W-space generators); numpy scalars for gRPC protos, plain JSON numbers for REST (np_types None)."""
    i32, i64, f32 = _scalar_types(np_types)
    inputs = {"num": i32(num), "seed": i64(seed), "truncation": f32(truncation), **_attribute_input(attributes)}
    if truncation_cutoff is None:
        return "sample", inputs
    if attributes is not None:
        raise ValueError("a truncation cutoff applies to StyleGAN (W-space) generators, which take no attributes")
    return "sample_cutoff", {**inputs, "truncation_cutoff": i32(truncation_cutoff)}


def _refuse_w_space_fallback(signature_defs, truncation: float) -> None:
    """Client-drawn latents reproduce a seed only at psi = 1 for a W-space generator (its psi acts
    in W, inside the graph): refuse instead of returning different images."""
    if "style_mix" in signature_defs and truncation != 1.0:
        raise ClientError("FAILED_PRECONDITION", "this StyleGAN model applies truncation in W inside `sample`, "
                          "which the server's batching refuses; client-drawn latents cannot reproduce psi < 1 "
                          "(serve without --enable_batching or use --truncation 1)")


class GrpcClient:
    """TF Serving PredictionService / ModelService client (tensorflow-serving-api protos)."""

    def __init__(self, target: str, timeout: float = DEFAULT_TIMEOUT_S):
        import grpc
        import tensorflow as tf
        from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_service_pb2_grpc,
                                             predict_pb2, prediction_service_pb2_grpc)
        self._grpc, self._tf = grpc, tf
        self._predict_pb2, self._meta_pb2, self._status_pb2 = predict_pb2, get_model_metadata_pb2, get_model_status_pb2
        self.target, self.timeout = _split_target(target, 8500), timeout
        self.last_version: Optional[int] = None   # model version that answered the last Predict
        self._no_server_sampling = set()          # (model, version) whose server's batching refused `sample`
        self.channel = grpc.insecure_channel(self.target, options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)])
        self.predictions = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)

    def close(self):
        self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _call(self, method, request):
        try:
            return method(request, timeout=self.timeout)
        except self._grpc.RpcError as e:
            raise ClientError(e.code().name, e.details() or "") from None

    @staticmethod
    def _spec(spec, model: str, version: Optional[int], signature: str = ""):
        spec.name = model
        if version is not None:
            spec.version.value = int(version)
        if signature:
            spec.signature_name = signature

    def predict(self, model: str, signature: str, inputs: Dict[str, np.ndarray], version: Optional[int] = None,
                output_filter: Tuple[str, ...] = ()) -> Dict[str, np.ndarray]:
        request = self._predict_pb2.PredictRequest()
        self._spec(request.model_spec, model, version, signature)
        for k, v in inputs.items():
            request.inputs[k].CopyFrom(self._tf.make_tensor_proto(v))
        request.output_filter.extend(output_filter)
        response = self._call(self.predictions.Predict, request)
        self.last_version = response.model_spec.version.value
        return {k: self._tf.make_ndarray(v) for k, v in response.outputs.items()}

    def sample(self, model: str, num: int, seed: int, truncation: float = 1.0, version: Optional[int] = None,
               png: bool = False, latents: str = "auto", attributes=None, truncation_cutoff: Optional[int] = None):
        """uint8 [num, R, R, 3] for a seed (and PNG bytes per image if png=True); a conditional
        model also takes `attributes` float32 [A] (the same vector for every image). A W-space
        (StyleGAN) model takes `truncation_cutoff` (psi on the layers below it; `sample_cutoff`).

        latents="server": the `sample` signature. "client": compute the seed's latents here
        (facegan.generator.sample_latents, the same stateless op the signature runs) and call
        `serving_default`. "auto": server, falling back to client when TF Serving's batching
        session refuses `sample`'s scalar inputs. All three give the same pixels for a seed.
        """
        if latents not in ("auto", "server", "client"):
            raise ValueError(f"latents must be auto, server or client, got {latents!r}")
        if latents == "server" or (latents == "auto" and (model, version) not in self._no_server_sampling):
            try:
                signature, inputs = _sample_request(num, seed, truncation, truncation_cutoff, attributes, np)
                out = self.predict(model, signature, inputs, version,
                                   output_filter=("images", "png") if png else ("images",))
                return (out["images"], list(out["png"])) if png else out["images"]
            except ClientError as e:
                if latents == "server" or not _is_batching_refusal(e):
                    raise
                self._no_server_sampling.add((model, version))   # batching server: skip the refused call next time
        _refuse_w_space_fallback(self.signature_defs(model, version), truncation)
        z = client_latents(seed, num, self.z_dim(model, version), truncation)
        images = self.generate(model, z, version, _rows(attributes, num))
        if png:
            from facegan.images import encode_png
            return images, [encode_png(im) for im in images]
        return images

    def style_mix(self, model: str, seed_a: int, seed_b: int, num: int, crossover: int, truncation: float = 1.0,
                  version: Optional[int] = None, truncation_cutoff: Optional[int] = None) -> np.ndarray:
        """uint8 [num, R, R, 3] from a W-space generator's `style_mix` signature (`style_mix_cutoff`
        with a per-request truncation_cutoff: psi on the layers below it)."""
        signature, inputs = _style_mix_request(seed_a, seed_b, num, crossover, truncation, truncation_cutoff, np)
        return self.predict(model, signature, inputs, version, output_filter=("images",))["images"]

    def generate(self, model: str, z: np.ndarray, version: Optional[int] = None, attributes=None) -> np.ndarray:
        """uint8 images for latents z [N, z_dim] (+ attributes [N, A] when conditional): `serving_default`."""
        return self.predict(model, "serving_default", _z_inputs(z, attributes), version)["images"]

    def attribute_names(self, model: str, version: Optional[int] = None) -> List[str]:
        """A conditional model's attribute names in vector order (its `attribute_names` signature)."""
        return _decode_names(_names_call(lambda: self.predict(model, "attribute_names", {}, version), model))

    def translate(self, model: str, images: np.ndarray, direction: Optional[str] = None,
                  version: Optional[int] = None) -> np.ndarray:
        """uint8 images through an image-to-image model's `translate[_<direction>]` signature."""
        return self.predict(model, _translate_signature(direction), {"images": np.asarray(images)}, version)["images"]

    def signature_defs(self, model: str, version: Optional[int] = None):
        request = self._meta_pb2.GetModelMetadataRequest()
        self._spec(request.model_spec, model, version)
        request.metadata_field.append("signature_def")
        response = self._call(self.predictions.GetModelMetadata, request)
        sig_map = self._meta_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(sig_map)
        return sig_map.signature_def

    def signature_names(self, model: str, version: Optional[int] = None) -> List[str]:
        return list(self.signature_defs(model, version))

    def z_dim(self, model: str, version: Optional[int] = None) -> int:
        z = self.signature_defs(model, version)["serving_default"].inputs["z"]
        return int(z.tensor_shape.dim[-1].size)

    def status(self, model: str, version: Optional[int] = None) -> List[Tuple[int, str, str]]:
        """[(version, state name, error message)] from ModelService.GetModelStatus."""
        request = self._status_pb2.GetModelStatusRequest()
        self._spec(request.model_spec, model, version)
        response = self._call(self.models.GetModelStatus, request)
        names = self._status_pb2.ModelVersionStatus.State.Name
        return [(int(s.version), names(s.state), s.status.error_message) for s in response.model_version_status]


def _uint8_images(out) -> np.ndarray:
    """A REST answer's images (the "images" output, or the only output) as a uint8 array."""
    return np.asarray(out["images"] if isinstance(out, dict) else out, dtype=np.uint8)


class RestClient:
    """TF Serving REST client (`/v1/models/<name>[/versions/<v>]:predict`), JSON columnar format."""

    def __init__(self, target: str, timeout: float = DEFAULT_TIMEOUT_S):
        self.base, self.timeout = "http://" + _split_target(target, 8501), timeout
        self._no_server_sampling = set()   # (model, version) whose server's batching refused `sample`

    def _url(self, model: str, version: Optional[int], suffix: str = "") -> str:
        return f"{self.base}/v1/models/{model}" + (f"/versions/{int(version)}" if version is not None else "") + suffix

    def _request(self, url: str, body: Optional[dict] = None, convert=None):
        """The parsed JSON answer; `convert(parsed)` instead when given (run before the parsed lists
        are dropped, with the garbage collector held off: jsoncodec.gc_paused)."""
        from facegan.serving import jsoncodec
        data = jsoncodec.dumps(body) if body is not None else None
        req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            text = e.read().decode("utf-8", "replace")
            try:
                text = json.loads(text).get("error", text)
            except (json.JSONDecodeError, AttributeError):
                pass
            raise ClientError(f"HTTP {e.code}", text) from None
        except urllib.error.URLError as e:
            raise ClientError("UNAVAILABLE", f"{url}: {e.reason}") from None
        with jsoncodec.gc_paused():
            try:
                parsed = jsoncodec.loads(raw, arrays=True)
            except (json.JSONDecodeError, UnicodeDecodeError):
                # Real TF Serving writes non-`_bytes` string outputs (our `png`) as raw bytes inside JSON
                # strings; surrogateescape keeps such a body parseable (we read `images` only).
                parsed = json.loads(raw.decode("utf-8", "surrogateescape"))
            return convert(parsed) if convert is not None else parsed

    def predict(self, model: str, signature: str, inputs: Dict[str, object], version: Optional[int] = None,
                convert=None):
        """The answer's "outputs" (JSON values; a large integer array, e.g. images, as an int64
        numpy array: jsoncodec.loads), or `convert(outputs)` when given."""
        # numpy inputs are written from their buffers (jsoncodec), not value by value
        return self._request(self._url(model, version, ":predict"),
                             {"signature_name": signature, "inputs": dict(inputs)},
                             convert=lambda out: convert(out["outputs"]) if convert else out["outputs"])

    def sample(self, model: str, num: int, seed: int, truncation: float = 1.0, version: Optional[int] = None,
               latents: str = "auto", attributes=None, truncation_cutoff: Optional[int] = None):
        """As GrpcClient.sample (without png: TF Serving's JSON cannot carry our binary strings)."""
        if latents not in ("auto", "server", "client"):
            raise ValueError(f"latents must be auto, server or client, got {latents!r}")
        if latents == "server" or (latents == "auto" and (model, version) not in self._no_server_sampling):
            try:
                signature, inputs = _sample_request(num, seed, truncation, truncation_cutoff, attributes, None)
                return self.predict(model, signature, inputs, version, convert=_uint8_images)
            except ClientError as e:
                if latents == "server" or not (e.code == "HTTP 400" and "at least one dimension" in e.message):
                    raise
                self._no_server_sampling.add((model, version))
        if truncation != 1.0:
            meta = self._request(self._url(model, version, "/metadata"))["metadata"]["signature_def"]["signature_def"]
            _refuse_w_space_fallback(meta, truncation)
        return self.generate(model, client_latents(seed, num, self.z_dim(model, version), truncation), version,
                             _rows(attributes, num))

    def attribute_names(self, model: str, version: Optional[int] = None) -> List[str]:
        out = _names_call(lambda: self.predict(model, "attribute_names", {}, version), model)
        return _decode_names(out["attribute_names"] if isinstance(out, dict) else out)

    def style_mix(self, model: str, seed_a: int, seed_b: int, num: int, crossover: int, truncation: float = 1.0,
                  version: Optional[int] = None, truncation_cutoff: Optional[int] = None) -> np.ndarray:
        """As GrpcClient.style_mix, over REST."""
        signature, inputs = _style_mix_request(seed_a, seed_b, num, crossover, truncation, truncation_cutoff, None)
        return self.predict(model, signature, inputs, version, convert=_uint8_images)

    def generate(self, model: str, z: np.ndarray, version: Optional[int] = None, attributes=None) -> np.ndarray:
        return self.predict(model, "serving_default", _z_inputs(z, attributes), version, convert=_uint8_images)

    def translate(self, model: str, images: np.ndarray, direction: Optional[str] = None,
                  version: Optional[int] = None) -> np.ndarray:
        return self.predict(model, _translate_signature(direction), {"images": np.asarray(images, np.uint8)}, version,
                            convert=_uint8_images)

    def signature_names(self, model: str, version: Optional[int] = None) -> List[str]:
        return list(self._request(self._url(model, version, "/metadata"))["metadata"]["signature_def"]["signature_def"])

    def z_dim(self, model: str, version: Optional[int] = None) -> int:
        meta = self._request(self._url(model, version, "/metadata"))
        z = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]["z"]
        return int(z["tensor_shape"]["dim"][-1]["size"])

    def status(self, model: str, version: Optional[int] = None) -> List[Tuple[int, str, str]]:
        out = self._request(self._url(model, version))
        return [(int(s["version"]), s["state"], s.get("status", {}).get("error_message", ""))
                for s in out["model_version_status"]]


EXAMPLES = """example:
  facegan sample --server localhost:8500 --model facegan --num 16 --seed 7 --out grid.png
  facegan sample --rest localhost:8501 --interpolate 8 --seed 3 --truncation 0.7 --out walk.png
  facegan sample --server localhost:8500 --num 16 --seed 7 --psi 0.7 --truncation-cutoff 4 --out grid.png
  facegan sample --server localhost:8500 --attr Smiling=1,Eyeglasses=0 --num 16 --out smiling.png
  facegan sample --server localhost:8500 --attr-sweep Smiling --num 4 --seed 1 --out sweep.png"""


def format_status(statuses: List[Tuple[int, str, str]]) -> str:
    """[(1796019555, 'AVAILABLE', '')] -> 'version 1796019555 AVAILABLE' (errors in parentheses)."""
    if not statuses:
        return "no versions"
    return ", ".join(f"version {v} {state}" + (f" ({err})" if err else "") for v, state, err in statuses)


def add_arguments(parser: argparse.ArgumentParser):
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--server", help="TF Serving gRPC address HOST:PORT (e.g. localhost:8500)")
    where.add_argument("--rest", help="TF Serving REST address HOST:PORT (e.g. localhost:8501)")
    parser.add_argument("--model", default="facegan", help="served model name")
    parser.add_argument("--version", type=int, default=None, help="model version (None: the latest served)")
    parser.add_argument("--num", type=int, default=16, help="images in the grid")
    parser.add_argument("--seed", type=int, default=0, help="latent seed: same seed, same images")
    parser.add_argument("--truncation", "--psi", dest="truncation", type=float, default=1.0,
                        help="psi in (0, 1]: scale z toward the mean (StyleGAN models: w toward w_avg, in W); "
                             "lower = safer, less varied")
    parser.add_argument("--truncation-cutoff", type=int, default=None, metavar="K",
                        help="StyleGAN models, grids of a seed or --style-mix: apply --psi only on the layers < K (0 = none, "
                             "num_ws = all; default: the cutoff the model was exported with)")
    parser.add_argument("--style-mix", default="", metavar="SEED_A,SEED_B",
                        help="StyleGAN models: a style-mixing grid of --num columns: SEED_A's images, one row "
                             "per --crossover, SEED_B's images")
    parser.add_argument("--crossover", default="2,4,6", metavar="K[,K...]",
                        help="--style-mix rows: layers < K take SEED_A's styles, the rest SEED_B's")
    parser.add_argument("--latents", choices=("auto", "server", "client"), default="auto",
                        help="who draws z for a seed: the server's `sample` signature, this client (then "
                             "serving_default, batchable), or auto = server, client if batching refuses it")
    parser.add_argument("--interpolate", type=int, default=0, metavar="N",
                        help="write an N-frame latent walk strip instead of a grid (0: a grid)")
    parser.add_argument("--attr", default="", metavar="NAME=VALUE,...",
                        help="conditional models: attribute values by name (e.g. Smiling=1,Eyeglasses=0); "
                             "unnamed attributes are 0")
    parser.add_argument("--attr-sweep", default="", metavar="NAME",
                        help="conditional models: a grid of --num latents (rows) with NAME stepped from 0 to 1 "
                             "across the columns, the latent fixed along each row")
    parser.add_argument("--sweep-steps", type=int, default=5, help="columns of an --attr-sweep grid")
    parser.add_argument("--out-dir", default="", metavar="DIR",
                        help="write the --num images as DIR/images/NNNNNN.png plus DIR/manifest.json (a synthetic "
                             "data set: `facegan ingest --input DIR/images --labels DIR/manifest.json`) "
                             "instead of a grid")
    parser.add_argument("--refuse-copies-of", default="", metavar="EXAMPLES",
                        help="with --out-dir: compare the images with this Examples artifact's train split first "
                             "(metrics.memorization, pixel space) and write nothing if any is a near-copy")
    parser.add_argument("--copy-rmse", type=float, default=4.0,
                        help="near-copy threshold for --refuse-copies-of: pixel RMSE in grey levels")
    parser.add_argument("--cols", type=int, default=0, help="grid columns (0: square)")
    parser.add_argument("--out", default="samples.png", help="output PNG path")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="per-call timeout in seconds")


def _parse_ints(text: str, flag: str, count: int = 0) -> List[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{flag} must be comma-separated integers, got {text!r}") from None
    if (count and len(values) != count) or not values or min(values) < 0:
        raise ValueError(f"{flag} must be {count or 'one or more'} non-negative integers separated by commas, "
                         f"got {text!r}")
    return values


def main(args) -> int:
    from facegan.images import save_grid

    if args.num < 1:
        print(f"facegan sample: --num must be >= 1, got {args.num}", file=sys.stderr)
        return 2
    if not 0.0 < args.truncation <= 1.0:
        print(f"facegan sample: --truncation must be in (0, 1], got {args.truncation}", file=sys.stderr)
        return 2
    if args.truncation_cutoff is not None and (args.interpolate or args.attr or args.attr_sweep):
        print("facegan sample: --truncation-cutoff applies to a seed's grid or a --style-mix grid (the "
              "sample_cutoff / style_mix_cutoff signatures); not with --interpolate, --attr or --attr-sweep",
              file=sys.stderr)
        return 2
    client = GrpcClient(args.server, args.timeout) if args.server else RestClient(args.rest, args.timeout)
    try:
        strengths = _edit_request(client, args)
        attributes, sweep = (None, None) if strengths is not None else _attribute_request(client, args)
        if strengths is not None:
            images = edit_sample(client, args.model, args.num, args.seed, strengths, args.truncation, args.version)
            cols = args.cols
        elif args.style_mix:
            seed_a, seed_b = _parse_ints(args.style_mix, "--style-mix", 2)
            rows = style_mix_rows(client, args.model, seed_a, seed_b, args.num,
                                  _parse_ints(args.crossover, "--crossover"), args.truncation, args.version,
                                  args.truncation_cutoff)
            images, cols = np.concatenate(rows), args.num
        elif sweep is not None:
            z = client_latents(args.seed, args.num, client.z_dim(args.model, args.version), args.truncation)
            z, rows = sweep_inputs(z, attributes, sweep, args.sweep_steps)
            images = client.generate(args.model, z, args.version, rows)
            cols = args.sweep_steps
        elif args.interpolate:
            z = latent_walk(client.z_dim(args.model, args.version), args.interpolate, args.seed, args.truncation)
            images = client.generate(args.model, z, args.version, _rows(attributes, len(z)))
            cols = len(images)
        else:
            images = client.sample(args.model, args.num, args.seed, args.truncation, args.version,
                                   latents=args.latents, attributes=attributes,
                                   truncation_cutoff=args.truncation_cutoff)
            cols = args.cols
        if args.out_dir:
            if args.interpolate or args.attr_sweep or args.style_mix:
                raise ValueError("--out-dir writes --num samples of a seed; not with --interpolate, --attr-sweep "
                                 "or --style-mix")
            names = client.attribute_names(args.model, args.version) if attributes is not None else None
            if args.refuse_copies_of:
                check_not_copies(images, args.refuse_copies_of, args.copy_rmse)
            manifest = write_synthetic_set(images, args.out_dir, model=args.model,
                                           version=_served_version(client, args), seed=args.seed,
                                           truncation=args.truncation, attributes=attributes, names=names)
    except ClientError as e:
        print(f"facegan sample: {args.model} at {args.server or args.rest}: {e}", file=sys.stderr)
        return 1
    except ValueError as e:
        print(f"facegan sample: {e}", file=sys.stderr)
        return 2
    finally:
        if isinstance(client, GrpcClient):
            client.close()
    if args.out_dir:
        print(f"wrote {len(images)} images and {manifest} (ingest: facegan ingest --input "
              f"{os.path.join(args.out_dir, SYNTHETIC_IMAGES)} --labels {manifest})")
        return 0
    save_grid(images, args.out, cols=cols)
    kind = (f"{len(images)}-frame latent walk" if args.interpolate else
            f"style-mixing grid {args.style_mix} (crossovers {args.crossover})" if args.style_mix else
            f"grid of {len(images)} images")
    if args.attr_sweep:
        kind = f"{args.num} x {args.sweep_steps} sweep of {args.attr_sweep}"
    if args.attr:
        kind += f" with {args.attr}"
    cutoff = "" if args.truncation_cutoff is None else f" on layers < {args.truncation_cutoff}"
    print(f"wrote {args.out}: {kind} {images.shape[1]}x{images.shape[2]} from {args.model} "
          f"(seed {args.style_mix or args.seed}, truncation {args.truncation}{cutoff})")
    return 0


def _edit_request(client, args) -> Optional[Dict[str, float]]:
    """{direction: strength} when --attr names directions of a `facegan directions` version (it has
    `edit_sample`), else None (a conditional model, or no --attr)."""
    if not args.attr and not args.attr_sweep:
        return None
    if "edit_sample" not in client.signature_names(args.model, args.version):
        return None
    if args.attr_sweep or args.interpolate or args.style_mix or args.out_dir:
        raise ValueError(f"--attr on {args.model}, a directions (edit) version: only a seed's grid moves along "
                         "directions (edit_sample); not with --attr-sweep, --interpolate, --style-mix or --out-dir")
    from facegan.conditioning import normalize_name, parse_assignments   # TensorFlow-free
    names = {normalize_name(n): n for n in client.attribute_names(args.model, args.version)}
    values = parse_assignments(args.attr)          # keys normalized ("Smiling" = "smiling")
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ValueError(f"--attr: unknown direction(s) {', '.join(unknown)}; {args.model} (a directions version) "
                         f"edits {', '.join(names.values())}")
    return {names[k]: v for k, v in values.items()}   # the model's own spelling


def edit_sample(client, model: str, num: int, seed: int, strengths: Dict[str, float], truncation: float = 1.0,
                version: Optional[int] = None) -> np.ndarray:
    """uint8 [num, R, R, 3]: the seed's latents moved along named directions by their strengths
    (a `facegan directions` version's `edit_sample` signature)."""
    names, values = list(strengths), [float(v) for v in strengths.values()]
    if isinstance(client, GrpcClient):
        inputs = {"num": np.int32(num), "seed": np.int64(seed), "truncation": np.float32(truncation),
                  "attribute": np.asarray([n.encode() for n in names], dtype=object),
                  "strength": np.asarray(values, np.float32)}
        return client.predict(model, "edit_sample", inputs, version, output_filter=("images",))["images"]
    inputs = {"num": int(num), "seed": int(seed), "truncation": float(truncation), "attribute": names,
              "strength": values}
    return np.asarray(client.predict(model, "edit_sample", inputs, version)["images"], dtype=np.uint8)


def _attribute_request(client, args):
    """(attribute vector or None, index of the swept attribute or None) from --attr/--attr-sweep.
    Names match the model's after normalization ("Smiling" = "smiling", as ingestion stores them)."""
    if not args.attr and not args.attr_sweep:
        return None, None
    from facegan.conditioning import normalize_name, parse_assignments   # TensorFlow-free
    names = client.attribute_names(args.model, args.version)
    keys = [normalize_name(n) for n in names]
    values = parse_assignments(args.attr, known=keys)
    vector = np.asarray([values.get(k, 0.0) for k in keys], np.float32)
    if not args.attr_sweep:
        return vector, None
    sweep = normalize_name(args.attr_sweep)
    if sweep not in keys:
        raise ValueError(f"--attr-sweep {args.attr_sweep!r}: the model conditions on {', '.join(names)}")
    return vector, keys.index(sweep)


# -- synthetic data sets (HDCGAN's augmentation) -------------------------------------------------
SYNTHETIC_IMAGES, SYNTHETIC_MANIFEST, PROVENANCE = "images", "manifest.json", "synthetic"


def _served_version(client, args) -> Optional[int]:
    if args.version is not None:
        return int(args.version)
    if getattr(client, "last_version", None):
        return int(client.last_version)
    served = [v for v, state, _ in client.status(args.model) if state == "AVAILABLE"]
    return max(served) if served else None


def write_synthetic_set(images: np.ndarray, out_dir: str, *, model: str, version: Optional[int], seed: int,
                        truncation: float, attributes=None, names=None) -> str:
    """PNG files plus a manifest the ingestion reads as labels (a JSON list of per-image records:
    `file`, provenance "synthetic", model, model_version, seed, index (latent row of the seed),
    truncation, and the attribute values by name when conditional). Refuses a non-empty DIR/images."""
    from facegan.images import encode_png
    img_dir = os.path.join(out_dir, SYNTHETIC_IMAGES)
    if os.path.isdir(img_dir) and os.listdir(img_dir):
        raise ValueError(f"--out-dir {out_dir}: {img_dir} is not empty (a synthetic set is written once)")
    os.makedirs(img_dir, exist_ok=True)
    records = []
    for i, im in enumerate(images):
        name = f"{i:06d}.png"
        with open(os.path.join(img_dir, name), "wb") as f:
            f.write(encode_png(im))
        rec = {"file": name, "provenance": PROVENANCE, "model": model, "seed": int(seed), "index": i,
               "truncation": float(truncation)}
        if version is not None:
            rec["model_version"] = int(version)
        if attributes is not None:
            rec.update({n: float(v) for n, v in zip(names, np.asarray(attributes).reshape(-1))})
        records.append(rec)
    path = os.path.join(out_dir, SYNTHETIC_MANIFEST)
    with open(path + ".tmp", "w") as f:
        json.dump(records, f, indent=1)
    os.replace(path + ".tmp", path)
    return path


def check_not_copies(images: np.ndarray, examples_uri: str, copy_rmse: float = 4.0) -> Dict:
    """ValueError naming the near-copies (pixel RMSE <= copy_rmse to a training image of
    `examples_uri`, the memorization check's `exact_copies`); else the check's summary."""
    from facegan.examples_io import iterate_images
    from facegan.metrics.memorization import memorization
    result = memorization(images, iterate_images(examples_uri, "train", batch_size=64), None, extractor="random",
                          copy_rmse=copy_rmse, progress=False)
    copies = [i for i, c in enumerate(result["exact_copies"]) if c]
    if copies:
        raise ValueError(f"--refuse-copies-of {examples_uri}: {len(copies)} of {len(images)} images are within "
                         f"{copy_rmse} grey levels RMSE of a training image (indices {copies[:10]}); nothing written")
    return result
