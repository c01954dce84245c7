"""The Beam-free runner of ingestion: the stages of stages.py in this process, or in a fork pool
of `workers` processes for more than `POOL_MIN_FILES` units.

No Beam import (3-11 s on a 2-core machine) and no worker interpreters to start (Beam's
multi-processing DirectRunner: ~6 s, 46 s on a loaded machine): forked workers share the parent's
imports. runner.py picks it (the `local` runner) when no Beam args are given and, for the TFX
executor, when its Beam runner is the local DirectRunner and the input is small enough.
"""
import collections
import functools
import os
from typing import Dict, List, Optional, Sequence, Tuple

from facegan.ingest import stages as S
from facegan.ingest import options as O
from facegan.ingest import listing as L

POOL_MIN_FILES = 200            # below this a fork pool costs more than it saves
CHUNKS_PER_WORKER = 4           # work units per worker: balance vs shard files
SINGLE_CHUNK = 2000             # in one process: groups per chunk (progress shown between chunks)


def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return os.cpu_count() or 1


# ---------------------------------------------------------------------------------------------
# Work done in the pool (module-level so forked workers find it; state set before the fork).

_JOB: Dict = {}


def _job_progress(phase: str) -> "S.ProgressFile":
    """This process's counter file for `phase` (made on first use: its name carries our pid)."""
    key = f"progress/{phase}"
    if key not in _JOB:
        _JOB[key] = S.ProgressFile(_JOB.get("progress_dir"), phase=phase)
    return _JOB[key]


def _tick() -> None:
    """In-process runs: let the driver show progress while a chunk is going."""
    tick = _JOB.get("tick")
    if tick is not None:
        tick()


def _read_chunk(units: Sequence[str]):
    counts = collections.Counter()
    hashed, rejected = [], []
    progress = _job_progress(S.PHASE_HASH)
    for unit in units:
        progress.add(1)
        for tag, value in S.read_and_hash(unit, counts):
            (hashed if tag == S.HASHED else rejected).append(value)
        _tick()
    progress.add(0, force=True)
    return hashed, rejected, counts


def _process_chunk(groups: Sequence[Tuple[str, List]]):
    cfg, tmp_dir = _JOB["cfg"], _JOB["tmp_dir"]
    proc = _JOB.get("proc")
    if proc is None:
        proc = _JOB["proc"] = S.GroupProcessor(cfg)
    progress = _job_progress(S.PHASE_PROCESS)
    proc.start()
    shards = S.ShardWriters(tmp_dir)
    rejections = []
    for sha, items in groups:
        progress.add(len(items))
        rejections.extend(rec for _, rec in proc.process(sha, items, shards.write))
        _tick()
    progress.add(0, force=True)
    return shards.close(), rejections, proc.counts, tuple(proc.stats), list(proc.sample)


