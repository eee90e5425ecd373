"""The import rules, checked over the source (function-level imports included):

- layers import downward only: domain, config, errors, metrics < db, media, vision < index <
  services < api, console, dialects, tools < main, cli;
- the vector backend is one wing: no module outside `app.index` imports faiss, pymilvus,
  milvus_lite or an engine module of it; services reach it through `app.index.registry` and
  `app.index.protocol` and `app.index.changelog` only;
- no import circle between modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

from app.config import REPO_ROOT

APP = REPO_ROOT / "app"
LAYERS = [
    {"app", "app.domain", "app.config", "app.errors", "app.metrics"},
    {"app.db", "app.media", "app.vision"},
    {"app.index"},
    {"app.services"},
    {"app.api", "app.console", "app.dialects", "app.tools"},
    {"app.main", "app.cli", "app.__main__"},
]
ENGINES = {"faiss", "pymilvus", "milvus_lite"}
BACKEND_FACADE = {"app.index.registry", "app.index.protocol", "app.index.changelog"}


def _module(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, at any depth of its code (`from x import y` yields x.y
    when x.y is a module, else x)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in MODULES else node.module)
    return found


MODULES = {_module(path): path for path in APP.rglob("*.py")}
GRAPH = {name: {i for i in _imports(path)} for name, path in MODULES.items()}


def _layer(module: str) -> int:
    for depth, members in enumerate(LAYERS):
        if any(module == m or module.startswith(f"{m}.") for m in members if m != "app"):
            return depth
    return 0  # app itself


def test_layers_import_downward_only() -> None:
    upward = [
        f"{name} -> {target}"
        for name, targets in GRAPH.items()
        for target in targets
        if target.startswith("app.") and _layer(target) > _layer(name)
    ]
    assert not upward, upward


def test_only_the_index_wing_touches_a_vector_engine() -> None:
    leaks = [
        f"{name} -> {target}"
        for name, targets in GRAPH.items()
        if not name.startswith("app.index")
        for target in targets
        if target.split(".")[0] in ENGINES
        or (target.startswith("app.index") and target not in BACKEND_FACADE)
    ]
    assert not leaks, leaks


def test_no_import_circle() -> None:
    internal = {
        name: {t for t in targets if t in MODULES and t != name} for name, targets in GRAPH.items()
    }
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        path.append(name)
        for target in sorted(internal[name]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[name] = 2
        return None

    for name in sorted(internal):
        if name not in state:
            cycle = visit(name)
            assert cycle is None, " -> ".join(cycle)


def test_the_rules_see_the_imports() -> None:
    """The checks above are only as good as the graph: a known import must be in it."""
    assert "app.index.registry" in GRAPH["app.services.matching"]
    assert "faiss" in GRAPH["app.index.vectors"]
    assert "app.index.milvus_registry" in GRAPH["app.index.registry"]  # a function-level one
