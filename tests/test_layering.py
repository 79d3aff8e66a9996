"""The package's shape, enforced: imports go down the layers and never round in a cycle, the
front end's libraries stay in the CLI, no cell is named outside the cells, and no module,
function or class grows past the size a reader can hold (ARCHITECTURE.md)."""

import ast
import subprocess
import sys
from pathlib import Path

from charlm import names

PACKAGE = Path(__file__).resolve().parents[1] / "charlm"

# layer -> rank; a module may import its own layer's modules and those of lower ranks only
LAYERS = {"__init__": 0, "names": 0, "errors": 0, "fs": 1, "nn": 2, "data": 2, "chart": 2, "io": 3,
          "lm": 4, "train": 5, "cli": 6, "__main__": 7}
FRONT_END_ONLY = {"typer", "rich", "tqdm", "click"}
MAX_LINES, MAX_FUNCTION, MAX_CLASS = 300, 60, 150
# Kept longer on purpose: a typer command's signature is its option list, one option a line.
LONG_FUNCTIONS = {"cli/train.py:train"}


def _modules():
    """{dotted module name: path} for every module of the package."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        found["charlm." + ".".join(parts) if parts != ("__init__",) else "charlm"] = path
    return found


MODULES = _modules()


def _imports(path):
    """The charlm modules (dotted names) and other top-level packages that path imports."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                yield child if child in MODULES else node.module


def _layer(module):
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def test_imports_follow_the_layers():
    for module, path in MODULES.items():
        layer = _layer(module)
        for imported in _imports(path):
            top = imported.split(".")[0]
            if top == "charlm":
                target = _layer(imported)
                assert target == layer or LAYERS[target] < LAYERS[layer], \
                    f"{module} ({layer}) imports {imported} ({target}), a layer above it"
            elif top in FRONT_END_ONLY:
                assert layer == "cli", f"{module} imports {top}"


def test_no_import_cycle():
    graph = {m: {i for i in _imports(p) if i in MODULES and i != m} for m, p in MODULES.items()}
    done, stack = set(), []

    def visit(m):
        if m in stack:
            raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(m):] + [m]))
        if m in done:
            return
        stack.append(m)
        for n in sorted(graph[m]):
            visit(n)
        stack.pop()
        done.add(m)

    for m in sorted(graph):
        visit(m)


def test_the_cli_imports_no_numpy_at_startup():
    """`charlm --help` must stay fast: importing the CLI loads neither numpy nor rich."""
    code = "import sys, charlm.cli; print(sorted({'numpy', 'rich'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]", out


def test_no_cell_is_named_outside_the_cells():
    """Code that needs to know a cell asks the cell (charlm.nn.cells); a comparison with a
    cell's name anywhere else is knowledge in the wrong place."""
    for module, path in MODULES.items():
        if module.startswith("charlm.nn.cells") or module == "charlm.names":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                operands = [node.left, *node.comparators]
                named = [o.value for o in operands
                         if isinstance(o, ast.Constant) and o.value in names.CELLS]
                assert not named, f"{path.name}:{node.lineno} compares with cell {named[0]!r}"


def test_modules_functions_and_classes_stay_small():
    for path in MODULES.values():
        source = path.read_text()
        rel = path.relative_to(PACKAGE).as_posix()
        assert source.count("\n") <= MAX_LINES, f"{rel} has {source.count(chr(10))} lines"
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            size = node.end_lineno - node.lineno + 1
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if f"{rel}:{node.name}" not in LONG_FUNCTIONS:
                    assert size <= MAX_FUNCTION, f"{rel}:{node.name} has {size} lines"
            elif isinstance(node, ast.ClassDef):
                assert size <= MAX_CLASS, f"{rel}:{node.name} has {size} lines"
