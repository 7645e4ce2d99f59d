"""llm_nb uses only the public API of the packages it builds on: no private module imported,
no private attribute of theirs read or written, no object's class swapped.

A private name here is one starting with a single underscore. The check is static (ast), so it
judges attribute names, not types: ``obj._name`` is a use of another package's private
attribute when llm_nb itself never defines ``_name`` and one of those packages does. llm_nb's
own private names (``self._client``, ``other._items``) are therefore never reported, and
neither is a name that only the standard library defines.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "llm_nb"
THEIRS = (
    "httpx",
    "httpcore",
    "anyio",
    "IPython",
    "ipykernel",
    "ipywidgets",
    "traitlets",
    "pandas",
    "comm",
    "jupyter_client",
)


def is_private(name: str) -> bool:
    # _name_ is a protocol name, public by contract: IPython's _repr_mimebundle_,
    # _ipython_display_, _repr_html_; enum's _missing_.
    protocol = len(name) > 2 and name.endswith("_") and not name.endswith("__")
    return name.startswith("_") and not name.startswith("__") and not protocol


def defined_names(tree: ast.AST) -> set[str]:
    """Every name a module defines: functions, classes, variables, attributes it assigns
    (``x._name = ...``), ``__slots__`` entries and parameters."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.alias):
            names.add(node.asname or node.name.split(".")[0])
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__slots__" for t in node.targets
        ):
            names.update(
                c.value
                for c in ast.walk(node.value)
                if isinstance(c, ast.Constant) and isinstance(c.value, str)
            )
    return names


def ours() -> dict[Path, ast.Module]:
    return {p: ast.parse(p.read_text(), str(p)) for p in sorted(PACKAGE.rglob("*.py"))}


@cache
def their_source() -> str:
    """The text of every module of the packages in THEIRS that is installed."""
    parts = []
    for name in THEIRS:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            continue
        for root in spec.submodule_search_locations:
            parts.extend(p.read_text(errors="replace") for p in Path(root).rglob("*.py"))
    return "\n".join(parts)


def theirs_define(name: str) -> bool:
    pattern = rf"(?m)(\b(def|class)\s+{name}\b|\.{name}\s*(:[^=\n]*)?=[^=]|^\s*{name}\s*[:=])"
    return re.search(pattern, their_source()) is not None


def violations(tree: ast.Module, own: set[str], where: str) -> Iterator[str]:
    def theirs(module: str) -> bool:
        return module.split(".")[0] in THEIRS

    # Modules of other packages (the standard library's os, sys...): their privates are
    # not what this test is about.
    others = {
        alias.asname or alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
        if not theirs(alias.name)
    }

    for node in ast.walk(tree):
        line = f"{where}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            for alias in node.names:
                if theirs(alias.name) and any(map(is_private, alias.name.split("."))):
                    yield f"{line}: imports private module {alias.name}"
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if not theirs(node.module):
                continue
            if any(map(is_private, node.module.split("."))):
                yield f"{line}: imports from private module {node.module}"
            for alias in node.names:
                if is_private(alias.name):
                    yield f"{line}: imports private name {node.module}.{alias.name}"
        elif isinstance(node, ast.Attribute):
            if node.attr == "__class__" and isinstance(node.ctx, ast.Store):
                yield f"{line}: swaps an object's class (__class__ = ...)"
            elif (
                is_private(node.attr)
                and node.attr not in own
                and not (isinstance(node.value, ast.Name) and node.value.id in others)
                and theirs_define(node.attr)
            ):
                yield f"{line}: uses private attribute .{node.attr} of another package"
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            # getattr(x, "_name") / setattr(...) / hasattr(...) and import_module("pkg._mod")
            args = [a.value for a in node.args if isinstance(a, ast.Constant)]
            texts = [a for a in args if isinstance(a, str)]
            if node.func.id in {"getattr", "setattr", "hasattr", "delattr"}:
                for text in texts:
                    if is_private(text) and text not in own and theirs_define(text):
                        yield f"{line}: {node.func.id}() of private attribute {text}"
                if node.func.id == "setattr" and "__class__" in texts:
                    yield f"{line}: swaps an object's class (setattr __class__)"
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in {"import_module", "__import__"}:
                for arg in node.args:
                    if (
                        isinstance(arg, ast.Constant)
                        and isinstance(arg.value, str)
                        and theirs(arg.value)
                        and any(map(is_private, arg.value.split(".")))
                    ):
                        yield f"{line}: imports private module {arg.value}"


def test_llm_nb_uses_no_private_names_of_other_packages() -> None:
    trees = ours()
    own = set().union(*(defined_names(t) for t in trees.values()))
    found = [
        v
        for path, tree in trees.items()
        for v in violations(tree, own, str(path.relative_to(PACKAGE.parent)))
    ]
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from httpcore._async.interfaces import X", "private module httpcore._async"),
        ("import httpx._transports.default", "private module httpx._transports"),
        ("from IPython.core import _thing", "private name IPython.core._thing"),
        ("pool = transport._pool", "private attribute ._pool"),
        ("t._pool._requests.clear()", "private attribute ._requests"),
        ("n = getattr(pool, '_max_connections')", "getattr() of private attribute"),
        ("pool.__class__ = Lean", "swaps an object's class"),
        ("setattr(pool, '__class__', Lean)", "swaps an object's class"),
        ("importlib.import_module('pandas._libs.lib')", "private module pandas._libs"),
    ],
)
def test_the_check_finds_each_kind_of_use(source: str, expected: str) -> None:
    found = list(violations(ast.parse(source), set(), "x.py"))
    assert any(expected in v for v in found), found


def test_the_check_leaves_our_own_privates_alone() -> None:
    source = "self._pool = 1\nother._pool.get()\nimport httpx, os\nos._exit(0)\nx._repr_html_()"
    tree = ast.parse(source)
    assert list(violations(tree, defined_names(tree), "x.py")) == []
