"""Fixtures of the evaluation tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_nb._registry import Registry
from llm_nb._session import Session


@pytest.fixture
def reg(session: Session, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Registry:
    """The registry of a fresh session, made the default for the test, and an empty data
    dir for saved runs."""
    monkeypatch.setenv("LLM_NB_DATA_DIR", str(tmp_path))
    return session.registry
