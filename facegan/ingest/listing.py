"""Listing the input: which files (and archives) an ingestion run reads, each real file once;
the input fingerprint the TFX driver compares; reading a unit's bytes (local or remote)."""
import hashlib
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from facegan.ingest.options import IngestError

def is_remote(path: str) -> bool:
    return "://" in path


def is_archive(path: str) -> bool:
    p = path.lower()
    return p.endswith((".zip", ".tar", ".tar.gz", ".tgz"))


@dataclass
class InputListing:
    """What `list_inputs` found: the units to read, plus what it did not follow (reported)."""
    units: List[str]
    symlink_loops: List[str] = field(default_factory=list)     # "link -> target (an ancestor)"
    aliases: List[str] = field(default_factory=list)           # second paths to a counted file/dir


def list_inputs(input_base: str, skip: Sequence[str] = ()) -> InputListing:
    """The input units under `input_base`, each real directory and file once.

    Symlinks are followed, but a directory is entered only once (by its real path): a link back
    to one of its own ancestors is a loop, reported once with its path and not followed; a second
    link to a directory or file already counted is an alias, reported and not counted again.
    Every other regular file counts (a stray .txt is reported as not_an_image, nothing is
    dropped silently) except those in `skip` (e.g. the labels table) and OS sidecar dot-files.
    Raises IngestError naming the path when it is missing or empty.
    """
    if not input_base:
        raise IngestError("input_base is empty: give a directory, an archive or an image file",
                          field="input_base")
    skip_abs = {os.path.abspath(s) for s in skip if s and not is_remote(s)}
    if is_remote(input_base):
        from apache_beam.io.filesystems import FileSystems
        pattern = input_base if is_archive(input_base) else input_base.rstrip("/") + "/**"
        try:
            files = sorted(m.path for r in FileSystems.match([pattern]) for m in r.metadata_list)
        except Exception as e:  # noqa: BLE001 - any filesystem error means the path is unusable
            raise IngestError(f"input_base {input_base} cannot be listed: {e}",
                              field="input_base") from e
        if not files:
            raise IngestError(f"input_base {input_base} is missing or contains no files",
                              field="input_base")
        return InputListing(files)
    if not os.path.exists(input_base):
        raise IngestError(f"input_base {input_base} does not exist", field="input_base")
    if os.path.isfile(input_base):
        return InputListing([input_base])
    out = InputListing([])
    seen_dirs, seen_files = set(), set()

    def walk(d: str, ancestors: Tuple[str, ...]):
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError as e:
            out.units.append(d)               # read later: rejected as unreadable, with the error
            return
        for e in entries:
            if e.name.startswith("."):
                continue
            path = os.path.join(d, e.name)
            try:
                is_dir = e.is_dir()           # follows symlinks
            except OSError:
                is_dir = False
            real = os.path.realpath(path)
            if is_dir:
                if real in ancestors:
                    out.symlink_loops.append(f"{path} -> {real}")
                elif real in seen_dirs:
                    out.aliases.append(path)
                else:
                    seen_dirs.add(real)
                    walk(path, ancestors + (real,))
            elif os.path.abspath(path) in skip_abs:
                continue
            elif real in seen_files:
                out.aliases.append(path)
            else:
                seen_files.add(real)
                out.units.append(path)

    root = os.path.realpath(input_base)
    seen_dirs.add(root)
    walk(input_base, (root,))
    if not out.units:
        raise IngestError(f"input_base {input_base} is an empty directory (no files found)",
                          field="input_base")
    out.units.sort()
    return out


def input_fingerprint(input_base: str, labels: Optional[str] = None) -> str:
    """A fingerprint of the input: every unit's path, size and mtime (ns) plus the labels file's,
    as TFX's file-based ExampleGen fingerprints its input (`io_utils.generate_fingerprint`:
    names, sizes, mtimes), hashed with sha256 so that any rename, edit, addition or removal
    changes it. Cheap: one stat per file, no file content read."""
    units = list_inputs(input_base, skip=[labels] if labels else []).units
    h = hashlib.sha256()
    total = 0
    stats = _remote_stats(units) if is_remote(input_base) else None
    for u in units + ([labels] if labels else []):
        if stats is not None and u in stats:
            size, mtime = stats[u]
        else:
            try:
                st = os.stat(u)
                size, mtime = st.st_size, st.st_mtime_ns
            except OSError:
                size, mtime = -1, -1
        total += max(size, 0)
        h.update(f"{u}\0{size}\0{mtime}\n".encode("utf-8", "surrogateescape"))
    return f"files:{len(units)},bytes:{total},sha256:{h.hexdigest()}"


def _remote_stats(paths: Sequence[str]) -> Dict[str, Tuple[int, int]]:
    from apache_beam.io.filesystems import FileSystems
    out = {}
    for r in FileSystems.match(list(paths)):
        for m in r.metadata_list:
            out[m.path] = (int(m.size_in_bytes), int(1e9 * (m.last_updated_in_seconds or 0)))
    return out


def enumerate_inputs(input_base: str, skip: Sequence[str] = ()) -> List[str]:
    """Sorted input units under `input_base` (see `list_inputs`)."""
    return list_inputs(input_base, skip).units


def read_bytes(path: str) -> bytes:
    if is_remote(path):
        from apache_beam.io.filesystems import FileSystems
        with FileSystems.open(path, compression_type="uncompressed") as f:
            return f.read()
    with open(path, "rb") as f:
        return f.read()
