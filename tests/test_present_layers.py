"""The presentation packages import downward only: ``_magics`` and ``_widgets`` both stand
on ``_present``, which imports neither, and neither imports the other.

Read from the import statements themselves (``ast``), so an import inside a function, made
lazily to keep ``%load_ext`` instant, counts as much as one at the top of a module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "llm_nb"

#: package -> the sibling packages it must not import (itself included, when it is shared).
FORBIDDEN = {
    "llm_nb._magics": ("llm_nb._widgets",),
    "llm_nb._widgets": ("llm_nb._magics",),
    "llm_nb._present": ("llm_nb._magics", "llm_nb._widgets"),
}


def imported_modules(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path``; for ``from X import a``
    both ``X`` and ``X.a`` (``a`` may be a submodule)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            found.extend((node.lineno, f"{target}.{alias.name}") for alias in node.names)
    return found


def modules_of(package: str) -> list[tuple[Path, str]]:
    folder = PACKAGE.parent.joinpath(*package.split("."))
    out = []
    for path in sorted(folder.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        out.append((path, ".".join(parts)))
    return out


def test_the_reader_sees_relative_imports_as_absolute_modules(tmp_path: Path) -> None:
    """The checker itself: relative imports of every depth, ``from . import x``, and lazy
    imports inside functions all resolve to the module they load."""
    source = tmp_path / "mod.py"
    source.write_text(
        "from .._widgets._parts import styled\n"
        "from . import _render\n"
        "def f():\n    import llm_nb._magics\n    from .._x import y\n",
        encoding="utf-8",
    )
    names = {name for _, name in imported_modules(source, "llm_nb._present.mod")}
    assert {
        "llm_nb._widgets._parts",
        "llm_nb._present._render",
        "llm_nb._magics",
        "llm_nb._x.y",
    } <= names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_presentation_packages_import_downward_only(package: str) -> None:
    modules = modules_of(package)
    assert modules, f"no modules found for {package}"
    crossings = [
        f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}"
        for path, module in modules
        for line, name in imported_modules(path, module)
        for banned in FORBIDDEN[package]
        if name == banned or name.startswith(banned + ".")
    ]
    assert crossings == []


def test_the_shared_layer_is_what_both_use() -> None:
    """Both presentation packages do stand on ``_present`` (the check above would also pass
    if the shared code had simply been copied into each)."""
    for package in ("llm_nb._magics", "llm_nb._widgets"):
        names = {
            name
            for path, module in modules_of(package)
            for _, name in imported_modules(path, module)
        }
        assert any(n.startswith("llm_nb._present.") for n in names), package
