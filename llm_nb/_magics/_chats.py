"""Named conversations for ``%%llm -c NAME``: the turns so far, per name.

A turn is kept only when its answer completed, so an interrupted or failed answer is not fed
back to the model as if it had been said. Turns are also written to the call log, and a
conversation this kernel has not seen yet is read from there, so it survives a restart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .._stats._store import Store
    from .._types import Message


def _store() -> Store | None:
    """The call log of the default session's recorder (None when recording is off)."""
    from .._session import default_session

    session = default_session()
    return session.recorder.store if session.recording else None


class Conversations:
    """Message histories by conversation name (one kernel session's worth)."""

    def __init__(self) -> None:
        self._turns: dict[str, list[Message]] = {}

    def messages(self, name: str, prompt: str) -> list[Message]:
        """The history of ``name`` followed by the new user message."""
        from .._types import Message  # on use: loading the extension must stay instant

        return [*self._history(name), Message("user", prompt)]

    def add_turn(self, name: str, prompt: str, answer: str, call_id: str | None = None) -> None:
        from .._stats import _conversations as stored
        from .._types import Message

        self._history(name).extend([Message("user", prompt), Message("assistant", answer)])
        store = _store()
        if store is not None:
            stored.add(store, name, [("user", prompt, None), ("assistant", answer, call_id)])

    def reset(self, name: str | None = None) -> None:
        """Forget conversation ``name``, or every conversation."""
        from .._stats import _conversations as stored

        if name is None:
            self._turns.clear()
        else:
            self._turns[name] = []
        store = _store()
        if store is not None:
            stored.reset(store, name)

    def _history(self, name: str) -> list[Message]:
        if name not in self._turns:
            from .._stats import _conversations as stored

            store = _store()
            self._turns[name] = [] if store is None else stored.load(store, name)
        return self._turns[name]
