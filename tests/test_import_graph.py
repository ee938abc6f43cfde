"""Imports point one way: HTTP (routers, dependencies, fast paths) → services → models →
db and config. Read from the source with `ast`; nothing is imported."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

APP = Path(__file__).resolve().parent.parent / "app"
HTTP_MODULES = {"router", "dependencies", "fastpath", "main", "middleware", "ratelimit"}
PLUMBING = {
    "app.db",
    "app.config",
    "app.errors",
    "app.files",
    "app.nip",
    "app.timeutil",
    "app.requestctx",
}


def _modules() -> dict[str, Path]:
    modules = {}
    for path in APP.rglob("*.py"):
        parts = path.relative_to(APP.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _imports(module: str, path: Path, known: set[str]) -> Iterator[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parents = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parents, *([base] if base else [])])
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        yield from (name for name in names if name in known and name != module)


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {m: set(_imports(m, path, set(modules))) for m, path in modules.items()}


def _layer(module: str) -> str:
    """A package's HTTP modules and the rest are two layers; top-level modules their own."""
    parts = module.split(".")
    if len(parts) < 3:
        return module
    return f"{parts[1]}:http" if parts[2] in HTTP_MODULES else parts[1]


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (found := visit(target)):
                return found
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_modules_import_each_other_without_cycles() -> None:
    assert _cycle(_graph()) is None


def test_layers_import_each_other_without_cycles() -> None:
    layers: dict[str, set[str]] = {}
    for module, targets in _graph().items():
        layers.setdefault(_layer(module), set()).update(
            _layer(t) for t in targets if _layer(t) != _layer(module)
        )
    assert _cycle(layers) is None


def test_plumbing_imports_no_domain_module() -> None:
    """db.py, config.py and the other shared plumbing import only each other."""
    graph = _graph()
    for module in PLUMBING:
        assert graph[module] <= PLUMBING, (module, graph[module] - PLUMBING)
