"""Stats recording for tests that talk to fault servers."""

from __future__ import annotations

import pytest

from llm_nb import _observers
from llm_nb._stats import Recorder
from llm_nb._types import ChatResponse


class QuietRecorder(Recorder):
    """The stats recorder minus its background fetch of server facts (``/props``,
    ``/api/show``): that fetch would send extra requests to a fault server, through the
    registry's own providers, and leave their connections open."""

    def _schedule_server_facts(self, record: ChatResponse) -> None:
        pass


def only_recorder(monkeypatch: pytest.MonkeyPatch) -> QuietRecorder:
    """Make an in-memory QuietRecorder the only call observer until the test ends (the
    default recorder, and its store, stay out of it)."""
    rec = QuietRecorder(None, None)
    monkeypatch.setattr(_observers, "_observers", [rec])
    monkeypatch.setattr(_observers, "_default_installed", True)
    return rec
