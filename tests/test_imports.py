"""Imports go one way: configuration -> model -> hw -> sim, nas; the command line on top.

Read from the source with ``ast`` (every ``import``, at module or function level, and
every ``importlib.import_module("...")`` with a literal name), so a lazy import inside a
function is held to the same rule as one at the top of a file.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Source folder -> package it installs as (pyproject.toml's package-dir).
FOLDERS = {"defslice": "defslice", "model": "defslice.model", "hw": "defslice.hw",
           "sim": "defslice.sim", "nas": "defslice.nas"}

#: The command line, the flow and the reports over all stages: nothing below imports them.
TOP = ("defslice.cli", "defslice.flow", "defslice.summary", "defslice.summary_layer",
       "defslice.bench")
#: Stage packages, in order.
STAGES = ("defslice.model", "defslice.hw", "defslice.sim", "defslice.nas")

#: Package -> packages (and top modules) it must never import.
FORBIDDEN = {
    "defslice": STAGES + TOP,            # config, errors, records, ...: the bottom layer
    "defslice.model": ("defslice.hw", "defslice.sim", "defslice.nas", *TOP),
    "defslice.hw": ("defslice.sim", "defslice.nas", *TOP),
    "defslice.sim": ("defslice.nas", *TOP),
    "defslice.nas": ("defslice.sim", *TOP),
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT)
    parts = [FOLDERS[rel.parts[0]], *rel.with_suffix("").parts[1:]]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _package_of(module: str) -> str:
    """``defslice`` for the bottom and top modules, else the stage package."""
    for stage in STAGES:
        if module == stage or module.startswith(stage + "."):
            return stage
    return "defslice"


def _imports(path: Path, text: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``text``, the source of ``path``."""
    module = _module_name(path)
    is_package = path.name == "__init__.py"
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(text, str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[:len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{a.name}") for a in node.names]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)):
            found.append((node.lineno, node.args[0].value))
    return found


def _violations(path: Path, text: str | None = None) -> list[str]:
    package = _package_of(_module_name(path))
    if _module_name(path) in TOP:
        return []
    bad = []
    for line, name in _imports(path, path.read_text() if text is None else text):
        for target in FORBIDDEN[package]:
            if name == target or name.startswith(target + "."):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    return bad


SOURCES = sorted(p for folder in FOLDERS for p in (ROOT / folder).rglob("*.py"))


def test_every_source_file_is_checked():
    assert len(SOURCES) > 50
    assert {_package_of(_module_name(p)) for p in SOURCES} == {"defslice", *STAGES}


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_go_one_way(path):
    assert not _violations(path)


def test_the_check_sees_function_level_and_importlib_imports():
    """A lazy upward import in a model file is found (the rule is not vacuous)."""
    fake = ROOT / "model" / "__probe__.py"
    text = ("def f():\n    from defslice.hw.params import derive\n    return derive\n\n"
            "def g():\n    import importlib\n    return importlib.import_module('defslice.nas')\n")
    assert _violations(fake, text) == [
        "model/__probe__.py:2 imports defslice.hw.params",
        "model/__probe__.py:2 imports defslice.hw.params.derive",
        "model/__probe__.py:7 imports defslice.nas",
    ]
    relative = "from ...hw import params\n"
    assert _violations(ROOT / "model" / "traffic" / "__probe__.py", relative) == [
        "model/traffic/__probe__.py:1 imports defslice.hw",
        "model/traffic/__probe__.py:1 imports defslice.hw.params"]
