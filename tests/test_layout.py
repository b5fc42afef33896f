"""The shape of src/negopt: its imports form no cycle, go down the layers of docs/architecture.md, and never reach
for another module's private names.

Read from the source with ``ast`` (nothing is imported), so a lazy import inside a function counts as much as one at
the top of a module. Imports under ``if TYPE_CHECKING:`` never run: they do not count for the layers, but they do for
cycles (a helper that names the class it serves, even for its annotations, is a circle in the reader's head).
"""

from __future__ import annotations

import ast
import os

import pytest

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")

# docs/architecture.md, "Which way imports go": a module imports its own layer or the ones below, never above.
LAYERS = [
    {"values", "text", "hub", "config", "data", "model_card"},
    {"generator", "builtin"},
    {"pipeline", "rewards"},
    {"eval"},
    {"train"},
    {"cli", "__main__"},
    {"integrations"},
]
LAYER_OF = {part: rank for rank, parts in enumerate(LAYERS) for part in parts}


def _modules() -> dict[str, str]:
    """Dotted module name -> file, for every module of negopt (a package is its ``__init__``)."""
    out = {}
    for root, _, files in os.walk(os.path.join(SRC, "negopt")):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(root, name)
                dotted = os.path.relpath(path, SRC)[: -len(".py")].replace(os.sep, ".")
                out[dotted.removesuffix(".__init__")] = path
    return out


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def _imports(path: str, modules: dict[str, str], type_checking: bool = False) -> list[tuple[str, str, int]]:
    """``(module imported, name imported or "", line)`` for each negopt import that runs (and, with
    ``type_checking``, each one under ``if TYPE_CHECKING:`` too)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), filename=path)
    found = []

    def visit(node: ast.AST) -> None:
        if _is_type_checking(node) and not type_checking:
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "negopt":
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                # `from negopt.train.rl import checkpoint` imports a module, not a name
                found.append((sub, "", node.lineno) if sub in modules else (node.module, alias.name, node.lineno))
        elif isinstance(node, ast.Import):
            found.extend((a.name, "", node.lineno) for a in node.names if a.name.split(".")[0] == "negopt")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _part(module: str) -> str:
    """The top-level part of negopt a module belongs to: ``negopt.train.rl.trainer`` -> ``train``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _package(module: str, modules: dict[str, str]) -> str:
    return module if modules[module].endswith("__init__.py") else module.rpartition(".")[0]


@pytest.fixture(scope="module")
def graph():
    modules = _modules()
    return modules, {m: _imports(path, modules) for m, path in modules.items()}


def test_every_part_of_negopt_has_a_layer(graph):
    modules, _ = graph
    unknown = sorted({_part(m) for m in modules} - set(LAYER_OF) - {""})
    assert not unknown, f"add {unknown} to LAYERS here and to docs/architecture.md"


def test_imports_go_down_the_layers(graph):
    modules, imports = graph
    wrong = []
    for module, found in imports.items():
        here = _part(module)
        for target, _, line in found:
            there = _part(target)
            if not here or not there or here == there:
                continue  # the root package's lazy names, and a part's own modules
            if LAYER_OF[there] > LAYER_OF[here]:
                wrong.append(f"{modules[module]}:{line} ({here}) imports {target} ({there}), a layer above it")
    assert not wrong, "\n".join(wrong)


def test_no_module_imports_another_modules_private_names(graph):
    modules, imports = graph
    wrong = []
    for module, found in imports.items():
        for target, name, line in found:
            if name.startswith("_") and not name.startswith("__"):
                wrong.append(f"{modules[module]}:{line} imports {name} from {target}")
            private = [p for p in target.split(".") if p.startswith("_") and not p.startswith("__")]
            # A package may keep a private module for its own modules (rewards/_common); no one else uses it.
            if private and not target.startswith(_package(module, modules) + "."):
                wrong.append(f"{modules[module]}:{line} imports the private module {target}")
    assert not wrong, "\n".join(wrong)


def test_imports_form_no_cycle(graph):
    modules, runs = graph
    imports = {}
    for m, path in modules.items():
        imports[m] = list(runs[m])
        for target, name, line in _imports(path, modules, type_checking=True):
            # A package's lazy names (PEP 562) are re-exported under TYPE_CHECKING for type checkers: not a circle.
            if path.endswith("__init__.py") and target.startswith(m + "."):
                continue
            imports[m].append((target, name, line))
    edges = {m: sorted({t for t, _, _ in found if t in modules and t != m}) for m, found in imports.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in edges[module]:
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state and (cycle := walk(target)):
                return cycle
        path.pop()
        state[module] = 2
        return None

    for module in sorted(edges):
        if module not in state and (cycle := walk(module)):
            pytest.fail("import cycle: " + " -> ".join(cycle))


def test_the_checks_catch_what_they_are_for(tmp_path, monkeypatch):
    """The walkers above find a cycle, an upward import and a private name in a small tree built for it."""
    pkg = tmp_path / "negopt"
    (pkg / "train").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "hub.py").write_text("from negopt.train import helper\n")  # up, and a cycle with helper
    (pkg / "train" / "__init__.py").write_text("")
    (pkg / "train" / "helper.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from negopt.cli import x\n"
        "def f():\n    from negopt.hub import _secret\n"
    )
    monkeypatch.setattr(f"{__name__}.SRC", str(tmp_path))
    modules = _modules()
    found = {m: _imports(p, modules) for m, p in modules.items()}
    assert found["negopt.hub"] == [("negopt.train.helper", "", 1)]
    assert found["negopt.train.helper"] == [("negopt.hub", "_secret", 5)]  # the TYPE_CHECKING import is skipped
    for check in (test_imports_go_down_the_layers, test_no_module_imports_another_modules_private_names):
        with pytest.raises(AssertionError):
            check((modules, found))
    with pytest.raises(pytest.fail.Exception, match=r"import cycle: negopt.hub -> negopt.train.helper -> negopt.hub"):
        test_imports_form_no_cycle((modules, found))


def test_a_type_checking_import_closes_a_cycle(tmp_path, monkeypatch):
    """A helper that imports the class it serves only for its annotations is still a circle."""
    pkg = tmp_path / "negopt"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "owner.py").write_text("from negopt.helper import f\n")
    helper = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from negopt.owner import C\n"
    (pkg / "helper.py").write_text(helper)
    monkeypatch.setattr(f"{__name__}.SRC", str(tmp_path))
    modules = _modules()
    found = {m: _imports(p, modules) for m, p in modules.items()}
    with pytest.raises(pytest.fail.Exception, match=r"import cycle: negopt.helper -> negopt.owner -> negopt.helper"):
        test_imports_form_no_cycle((modules, found))


# Tables of words with their sources, not code: read as data.
DATA_MODULES = {"negopt.builtin.vocabulary"}


def test_few_top_level_modules_and_none_too_long(graph):
    """The top of src/negopt holds at most 8 modules besides __init__/__main__; no module is over 600 lines."""
    modules, _ = graph
    top = sorted(m for m, path in modules.items() if m.count(".") == 1 and not path.endswith("__init__.py"))
    top = [m for m in top if m != "negopt.__main__"]
    assert len(top) <= 8, f"{len(top)} top-level modules: {top}; move the ones that share a concept into a package"
    long = []
    for module, path in modules.items():
        with open(path, encoding="utf-8") as f:
            lines = sum(1 for _ in f)
        if lines > 600 and module not in DATA_MODULES:
            long.append(f"{path}: {lines} lines")
    assert not long, "split these modules: " + ", ".join(long)
