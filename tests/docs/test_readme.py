"""README.md and docs/ cannot drift from the code (unit tests: no TFX, no training).

- Every `facegan ...` command in a code block of README.md or docs/*.md (and every
  `python bench/quality.py ...`, with the study's own parser) parses with the CLI's own parsers:
  the subcommand exists, every flag and value is accepted, presets exist and `--set` fields (with
  `--resolution`) validate against the trainer config; `evaluate --metrics` names registered
  metrics; `pipeline run|compile` pass the pipeline's own checks (no FID without Inception weights).
- No path of one machine (/work/, /root/, /home/<user>/, /tmp/..., the shared data folder) in
  README.md, docs/*.md or docs/ JSON.
- Every relative link and image of README.md exists; every `#anchor` names a heading.
- The presets table is the one facegan/docs_tables.py generates from the config.
- The Python API example runs (its imports and calls resolve; it only loads a generator when one is
  given, so here it is parsed and its names checked).
"""
import argparse
import ast
import contextlib
import glob
import importlib
import io
import json
import os
import re
import shlex

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
README = os.path.join(REPO, "README.md")
YOUR_FACES_BEGIN = "<!-- your-faces:begin -->"
YOUR_FACES_END = "<!-- your-faces:end -->"


def _read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def doc_files():
    return [README] + sorted(glob.glob(os.path.join(REPO, "docs", "**", "*.md"), recursive=True))


def code_blocks(text):
    """The bodies of the fenced code blocks of a markdown text."""
    return re.findall(r"^ *```[^\n]*\n(.*?)^ *```", text, flags=re.S | re.M)


def logical_lines(block):
    """Lines with backslash continuations joined."""
    out, cur = [], ""
    for line in block.splitlines():
        if line.rstrip().endswith("\\"):
            cur += line.rstrip()[:-1] + " "
            continue
        out.append(cur + line)
        cur = ""
    if cur:
        out.append(cur)
    return out


def commands_in(text):
    """[(argv after the program, the line)] for every facegan / bench/quality.py command in the
    text's code blocks; leading VAR=value assignments, `$ ` prompts and a trailing `&` are dropped."""
    found = []
    for block in code_blocks(text):
        for line in logical_lines(block):
            s = line.strip()
            if s.startswith("$ "):
                s = s[2:]
            if not s or s.startswith("#"):
                continue
            try:
                words = shlex.split(s, comments=True)
            except ValueError:
                continue
            while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
                words = words[1:]
            if words and words[-1] == "&":
                words = words[:-1]
            if not words:
                continue
            prog = os.path.basename(words[0])
            if prog == "facegan" and words[1:2] and words[1].endswith(":"):
                continue       # a message the command printed ("facegan ingest: error: ..."), not a command
            if prog == "facegan":
                found.append((words[1:], s))
            elif prog.startswith("python") and words[1:2] == ["bench/quality.py"]:
                found.append((["study"] + words[2:], s))
    return found


def parse_command(argv, line=""):
    """Parse as `facegan` does (facegan/cli.py: the subcommand's own add_arguments); returns
    (name, args) or raises AssertionError with argparse's message. A `python bench/quality.py`
    line (argv "study ...") parses with the study's parser (bench/quality_study/command.py; the
    study is not part of the installed package)."""
    from facegan import cli
    _, argv = cli._split_verbose(argv)
    if not argv or argv[0] in ("--version", "--help", "-h"):
        return None, None
    name = argv[0]
    if name == "study" and "bench/quality.py" in line:
        module = importlib.import_module("bench.quality_study.command")
    else:
        assert name in cli.SUBCOMMANDS, cli.unknown_command_message(name)
        module = importlib.import_module(cli.SUBCOMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"facegan {name}")
    module.add_arguments(parser)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = parser.parse_args(argv[1:])
    except SystemExit:
        raise AssertionError(err.getvalue().strip().splitlines()[-1]) from None
    return name, args


