"""The package's imports point one way: no module imports, even inside a function, one that
imports it back (imports for type checking only aside), and no layer imports one above it.

Read from the source (the AST), so an import that only some call would reach counts too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "llm_nb"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def runtime_imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth, except those under ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and is_type_checking(node.test):
            for child in node.orelse:
                yield from runtime_imports(ast.Module(body=[child], type_ignores=[]))
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        yield from runtime_imports(node)


def imported_by(name: str) -> set[str]:
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in runtime_imports(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            # "from .m import f" imports .m (and .m.f, if that is a module); "from . import
            # _x" imports the module _x, with the package already imported.
            subs = [f"{target}.{alias.name}" for alias in node.names]
            targets = (
                subs if node.module is None and set(subs) <= MODULES.keys() else [target, *subs]
            )
        found.update(t for t in targets if t in MODULES)
    # The package root is a facade that imports nothing of its own at import.
    found -= {name, "llm_nb"}
    return found


GRAPH = {name: imported_by(name) for name in MODULES}


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the groups of modules that reach one another."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


def test_the_reader_finds_the_imports() -> None:
    """The graph is read right: a few edges that must be there."""
    assert "llm_nb._stream" in GRAPH["llm_nb.providers.base"]
    assert "llm_nb._registry" in GRAPH["llm_nb._session"]
    assert "llm_nb._stats._recorder" in GRAPH["llm_nb._session"]
    # Imported inside a function: counted.
    assert "llm_nb.providers.ollama" in GRAPH["llm_nb._registry"]
    # Imported for type checking only: not counted.
    assert "llm_nb.providers.base" not in GRAPH["llm_nb._registry"]


def test_no_import_loops() -> None:
    loops = [group for group in strongly_connected(GRAPH) if len(group) > 1]
    assert loops == []


#: The magics and the panels: neither imports the other; both stand on llm_nb._present.
PRESENTATION = ("llm_nb._magics", "llm_nb._widgets")

#: Each layer and what it must not import (the layers above it), bottom up.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("llm_nb._record", ("llm_nb._errors", "llm_nb._types", "llm_nb._validate")),
    ("llm_nb._errors", ("llm_nb._types", "llm_nb._validate", "llm_nb._wire")),
    ("llm_nb._loop", ("llm_nb._session", "llm_nb._registry", "llm_nb.providers", "llm_nb._stats")),
    ("llm_nb._observers", ("llm_nb._session", "llm_nb._stats", "llm_nb.providers")),
    ("llm_nb._stream", ("llm_nb._session", "llm_nb._registry", "llm_nb._stats")),
    ("llm_nb.providers", ("llm_nb._session", "llm_nb._registry", "llm_nb._stats", "llm_nb._api")),
    ("llm_nb._registry", ("llm_nb._session", "llm_nb._stats", "llm_nb._api")),
    ("llm_nb._stats", ("llm_nb._session", "llm_nb._registry", "llm_nb.providers")),
    ("llm_nb._session", ("llm_nb._api", "llm_nb._eval", "llm_nb._present", *PRESENTATION)),
    ("llm_nb._api", ("llm_nb._eval", "llm_nb._present", *PRESENTATION)),
    ("llm_nb._eval", ("llm_nb._present", *PRESENTATION)),
    # The shared presentation layer, then the two that stand on it side by side.
    ("llm_nb._present", PRESENTATION),
    ("llm_nb._magics", ("llm_nb._widgets",)),
    ("llm_nb._widgets", ("llm_nb._magics",)),
]


@pytest.mark.parametrize(("layer", "above"), LAYERS, ids=[layer for layer, _ in LAYERS])
def test_no_layer_imports_one_above_it(layer: str, above: tuple[str, ...]) -> None:
    def within(name: str, prefix: str) -> bool:
        return name == prefix or name.startswith(prefix + ".")

    upward = sorted(
        (name, target)
        for name, targets in GRAPH.items()
        if within(name, layer)
        for target in targets
        if any(within(target, up) for up in above)
    )
    assert upward == []


@pytest.mark.parametrize("package", PRESENTATION)
def test_the_magics_and_the_panels_share_the_presentation_layer(package: str) -> None:
    """Both do import llm_nb._present (the check above would also pass if the shared code
    had simply been copied into each)."""
    targets = {t for name, ts in GRAPH.items() if name.startswith(package) for t in ts}
    assert any(t.startswith("llm_nb._present.") for t in targets), package
