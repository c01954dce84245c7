"""The import graph of the installed package: no cycle, no upward import, thin TFX shells.

The repository is read as it installs (setup.py's package_dir: `trainer/` is `facegan.trainer`,
`metrics/` is `facegan.metrics`, ...); every module's imports are parsed with `ast` (imports inside
functions and under `if TYPE_CHECKING:` count: a lazy import is still an edge). Nothing is imported.

Layers (a module may import its own package and lower layers; packages on one layer do not
import each other):
  L0 foundation  top-level facegan.* modules (schema, images, jsonable, conditioning, ...) and
                 facegan.generator
  L1             facegan.ingest, facegan.metrics
  L2             facegan.trainer (L0, L1), facegan.serving (L0, L1; never trainer)
  L3             facegan.components (TFX component.py/executor.py/driver.py shells only)
  L4             facegan.pipeline
  L5 entry       facegan.cli, evaluate_cli, docs_tables, project, directions: anything
bench/ and tests/ are not installed; nothing installed may import them.
"""
import ast
import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]

# facegan.cli_args (stdlib-only `--set`/JSON argument parsing) is a foundation helper: the trainer,
# evaluator and pipeline command lines share it, so it sits on L0, not with the entry points.
ENTRY = {"facegan.cli", "facegan.evaluate_cli", "facegan.docs_tables", "facegan.project", "facegan.directions"}
PACKAGES = ("ingest", "metrics", "trainer", "serving", "components", "pipeline")

# group -> the groups it may import (its own included).
ALLOWED = {
    "foundation": {"foundation"},
    "ingest": {"foundation", "ingest"},
    "metrics": {"foundation", "metrics"},
    "trainer": {"foundation", "ingest", "metrics", "trainer"},
    # serving may use ingest too: `facegan translate` must prepare a photo with ingestion's own
    # decode/crop/resize so the model sees what it was trained on
    "serving": {"foundation", "ingest", "metrics", "serving"},
    "components": {"foundation", "ingest", "metrics", "trainer", "serving", "components"},
    "pipeline": {"foundation", "ingest", "metrics", "trainer", "serving", "components", "pipeline"},
    "entry": {"foundation", "ingest", "metrics", "trainer", "serving", "components", "pipeline", "entry"},
}
SHELL_FILES = {"__init__.py", "component.py", "executor.py", "driver.py"}

# Violations in files other branches own (metrics/*, trainer/*, components/gan_evaluator/*),
# still on this branch while they move. The lead empties these lists after merging those branches;
# `test_known_lists_are_current` fails on an entry that no longer occurs, so the lists only shrink.
KNOWN_EDGES = {
}
KNOWN_SHELL_EXTRAS = set()


def _installed_layout():
    """{module name: file} for every installed module, following setup.py's package_dir."""
    tree = ast.parse((REPO / "setup.py").read_text())
    top = next(ast.literal_eval(n.value) for n in ast.walk(tree) if isinstance(n, ast.Assign)
               and any(isinstance(t, ast.Name) and t.id == "_TOP" for t in n.targets))
    roots = {"facegan": REPO / "facegan", **{f"facegan.{t}": REPO / t for t in top}}
    modules = {}
    for pkg, root in roots.items():
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d != "__pycache__" and (pathlib.Path(dirpath) / d / "__init__.py").exists()]
            rel = pathlib.Path(dirpath).relative_to(root)
            base = ".".join([pkg, *rel.parts]) if rel.parts else pkg
            if not (pathlib.Path(dirpath) / "__init__.py").exists():
                continue
            for f in filenames:
                if f.endswith(".py"):
                    name = base if f == "__init__.py" else f"{base}.{f[:-3]}"
                    modules[name] = pathlib.Path(dirpath) / f
    return modules


def _resolve(name, modules):
    """The installed module an import of `name` loads (its longest known prefix)."""
    parts = name.split(".")
    for k in range(len(parts), 0, -1):
        cand = ".".join(parts[:k])
        if cand in modules:
            return cand
    return None


def _imports(module, path, modules):
    """(target module, line) for every import in `path`, resolved to installed modules; plus the raw
    top-level names imported (to catch `import tests...` or an uninstalled `trainer...`)."""
    is_pkg = path.name == "__init__.py"
    package = module if is_pkg else module.rpartition(".")[0]
    out, raw = [], []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for a in node.names:
                raw.append((a.name, node.lineno))
                out.append((_resolve(a.name, modules), node.lineno))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                src = ".".join(base + ([node.module] if node.module else []))
            else:
                src = node.module
            raw.append((src, node.lineno))
            for a in node.names:
                full = f"{src}.{a.name}"
                out.append((full if full in modules else _resolve(src, modules), node.lineno))
    return [(t, ln) for t, ln in out if t and t != module], raw