def check_semantics(name, args):
    """The checks each command makes before doing work, where they need no TensorFlow."""
    from facegan.cli_args import parse_set
    from facegan.trainer.config import get_preset
    if name == "train":
        from facegan.trainer import cli as train_cli
        if args.config:
            return             # a run's config.json, which the reader does not have
        cfg = train_cli.resolve_config(args)      # preset, --set fields, --resolution, --steps
        if cfg.run.steps == 0:
            raise ValueError("--steps 0 is refused by facegan train")
    elif name == "demo":
        overrides = parse_set(args.set or [])
        overrides["network.resolution"] = args.resolution
        get_preset(args.preset, overrides)
    elif name == "pipeline" and getattr(args, "action", None) in ("run", "compile"):
        from facegan.pipeline import cli as pcli
        from facegan.pipeline import configs
        kw = pcli._pipeline_kwargs(args)
        if args.action == "compile":
            from facegan.pipeline import kubeflow_runner as k
            k.cluster_settings(args.engine, "reg/img:1", dict(kw, pipeline_root="gs://b/r"), {},
                               lambda line: None)
        else:
            configs.check_training(kw["preset"], kw["train_steps"], kw["resolution"], kw["overrides"])
    elif name == "evaluate" and args.metrics:
        from facegan.metrics.registry import validate_metric_names
        validate_metric_names(args.metrics)


ALL_COMMANDS = [(os.path.relpath(path, REPO), argv, line)
                for path in doc_files() for argv, line in commands_in(_read(path))]


def test_the_docs_have_commands_to_check():
    readme = [c for c in ALL_COMMANDS if c[0] == "README.md"]
    names = {c[1][0] for c in readme if c[1]}
    assert len(readme) >= 30
    assert {"ingest", "train", "evaluate", "export", "serve", "sample", "pipeline", "demo"} <= names


@pytest.mark.parametrize("path,argv,line", ALL_COMMANDS, ids=[f"{c[0]}:{' '.join(c[1][:2])}" for c in ALL_COMMANDS])
def test_every_documented_command_parses_with_the_cli(path, argv, line):
    try:
        name, args = parse_command(argv, line)
        if name:
            check_semantics(name, args)
    except (AssertionError, ValueError) as e:
        pytest.fail(f"{path}: `{line}`: {e}")


def test_the_command_extractor_sees_continuations_prompts_and_env_assignments():
    text = ("```\n$ facegan train --preset dcgan \\\n    --data d --steps 5   # comment\n"
            "TF_CONFIG='{\"a\": 1}' facegan serve --port 1 &\npython bench/quality.py --list-rows\n"
            "ls facegan\n```\n")
    assert [argv for argv, _ in commands_in(text)] == [
        ["train", "--preset", "dcgan", "--data", "d", "--steps", "5"],
        ["serve", "--port", "1"],
        ["study", "--list-rows"]]
    with pytest.raises(AssertionError, match="unrecognized arguments: --nope"):
        parse_command(["ingest", "--input", "a", "--output", "b", "--resolution", "64", "--nope"])
    with pytest.raises(AssertionError, match="unknown command 'injest'"):
        parse_command(["injest"])
    name, args = parse_command(["train", "--preset", "dcgan", "--data", "d", "--set", "optim.batch_sise=3"])
    with pytest.raises(ValueError, match="batch_sise"):
        check_semantics(name, args)


# -- machine paths, links, anchors --------------------------------------------------------------
MACHINE_PATH = re.compile(r"(?<![\w.:/~-])(/work/|/root/|/home/[a-z_][\w-]*/|/Users/|/mnt/|/tmp/[\w.-]+)"
                          r"|\.\./shared/data|shared/data/faces")


def machine_paths(text):
    return sorted({m.group(0) for m in MACHINE_PATH.finditer(text)})


def test_no_path_of_one_machine_in_readme_or_docs():
    files = doc_files() + sorted(glob.glob(os.path.join(REPO, "docs", "**", "*.json"), recursive=True))
    bad = {os.path.relpath(f, REPO): machine_paths(_read(f)) for f in files}
    bad = {f: p for f, p in bad.items() if p}
    assert not bad, f"paths of one machine: {bad}"


def test_the_machine_path_check_fails_on_such_paths():
    assert machine_paths("see /work/study_cache and /tmp/readme_run/x") == ["/tmp/readme_run", "/work/"]
    assert machine_paths("/home/alice/faces, /root/.keras, ../shared/data/faces") == \
        ["../shared/data", "/home/alice/", "/root/"]
    assert machine_paths("gs://bucket/tmp/x, ~/faces, runs/dcgan64, $FACEGAN_FACES_DIR/ffhq256") == []


def _slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    s = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return s.replace(" ", "-")


