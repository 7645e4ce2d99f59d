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

The store is a convenience next to the calls, never a reason for one to fail. When it cannot
be written (a read-only file or directory, a full disk) there is one
:class:`StatsStoreWarning` per process and file, naming both and the cause, and the calls go
on with their rows in memory. A corrupt file (found by ``PRAGMA quick_check`` when the writer
first opens it, or by SQLite on any write) is renamed aside with a timestamp and new rows go
to a fresh file, so nothing is written into it. Reading opens the file read-only, so a
read-only data directory can still be read; a file that cannot be read is a
:class:`StatsStoreError` with one line saying why.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import math
import os
import queue
import sqlite3
import threading
import warnings
import weakref
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .._errors import LLMError
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


#: SQLite's primary result codes for a damaged file.
_CORRUPT_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})


class StatsStoreError(LLMError):
    """The stats store (or a file the stats are exported to) could not be read or written."""


class StatsStoreWarning(UserWarning):
    """The stats store cannot be written; calls go on with their rows in memory."""


def default_path() -> Path:
    env = os.environ.get("LLM_NB_DATA_DIR")
    if env:
        return Path(env) / "calls.sqlite"
    from platformdirs import user_data_dir

    return Path(user_data_dir("llm_nb")) / "calls.sqlite"


#: A queued write: (SQL, values), or an event the writer sets once everything before it is
#: committed (how flush waits).
_Item = tuple[str, list[Any]] | threading.Event


class _Corrupt(Exception):
    """PRAGMA quick_check found damage (it reports it as rows, not as an error)."""


def is_corrupt(exc: BaseException) -> bool:
    if isinstance(exc, _Corrupt):
        return True
    code = getattr(exc, "sqlite_errorcode", None)
    return (
        isinstance(exc, sqlite3.DatabaseError)
        and code is not None
        and code & 0xFF in (_CORRUPT_CODES)
    )


