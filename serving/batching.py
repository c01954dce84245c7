"""Server-side request batching with TF Serving's semantics (`--enable_batching`).

Concurrent requests for the same model version, signature, input keys and outputs are merged
along dimension 0 into one call, padded up to the next `allowed_batch_sizes`, and split back per
request; TF Serving's BatchingSession does the same. It also refuses what TF Serving's batching
refuses, with the same message, so `facegan serve --enable_batching` reproduces a production
deployment: rank-0 inputs (the `sample` / `generate` signatures) fail with INVALID_ARGUMENT
"... input tensors must have at least one dimension", and `facegan sample` falls back to
client-drawn latents through `serving_default` (serving/client.py).

`--batching_parameters_file` is TF Serving's BatchingParameters text proto (serving/configs/
batching.config); its proto is not shipped in tensorflow-serving-api, so the few scalar fields
are parsed here (unknown fields are an error naming the field).
"""
from __future__ import annotations

import collections
import dataclasses
import re
import threading
import time
from typing import Dict, List, Optional

import grpc
import numpy as np

from facegan.serving.manager import Servable, ServingError


@dataclasses.dataclass
class BatchingParameters:
    # Defaults as in TF Serving's session_bundle_config.proto / BatchingSession.
    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 1 << 30
    num_batch_threads: int = 2
    thread_pool_name: str = "batch_threads"
    allowed_batch_sizes: List[int] = dataclasses.field(default_factory=list)
    pad_variable_length_inputs: bool = False
    enable_large_batch_splitting: bool = False
    max_execution_batch_size: int = 0          # 0: = max_batch_size

    @property
    def execution_size(self) -> int:
        return self.max_execution_batch_size or self.max_batch_size


def parse_batching_parameters(text: str, source: str = "batching.config") -> BatchingParameters:
    """Parse a BatchingParameters text proto (`field { value: X }` wrappers, repeated ints)."""
    params = BatchingParameters()
    fields = {f.name: f for f in dataclasses.fields(BatchingParameters)}
    body = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    pattern = re.compile(r"(\w+)\s*(?:\{\s*value\s*:\s*([^}\s]+)\s*\}|:\s*(\S+))")
    consumed = pattern.sub("", body)
    if consumed.strip():
        raise ValueError(f"{source}: cannot parse {consumed.strip()[:60]!r}")
    for m in pattern.finditer(body):
        name, raw = m.group(1), (m.group(2) or m.group(3)).strip('"')
        if name not in fields:
            raise ValueError(f"{source}: unknown BatchingParameters field {name!r}")
        try:
            if name == "allowed_batch_sizes":
                params.allowed_batch_sizes.append(int(raw))
            elif fields[name].type in ("bool", bool):
                if raw.lower() not in ("true", "false"):
                    raise ValueError(raw)
                setattr(params, name, raw.lower() == "true")
            elif fields[name].type in ("str", str):
                setattr(params, name, raw)
            else:
                setattr(params, name, int(raw))
        except ValueError:
            raise ValueError(f"{source}: {name} has an invalid value {raw!r}") from None
    sizes = params.allowed_batch_sizes
    if sizes and (sizes != sorted(sizes) or sizes[-1] != params.execution_size):
        raise ValueError(f"{source}: allowed_batch_sizes must increase and end with "
                         f"{'max_execution_batch_size' if params.max_execution_batch_size else 'max_batch_size'} "
                         f"({params.execution_size}), got {sizes}")
    if params.max_batch_size < 1 or params.num_batch_threads < 1:
        raise ValueError(f"{source}: max_batch_size and num_batch_threads must be >= 1")
    return params


class _Task:
    __slots__ = ("inputs", "size", "done", "outputs", "error", "enqueued")

    def __init__(self, inputs, size):
        self.inputs, self.size = inputs, size
        self.done = threading.Event()
        self.outputs, self.error = None, None
        self.enqueued = time.monotonic()


class _Queue:
    def __init__(self, servable, signature, output_filter):
        self.servable, self.signature, self.output_filter = servable, signature, output_filter
        self.open: List[_Task] = []
        self.open_size = 0
        self.closed = collections.deque()   # full batches waiting for a thread


