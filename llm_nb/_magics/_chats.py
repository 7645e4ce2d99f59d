"""Named conversations for ``%%llm -c NAME``: the session's (``llm_nb._chats``), which the
chat panels share."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import _chats

if TYPE_CHECKING:
    from .._stats._store import Store


def _store() -> Store | None:
    """The call log of the default session's recorder (None when recording is off)."""
    from .._session import default_session

    session = default_session()
    return session.recorder.store if session.recording else None


class Conversations(_chats.Conversations):
    """Conversations of their own on the default session's call log: what a kernel that has
    just started has (the magics use the session's, :func:`shared`)."""

    def __init__(self) -> None:
        super().__init__(_store)


def shared() -> _chats.Conversations:
    """The default session's conversations: the ones ``chat_panel(conversation=...)`` uses."""
    from .._session import default_session

    return default_session().conversations
