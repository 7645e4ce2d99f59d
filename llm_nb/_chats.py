"""Named conversations, one kernel's worth: the messages of each, shared by ``%%llm --chat
NAME`` and ``chat_panel(model, conversation=NAME)``.

The session holds one :class:`Conversations` (``Session.conversations``), so a turn asked in
a cell and one asked in a panel continue the same conversation. A turn is kept only when its
answer completed, so an interrupted or failed answer is not fed back to the model as if it
had been said. Turns are also written to the call log (``llm_nb._stats._conversations``),
and a conversation this kernel has not seen yet is read from there, so it survives a restart.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._stats._store import Store
    from ._types import Message


class Conversations:
    """Message histories by conversation name. ``store`` gives the call log to read and write
    (None: recording is off, the conversations stay in memory)."""

    def __init__(self, store: Callable[[], Store | None]) -> None:
        self._store = store
        self._turns: dict[str, list[Message]] = {}

    def history(self, name: str) -> list[Message]:
        """The messages of ``name`` so far (a copy)."""
        return list(self._history(name))

    def messages(self, name: str, prompt: str) -> list[Message]:
        """The history of ``name`` followed by the new user message."""
        from ._types import Message  # on use: loading the extension must stay instant

        return [*self._history(name), Message("user", prompt)]

    def add_turn(self, name: str, prompt: str, answer: str, call_id: str | None = None) -> None:
        from ._stats import _conversations as stored
        from ._types import Message

        self._history(name).extend([Message("user", prompt), Message("assistant", answer)])
        store = self._store()
        if store is not None:
            stored.add(store, name, [("user", prompt, None), ("assistant", answer, call_id)])

    def reset(self, name: str | None = None) -> None:
        """Forget conversation ``name``, or every conversation."""
        from ._stats import _conversations as stored

        if name is None:
            self._turns.clear()
        else:
            self._turns[name] = []
        store = self._store()
        if store is not None:
            stored.reset(store, name)

    def _history(self, name: str) -> list[Message]:
        if name not in self._turns:
            from ._stats import _conversations as stored

            store = self._store()
            self._turns[name] = [] if store is None else stored.load(store, name)
        return self._turns[name]