class Batcher:
    """Shared batch scheduler: `num_batch_threads` threads serve one queue per (servable, signature)."""

    def __init__(self, params: BatchingParameters):
        self.params = params
        self._cv = threading.Condition()
        self._queues: Dict[tuple, _Queue] = {}
        self._stop = False
        self.batches_run = 0
        self.batch_sizes: List[int] = []      # executed (padded) sizes, for tests and stats
        self._threads = [threading.Thread(target=self._loop, name=f"facegan-batch-{i}", daemon=True)
                         for i in range(params.num_batch_threads)]
        for t in self._threads:
            t.start()

    def stop(self):
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        for t in self._threads:
            t.join(timeout=30)

    # -- request side ----------------------------------------------------------------------------
    def run(self, servable: Servable, signature: str, inputs: Dict[str, np.ndarray], output_filter=()):
        servable.check(signature, inputs)
        for alias, arr in inputs.items():
            if arr.ndim == 0:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   "Batching session Run() input tensors must have at least one dimension "
                                   f"(input {alias!r} is a scalar; send it with a batch dimension, or call "
                                   "a signature whose inputs all have one)")
        sizes = {arr.shape[0] for arr in inputs.values()}
        if len(sizes) != 1:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               "Batching session Run() requires all input tensors to have the same 0th-dimension size")
        size = sizes.pop()
        p = self.params
        if size > p.max_batch_size:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"Task size {size} is larger than maximum input batch size {p.max_batch_size}")
        execution = min(p.execution_size, servable.max_batch)
        if size > execution:
            if not p.enable_large_batch_splitting:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"Task size {size} is larger than the maximum batch size {execution}")
            parts = [self.run(servable, signature, {k: v[i:i + execution] for k, v in inputs.items()}, output_filter)
                     for i in range(0, size, execution)]
            return {k: np.concatenate([part[k] for part in parts]) for k in parts[0]}
        task = _Task(inputs, size)
        key = (id(servable), signature, tuple(sorted(inputs)), tuple(output_filter))
        with self._cv:
            q = self._queues.get(key)
            if q is None:
                q = self._queues[key] = _Queue(servable, signature, tuple(output_filter))
            if q.open_size + size > execution:
                q.closed.append(q.open)
                q.open, q.open_size = [], 0
            if len(q.closed) + 1 > p.max_enqueued_batches:
                raise ServingError(grpc.StatusCode.UNAVAILABLE,
                                   "The batch scheduling queue to which this task was submitted is full")
            q.open.append(task)
            q.open_size += size
            if q.open_size == execution:
                q.closed.append(q.open)
                q.open, q.open_size = [], 0
            self._cv.notify_all()
        task.done.wait()
        if task.error is not None:
            raise task.error
        return task.outputs

    # -- scheduler side --------------------------------------------------------------------------
    def _next_batch(self):
        """(queue, tasks) ready to run, or (None, wait seconds)."""
        timeout = self.params.batch_timeout_micros / 1e6
        now, wait = time.monotonic(), None
        for key, q in self._queues.items():
            if q.closed:
                return self._taken(key, q, q.closed.popleft())
        for key, q in self._queues.items():
            if q.open:
                left = q.open[0].enqueued + timeout - now
                if left <= 0:
                    tasks, q.open, q.open_size = q.open, [], 0
                    return self._taken(key, q, tasks)
                wait = left if wait is None else min(wait, left)
        return None, wait

    def _taken(self, key, q: _Queue, tasks):
        # An emptied queue is dropped: it holds its servable, which must be freed when the version
        # is unloaded (and its id() must not be reused by the next version's queue).
        if not q.open and not q.closed:
            del self._queues[key]
        return q, tasks

    def _loop(self):
        while True:
            with self._cv:
                while True:
                    if self._stop and not any(q.open or q.closed for q in self._queues.values()):
                        return
                    q, tasks = self._next_batch()
                    if q is not None:
                        break
                    self._cv.wait(timeout=tasks)
            self._execute(q, tasks)

    def _execute(self, q: _Queue, tasks: List[_Task]):
        total = sum(t.size for t in tasks)
        padded = next((s for s in self.params.allowed_batch_sizes if s >= total), total)
        if padded > min(self.params.execution_size, q.servable.max_batch):
            padded = total   # never pad past the model's own per-call bound
        try:
            batched = {}
            for k in tasks[0].inputs:
                arr = np.concatenate([t.inputs[k] for t in tasks])
                if padded > total:   # pad with copies of the first row, as TF Serving does
                    arr = np.concatenate([arr, np.repeat(arr[:1], padded - total, axis=0)])
                batched[k] = arr
            out = q.servable.execute(q.signature, batched, q.output_filter)
            for k, v in out.items():
                if v.ndim == 0 or v.shape[0] != padded:
                    raise ServingError(grpc.StatusCode.INTERNAL,
                                       f"Batched output tensor {k!r} has shape {list(v.shape)}, not [{padded}, ...]")
            start = 0
            for t in tasks:
                t.outputs = {k: v[start:start + t.size] for k, v in out.items()}
                start += t.size
        except ServingError as e:
            for t in tasks:
                t.error = e
        except Exception as e:  # noqa: BLE001 - every waiting request gets an answer
            for t in tasks:
                t.error = ServingError(grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}")
        finally:
            self.batches_run += 1
            self.batch_sizes.append(padded)
            for t in tasks:
                t.done.set()
