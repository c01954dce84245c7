"""Where an ingestion run writes: a staging folder beside the output, swapped in on success.

A failed or interrupted run never touches the previous output: the new one is built in
`<parent>/.<name>.ingest-<pid>-<id>/` (same filesystem, so the swap is two renames) and replaces
`<output>` only after the summary checks pass. Every output starts with
`examples_io.INCOMPLETE_MARKER` at its root and loses it last, so an output whose run did not
finish (a remote or TFX-owned URI, written in place; a staging folder left by `kill -9`) is
refused by `facegan train` and the Trainer. Staging folders and progress folders of runs whose
process is gone are removed by the next run.

An output that is a mount point (a mounted volume, as on Kubernetes) cannot be renamed
(EBUSY), and its parent is another filesystem: there the run stages inside it
(`<output>/.ingest-<pid>-<id>/`, same filesystem) and `commit` swaps the contents instead of the
folder: the marker goes in first, the old entries move to `<output>/.replaced-<id>/`, the new ones
move up, the marker goes last (a swap cut short leaves a marked, refused output; never a mix
that reads as complete). A volume's own `lost+found` is left alone.

Output-path problems (an existing file, a parent that is a file, a folder that is not an
Examples output, no permission, a read-only filesystem) raise IngestError with one line naming
the path, before any work; so does a full disk, naming the device (facegan/diskspace.py).
Messages name the output the user gave, never the hidden staging folder.
"""
import errno
import os
import shutil
import tempfile
import uuid
from typing import Optional

from facegan import diskspace, examples_io, schema
from facegan.ingest import stages as S
from facegan.ingest.options import IngestError

STAGING_TAG = ".ingest-"
OLD_TAG = ".replaced-"
PROGRESS_PREFIX = "facegan-ingest-progress-"
WORKER_LOG_PREFIX = "facegan-ingest-workers-"
VOLUME_ENTRIES = ("lost+found",)      # a mounted volume's own entries: never ours to move


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
    if diskspace.is_disk_full(e):
        return f"{path}: no space left on {diskspace.device_of(path)}"
    return f"cannot write to {path}: {e.strerror or e}"


def _ours(name: str) -> bool:
    """Entries a run keeps inside a mounted output: staging and replaced folders (and a volume's
    lost+found), not part of its contents."""
    return name.startswith((STAGING_TAG, OLD_TAG)) or name in VOLUME_ENTRIES


def _is_examples_output(path: str) -> bool:
    names = {n for n in os.listdir(path) if not _ours(n)}
    return (not names or schema.SUMMARY_FILE in names or examples_io.INCOMPLETE_MARKER in names
            or any(n.startswith("Split-") for n in names))


def sweep_stale_temp_files() -> list:
    """Remove the progress folders and worker-log files (in the temp folder) of runs whose
    process is gone (`kill -9`, a lost machine); returns the removed paths."""
    tmp, removed = tempfile.gettempdir(), []
    try:
        names = os.listdir(tmp)
    except OSError:
        return removed
    for n in names:
        for prefix in (PROGRESS_PREFIX, WORKER_LOG_PREFIX):
            if n.startswith(prefix) and _dead_run_dir(n, prefix):
                p = os.path.join(tmp, n)
                if os.path.isdir(p) and not os.path.islink(p):
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    try:
                        os.remove(p)
                    except OSError:
                        continue
                removed.append(p)
    return removed


sweep_stale_progress_dirs = sweep_stale_temp_files   # the older name


def make_progress_dir() -> str:
    sweep_stale_temp_files()
    return tempfile.mkdtemp(prefix=f"{PROGRESS_PREFIX}{os.getpid()}-")


