from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def isolated_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty cache dir and no env overrides, so resolution order can be tested."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("LLM_NB_CACHE_DIR", str(cache))
    for name in (
        "LLAMA_SERVER_BIN",
        "LLM_NB_SERVER",
        "LLM_NB_MODEL",
        "LLM_NB_LLAMA_SDIST",
        "LLM_NB_MODEL_WHEEL",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-path"))
    return cache
