"""The on-disk store: every recorded row is appended to SQLite in the user's data directory,
so a kernel restart loses nothing. One table, one row per call, plus the answer text.

SQLite rather than Parquet because rows arrive one at a time and appends must be cheap and
safe with several kernels writing at once (WAL mode).
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from ._row import COLUMNS

_TEXT_COLUMNS = frozenset({"call_id", "run_id", "provider", "host", "model", "model_reported",
                           "status", "error_type", "finish_reason", "token_source",
                           "text_sha256", "started_at"})  # fmt: skip


def default_path() -> Path:
    env = os.environ.get("LLM_NB_DATA_DIR")
    if env:
        return Path(env) / "calls.sqlite"
    from platformdirs import user_data_dir

    return Path(user_data_dir("llm_nb")) / "calls.sqlite"


class Store:
    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_path()
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, check_same_thread=False, timeout=10)
            conn.execute("PRAGMA journal_mode=WAL")
            cols = ", ".join(f'"{c}" {"TEXT" if c in _TEXT_COLUMNS else "REAL"}' for c in COLUMNS)
            conn.execute(f"CREATE TABLE IF NOT EXISTS calls ({cols}, text TEXT, reasoning TEXT)")
            conn.execute("CREATE TABLE IF NOT EXISTS runs (run_id TEXT, facts TEXT)")
            self._conn = conn
        return self._conn

    def append(self, row: Mapping[str, Any], text: str, reasoning: str) -> None:
        values = [_to_sql(row.get(c)) for c in COLUMNS] + [text, reasoning]
        marks = ", ".join("?" * len(values))
        with self._lock:
            conn = self._connect()
            conn.execute(f"INSERT INTO calls VALUES ({marks})", values)
            conn.commit()

    def append_run(self, run_id: str, facts: Mapping[str, Any]) -> None:
        with self._lock:
            conn = self._connect()
            conn.execute("INSERT INTO runs VALUES (?, ?)", (run_id, json.dumps(facts, default=str)))
            conn.commit()

    def read(self) -> tuple[list[str], Iterable[tuple[Any, ...]]]:
        with self._lock:
            cur = self._connect().execute("SELECT * FROM calls")
            names = [d[0] for d in cur.description]
            return names, cur.fetchall()

    def read_runs(self) -> list[tuple[str, dict[str, Any]]]:
        with self._lock:
            rows = self._connect().execute("SELECT run_id, facts FROM runs").fetchall()
        return [(r, json.loads(f)) for r, f in rows]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _to_sql(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
