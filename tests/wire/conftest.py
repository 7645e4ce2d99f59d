from __future__ import annotations

import pytest

from llm_nb._session import Session
from llm_nb._stats import Recorder


@pytest.fixture
def rec(session: Session) -> Recorder:
    """The only call observer during the test: the in-memory recorder of a session of the
    test's own."""
    return session.recorder
