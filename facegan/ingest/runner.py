"""`ingest`: the one entry of `facegan ingest` and the TFX executor.

`ingest` validates the input (fail fast, naming the path), stages the output (output.Staging:
built beside the old one, swapped in on success), picks a runner, checks the summary and
commits. Runners:

- `local`: pool_runner.py, the stages of stages.py in this process or a fork pool. Used when no
  Beam args are given (`facegan ingest` without `--beam-args`), and by the TFX executor when its
  Beam runner is the local DirectRunner and the input has at most `IN_PROCESS_MAX_FILES` units.
- `beam`: beam_pipeline.py on the given Beam args (Dataflow, Flink, Spark, DirectRunner): the
  path for sets that need more than one machine.

Both call the same stage functions, so for the same input they write the same records
(shard files and their order differ), rejection report and summary counts (tested). Both runners
are imported from here and neither imports this module.
"""
import errno
import os
import shutil
from typing import Dict, List, Optional, Sequence

from facegan.ingest import stages as S
from facegan.ingest.listing import is_archive
from facegan.ingest.options import IngestConfig, IngestError
from facegan.ingest.pool_runner import run_local, stop_pool_children

IN_PROCESS_MAX_FILES = 50_000   # the TFX executor's local runner limit (DirectRunner pipelines)


def _is_local_direct(beam_args: Optional[Sequence[str]]) -> bool:
    """True when the Beam args ask for nothing but the local DirectRunner and its settings."""
    runner = "DirectRunner"
    args = list(beam_args or [])
    for i, a in enumerate(args):
        if a.startswith("--runner="):
            runner = a.split("=", 1)[1]
        elif a == "--runner" and i + 1 < len(args):
            runner = args[i + 1]
    return runner.lower() in ("directrunner", "direct")


def choose_runner(runner: str, beam_args, pipeline, n_units: int) -> str:
    if runner != "auto":
        return runner
    if pipeline is None and beam_args is None:
        return "local"
    if pipeline is not None:
        beam_args = pipeline.options.get_all_options(drop_default=True).get("runner")
        beam_args = [f"--runner={beam_args}"] if beam_args else []
    return "local" if _is_local_direct(beam_args) and n_units <= IN_PROCESS_MAX_FILES else "beam"


def ingest(input_base: str, output_uri: str, cfg: IngestConfig,
           beam_args: Optional[List[str]] = None, pipeline=None, on_progress=None,
           in_place: bool = False, runner: str = "auto", workers: Optional[int] = None) -> Dict:
    """Validate, run, check, and swap the new output in; returns the summary dict.

    The new output is built beside `output_uri` and replaces it only when the run succeeds and
    its summary passes the checks (output.Staging); on any failure or interrupt the previous
    output is left byte-identical and the staging folder removed. `in_place`: write straight
    into `output_uri` (the TFX executor: its artifact URI is new for each run).

    `runner`: "auto" (local without Beam args or for a small DirectRunner pipeline, else Beam),
    "local" or "beam". `beam_args` (passed to PipelineOptions unchanged) or `pipeline` (an unrun
    beam.Pipeline, from the TFX executor) configure Beam. `on_progress(done, total)` is called
    from the driver while a run is going (`total` is None when archives make the file count
    unknown up front).
    """
    from facegan.ingest.output import Staging, make_progress_dir, sweep_stale_temp_files
    sweep_stale_temp_files()        # progress folders and worker logs of killed runs
    if on_progress is not None:
        on_progress(0, None, phase=S.PHASE_LIST)
    listing = S.prepare(input_base, cfg)
    units = listing.units
    total = None if any(is_archive(u) for u in units) else len(units)
    which = choose_runner(runner, beam_args, pipeline, len(units))
    stage = Staging(output_uri, in_place=in_place)
    progress_dir = make_progress_dir() if on_progress is not None else None
    poll = _poller(on_progress, progress_dir, len(units), total,
                   S.PHASE_HASH if which == "local" else S.PHASE_PROCESS) if progress_dir else None
    try:
        if which == "local":
            summary = run_local(listing, stage.path, cfg, input_base, workers, progress_dir, poll)
        else:
            from facegan.ingest import beam_pipeline
            beam_pipeline.run_beam(listing, stage.path, cfg, input_base, beam_args, pipeline,
                                   progress_dir, poll)
            summary = S.read_summary(stage.path)
        if poll:
            poll()
            if hasattr(on_progress, "records"):
                on_progress.records = S.read_progress_records(progress_dir, S.PHASE_PROCESS)
        summary["runner"] = which
        S.check_summary(summary, cfg)
        stage.commit()
    except BaseException as e:
        if which == "local":
            stop_pool_children()
        stage.abort()
        problem = _output_problem(e, stage)
        if problem:
            raise IngestError(problem, field="output") from None
        raise
    finally:
        if progress_dir:
            shutil.rmtree(progress_dir, ignore_errors=True)
    return summary


def _poller(on_progress, progress_dir: str, n_units: int, total: Optional[int], first: str):
    """poll() -> on_progress(done, total, phase=, started=) from the workers' counter files:
    the hashing phase until the first file is processed (the local runner; Beam's stages are
    fused, so it reports processing only), then processing. `started` is the wall-clock time
    the phase's first file started (the rate's clock), None before."""
    def poll():
        hashed = S.read_progress_records(progress_dir, S.PHASE_HASH)
        processed = S.read_progress_records(progress_dir, S.PHASE_PROCESS)
        if (hashed or first == S.PHASE_HASH) and not any(r.get("n") for r in processed):
            on_progress(sum(int(r.get("n", 0)) for r in hashed), n_units, phase=S.PHASE_HASH,
                        started=S.records_started(hashed))
        else:
            on_progress(sum(int(r.get("n", 0)) for r in processed), total,
                        phase=S.PHASE_PROCESS, started=S.records_started(processed))
    return poll


def _output_problem(e: BaseException, stage) -> Optional[str]:
    """One line for a failure to write the output (a full disk, whichever runner and process
    met it; an OSError on a staging file), naming the output the user gave; None otherwise."""
    from facegan import diskspace
    if isinstance(e, IngestError):
        return None
    if diskspace.is_disk_full(e):
        return stage.problem(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
    name = getattr(e, "filename", None)
    if isinstance(e, OSError) and isinstance(name, str) and not stage.in_place and \
            os.path.abspath(name).startswith(os.path.abspath(stage.path)):
        return stage.problem(e)
    return None


def run_ingest(input_base: str, output_uri: str, cfg: IngestConfig,
               beam_args: Optional[List[str]] = None, pipeline=None,
               on_progress=None, in_place: bool = False) -> Dict:
    """`ingest` on a Beam pipeline (always Beam, whatever the input size)."""
    return ingest(input_base, output_uri, cfg, beam_args=beam_args or [], pipeline=pipeline,
                  on_progress=on_progress, in_place=in_place, runner="beam")
