"""Archive inputs: every member of a zip/tar/tar.gz, accounted for (links resolved inside the
archive, anything else rejected by name)."""
import io
import os
import tarfile
import zipfile
import zlib
from typing import Iterator, Optional, Tuple

from facegan.ingest.listing import read_bytes
from facegan.ingest.options import NOT_A_FILE, UNREADABLE, Rejected

ARCHIVE_SEP = "!"                     # archive member sources: `faces.zip!dir/0001.jpg`


def iter_archive(path: str, data: Optional[bytes] = None) -> Iterator[Tuple[str, object]]:
    """Yield (`archive!member`, bytes or Rejected) for each member of a zip/tar/tar.gz that is not
    a directory, in stored order: every member is seen and accounted for.

    A symlink or hard link member whose target is a file inside the archive yields that file's
    bytes under the link's name (then the sha256 makes it a duplicate); a link to anything else,
    a device or a fifo yields Rejected(NOT_A_FILE). Raises Rejected(UNREADABLE) if the archive
    itself cannot be opened.
    """
    data = read_bytes(path) if data is None else data
    buf = io.BytesIO(data)
    src = lambda name: f"{path}{ARCHIVE_SEP}{name}"  # noqa: E731
    try:
        if path.lower().endswith(".zip"):
            with zipfile.ZipFile(buf) as zf:
                names = set(zf.namelist())
                for info in zf.infolist():
                    if info.is_dir() or os.path.basename(info.filename).startswith("."):
                        continue
                    if (info.external_attr >> 16) & 0o170000 == 0o120000:       # S_IFLNK
                        target = zf.read(info).decode("utf-8", "replace")
                        t = os.path.normpath(os.path.join(os.path.dirname(info.filename), target))
                        if t in names and not t.endswith("/"):
                            yield src(info.filename), zf.read(t)
                        else:
                            yield src(info.filename), Rejected(
                                NOT_A_FILE, f"symlink to {target}, not a file inside the archive")
                        continue
                    yield src(info.filename), zf.read(info)
        else:
            with tarfile.open(fileobj=buf, mode="r:*") as tf:
                for m in tf:
                    if m.isdir() or os.path.basename(m.name).startswith("."):
                        continue
                    if m.isfile():
                        f = tf.extractfile(m)
                        yield src(m.name), (f.read() if f else b"")
                    elif m.issym() or m.islnk():
                        kind = "symlink" if m.issym() else "hard link"
                        try:
                            f = tf.extractfile(m)     # resolves links inside the archive
                        except (KeyError, tarfile.TarError):
                            f = None
                        if f is None:
                            yield src(m.name), Rejected(
                                NOT_A_FILE, f"{kind} to {m.linkname}, not a file inside the archive")
                        else:
                            yield src(m.name), f.read()
                    else:
                        yield src(m.name), Rejected(
                            NOT_A_FILE, f"not a regular file (tar type {m.type!r})")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise Rejected(UNREADABLE, f"broken archive: {type(e).__name__}: {e}") from e
