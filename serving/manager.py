"""Model versions on disk -> loaded servables, the way TF Serving manages them.

Layout (TF Serving's, written by the Pusher): `<base_path>/<version>/saved_model.pb`, versions are
positive integers; other entries are ignored. A `ModelManager` polls every base path, applies the
model's version policy (`latest {num_versions: N}` (default N = 1), `all`, `specific {versions}`),
loads new aspired versions before unloading old ones (availability-preserving, so a hot swap
never leaves a gap), retries failed loads (5 more times, 5 s apart by default; a failed version
whose folder changes starts afresh, one whose folder disappears is forgotten), and reports
per-version states with TF Serving's `ModelVersionStatus.State` names (START, LOADING, AVAILABLE,
UNLOADING, END). `load_initial` is TF Serving's start-up: it says which models have no version
that loads, and the server then refuses to start.

`Servable.run` validates a request against the signature exactly where TF Serving would refuse it
(input key set, dtype, shape), adds facegan's per-request image bound, and maps TensorFlow errors
to gRPC status codes; it never lets an exception escape as a crash.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from typing import Dict, List, Optional

import grpc
import numpy as np

log = logging.getLogger("facegan.serving")

from facegan.generator import DEFAULT_MAX_BATCH

# TF Serving's ModelVersionStatus.State values (tensorflow_serving/apis/get_model_status.proto).
START, LOADING, AVAILABLE, UNLOADING, END = "START", "LOADING", "AVAILABLE", "UNLOADING", "END"


class ServingError(Exception):
    """A request failure with the gRPC status code TF Serving would return."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code, self.message = code, message


# -- configuration ------------------------------------------------------------------------------
@dataclasses.dataclass
class ModelSpec:
    name: str
    base_path: str
    policy: str = "latest"                 # latest | all | specific
    num_versions: int = 1                  # for latest
    versions: tuple = ()                   # for specific
    labels: Dict[str, int] = dataclasses.field(default_factory=dict)

    def select(self, available: List[int]) -> List[int]:
        """The aspired versions among those on disk."""
        available = sorted(set(available))
        if self.policy == "all":
            return available
        if self.policy == "specific":
            return [v for v in available if v in set(self.versions)]
        return available[-max(1, self.num_versions):]


