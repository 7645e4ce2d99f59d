"""Named conversations kept in the call log, so ``%%llm --chat NAME`` continues one after
the kernel restarts, and :func:`conversations` lists them.

The log is only appended to: each message is a row of the ``conversations`` table, numbered
in its conversation, with the id of the call that answered. Forgetting a conversation adds a
``reset`` row; what comes after the latest one is the conversation now. The rows go to the
store of the session's recorder, so ``LLM_NB_RECORD=0`` keeps conversations in memory only.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from .._types import Message
    from ._store import Store

#: The role of the row that marks a conversation forgotten.
RESET = "reset"

_CURRENT = (
    "SELECT role, content, call_id FROM conversations WHERE name = ? AND seq > "
    "(SELECT coalesce(max(seq), 0) FROM conversations WHERE name = ? AND role = 'reset') "
    "ORDER BY seq"
)


def _has_table(conn: sqlite3.Connection) -> bool:
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    return "conversations" in names


def current(store: Store, name: str) -> list[tuple[str, str, str | None]]:
    """(role, content, call id) of each message of conversation ``name`` since it was last
    reset, in order."""
    with store.reading() as conn:
        if conn is None or not _has_table(conn):
            return []
        return [(r, c, i) for r, c, i in conn.execute(_CURRENT, [name, name])]


def load(store: Store, name: str) -> list[Message]:
    from .._types import Message

    return [Message(role, content) for role, content, _ in current(store, name)]  # type: ignore[arg-type]


def add(store: Store, name: str, messages: Sequence[tuple[str, str, str | None]]) -> None:
    store.append_messages(name, messages)


def reset(store: Store, name: str | None) -> None:
    """Mark conversation ``name`` (None: every one) forgotten."""
    if name is not None:
        names = [name]
    else:
        names = []
        with store.reading() as conn:
            if conn is not None and _has_table(conn):
                names = [n for (n,) in conn.execute("SELECT DISTINCT name FROM conversations")]
    for n in names:
        store.append_messages(n, [(RESET, "", None)])


def conversations(path: Path | None = None) -> pd.DataFrame:
    """Every stored conversation that has messages since it was last reset: ``name``,
    ``messages``, ``turns`` (questions asked), ``started_at`` and ``updated_at`` (UTC),
    and ``model``, the model of its latest answer; the latest updated last."""
    import pandas as pd

    from ._store import Store

    sql = (
        "WITH last_reset AS (SELECT name, max(seq) AS seq FROM conversations "
        "WHERE role = 'reset' GROUP BY name), "
        "live AS (SELECT m.* FROM conversations m LEFT JOIN last_reset r ON r.name = m.name "
        "WHERE m.seq > coalesce(r.seq, 0) AND m.role != 'reset') "
        "SELECT name, count(*) AS messages, sum(role = 'user') AS turns, "
        "min(at) AS started_at, max(at) AS updated_at, "
        "(SELECT c.model FROM live l JOIN calls c ON c.call_id = l.call_id "
        " WHERE l.name = live.name ORDER BY l.seq DESC LIMIT 1) AS model "
        "FROM live GROUP BY name ORDER BY max(at), name"
    )
    names = ["name", "messages", "turns", "started_at", "updated_at", "model"]
    rows: list[tuple[object, ...]] = []
    with Store(path).reading() as conn:
        if conn is not None and _has_table(conn):
            rows = conn.execute(sql).fetchall()
    df = pd.DataFrame(rows, columns=names)
    for col in ("started_at", "updated_at"):
        df[col] = pd.to_datetime(df[col], utc=True, format="ISO8601")
    return df
