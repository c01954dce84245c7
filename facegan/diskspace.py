"""Which device a path is on, and one-line messages for a full disk (no TensorFlow, no Beam).

A full disk shows up as `OSError(ENOSPC)` from Python, as TensorFlow's `ResourceExhaustedError`
("... No space left on device") from a checkpoint or SavedModel write, and as text inside the
error a Beam runner re-raises from a worker. `is_disk_full` recognises all three; the commands
then print `disk_full_message(path, what)`: one line naming the path, the device (mount point,
filesystem type, source) and its free space, so the user knows what to clear.
"""
import errno
import os
from typing import Optional, Tuple

_NO_SPACE_TEXT = ("No space left on device", "[Errno 28]", "ENOSPC")


def is_disk_full(e: Optional[BaseException]) -> bool:
    """True for ENOSPC (or EDQUOT: a quota is a full disk to the user) anywhere in `e`'s chain."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(t in str(e) for t in _NO_SPACE_TEXT):
            return True
        e = e.__cause__ or e.__context__
    return False


def _existing(path: str) -> str:
    """`path`, or its nearest ancestor that exists."""
    p = os.path.abspath(path)
    while not os.path.exists(p) and os.path.dirname(p) != p:
        p = os.path.dirname(p)
    return p


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (\\040 ...)."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mounts() -> list:
    """[(mount point, filesystem type, source)] of this process's mount namespace (Linux); []
    where /proc/self/mountinfo is unreadable."""
    out = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                fields, rest = left.split(), right.split()
                if len(fields) >= 5 and len(rest) >= 2:
                    out.append((_unescape(fields[4]), rest[0], _unescape(rest[1])))
    except OSError:
        pass
    return out


def mount_of(path: str) -> Tuple[str, str, str]:
    """(mount point, filesystem type, source) of the filesystem holding `path` (or its nearest
    existing ancestor); the filesystem fields are "" when the mount table is unreadable."""
    real = os.path.realpath(_existing(path))
    best = ("/", "", "")
    for point, fstype, source in mounts():
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best[0]):
            best = (point, fstype, source)     # the last, longest match: mounted over the others
    if not best[1]:
        p = real
        while not os.path.ismount(p):
            p = os.path.dirname(p)
        best = (p, "", "")
    return best


def is_mount_point(path: str) -> bool:
    """True when `path` is itself the root of a mounted filesystem (including bind mounts of a
    folder of the same filesystem, which `os.path.ismount` does not see)."""
    if not os.path.isdir(path):
        return False
    if os.path.ismount(path):
        return True
    real = os.path.realpath(path)
    return any(point == real for point, _, _ in mounts())


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024.0
    return f"{n:.1f} TB"


def device_of(path: str) -> str:
    """'the tmpfs "tmpfs" mounted at /mnt/x (0 B free of 5.0 MB)': the device, as a phrase."""
    point, fstype, source = mount_of(path)
    what = f"the {fstype} filesystem" if fstype else "the filesystem"
    if source and source not in ("none", fstype):
        what += f" {source}"
    try:
        st = os.statvfs(_existing(path))
        space = f" ({_size(st.f_bavail * st.f_frsize)} free of {_size(st.f_blocks * st.f_frsize)})"
    except OSError:
        space = ""
    return f"{what} mounted at {point}{space}"


def disk_full_message(path: str, what: str = "") -> str:
    """One line: 'no space left on <device> while writing <what> <path>'."""
    target = f"{what} {path}" if what else path
    return f"no space left on {device_of(path)} while writing {target}"