def _worker_init(cfg=None, tmp_dir=None, progress_dir=None):
    """Job state for `_process_chunk` (passed, so spawned workers get it too). Pool workers
    ignore Ctrl-C (the terminal sends it to the whole process group): the driver
    alone handles it, removes the partial output and kills them (no worker tracebacks). SIGTERM
    ends them silently (the driver's handler, inherited by a fork, is reset): the driver then
    sees Terminated and SIGKILLs and reaps whatever is left (`_Workers.kill`)."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if cfg is not None:
        _JOB.clear()
        _JOB.update(cfg=cfg, tmp_dir=tmp_dir, progress_dir=progress_dir)


def _exit_with_parent(parent_pid: int) -> None:
    """Make this worker die with the driver, whatever kills the driver (SIGKILL included).

    Linux: PR_SET_PDEATHSIG delivers SIGKILL to us when the driver (the thread that forked us)
    ends. Everywhere: a watchdog thread notices the re-parenting (getppid changes) within a
    second. Together with the pipe ends closed in `_worker_loop`, no worker outlives its run."""
    import signal
    import threading
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)            # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:                        # the driver died before the prctl
        os._exit(1)

    def watch():
        import time
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="facegan-parent-watch").start()


def _worker_loop(conn, init_args, parent_pid: Optional[int] = None, inherited=()) -> None:
    """A `_Workers` process: run `(fn, arg)` messages until `None` or the driver is gone.

    `inherited`: the driver's ends of the pipes, copied into this process by the fork (its own
    pipe's and the earlier workers'). Closed first: while any process holds the driver's end of
    a pipe, the worker on the other end never sees end-of-file when the driver dies."""
    for c in inherited:
        try:
            c.close()
        except OSError:
            pass
    if parent_pid is not None:
        _exit_with_parent(parent_pid)
    _worker_init(*init_args)
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        fn, arg = msg
        try:
            out = (True, fn(arg))
        except Exception as e:  # noqa: BLE001 - re-raised in the driver
            out = (False, e)
        try:
            conn.send(out)
        except (BrokenPipeError, ConnectionResetError):
            return                                        # the driver is gone
        except Exception as e:  # noqa: BLE001 - an unpicklable result or exception
            try:
                conn.send((False, RuntimeError(f"ingest worker: {type(e).__name__}: {e}")))
            except OSError:
                return


class _Workers:
    """`n` worker processes, each with its own pipe; `imap(fn, items)` yields in input order.

    Not multiprocessing.Pool: its workers share the task queue's read lock and hold it while
    waiting for a task. A SIGTERM sent to the process group (`kill -TERM -<pgid>`, a service
    manager stopping the job) kills such a worker holding the lock, and `Pool.terminate()` then
    waits for that lock forever (Pool._help_stuff_finish). Here no lock is shared: `kill()`
    SIGKILLs and reaps the workers whatever state they died in. Workers also die with the
    driver when it is killed outright (`_exit_with_parent`, `_worker_loop`'s `inherited`).
    `poll()`, when given, is called about every `POLL_S` seconds while `imap` waits.
    """

    POLL_S = 0.5

    def __init__(self, ctx, n: int, init_args: Tuple):
        self.procs, self.conns = [], []
        forked = ctx.get_start_method() == "fork"
        for _ in range(n):
            ours, theirs = ctx.Pipe()
            # a forked child gets copies of every open end; a spawned one only what it is given
            inherited = (*self.conns, ours) if forked else ()
            p = ctx.Process(target=_worker_loop, daemon=True,
                            args=(theirs, init_args, os.getpid(), inherited))
            p.start()
            theirs.close()
            self.procs.append(p)
            self.conns.append(ours)

    def imap(self, fn, items: Sequence, poll=None):
        from multiprocessing.connection import wait
        todo = list(enumerate(items))[::-1]
        idle, busy, done, next_out = list(self.conns), {}, {}, 0
        while todo or busy:
            while idle and todo:
                conn = idle.pop()
                i, item = todo.pop()
                conn.send((fn, item))
                busy[conn] = i
            ready = wait(list(busy), timeout=self.POLL_S)
            if poll is not None:
                poll()          # throttled by the caller
            for conn in ready:
                try:
                    ok, value = conn.recv()
                except EOFError:
                    p = self.procs[self.conns.index(conn)]
                    p.join(5)
                    raise RuntimeError(f"an ingest worker process (pid {p.pid}) died "
                                       f"(exit code {p.exitcode})") from None
                if not ok:
                    raise value
                done[busy.pop(conn)] = value
                idle.append(conn)
            while next_out in done:
                yield done.pop(next_out)
                next_out += 1

    def close(self) -> None:
        """Stop idle workers (after `imap` is exhausted)."""
        for conn in self.conns:
            try:
                conn.send(None)
            except OSError:
                pass
        for p in self.procs:
            p.join()
        for conn in self.conns:
            conn.close()

    def kill(self) -> None:
        for p in self.procs:
            if p.exitcode is None:
                p.kill()
        for p in self.procs:
            p.join()
        for conn in self.conns:
            conn.close()


def _throttled(fn, every_s: float):
    """`fn` called at most once per `every_s` seconds (in-process progress ticks)."""
    import time
    last = [0.0]

    def call():
        now = time.monotonic()
        if now - last[0] >= every_s:
            last[0] = now
            fn()
    return call


def _chunks(items: List, n: int) -> List[List]:
    """`n` contiguous chunks of about equal size (deterministic)."""
    n = max(1, min(n, len(items)))
    k, r = divmod(len(items), n)
    out, i = [], 0
    for j in range(n):
        size = k + (1 if j < r else 0)
        out.append(items[i:i + size])
        i += size
    return out


def run_local(listing: L.InputListing, stage_path: str, cfg: O.IngestConfig, input_base: str,
              workers: Optional[int] = None, progress_dir: Optional[str] = None,
              poll=None) -> Dict:
    """Run the stages without Beam into `stage_path`; returns the summary."""
    import uuid
    units = listing.units
    workers = workers or _default_workers()
    use_pool = workers > 1 and len(units) >= POOL_MIN_FILES
    tmp_dir = S.join(stage_path, S.TMP_DIR, uuid.uuid4().hex)
    _JOB.clear()
    _JOB.update(cfg=cfg, tmp_dir=tmp_dir, progress_dir=progress_dir)
    pool = None
    if poll is not None and not use_pool:
        _JOB["tick"] = _throttled(poll, _Workers.POLL_S)
    try:
        if use_pool:
            import multiprocessing
            import threading
            # fork: workers share the parent's imports (no start-up); but forking a process
            # that runs other threads (a TFX executor: gRPC, absl) can deadlock a child on a
            # lock held at fork time, so there the workers are spawned (numpy + PIL imports).
            method = "fork" if threading.active_count() == 1 else "spawn"
            pool = _Workers(multiprocessing.get_context(method), workers,
                            (cfg, tmp_dir, progress_dir))
            imap = functools.partial(pool.imap, poll=poll)
        else:
            imap = map
        n_chunks = workers * CHUNKS_PER_WORKER if use_pool else -(-len(units) // SINGLE_CHUNK)
        counts = collections.Counter()
        groups: Dict[str, List] = collections.defaultdict(list)
        rejections: List[Dict] = []
        for hashed, rejected, c in imap(_read_chunk, _chunks(units, n_chunks)):
            counts.update(c)
            rejections.extend(rejected)
            for sha, item in hashed:
                groups[sha].append(item)
        ordered = sorted(groups.items())
        shards, stats, sample = [], [], []
        for sh, rej, c, st, sm in imap(_process_chunk, _chunks(ordered, n_chunks)):
            shards.extend(sh)
            rejections.extend(rej)
            counts.update(c)
            stats.append(st)
            sample.extend(sm)
    except BaseException:
        if pool is not None:
            pool.kill()     # before the caller removes the staging folder they write into
        raise
    finally:
        _JOB.pop("tick", None)
    if pool is not None:
        pool.close()
    return S.write_reports(stage_path, tmp_dir, cfg, input_base, len(units), counts,
                           S.combine_stats(stats), rejections,
                           S.smallest_sample(sample, cfg.grid_size), shards, listing)


def stop_pool_children() -> None:
    """Kill this process's children (the fork pool) by pid, silently."""
    import signal
    try:
        import multiprocessing
        for child in multiprocessing.active_children():
            os.kill(child.pid, signal.SIGKILL)
    except Exception:  # noqa: BLE001 - best effort on the way out
        pass