def parse_model_config(text: str, source: str = "models.config") -> List[ModelSpec]:
    """Parse TF Serving's `--model_config_file` (a text ModelServerConfig proto)."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    cfg = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, cfg)
    except text_format.ParseError as e:
        raise ValueError(f"{source}: not a ModelServerConfig text proto: {e}") from None
    specs = []
    for m in cfg.model_config_list.config:
        if not m.name or not m.base_path:
            raise ValueError(f"{source}: every model config needs a name and a base_path (got {m.name!r})")
        if m.model_platform and m.model_platform != "tensorflow":
            raise ValueError(f"{source}: model {m.name!r}: model_platform must be 'tensorflow'")
        pol = m.model_version_policy
        kind = pol.WhichOneof("policy_choice") or "latest"
        spec = ModelSpec(name=m.name, base_path=m.base_path, policy=kind,
                         num_versions=(pol.latest.num_versions or 1) if kind == "latest" else 1,
                         versions=tuple(int(v) for v in pol.specific.versions) if kind == "specific" else (),
                         labels={k: int(v) for k, v in m.version_labels.items()})
        if kind == "specific" and not spec.versions:
            raise ValueError(f"{source}: model {m.name!r}: specific policy lists no versions")
        specs.append(spec)
    if not specs:
        raise ValueError(f"{source}: model_config_list has no models")
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"{source}: duplicate model names in {names}")
    return specs


def base_path_exists(base_path: str) -> bool:
    import tensorflow as tf
    try:
        return tf.io.gfile.isdir(base_path)
    except (tf.errors.OpError, OSError):
        return False


def folder_fingerprint(path: str) -> tuple:
    """(relative path, size, mtime) of every file under `path`: changes when a version's folder is
    replaced or rewritten (a failed version is then tried again)."""
    import tensorflow as tf
    out = []
    try:
        for root, _dirs, files in tf.io.gfile.walk(path):
            for f in files:
                full = os.path.join(root, f)
                try:
                    st = tf.io.gfile.stat(full)
                    out.append((os.path.relpath(full, path), st.length, st.mtime_nsec))
                except (tf.errors.OpError, OSError):
                    out.append((os.path.relpath(full, path), -1, -1))
    except (tf.errors.OpError, OSError):
        pass
    return tuple(sorted(out))


def list_versions(base_path: str) -> List[int]:
    """Positive integer subdirectories holding a complete SavedModel (saved_model.pb present)."""
    import tensorflow as tf
    try:
        entries = tf.io.gfile.listdir(base_path)
    except (tf.errors.NotFoundError, OSError):
        return []
    out = []
    for e in entries:
        e = e.rstrip("/")
        if e.isdigit() and int(e) > 0 and (
                tf.io.gfile.exists(os.path.join(base_path, e, "saved_model.pb"))
                or tf.io.gfile.exists(os.path.join(base_path, e, "saved_model.pbtxt"))):
            out.append(int(e))
    return sorted(out)


# -- one loaded version ---------------------------------------------------------------------------
_DTYPE_NAMES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double", np.dtype(np.int32): "int32",
                np.dtype(np.int64): "int64", np.dtype(np.uint8): "uint8", np.dtype(object): "string"}


def _dtype_name(dtype) -> str:
    return _DTYPE_NAMES.get(np.dtype(dtype), np.dtype(dtype).name)


class Servable:
    """One loaded version: the generator (facegan.generator.load_generator) and its input specs."""

    def __init__(self, name: str, version: int, path: str, max_batch: Optional[int] = None):
        from facegan.generator import load_generator

        self.name, self.version, self.path = name, version, path
        self.generator = load_generator(path)
        self.metadata, self.signatures = self.generator.metadata, self.generator.signatures
        self.signature_defs = self.generator.signature_defs
        self.input_specs = {k: fn.structured_input_signature[1] for k, fn in self.signatures.items()}
        self.output_keys = {k: sorted(fn.structured_outputs) for k, fn in self.signatures.items()}
        self.max_batch = int(min(b for b in (max_batch, self.generator.max_batch) if b))

    def check(self, signature_name: str, inputs: Dict[str, np.ndarray]):
        """Raise ServingError for anything TF Serving (or our bounds) would refuse."""
        if signature_name not in self.signatures:
            # TF Serving's predict_util: FAILED_PRECONDITION for an unknown signature key.
            raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                               f'Serving signature key "{signature_name}" not found. '
                               f"Available: {sorted(self.signatures)}")
        specs = self.input_specs[signature_name]
        if set(inputs) != set(specs):
            extra, missing = sorted(set(inputs) - set(specs)), sorted(set(specs) - set(inputs))
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"input size does not match signature {signature_name!r}: {len(inputs)}!="
                               f"{len(specs)} len({{{','.join(sorted(inputs))}}}) != len({{{','.join(sorted(specs))}}}). "
                               f"Sent extra: {{{','.join(extra)}}}. Missing but required: {{{','.join(missing)}}}.")
        for alias in sorted(specs):
            spec, arr = specs[alias], inputs[alias]
            want = np.dtype(spec.dtype.as_numpy_dtype) if spec.dtype.name != "string" else np.dtype(object)
            if arr.dtype != want:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"input {alias!r}: expects {_dtype_name(want)} but {_dtype_name(arr.dtype)} is provided")
            if not spec.shape.is_compatible_with(arr.shape):
                # the metadata's text of the input says what it holds (e.g. the attribute names)
                about = self.metadata.get("signatures", {}).get(signature_name, {}).get("inputs", {}).get(alias)
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"input {alias!r}: shape {list(arr.shape)} is not compatible with the "
                                   f"signature's {spec.shape.as_list() if spec.shape.rank is not None else 'any'}"
                                   + (f" ({about})" if about else ""))
            # Request-size bounds: batch inputs and facegan's `num` count images per request.
            # (Rank >= 2: z / attributes rows; `sample`'s attribute vector [A] is not a batch.)
            if (spec.shape.rank or 0) >= 2 and spec.shape[0] is None and not 1 <= arr.shape[0] <= self.max_batch:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"input {alias!r}: batch size {arr.shape[0]} is outside [1, {self.max_batch}]")
            if alias == "num" and spec.shape.rank == 0 and not 1 <= int(arr) <= self.max_batch:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"input 'num' = {int(arr)} is outside [1, {self.max_batch}] images per request")
            if alias == "truncation" and spec.shape.rank == 0 and not 0.0 < float(arr) <= 1.0:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"input 'truncation' = {float(arr)} is outside (0, 1]")

    def run(self, signature_name: str, inputs: Dict[str, np.ndarray], output_filter=()) -> Dict[str, np.ndarray]:
        """Validate, then execute (the unbatched path)."""
        self.check(signature_name, inputs)
        return self.execute(signature_name, inputs, output_filter)

    def execute(self, signature_name: str, inputs: Dict[str, np.ndarray], output_filter=()) -> Dict[str, np.ndarray]:
        """Run already-validated inputs (the batcher merges checked requests, then calls this)."""
        import tensorflow as tf

        keys = self.output_keys[signature_name]
        wanted = list(output_filter) or keys
        for alias in wanted:
            if alias not in keys:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"output tensor alias not found in signature: {alias} Outputs expected to be "
                                   f"in the set {{{','.join(keys)}}}.")
        if len(set(wanted)) != len(wanted):
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"duplicate output tensor alias in {wanted}")
        try:
            out = self.signatures[signature_name](**{k: tf.constant(v) for k, v in inputs.items()})
            return {k: out[k].numpy() for k in wanted}
        except tf.errors.InvalidArgumentError as e:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, e.message.strip()) from None
        except tf.errors.ResourceExhaustedError as e:
            raise ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED, e.message.strip()) from None
        except tf.errors.OpError as e:
            raise ServingError(grpc.StatusCode.INTERNAL, e.message.strip()) from None


# -- the manager --------------------------------------------------------------------------------
@dataclasses.dataclass
class VersionState:
    state: str
    error: str = ""          # load error message (state END after failed retries)
    failures: int = 0
    retry_at: float = 0.0    # monotonic time of the next load attempt after a failure
    fingerprint: tuple = ()  # the version folder's files when the failed attempt started


class ModelManager:
    """Polls base paths and keeps the aspired versions of every model loaded."""

    def __init__(self, specs: List[ModelSpec], poll_wait_s: float = 1.0, max_batch: Optional[int] = None,
                 max_load_retries: int = 5, load_retry_interval_s: float = 5.0):
        self.specs = {s.name: s for s in specs}
        self.poll_wait_s = poll_wait_s
        self.max_batch = max_batch
        # Like TF Serving's --max_num_load_retries / --load_retry_interval_micros: a version
        # copied in non-atomically (the Pusher copies file by file) may fail to load at first.
        self.max_load_retries = max_load_retries
        self.load_retry_interval_s = load_retry_interval_s
        self._lock = threading.Lock()
        self._poll_lock = threading.Lock()
        self._loaded: Dict[str, Dict[int, Servable]] = {s.name: {} for s in specs}
        self._states: Dict[str, Dict[int, VersionState]] = {s.name: {} for s in specs}
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.polls = 0

    # lifecycle
    def start(self):
        """Load what is on disk now (one poll), then watch the base paths (`poll_wait_s` > 0)."""
        self.poll_once()
        return self.start_watching()

    def start_watching(self):
        if self.poll_wait_s > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="facegan-model-poll", daemon=True)
            self._thread.start()
        return self

    def load_initial(self) -> Dict[str, str]:
        """TF Serving's start-up: poll, and retry failed loads (up to max_load_retries, every
        load_retry_interval_s) until every model has a loaded version or nothing is left to try.
        Returns {model: why it has no version} for the models still without one."""
        self.poll_once()
        while not self._stop.is_set():
            with self._lock:
                pending = [st.retry_at for name in self.specs if not self._loaded[name]
                           for st in self._states[name].values()
                           if st.error and st.failures <= self.max_load_retries]
            if not pending:
                break
            self._stop.wait(max(0.0, min(pending) - time.monotonic()) + 0.01)
            self.poll_once()
        return self.unavailable()

    def unavailable(self) -> Dict[str, str]:
        """{model: why it has no loaded version} (one line each)."""
        out = {}
        for name, spec in self.specs.items():
            with self._lock:
                if self._loaded[name]:
                    continue
                failed = {v: st for v, st in self._states[name].items() if st.error}
            if not base_path_exists(spec.base_path):
                out[name] = f"base path {spec.base_path} does not exist"
            elif failed:
                v = max(failed)
                err = failed[v].error.strip().splitlines()[0] if failed[v].error.strip() else "unknown error"
                out[name] = (f"version {v} failed to load ({failed[v].failures} attempt"
                             f"{'s' if failed[v].failures != 1 else ''}): {err[:300]}")
            elif not list_versions(spec.base_path):
                out[name] = (f"no versions under {spec.base_path} (a version is a numbered folder "
                             "holding saved_model.pb)")
            else:
                out[name] = f"no version under {spec.base_path} matches the version policy ({spec.policy})"
        return out

    def stop(self):
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)

    def _loop(self):
        while not self._stop.wait(self.poll_wait_s):
            try:
                self.poll_once()
            except Exception:  # a bad poll must not kill the watcher
                log.exception("model poll failed")

    def poll_once(self):
        """One pass over every model: load new aspired versions, then unload the rest."""
        with self._poll_lock:
            for name, spec in self.specs.items():
                listed = list_versions(spec.base_path)
                self._forget_changed_failures(name, spec, listed)
                aspired = spec.select(listed)
                states = self._states[name]
                for v in aspired:
                    st = states.get(v)
                    if v in self._loaded[name] or (st and (
                            st.failures > self.max_load_retries or time.monotonic() < st.retry_at)):
                        continue
                    self._load(name, v, os.path.join(spec.base_path, str(v)))
                # Unload only what is no longer aspired, and only if something else is serving
                # (availability-preserving, like TF Serving's default policy).
                keep = [v for v in aspired if v in self._loaded[name]]
                for v in list(self._loaded[name]):
                    if v not in aspired and keep:
                        with self._lock:
                            states[v] = VersionState(UNLOADING)
                            del self._loaded[name][v]
                            states[v] = VersionState(END)
                        log.info("unloaded %s version %d", name, v)
            self.polls += 1

    def _forget_changed_failures(self, name: str, spec: ModelSpec, listed: List[int]):
        """A version that failed to load gets a fresh start when its folder disappears (its state
        is dropped) or its files change (failures reset to 0, state START, tried again at its next
        retry time): a good copy pushed under the same number is loaded, never ignored."""
        states = self._states[name]
        for v, st in list(states.items()):
            if not st.error or v in self._loaded[name]:
                continue
            if v not in listed:
                with self._lock:
                    del states[v]
                log.info("%s version %d (failed to load) is gone from %s", name, v, spec.base_path)
            elif folder_fingerprint(os.path.join(spec.base_path, str(v))) != st.fingerprint:
                with self._lock:
                    states[v] = VersionState(START, retry_at=st.retry_at)
                log.info("%s version %d changed on disk since it failed to load: trying it again", name, v)

    def _load(self, name: str, version: int, path: str):
        states = self._states[name]
        prev = states.get(version)
        fingerprint = folder_fingerprint(path)
        with self._lock:
            states[version] = VersionState(LOADING, failures=prev.failures if prev else 0)
        try:
            servable = Servable(name, version, path, self.max_batch)
        except Exception as e:  # noqa: BLE001 - a broken version is reported, never fatal
            with self._lock:
                failures = states[version].failures + 1
                states[version] = VersionState(END, f"{type(e).__name__}: {e}"[:2000], failures,
                                               time.monotonic() + self.load_retry_interval_s, fingerprint)
            log.warning("failed to load %s version %d from %s (attempt %d): %s", name, version, path, failures, e)
            return
        with self._lock:
            self._loaded[name][version] = servable
            states[version] = VersionState(AVAILABLE)
        log.info("loaded %s version %d from %s", name, version, path)

    # lookups
    def get(self, name: str, version: Optional[int] = None, label: str = "") -> Servable:
        with self._lock:
            if name not in self._loaded:
                raise ServingError(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: Latest({name})")
            if label:
                if label not in self.specs[name].labels:
                    raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                       f"Unrecognized servable version label: {label}")
                version = self.specs[name].labels[label]
            loaded = self._loaded[name]
            if version is None:
                if not loaded:
                    raise ServingError(grpc.StatusCode.NOT_FOUND,
                                       f"Servable not found for request: Latest({name})")
                return loaded[max(loaded)]
            if version not in loaded:
                raise ServingError(grpc.StatusCode.NOT_FOUND,
                                   f"Servable not found for request: Specific({name}, {version})")
            return loaded[version]

    def status(self, name: str, version: Optional[int] = None) -> Dict[int, VersionState]:
        with self._lock:
            if name not in self._states:
                raise ServingError(grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {name}")
            states = dict(self._states[name])
        if version is not None:
            if version not in states:
                raise ServingError(grpc.StatusCode.NOT_FOUND,
                                   f"Could not find version {version} of model {name}")
            return {version: states[version]}
        if not states:
            raise ServingError(grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {name}")
        return states

    def model_names(self) -> List[str]:
        return sorted(self.specs)
