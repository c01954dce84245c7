"""The training core stays small: no function of the trainer package over 80 lines, and the GAN
base (trainer/gan_base.py: state, optimizers, EMA, the phase runner) at most 200 lines. An AST
check over the installed package's sources (no TensorFlow import)."""
import ast
import os

import facegan

MAX_FUNCTION_LINES = 80
MAX_BASE_LINES = 200


def _trainer_dir():
    import importlib.util
    spec = importlib.util.find_spec("facegan.trainer")
    return os.path.dirname(spec.origin)


def _python_files(root):
    for dirpath, _, names in os.walk(root):
        for name in sorted(names):
            if name.endswith(".py"):
                yield os.path.join(dirpath, name)


def long_functions(path, limit=MAX_FUNCTION_LINES):
    """[(qualified name, first line, lines)] of the functions in `path` longer than `limit` lines
    (decorators and docstrings included: def line to last line)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), filename=path)
    out = []

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = prefix + child.name
                start = min([child.lineno] + [d.lineno for d in child.decorator_list])
                n = child.end_lineno - start + 1
                if n > limit:
                    out.append((name, start, n))
                visit(child, name + ".")
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")
            else:
                visit(child, prefix)
    visit(tree, "")
    return out


def test_the_check_finds_a_long_function(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    src = tmp_path / "m.py"
    src.write_text(f"class A:\n    def short(self):\n        return 1\n\n    def long(self):\n{body}\n")
    src.write_text(src.read_text().replace("\n    x", "\n        x"))
    assert [(n, s) for n, s, _ in long_functions(str(src))] == [("A.long", 5)]
    assert long_functions(str(src), limit=MAX_FUNCTION_LINES + 1) == []


def test_no_function_in_the_trainer_package_exceeds_80_lines():
    root = _trainer_dir()
    assert os.path.isfile(os.path.join(root, "train_lib.py"))
    found = [f"{os.path.relpath(p, root)}:{line} {name} ({n} lines)"
             for p in _python_files(root) for name, line, n in long_functions(p)]
    assert not found, "functions over 80 lines: " + "; ".join(found)


def test_the_gan_base_stays_small():
    with open(os.path.join(_trainer_dir(), "gan_base.py"), encoding="utf-8") as f:
        lines = f.read().splitlines()
    assert 50 < len(lines) <= MAX_BASE_LINES
    assert facegan.__name__ == "facegan"
