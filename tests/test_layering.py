"""Imports only go down the layers (STYLE.md section 2.3); a slip fails here, not in review."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "charlm"

# module -> the charlm modules it may import
ALLOWED = {
    "errors": set(),
    "layers": set(), "loss": set(), "optim": set(), "ngram": set(),
    "workspace": set(),
    "cells": {"cells", "layers", "workspace"},
    "vocab": {"errors"},
    "corpus": {"errors"},
    "checkpoint": {"errors"},
    "data": {"vocab", "errors"},
    "model": {"cells", "layers", "workspace", "errors"},
    "autosize": {"cells"},
    "evaluate": {"model", "loss", "data", "workspace"},
    "sample": {"cells", "model"},
    "bundle": {"checkpoint", "model", "vocab", "errors", "ngram_bundle", "__init__"},
    "ngram_bundle": {"bundle", "data", "ngram", "errors", "checkpoint", "vocab"},
    "train": {"bundle", "evaluate", "loss", "model", "optim", "checkpoint", "errors", "data",
              "workspace"},
    "commands": {"*"},
    "cli": {"errors", "commands"},
    "__main__": {"cli"},
    "__init__": set(),
}
FRONT_END_ONLY = {"typer", "rich", "tqdm", "click"}


def _imports(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "charlm":
                yield from (f"charlm.{alias.name}" for alias in node.names)
            else:
                yield node.module


def _module_name(path):
    return "cells" if path.parent.name == "cells" else path.stem


def test_imports_follow_the_layers():
    for path in sorted(PACKAGE.rglob("*.py")):
        name = _module_name(path)
        allowed = ALLOWED[name]
        for imported in _imports(path):
            top = imported.split(".")[0]
            if top == "charlm":
                target = imported.split(".")[1] if "." in imported else "__init__"
                if target not in ALLOWED:                  # a name such as __version__
                    target = "__init__"
                assert "*" in allowed or target in allowed, f"{path.name} imports {imported}"
            elif top in FRONT_END_ONLY:
                assert name in ("cli", "commands"), f"{path.name} imports {top}"


def test_the_package_imports_no_numpy_at_startup():
    """`charlm --help` must stay fast: cli imports no numpy-heavy module at import time."""
    tree = ast.parse((PACKAGE / "cli.py").read_text())
    top_level = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = {a.name for n in top_level for a in n.names} | {
        n.module for n in top_level if isinstance(n, ast.ImportFrom)}
    assert "numpy" not in names and "charlm.commands" not in names