def cause(exc: BaseException) -> str:
    """What went wrong, in a few words (an OSError's text without the path it repeats)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return " ".join(str(exc).split()) or type(exc).__name__


class Store:
    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_path()
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        #: Set when the file is corrupt and could not be moved aside: it is left alone.
        self._frozen = False
        _open_stores.add(self)

    def _connect(self) -> sqlite3.Connection:
        """The writer's connection (opened, checked and set up on first use)."""
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fresh = not self.path.exists() or self.path.stat().st_size == 0
            conn = sqlite3.connect(self.path, check_same_thread=False, timeout=10)
            try:
                if not fresh:
                    problems = [r[0] for r in conn.execute("PRAGMA quick_check(3)")]
                    if problems != ["ok"]:
                        raise _Corrupt("; ".join(str(p) for p in problems))
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                cols = ", ".join(f'"{c}" {_sql_type(c)}' for c in COLUMNS)
                table = f"calls ({cols}, text TEXT, reasoning TEXT)"
                conn.execute(f"CREATE TABLE IF NOT EXISTS {table}")
                have = {row[1] for row in conn.execute("PRAGMA table_info(calls)")}
                for c in COLUMNS:
                    if c not in have:  # a store written before the column existed
                        conn.execute(f'ALTER TABLE calls ADD COLUMN "{c}" {_sql_type(c)}')
                conn.execute("CREATE TABLE IF NOT EXISTS runs (run_id TEXT, facts TEXT)")
            except BaseException:
                conn.close()
                raise
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

    # -- reading ----------------------------------------------------------------------------

    def read(self) -> tuple[list[str], Iterable[tuple[Any, ...]]]:
        """Column names and every row of the calls table (none if there is no file yet)."""
        rows = self._select("SELECT * FROM calls")
        if rows is None:
            return [*COLUMNS, "text", "reasoning"], []
        return rows

    def read_runs(self) -> list[tuple[str, dict[str, Any]]]:
        rows = self._select("SELECT run_id, facts FROM runs")
        return [] if rows is None else [(r, json.loads(f)) for r, f in rows[1]]

    def _select(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]] | None:
        # Rows this process queued for the same file first, whichever Store holds them.
        for store in list(_open_stores):
            if store.path == self.path:
                store.flush()
        if not self.path.exists():
            return None
        try:
            conn = _open_read_only(self.path)
            try:
                cur = conn.execute(sql)
                return [d[0] for d in cur.description], cur.fetchall()
            finally:
                conn.close()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return None
            raise StatsStoreError(
                f"cannot read the stats store {self.path}: {cause(exc)}"
            ) from None
        except sqlite3.DatabaseError as exc:
            hint = "; it is damaged: move it aside (llm_nb then starts a new one)"
            raise StatsStoreError(
                f"cannot read the stats store {self.path}: {cause(exc)}"
                + (hint if is_corrupt(exc) else "")
            ) from None

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
        # Nothing here may raise: a store fault must not kill the writer, nor any call.
        try:
            self._write(writes)
        except Exception as exc:
            self._drop_connection()
            if not is_corrupt(exc):
                self._unwritable(exc)
                return
            if not self._set_aside(exc):
                return
            try:
                self._write(writes)
            except Exception as again:
                self._drop_connection()
                self._unwritable(again)

    def _write(self, writes: list[tuple[str, list[Any]]]) -> None:
        if self._frozen:
            return
        with self._lock:
            conn = self._connect()
            with conn:  # one transaction: committed, or rolled back on error
                for sql, values in writes:
                    conn.execute(sql, values)

    def _drop_connection(self) -> None:
        # The next write opens it again: a freed disk or a fixed permission is picked up.
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(sqlite3.Error):  # broken already: nothing to lose
                    self._conn.close()
                self._conn = None

    def _unwritable(self, exc: BaseException) -> None:
        warn_once(
            (str(self.path), "write"),
            f"llm_nb cannot write its stats store {self.path} ({cause(exc)}); calls go on and "
            "this session's rows stay in memory (llm_nb.stats()); make the file writable or "
            "set LLM_NB_DATA_DIR to a writable directory",
        )

    def _set_aside(self, exc: BaseException) -> bool:
        """Rename a corrupt file (with its WAL) out of the way; False if that failed."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        try:
            os.replace(self.path, aside)
            wal = self.path.with_name(self.path.name + "-wal")
            if wal.exists():
                os.replace(wal, aside.with_name(aside.name + "-wal"))
            self.path.with_name(self.path.name + "-shm").unlink(missing_ok=True)
        except OSError as move_error:
            self._frozen = True
            warn_once(
                (str(self.path), "corrupt"),
                f"llm_nb's stats store {self.path} is damaged ({cause(exc)}) and could not be "
                f"moved aside ({cause(move_error)}); it is left untouched and this session's "
                "rows stay in memory (llm_nb.stats()); move it away to record again",
            )
            return False
        warn_once(
            (str(self.path), "corrupt"),
            f"llm_nb's stats store {self.path} is damaged ({cause(exc)}); it was moved to "
            f"{aside.name} and new calls are recorded in a fresh file",
        )
        return True


def _open_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection. A WAL file in a directory we may not write to can only be
    opened as immutable (SQLite cannot create its shared-memory index there); no writer can
    change it meanwhile, since none can write there either."""
    uri = path.absolute().as_uri()
    try:
        conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, check_same_thread=False)
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1")
        return conn
    except sqlite3.OperationalError:
        if os.access(path.parent, os.W_OK):
            raise
    return sqlite3.connect(f"{uri}?immutable=1", uri=True, check_same_thread=False)


_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


def warn_once(key: tuple[str, str], message: str) -> None:
    """One StatsStoreWarning per (file, kind of fault) per process; repeats go to the log."""
    with _warned_lock:
        first = key not in _warned
        _warned.add(key)
    if not first:
        log.debug(message)
        return
    try:
        warnings.warn(message, StatsStoreWarning, stacklevel=2)
    except Warning:  # warnings made errors: still only a message, on the writer thread
        log.warning(message)


_open_stores: weakref.WeakSet[Store] = weakref.WeakSet()


@atexit.register
def _flush_at_exit() -> None:
    # The writer is a daemon thread, so it would die with rows still queued. Closing then
    # folds the WAL into the file, which a reader without write access can then read whole.
    for store in list(_open_stores):
        if store.flush(timeout=10):
            store._drop_connection()


def _to_sql(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
