"""The package's layers, read from its own imports (every import statement, module level or inside a function):
no import cycles; the core never imports a front end (the CLI modules, the widgets); the engine never imports the
CLI; the models never import inference; nothing imports the compatibility module models/store.py."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "napari_lvseg"
ROOT = Path(__file__).resolve().parents[1] / "src" / PACKAGE


def _modules() -> dict:
    """{dotted module name: (path, is a package's __init__)}."""
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def _graph() -> dict:
    """{module: {intra-package modules it imports}}. ``from X import name`` counts as importing X.name where that
    is a module, else X."""
    modules = _modules()
    graph = {}
    for name, (path, is_package) in modules.items():
        package = name if is_package else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                for alias in node.names:
                    sub = f"{source}.{alias.name}"
                    targets.add(sub if sub in modules else source)
        graph[name] = {t for t in targets if t == PACKAGE or t.startswith(PACKAGE + ".")} - {name}
    return graph


GRAPH = _graph()


def _is_front_end(module: str) -> bool:
    short = module.removeprefix(PACKAGE + ".")
    return (short in ("cli", "cli_args", "demo") or short.endswith("_cli") or short == "widgets"
            or short.startswith("widgets."))


def _cycles(graph: dict) -> list:
    """The strongly connected components of more than one module (Tarjan), and modules importing themselves."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_is_read():
    assert len(GRAPH) > 40
    assert f"{PACKAGE}.models.card" in GRAPH[f"{PACKAGE}.models.weights"]
    assert f"{PACKAGE}.postprocess" in GRAPH[f"{PACKAGE}.inference"]
    assert f"{PACKAGE}.cli_args" in GRAPH[f"{PACKAGE}.synthesis_cli"]   # a function-level import counts


def test_no_import_cycles():
    assert _cycles(GRAPH) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if not _is_front_end(m)))
def test_the_core_never_imports_the_cli_or_the_widgets(module):
    assert sorted(t for t in GRAPH[module] if _is_front_end(t)) == []


def test_the_engine_never_imports_the_cli():
    engine = [m for m in GRAPH if m == f"{PACKAGE}.engine" or m.startswith(f"{PACKAGE}.engine.")]
    assert engine
    short = (t.removeprefix(PACKAGE + ".") for m in engine for t in GRAPH[m])
    assert sorted(t for t in short if t in ("cli", "cli_args") or t.endswith("_cli")) == []


def test_the_models_never_import_inference():
    models = [m for m in GRAPH if m == f"{PACKAGE}.models" or m.startswith(f"{PACKAGE}.models.")]
    assert len(models) >= 6
    assert sorted((m, t) for m in models for t in GRAPH[m] if t == f"{PACKAGE}.inference") == []


def test_nothing_in_the_package_imports_the_compatibility_store():
    assert sorted(m for m, targets in GRAPH.items() if f"{PACKAGE}.models.store" in targets) == []


def test_evaluation_is_core_and_the_scorers_use_it():
    """evaluation.py (every scoring of predictions against truth) is Qt-free core: it imports no front end and no GUI
    library, and stays below the engine and inference (metrics, labels, errors, io only); the CLI's `evaluate` and
    the engine's validation score through it."""
    evaluation = f"{PACKAGE}.evaluation"
    assert sorted(t for t in GRAPH[evaluation] if _is_front_end(t)) == []
    allowed = ("metrics", "labels", "errors", "io")
    assert sorted(t for t in GRAPH[evaluation] if t.removeprefix(PACKAGE + ".").split(".")[0] not in allowed) == []
    path = ROOT / "evaluation.py"
    imported = {alias.name.split(".")[0] for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                for alias in getattr(node, "names", []) if isinstance(node, ast.Import)}
    imported |= {node.module.split(".")[0] for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                 if isinstance(node, ast.ImportFrom) and node.module and not node.level}
    assert sorted(imported & {"qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "napari", "magicgui", "torch"}) == []
    assert evaluation in GRAPH[f"{PACKAGE}.cli"] and evaluation in GRAPH[f"{PACKAGE}.engine.segmentation"]


def test_realism_fusion_and_edited_datasets_are_qt_free_core():
    """realism.py, synthesis_edits.py, data/fusion.py and data/edits.py import no front end and no GUI library; the
    mask edits and the fusion (data/) need no torch either."""
    gui = {"qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "napari", "magicgui"}
    for short in ("realism", "synthesis_edits", "data.fusion", "data.edits"):
        module = f"{PACKAGE}.{short}"
        assert sorted(t for t in GRAPH[module] if _is_front_end(t)) == [], short
        path = ROOT / (short.replace(".", "/") + ".py")
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom) and node.module and not node.level}
        banned = gui | ({"torch"} if short.startswith("data.") else set())
        assert sorted(imported & banned) == [], short
