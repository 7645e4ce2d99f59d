"""The mutation list (tests/mutations.py) still matches the code and the tests: each break's
text occurs exactly once in its file, and each test it names is in a test file that exists and
defines it. Code and tests move; a stale entry would break nothing and catch nothing."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.mutations import MUTATIONS, REPO, Mutation

pytestmark = pytest.mark.doubles  # checks a test instrument, not llm_nb


@pytest.mark.parametrize("mutation", MUTATIONS, ids=[m.name for m in MUTATIONS])
def test_each_break_applies_once(mutation: Mutation) -> None:
    path = REPO / mutation.path
    assert path.is_file(), f"{mutation.path} is gone"
    occurs = path.read_text().count(mutation.old)
    assert occurs == 1, f"its text occurs {occurs} times in {mutation.path}"


def test_each_named_test_exists() -> None:
    missing = []
    for m in MUTATIONS:
        for node in (*m.fast, *m.server):
            file, _, name = node.partition("::")
            path = REPO / file
            if not path.is_file():
                missing.append(f"{m.name}: {file}")
                continue
            name = name.partition("[")[0]
            if name and name not in defined(path):
                missing.append(f"{m.name}: {node}")
    assert not missing, missing


def defined(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
