"""ARCHITECTURE.md's "Where things live" table names every module, and only files that exist.

Every `.py` file of the installed package (laid out as setup.py's package_dir installs it:
`facegan/` plus the repository folders in its `_TOP`), of `bench/` and of `bench/quality_study/`
must appear in the table; every backticked path in the table must exist. A row's first cell is a
folder and the names in its second cell are relative to that folder. Reads files only (no
TensorFlow, nothing imported from the package).
"""
import ast
import pathlib
import re

REPO = pathlib.Path(__file__).resolve().parents[2]
DOC = REPO / "ARCHITECTURE.md"


_PATH = re.compile(r"[\w.\-/]+(\.py|/)")


def table_rows(text):
    """[(folder, [backticked names of its second cell])] of the "Where things live" table."""
    section = text.split("\n## Where things live", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not cells[0].startswith("`"):
            continue
        folder = cells[0].strip("`")
        rows.append((folder, re.findall(r"`([^`]+)`", " | ".join(cells[1:]))))
    return rows


def named_paths(text):
    """Repository-relative paths the table names: each row's folder and its path-like names
    (`x.py`, `sub/`) joined to that folder."""
    out = set()
    for folder, names in table_rows(text):
        out.add(folder.rstrip("/") + "/")
        for name in names:
            if _PATH.fullmatch(name):
                out.add(folder.rstrip("/") + "/" + name)
    return out


def _installed_roots():
    tree = ast.parse((REPO / "setup.py").read_text())
    top = next(ast.literal_eval(n.value) for n in ast.walk(tree) if isinstance(n, ast.Assign)
               and any(isinstance(t, ast.Name) and t.id == "_TOP" for t in n.targets))
    return ["facegan", *top]


def required_modules():
    """Every installed module file (inside a package: a folder with __init__.py), plus bench/*.py
    and bench/quality_study/*.py, as repository-relative paths."""
    out = set()
    for root in _installed_roots():
        for path in (REPO / root).rglob("*.py"):
            if "__pycache__" not in path.parts and (path.parent / "__init__.py").exists():
                out.add(path.relative_to(REPO).as_posix())
    for pattern in ("bench/*.py", "bench/quality_study/*.py"):
        out.update(p.relative_to(REPO).as_posix() for p in REPO.glob(pattern))
    return out


def _exists(rel):
    return (REPO / rel.rstrip("/")).exists()


def test_every_module_is_in_the_table():
    named = named_paths(DOC.read_text())
    missing = sorted(required_modules() - named)
    assert not missing, "ARCHITECTURE.md's 'Where things live' table leaves out: " + ", ".join(missing)


def test_the_table_names_only_existing_paths():
    named = named_paths(DOC.read_text())
    absent = sorted(p for p in named if not _exists(p))
    assert not absent, "ARCHITECTURE.md's table names files that do not exist: " + ", ".join(absent)



def test_the_table_has_a_row_per_installed_package():
    folders = {f.rstrip("/") for f, _ in table_rows(DOC.read_text())}
    packages = {p.parent.relative_to(REPO).as_posix() for root in _installed_roots()
                for p in (REPO / root).rglob("__init__.py") if "__pycache__" not in p.parts}
    assert packages <= folders, "no table row for " + ", ".join(sorted(packages - folders))


def test_reader_resolves_names_in_their_row_folder():
    text = ("# t\n\n## Where things live\n\n| place | holds |\n|---|---|\n"
            "| `trainer/` | `gan.py` (the GAN), `networks/`, `--set`, `Config(a, b)` |\n"
            "| `bench/quality_study/` | `runner.py`, `trainer/gan.py` |\n\n## Next\n| `x/` | `y.py` |\n")
    assert named_paths(text) == {"trainer/", "trainer/gan.py", "trainer/networks/", "bench/quality_study/",
                                 "bench/quality_study/runner.py", "bench/quality_study/trainer/gan.py"}


def test_no_tracker_references_or_machine_paths():
    text = DOC.read_text()
    assert not re.search(r"\bissue \d+", text, re.I), "ARCHITECTURE.md mentions a tracker issue"
    assert not re.search(r"(^|[\s`(])/(work|root|home|tmp)/", text), "ARCHITECTURE.md names a machine path"
