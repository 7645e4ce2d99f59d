"""The on-disk store: every recorded row is appended to SQLite in the user's data directory,
so a kernel restart loses nothing. One table, one row per call, plus the answer text.

SQLite rather than Parquet because rows arrive one at a time and appends must be cheap and
safe with several kernels writing at once (WAL mode).

Appends return at once: a writer thread commits what is queued, several rows per
transaction when they come faster than a commit. Writing on the caller's thread cost
milliseconds per call (an fsync per commit), on the event loop, between one call and the next.
Reads, :meth:`Store.flush` and :meth:`Store.close` wait for the queue first, and so does
interpreter exit. ``synchronous=NORMAL`` in WAL mode survives the process crashing; only
the last commits before a power loss can be lost, which a measurement log can afford.
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import os
import queue
import sqlite3
import threading
import weakref
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from ._row import COLUMNS

log = logging.getLogger("llm_nb.stats")

_TEXT_COLUMNS = frozenset({"call_id", "run_id", "provider", "host", "model", "model_reported",
                           "status", "error_type", "finish_reason", "finish_reason_raw",
                           "token_source", "text_sha256", "started_at"})  # fmt: skip


#: Columns named, so a store whose older table gained columns at its end still lines up.
_INSERT = "INSERT INTO calls ({}, text, reasoning) VALUES ({})".format(
    ", ".join('"' + c + '"' for c in COLUMNS), ", ".join("?" * (len(COLUMNS) + 2))
)


def _sql_type(column: str) -> str:
    return "TEXT" if column in _TEXT_COLUMNS else "REAL"


def default_path() -> Path:
    env = os.environ.get("LLM_NB_DATA_DIR")
    if env:
        return Path(env) / "calls.sqlite"
    from platformdirs import user_data_dir

    return Path(user_data_dir("llm_nb")) / "calls.sqlite"


#: A queued write: (SQL, values), or an event the writer sets once everything before it is
#: committed (how flush waits).
_Item = tuple[str, list[Any]] | threading.Event


class Store:
    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_path()
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        _open_stores.add(self)

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, check_same_thread=False, timeout=10)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            cols = ", ".join(f'"{c}" {_sql_type(c)}' for c in COLUMNS)
            conn.execute(f"CREATE TABLE IF NOT EXISTS calls ({cols}, text TEXT, reasoning TEXT)")
            have = {row[1] for row in conn.execute("PRAGMA table_info(calls)")}
            for c in COLUMNS:
                if c not in have:  # a store written before the column existed
                    conn.execute(f'ALTER TABLE calls ADD COLUMN "{c}" {_sql_type(c)}')
            conn.execute("CREATE TABLE IF NOT EXISTS runs (run_id TEXT, facts TEXT)")
            self._conn = conn
        return self._conn

    def append(self, row: Mapping[str, Any], text: str, reasoning: str) -> None:
        values = [_to_sql(row.get(c)) for c in COLUMNS] + [text, reasoning]
        self._put((_INSERT, values))

    def append_run(self, run_id: str, facts: Mapping[str, Any]) -> None:
        self._put(("INSERT INTO runs VALUES (?, ?)", [run_id, json.dumps(facts, default=str)]))

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until every row appended so far is committed; False if that took too long."""
        writer = self._writer
        if writer is None or not writer.is_alive():
            return True
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def read(self) -> tuple[list[str], Iterable[tuple[Any, ...]]]:
        self.flush()
        with self._lock:
            cur = self._connect().execute("SELECT * FROM calls")
            names = [d[0] for d in cur.description]
            return names, cur.fetchall()

    def read_runs(self) -> list[tuple[str, dict[str, Any]]]:
        self.flush()
        with self._lock:
            rows = self._connect().execute("SELECT run_id, facts FROM runs").fetchall()
        return [(r, json.loads(f)) for r, f in rows]

    def close(self) -> None:
        self.flush()
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- the writer thread ------------------------------------------------------------------

    def _put(self, item: _Item) -> None:
        self._queue.put(item)
        writer = self._writer
        if writer is None or not writer.is_alive():
            # First write, or the first in a forked child (threads do not survive a fork).
            with self._lock:
                if self._writer is writer:
                    self._writer = threading.Thread(
                        target=self._write_forever, name="llm_nb-stats-writer", daemon=True
                    )
                    self._writer.start()

    def _write_forever(self) -> None:
        while True:
            batch = [self._queue.get()]
            # Everything already waiting goes in the same transaction: one commit for many.
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            writes = [item for item in batch if not isinstance(item, threading.Event)]
            if writes:
                self._commit(writes)
            for item in batch:
                if isinstance(item, threading.Event):
                    item.set()

    def _commit(self, writes: list[tuple[str, list[Any]]]) -> None:
        try:
            with self._lock:
                conn = self._connect()
                with conn:  # one transaction: committed, or rolled back on error
                    for sql, values in writes:
                        conn.execute(sql, values)
        except Exception as exc:  # a full disk must not kill the writer, nor any call
            log.warning("llm_nb could not write the stats store %s: %s", self.path, exc)


_open_stores: weakref.WeakSet[Store] = weakref.WeakSet()


@atexit.register
def _flush_at_exit() -> None:
    # The writer is a daemon thread, so it would die with rows still queued.
    for store in list(_open_stores):
        store.flush(timeout=10)


def _to_sql(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
