"""The session's rows that the store did not take, kept in memory up to a cap.

The store is where a session's rows live: the recorder writes each one there and reads them
back by its session id, so a long session holds nothing per call. Only a row the store
could not take (no store, a read-only or damaged file, another process holding the lock)
is kept here, with its answer text, so ``stats()`` still shows it. A store that stays
unwritable for a long session would make that list grow without end: past the cap the
oldest rows go, with one warning.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ._row import COLUMNS
from ._store import TEXT_COLUMNS, warn_once

#: Rows kept in memory while the store cannot be written (about 3 KB each).
MEMORY_CAP = 10_000


class Unstored:
    """Rows by call id, oldest first, at most ``cap`` of them."""

    def __init__(self, cap: int | None = None) -> None:
        self.cap = MEMORY_CAP if cap is None else cap
        self._rows: OrderedDict[str, tuple[dict[str, Any], str, str]] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, row: dict[str, Any], text: str, reasoning: str) -> None:
        with self._lock:
            self._rows[row["call_id"]] = (row, text, reasoning)
            dropped = len(self._rows) > self.cap
            while len(self._rows) > self.cap:
                self._rows.popitem(last=False)
        if dropped:
            warn_once(
                ("memory", "cap"),
                f"llm_nb's stats store cannot take this session's calls, and it keeps at most "
                f"the latest {self.cap:,} of them in memory: older ones are left out of "
                "llm_nb.stats(); make the store writable (or set LLM_NB_DATA_DIR) to keep all",
            )

    def rows(self) -> list[dict[str, Any]]:
        with self._lock:
            return [row for row, _, _ in self._rows.values()]

    def answer(self, call_id: str) -> tuple[str, str] | None:
        """(text, reasoning) of a kept call, or None."""
        with self._lock:
            kept = self._rows.get(call_id)
        return None if kept is None else (kept[1], kept[2])

    def clear(self) -> None:
        with self._lock:
            self._rows.clear()


def as_row(names: Sequence[str], values: Sequence[Any]) -> dict[str, Any]:
    """A row read from the store in the form the recorder made it: missing numbers NaN,
    flags bools, ``started_at`` a datetime."""
    row = dict(zip(names, values, strict=True))
    for name in COLUMNS:
        value = row.get(name)
        if name == "started_at":
            row[name] = datetime.fromisoformat(value) if isinstance(value, str) else value
        elif name in ("stream", "warmup"):
            row[name] = bool(value)
        elif name not in TEXT_COLUMNS and value is None:
            row[name] = math.nan
    return row