def group(module):
    if module in ENTRY:
        return "entry"
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in PACKAGES:
        return parts[1]
    return "foundation"          # facegan, facegan.<module>, facegan.generator.*


@pytest.fixture(scope="module")
def graph():
    modules = _installed_layout()
    edges, raw = {}, {}
    for m, path in modules.items():
        targets, raw[m] = _imports(m, path, modules)
        for t, ln in targets:
            edges.setdefault((m, t), ln)
    return modules, edges, raw


def _where(modules, m, ln):
    return f"{modules[m].relative_to(REPO)}:{ln}"


def test_layout_follows_setup(graph):
    modules, _, _ = graph
    # a sanity check of the reading itself: a module of each installed package is found
    for name in ("facegan.cli", "facegan.trainer.train_lib", "facegan.metrics.registry", "facegan.serving.server",
                 "facegan.pipeline.pipeline", "facegan.components.image_example_gen.component"):
        assert name in modules, name


def test_no_upward_or_sideways_import(graph):
    modules, edges, _ = graph
    bad = [f"{_where(modules, a, ln)}: {a} ({group(a)}) imports {b} ({group(b)})"
           for (a, b), ln in sorted(edges.items())
           if group(b) not in ALLOWED[group(a)] and (a, b) not in KNOWN_EDGES]
    assert not bad, "imports against LAYERS.md:\n" + "\n".join(bad)


def test_nothing_installed_imports_tests_bench_or_uninstalled_names(graph):
    modules, _, raw = graph
    bad = [f"{_where(modules, m, ln)}: imports {name}" for m, names in sorted(raw.items()) for name, ln in names
           if name and name.split(".")[0] in {"tests", "bench", *PACKAGES}]
    assert not bad, "\n".join(bad)


def _cycles(nodes, edges):
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    succ = {n: [] for n in nodes}
    for a, b in edges:
        succ[a].append(b)
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(succ[root]))]
        index[root] = low[root] = counter[0]; counter[0] += 1
        stack.append(root); on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter[0]; counter[0] += 1
                    stack.append(w); on.add(w)
                    work.append((w, iter(succ[w])))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop(); on.discard(w); comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_no_import_cycle(graph):
    modules, edges, _ = graph
    cycles = _cycles(sorted(modules), [e for e in edges if e not in KNOWN_EDGES])
    assert not cycles, "import cycles (a lazy import counts):\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_cycle_finder_finds_a_cycle():
    assert _cycles(["a", "b", "c"], [("a", "b"), ("b", "c"), ("c", "a")]) == [["a", "b", "c"]]
    assert _cycles(["a", "b"], [("a", "b")]) == []


# Foundation and ingestion modules a light process imports (the CLI, ingest workers, serving
# clients): no TensorFlow, TFX or Beam at module level (lazily inside a function is fine).
HEAVY = {"tensorflow", "tfx", "apache_beam", "tensorflow_serving", "tensorflow_gan"}
LIGHT_EXCEPT = {"facegan.ingest.beam_pipeline"}       # the Beam pipeline itself


def test_foundation_and_ingest_are_light_at_import(graph):
    modules, _, _ = graph
    bad = []
    for m, path in sorted(modules.items()):
        if group(m) not in ("foundation", "ingest") or m in LIGHT_EXCEPT or m.startswith("facegan.generator"):
            continue
        for node in ast.parse(path.read_text()).body:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            bad += [f"{_where(modules, m, node.lineno)}: {n}" for n in names if n.split(".")[0] in HEAVY]
    assert not bad, "heavy import at module level:\n" + "\n".join(bad)


def test_components_hold_only_tfx_shells():
    extra = sorted(str(p.relative_to(REPO)) for p in (REPO / "components").rglob("*.py")
                   if p.name not in SHELL_FILES and str(p.relative_to(REPO)) not in KNOWN_SHELL_EXTRAS)
    assert not extra, "components/ holds only component.py, executor.py, driver.py: move " + ", ".join(extra)


def test_known_lists_are_current(graph):
    """An entry of KNOWN_* that no longer occurs is removed from the list (they only shrink)."""
    _, edges, _ = graph
    gone = [e for e in KNOWN_EDGES if e not in edges]
    gone += [p for p in KNOWN_SHELL_EXTRAS if not (REPO / p).exists()]
    assert not gone, "no longer occurs, remove from the KNOWN lists: " + ", ".join(map(str, gone))
