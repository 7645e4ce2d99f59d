"""docs/API.md is the API reference generated from the docstrings: it must match them."""

from __future__ import annotations

import difflib

import llm_nb
from tools.api_reference import PAGE, render


def test_the_committed_page_is_what_the_docstrings_say() -> None:
    written = PAGE.read_text(encoding="utf-8")
    fresh = render()
    diff = "".join(
        list(
            difflib.unified_diff(
                written.splitlines(keepends=True),
                fresh.splitlines(keepends=True),
                "docs/API.md (committed)",
                "docs/API.md (from the docstrings)",
            )
        )[:60]
    )
    assert written == fresh, f"run python tools/api_reference.py\n{diff}"


def test_every_public_name_has_a_section() -> None:
    page = render()
    for name in llm_nb.__all__:
        assert f"\n### {name}\n" in page, name
    assert "[docs/METRICS.md](METRICS.md)" in page
