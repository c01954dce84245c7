"""Where an ingestion run writes: a staging folder beside the output, swapped in on success.

A failed or interrupted run never touches the previous output: the new one is built in
`<parent>/.<name>.ingest-<pid>-<id>/` (same filesystem, so the swap is two renames) and replaces
`<output>` only after the summary checks pass. Every output starts with
`examples_io.INCOMPLETE_MARKER` at its root and loses it last, so an output whose run did not
finish (a remote or TFX-owned URI, written in place; a staging folder left by `kill -9`) is
refused by `facegan train` and the Trainer. Staging folders and progress folders of runs whose
process is gone are removed by the next run.

Output-path problems (an existing file, a folder that is not an Examples output, no permission,
a read-only filesystem) raise IngestError with one line naming the path, before any work.
"""
import errno
import os
import shutil
import tempfile
import uuid
from typing import Optional

from facegan import examples_io, schema
from facegan.components.image_example_gen import stages as S
from facegan.components.image_example_gen.transforms import IngestError

STAGING_TAG = ".ingest-"
OLD_TAG = ".replaced-"
PROGRESS_PREFIX = "facegan-ingest-progress-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _dead_run_dir(name: str, tag: str) -> bool:
    """True for `<...><tag><pid>-<id>` names whose pid no longer runs."""
    try:
        pid = int(name.split(tag, 1)[1].split("-", 1)[0])
    except (IndexError, ValueError):
        return False
    return not _pid_alive(pid)


def _os_problem(path: str, e: OSError) -> str:
    if e.errno == errno.EROFS:
        return f"{path} is on a read-only file system"
    if e.errno in (errno.EACCES, errno.EPERM):
        return f"cannot write to {path}: permission denied"
    if e.errno == errno.ENOTDIR:
        return f"{path}: a part of the path is a file, not a folder"
    if e.errno == errno.ENOSPC:
        return f"no space left on the device of {path}"
    return f"cannot write to {path}: {e.strerror or e}"


def _is_examples_output(path: str) -> bool:
    names = set(os.listdir(path))
    return (not names or schema.SUMMARY_FILE in names or examples_io.INCOMPLETE_MARKER in names
            or any(n.startswith("Split-") for n in names))


def sweep_stale_progress_dirs() -> None:
    tmp = tempfile.gettempdir()
    for n in os.listdir(tmp):
        if n.startswith(PROGRESS_PREFIX) and _dead_run_dir(n, PROGRESS_PREFIX):
            shutil.rmtree(os.path.join(tmp, n), ignore_errors=True)


def make_progress_dir() -> str:
    sweep_stale_progress_dirs()
    return tempfile.mkdtemp(prefix=f"{PROGRESS_PREFIX}{os.getpid()}-")


class Staging:
    """The folder a run writes into (`path`) and how it becomes `output` (`commit`/`abort`).

    Local outputs: a fresh sibling folder, swapped in by `commit`. Remote URIs (gs://...) and
    `in_place=True` (a TFX artifact URI that TFX created empty for this run): written in place,
    the marker removed by `commit`; `abort` leaves the marker so readers refuse the partial data.
    """

    def __init__(self, output: str, in_place: bool = False, flag: str = "output"):
        self.output, self.flag = output.rstrip("/") or output, flag
        self.in_place = in_place or "://" in output
        self.path = self.output if self.in_place else self._make_sibling()
        self._write_marker()

    def _fail(self, problem: str):
        raise IngestError(f"{self.flag} {problem}", field="output")

    def _make_sibling(self) -> str:
        out = os.path.abspath(self.output)
        parent, name = os.path.dirname(out), os.path.basename(out)
        if os.path.isfile(out) or (os.path.lexists(out) and not os.path.isdir(out)):
            self._fail(f"{out} is an existing file, not a folder")
        if os.path.isdir(out):
            try:
                ok = _is_examples_output(out)
            except OSError as e:
                self._fail(_os_problem(out, e))
            if not ok:
                self._fail(f"{out} is a folder that holds other files (not an Examples output); "
                           f"give a new or empty folder, it would be replaced")
        try:
            os.makedirs(parent, exist_ok=True)
            for n in os.listdir(parent):       # leftovers of runs whose process is gone
                if n.startswith(f".{name}{STAGING_TAG}") and _dead_run_dir(n, STAGING_TAG):
                    shutil.rmtree(os.path.join(parent, n), ignore_errors=True)
                elif n.startswith(f".{name}{OLD_TAG}") and os.path.isdir(out):
                    shutil.rmtree(os.path.join(parent, n), ignore_errors=True)
            path = os.path.join(parent, f".{name}{STAGING_TAG}{os.getpid()}-{uuid.uuid4().hex[:8]}")
            os.mkdir(path)
        except OSError as e:
            self._fail(_os_problem(e.filename or parent, e))
        return path

    def _write_marker(self):
        try:
            S.write_bytes(S.join(self.path, examples_io.INCOMPLETE_MARKER),
                          b"an ingestion run is writing this output; it is not usable until "
                          b"this file is gone\n")
        except OSError as e:
            self._fail(_os_problem(self.path, e))

    def commit(self) -> None:
        marker = S.join(self.path, examples_io.INCOMPLETE_MARKER)
        if S.is_remote(marker):
            from apache_beam.io.filesystems import FileSystems
            FileSystems.delete([marker])
        else:
            os.remove(marker)
        if self.in_place:
            return
        old: Optional[str] = None
        if os.path.lexists(self.output):
            parent, name = os.path.split(os.path.abspath(self.output))
            old = os.path.join(parent, f".{name}{OLD_TAG}{uuid.uuid4().hex[:8]}")
            os.rename(self.output, old)
        os.rename(self.path, self.output)
        if old:
            shutil.rmtree(old, ignore_errors=True)

    def abort(self) -> None:
        """Remove a local staging folder; in place outputs keep their marker."""
        if not self.in_place:
            shutil.rmtree(self.path, ignore_errors=True)
