"""The package's import graph, read from the source (ast, every import, also inside functions):
no cycles, ``model/`` stands alone, ``train/`` never reaches for ``infer/``, files stay small."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "unetkit"
MAX_LINES = 400
#: Files allowed over MAX_LINES (none: issue #12 split the last ones). An entry must say why;
#: the test fails once a listed file is short, as a reminder to remove it.
OVER_LIMIT_BEING_SPLIT: set[str] = set()


def _modules() -> dict[str, tuple[Path, bool]]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        found[".".join(parts)] = (path, is_package)
    return found


MODULES = _modules()


def _imports(name: str) -> set[str]:
    """unetkit modules ``name`` imports. ``from pkg import sub`` counts as importing ``pkg.sub``
    only (not the package) when every imported name is a submodule."""
    path, is_package = MODULES[name]
    package = name if is_package else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            subs = {f"{target}.{a.name}" for a in node.names} & MODULES.keys()
            found |= subs
            if len(subs) < len(node.names):
                found.add(target)
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: _imports(name) for name in MODULES}


def _cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(GRAPH[v]):
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
                out.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    return out


def test_the_graph_is_read() -> None:
    assert "unetkit.train.trainer" in GRAPH and "unetkit.model.unet" in GRAPH
    assert "unetkit.train.step" in GRAPH["unetkit.train.trainer"]
    assert "unetkit.model.layers" in GRAPH["unetkit.model.blocks"]  # from unetkit.model import x


def test_no_import_cycles() -> None:
    assert _cycles() == []


def test_the_cycle_detector_finds_a_cycle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(GRAPH, "unetkit.config", {*GRAPH["unetkit.config"], "unetkit.workflow"})
    assert any("unetkit.workflow" in c and "unetkit.config" in c for c in _cycles())


def test_model_imports_nothing_outside_model() -> None:
    outside = {
        (name, dep)
        for name, deps in GRAPH.items()
        if name == "unetkit.model" or name.startswith("unetkit.model.")
        for dep in deps
        if dep != "unetkit.model" and not dep.startswith("unetkit.model.")
    }
    assert outside == set()


def test_train_does_not_import_infer() -> None:
    def is_train(name: str) -> bool:
        return name == "unetkit.train" or name.startswith("unetkit.train.")

    direct = {
        (name, dep)
        for name, deps in GRAPH.items()
        if is_train(name)
        for dep in deps
        if dep == "unetkit.infer" or dep.startswith("unetkit.infer.")
    }
    assert direct == set()
    # nor through a module outside train/
    seen, todo = set(), [n for n in GRAPH if is_train(n)]
    while todo:
        name = todo.pop()
        for dep in GRAPH[name]:
            if dep in seen:
                continue
            seen.add(dep)
            todo.append(dep)
    assert not {m for m in seen if m == "unetkit.infer" or m.startswith("unetkit.infer.")}


def test_files_are_at_most_400_lines() -> None:
    lengths = {
        str(path.relative_to(SRC)): len(path.read_text(encoding="utf-8").splitlines())
        for path, _ in MODULES.values()
    }
    too_long = {f: n for f, n in lengths.items() if n > MAX_LINES}
    assert set(too_long) <= OVER_LIMIT_BEING_SPLIT, too_long
    done = {f for f in OVER_LIMIT_BEING_SPLIT if f not in too_long}
    assert not done, f"split and short now; remove from OVER_LIMIT_BEING_SPLIT: {done}"