def test_readme_links_and_images_exist_and_anchors_name_headings():
    text = _read(README)
    anchors = {_slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, flags=re.M)}
    targets = re.findall(r"\]\(([^)\s]+)\)", text) + re.findall(r'src="([^"]+)"', text)
    assert targets
    missing = []
    for t in targets:
        if re.match(r"^[a-z]+://", t) or t.startswith("mailto:"):
            continue
        if t.startswith("#"):
            if t[1:] not in anchors:
                missing.append(t)
            continue
        path = t.split("#")[0]
        if not os.path.exists(os.path.join(REPO, path)):
            missing.append(t)
    assert not missing, f"README links to what does not exist: {missing}"


def test_readme_has_a_table_of_contents_before_the_first_section():
    text = _read(README)
    first = text.index("\n## ")
    toc = re.findall(r"\]\(#([^)]+)\)", text[:first + 1] + text[first:text.index("\n## ", first + 1)])
    sections = [_slug(h) for h in re.findall(r"^## (.+)$", text, flags=re.M)]
    assert len(toc) >= 8
    assert set(sections) - {"contents"} <= set(toc), set(sections) - set(toc)


# -- generated tables and the Python example ----------------------------------------------------
def test_presets_table_is_generated_from_the_presets():
    from facegan import docs_tables
    from facegan.trainer.config import preset_names
    table = docs_tables.presets_table()
    assert table in _read(README), "regenerate: python -m facegan.docs_tables presets"
    listed = re.findall(r"^\| `([^`]+)` \|", table, flags=re.M)
    assert listed == [p for p in preset_names() if not p.startswith("smoke")]


def test_python_api_example_names_real_functions():
    """The README's Python block: every `from facegan... import name` resolves (without TensorFlow:
    the names are looked up in the modules' source) and its calls parse."""
    text = _read(README)
    blocks = [b for b in re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)]
    assert blocks, "README has no ```python block"
    for block in blocks:
        tree = ast.parse(block)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module.startswith("facegan"):
                spec = importlib.util.find_spec(node.module)
                assert spec is not None, node.module
                src = _read(spec.origin)
                for alias in node.names:
                    if spec.submodule_search_locations and \
                            importlib.util.find_spec(f"{node.module}.{alias.name}") is not None:
                        continue          # a submodule of a package
                    assert re.search(rf"^(def|class) {alias.name}\b|^{alias.name} =|import .*\b{alias.name}\b"
                                     rf"|[\"']{alias.name}[\"']\s*:",          # a lazy (PEP 562) name table
                                     src, flags=re.M), f"{node.module} has no {alias.name}"


def test_quality_rerun_command_in_readme_is_the_studys_own():
    """A rerun command must carry the study's budget and protocol flags, or the study refuses it."""
    hint = json.loads(_read(os.path.join(REPO, "docs", "quality.json")))["meta"]["rerun_hint"]
    text = _read(README)
    reruns = [line for p, argv, line in ALL_COMMANDS if "--rerun-row" in argv and p == "README.md"]
    for line in reruns:
        assert line.split("#")[0].strip() == hint, line


def _function_defs(module_name):
    spec = importlib.util.find_spec(module_name)
    tree = ast.parse(_read(spec.origin))
    return {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}


def test_python_api_example_calls_match_the_signatures():
    """Each call of an imported function (or a function of an imported module) passes only
    keyword arguments that function takes, and no more positional ones than it has."""
    text = _read(README)
    block = re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)[0]
    tree = ast.parse(block)
    names = {}          # local name -> (module, function or None for a module)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                is_pkg = importlib.util.find_spec(node.module).submodule_search_locations
                if is_pkg and importlib.util.find_spec(sub) is not None:
                    names[a.asname or a.name] = (sub, None)
                else:
                    names[a.asname or a.name] = (node.module, a.name)
    checked = 0
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Name) and f.id in names and names[f.id][1]:
            module, fn = names[f.id]
            if module == "facegan.generator":
                module, fn = "facegan.generator.load", fn      # the lazy name's home
        elif isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id in names \
                and names[f.value.id][1] is None:
            module, fn = names[f.value.id][0], f.attr
        else:
            continue
        defs = _function_defs(module)
        assert fn in defs, f"{module} has no function {fn}"
        a = defs[fn].args
        params = [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs]
        if not a.kwarg:
            bad = [k.arg for k in node.keywords if k.arg not in params]
            assert not bad, f"{module}.{fn} takes no {bad}"
        if not a.vararg:
            assert len(node.args) <= len(a.posonlyargs + a.args), f"{module}.{fn}: too many positional arguments"
        checked += 1
    assert checked >= 5
