"""docs/METRICS.md defines every column llm_nb records, and nothing it records goes undefined."""

from __future__ import annotations

import re
from pathlib import Path

from llm_nb._stats._row import COLUMNS

DOC = Path(__file__).resolve().parents[1] / "docs" / "METRICS.md"


def _defined_columns() -> set[str]:
    """Every name in the first cell of the per-call table's rows (a cell may list several)."""
    text = DOC.read_text(encoding="utf-8")
    table = text.split("## One row per call", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in table.splitlines():
        if line.startswith("| ") and not line.startswith("| column") and "---" not in line:
            names.update(re.findall(r"[a-z][a-z0-9_]*", line.split("|")[1]))
    return names


def test_every_recorded_column_is_defined() -> None:
    missing = [c for c in COLUMNS if c not in _defined_columns()]
    assert not missing, f"columns recorded but not defined in docs/METRICS.md: {missing}"


def test_every_defined_column_is_recorded() -> None:
    extra = sorted(_defined_columns() - set(COLUMNS))
    assert not extra, f"docs/METRICS.md defines columns llm_nb does not record: {extra}"


def test_every_mention_points_at_the_file_in_docs() -> None:
    """README, notebooks, docs, benchmarks, docstrings and help texts name docs/METRICS.md
    (or link it relatively from docs/), never a METRICS.md the repository does not have."""
    root = DOC.parents[1]
    files = [
        root / "README.md",
        *root.glob("docs/*.md"),
        *root.glob("notebooks/*.ipynb"),
        *root.glob("benchmarks/*.*"),
        *root.glob("llm_nb/**/*.py"),
    ]
    bare = [
        f"{path.relative_to(root)}: {line.strip()}"
        for path in files
        for line in path.read_text(encoding="utf-8").splitlines()
        if re.search(r"(?<![/\w(])METRICS\.md", line)
    ]
    assert len(files) > 50 and not bare, "\n".join(bare)
