"""Named conversations for ``%%llm -c NAME``: the turns so far, per name.

A turn is kept only when its answer completed, so an interrupted or failed answer is not fed
back to the model as if it had been said.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .._types import Message


class Conversations:
    """Message histories by conversation name (one kernel session's worth)."""

    def __init__(self) -> None:
        self._turns: dict[str, list[Message]] = {}

    def messages(self, name: str, prompt: str) -> list[Message]:
        """The history of ``name`` followed by the new user message."""
        from .._types import Message  # on use: loading the extension must stay instant

        return [*self._turns.get(name, ()), Message("user", prompt)]

    def add_turn(self, name: str, prompt: str, answer: str) -> None:
        from .._types import Message

        self._turns.setdefault(name, []).extend(
            [Message("user", prompt), Message("assistant", answer)]
        )

    def reset(self, name: str | None = None) -> None:
        """Forget conversation ``name``, or every conversation."""
        if name is None:
            self._turns.clear()
        else:
            self._turns.pop(name, None)
