"""The rules of the house (shared/DESIGN.md), checked on the package's own source.

Each rule reads ``textgen/`` with ``ast`` (nothing is imported), so a change that
breaks one fails here with the file and line, not in a reviewer's read:
  * arrows run down only: a module imports only from its own floor or below, and
    no two modules import each other, not even lazily (inside a function);
  * no module over 300 lines, no function over 50;
  * per-cell facts live in cells.py: no ``cell == "lstm"`` and no table keyed by
    cell names anywhere else;
  * the formatter owns the layout: a ``# fmt: skip`` says why on the line above.
"""

import ast
import re
from pathlib import Path

import pytest

from textgen.cells import CELLS

PACKAGE = Path(__file__).resolve().parent.parent / "textgen"

# Floor of each module, by the longest matching dotted prefix. A module may import
# from its own floor and those below. Floor 3's rooms may use each other (saved/
# reads the tokenizer of data/); the cycle check keeps them from going round.
FLOORS = {
    "textgen.errors": 0,
    "textgen.version": 0,
    "textgen.limits": 0,
    "textgen.safe_files": 1,
    "textgen.shell": 0,
    "textgen.interruptible": 0,
    "textgen.settings": 1,
    "textgen.cells": 1,
    "textgen.metrics": 1,
    "textgen.native_logs": 1,
    "textgen.cluster": 1,
    "textgen.engine_registry": 1,
    "textgen.config": 2,
    "textgen.data": 3,
    "textgen.saved": 3,
    "textgen.hardware": 3,
    "textgen.model": 3,
    "textgen.generation": 4,
    "textgen.training": 5,
    "textgen.evaluation": 6,
    "textgen.serving": 6,  # the HTTP server over generation (no TensorFlow), beside evaluation
    "textgen.cli": 7,
    "textgen.__main__": 7,
    "textgen": 7,  # the package's own __init__: the public API over everything
}
MAX_MODULE_LINES = 300
HAND_LAYOUT = re.compile(r"#\s*fmt:\s*(skip|off)\s*$")
MAX_FUNCTION_LINES = 50


def _modules():
    """{dotted module name: (path, parsed tree)} for every file of the package."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = (path, ast.parse(path.read_text(encoding="utf-8")))
    return modules


MODULES = _modules()


def _floor(module):
    prefix = max((key for key in FLOORS if module == key or module.startswith(key + ".")), key=len)
    return FLOORS[prefix]


def _imports(module, tree, is_package):
    """The package's modules ``module`` imports anywhere in its body: [(imported, line)]."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:  # "from textgen.saved import layout" imports a module
                name = f"{base}.{alias.name}"
                found.append((name if name in MODULES else base, node.lineno))
    return [(name, line) for name, line in found if name == "textgen" or name.startswith("textgen.")]


GRAPH = {module: _imports(module, tree, path.name == "__init__.py") for module, (path, tree) in MODULES.items()}


def test_every_module_has_a_floor():
    assert all(any(m == key or m.startswith(key + ".") for key in FLOORS) for m in MODULES)
    assert _floor("textgen.training.loop") == 5 and _floor("textgen.config") == 2


def test_arrows_run_down_only():
    upward = [
        f"{MODULES[module][0].relative_to(PACKAGE.parent)}:{line} imports {imported}"
        for module, imports in GRAPH.items()
        for imported, line in imports
        if _floor(imported) > _floor(module)
    ]
    assert not upward, "\n".join(upward)


def _cycle(graph):
    """One import cycle as a list of modules, or None."""
    state = {}

    def visit(module, path):
        state[module] = "open"
        for imported, _ in graph.get(module, ()):
            if imported == module:
                continue
            if state.get(imported) == "open":
                return path[path.index(imported) :] + [imported] if imported in path else [module, imported]
            if imported not in state:
                found = visit(imported, path + [imported])
                if found:
                    return found
        state[module] = "done"
        return None

    for module in graph:
        if module not in state:
            found = visit(module, [module])
            if found:
                return found
    return None


def test_no_two_modules_import_each_other():
    # The package's __init__ files import nothing but what they re-export; a module importing
    # "textgen" itself would close a circle through it, which the floors already refuse.
    assert _cycle(GRAPH) is None, " -> ".join(_cycle(GRAPH) or [])


def test_the_cycle_check_can_fail():
    loop = {"a": [("b", 1)], "b": [("c", 1)], "c": [("a", 1)]}
    assert _cycle(loop) == ["a", "b", "c", "a"]
    assert _cycle({"a": [("b", 1)], "b": []}) is None


def test_modules_and_functions_are_short():
    too_long = []
    for path, tree in MODULES.values():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_MODULE_LINES:
            too_long.append(f"{path.relative_to(PACKAGE.parent)}: {lines} lines")
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}: {length} lines")
    assert not too_long, "\n".join(too_long)


def _is_cell_name(node):
    return isinstance(node, ast.Constant) and node.value in CELLS


def test_cell_facts_live_in_the_registry():
    found = []
    for module, (path, tree) in MODULES.items():
        if module == "textgen.cells":
            continue
        for node in ast.walk(tree):
            compared = isinstance(node, ast.Compare) and any(map(_is_cell_name, [node.left, *node.comparators]))
            keyed = isinstance(node, ast.Dict) and sum(map(_is_cell_name, node.keys)) >= 2
            if compared or keyed:
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert not found, "per-cell facts outside cells.py at " + ", ".join(found)


@pytest.mark.parametrize("folder", ["textgen", "tests", "benchmarks"])
def test_every_hand_layout_says_why(folder):
    unexplained = []
    for path in sorted((PACKAGE.parent / folder).rglob("*.py")):
        lines = path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines):
            reason = lines[number - 1].strip() if number else ""
            if HAND_LAYOUT.search(line) and not reason.startswith("# A table:"):
                unexplained.append(f"{path.relative_to(PACKAGE.parent)}:{number + 1}")
    assert not unexplained, "# fmt: skip without a '# A table: ...' reason above it at " + ", ".join(unexplained)
