"""Fixtures of the stats tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from llm_nb._session import Session, use_session
from llm_nb._stats import Recorder
from llm_nb._stats._store import Store


class Sampler:
    """Records acquire/release and answers a fixed window."""

    def __init__(self) -> None:
        self.active = 0
        self.windows: list[tuple[int, int]] = []

    def acquire(self) -> None:
        self.active += 1

    def release(self) -> None:
        self.active -= 1

    def window(self, t0: int, t1: int) -> dict[str, float]:
        self.windows.append((t0, t1))
        return {"cpu_pct": 42.0, "rss_mb": 100.0}


@pytest.fixture
def rec(tmp_path: Path) -> Iterator[Recorder]:
    """The recorder (with its store and a stand-in sampler) of a session of the test's own,
    made the default while the test runs."""
    r = Recorder(Store(tmp_path / "calls.sqlite"), Sampler())  # type: ignore[arg-type]
    with Session(recorder=r) as s, use_session(s):
        yield r
    assert r.store is not None
    r.store.close()