class Staging:
    """The folder a run writes into (`path`) and how it becomes `output` (`commit`/`abort`).

    Local outputs: a fresh sibling folder, swapped in by `commit`; inside the output when the
    output is a mount point (`inside`; contents swapped). Remote URIs (gs://...) and
    `in_place=True` (a TFX artifact URI that TFX created empty for this run): written in place,
    the marker removed by `commit`; `abort` leaves the marker so readers refuse the partial data.
    """

    def __init__(self, output: str, in_place: bool = False, flag: str = "output"):
        self.output, self.flag = output.rstrip("/") or output, flag
        self.in_place = in_place or "://" in output
        self.inside = False
        self.path = self.output if self.in_place else self._make_staging()
        self._write_marker()

    def _fail(self, problem: str):
        raise IngestError(f"{self.flag} {problem}", field="output")

    def problem(self, e: BaseException) -> str:
        """One line for an OSError met while writing the output (named as the user gave it)."""
        return f"{self.flag} {_os_problem(self.output, e)}"

    def _check_parents(self, out: str) -> None:
        """A file where a parent folder should be: say so (os.makedirs says "File exists")."""
        p = os.path.dirname(out)
        while p and not os.path.lexists(p) and os.path.dirname(p) != p:
            p = os.path.dirname(p)
        if os.path.lexists(p) and not os.path.isdir(p):
            self._fail(f"{out}: {p} is a file, not a folder")

    def _make_staging(self) -> str:
        out = os.path.abspath(self.output)
        parent, name = os.path.dirname(out), os.path.basename(out)
        if os.path.isfile(out) or (os.path.lexists(out) and not os.path.isdir(out)):
            self._fail(f"{out} is an existing file, not a folder")
        self._check_parents(out)
        if os.path.isdir(out):
            try:
                ok = _is_examples_output(out)
            except OSError as e:
                self._fail(_os_problem(out, e))
            if not ok:
                self._fail(f"{out} is a folder that holds other files (not an Examples output); "
                           f"give a new or empty folder, it would be replaced")
            self.inside = diskspace.is_mount_point(out)
        # a mounted output cannot be renamed and its parent is another filesystem: stage inside
        where, prefix = (out, "") if self.inside else (parent, f".{name}")
        try:
            os.makedirs(where, exist_ok=True)
            for n in os.listdir(where):       # leftovers of runs whose process is gone
                if n.startswith(f"{prefix}{STAGING_TAG}") and _dead_run_dir(n, STAGING_TAG):
                    shutil.rmtree(os.path.join(where, n), ignore_errors=True)
                elif n.startswith(f"{prefix}{OLD_TAG}") and os.path.isdir(out):
                    shutil.rmtree(os.path.join(where, n), ignore_errors=True)
            path = os.path.join(where, f"{prefix}{STAGING_TAG}{os.getpid()}-{uuid.uuid4().hex[:8]}")
            os.mkdir(path)
        except OSError as e:
            named = e.filename if isinstance(e.filename, str) else ""
            self._fail(_os_problem(out if not named or STAGING_TAG in named else named, e))
        return path

    def _write_marker(self):
        try:
            S.write_bytes(S.join(self.path, examples_io.INCOMPLETE_MARKER), _MARKER_TEXT)
        except OSError as e:
            if not self.in_place:
                shutil.rmtree(self.path, ignore_errors=True)
            self._fail(_os_problem(self.output, e))

    def commit(self) -> None:
        marker = S.join(self.path, examples_io.INCOMPLETE_MARKER)
        if S.is_remote(marker):
            from apache_beam.io.filesystems import FileSystems
            FileSystems.delete([marker])
        else:
            os.remove(marker)
        if self.in_place:
            return
        if self.inside:
            self._swap_contents()
            return
        old: Optional[str] = None
        if os.path.lexists(self.output):
            parent, name = os.path.split(os.path.abspath(self.output))
            old = os.path.join(parent, f".{name}{OLD_TAG}{uuid.uuid4().hex[:8]}")
            os.rename(self.output, old)
        os.rename(self.path, self.output)
        if old:
            shutil.rmtree(old, ignore_errors=True)

    def _swap_contents(self) -> None:
        """Mounted output: replace its entries with the staging folder's (renames on one
        filesystem). The output's marker is written first and removed last, so a swap cut short
        leaves an output readers refuse."""
        out = os.path.abspath(self.output)
        marker = os.path.join(out, examples_io.INCOMPLETE_MARKER)
        S.write_bytes(marker, _MARKER_TEXT)
        old = os.path.join(out, f"{OLD_TAG}{uuid.uuid4().hex[:8]}")
        os.mkdir(old)
        for n in os.listdir(out):
            if not _ours(n) and n != examples_io.INCOMPLETE_MARKER:
                os.rename(os.path.join(out, n), os.path.join(old, n))
        for n in os.listdir(self.path):
            os.rename(os.path.join(self.path, n), os.path.join(out, n))
        os.rmdir(self.path)
        os.remove(marker)
        shutil.rmtree(old, ignore_errors=True)

    def abort(self) -> None:
        """Remove a local staging folder; in place outputs keep their marker."""
        if not self.in_place:
            shutil.rmtree(self.path, ignore_errors=True)


_MARKER_TEXT = (b"an ingestion run is writing this output; it is not usable until this file is "
                b"gone\n")
