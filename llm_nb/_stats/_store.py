"""The on-disk store: every recorded row is appended to SQLite in the user's data directory,
so a kernel restart loses nothing. One table, one row per call, plus the answer text.

SQLite rather than Parquet because rows arrive one at a time and appends must be cheap and
safe with several kernels writing at once (WAL mode). Indexes on run, model, provider and
start time let :meth:`Store.query` filter in SQL rather than after loading every row.

An append is committed before it returns, on the caller's thread, so a call's row is on disk
before the call hands its answer back: a process killed at any moment after that keeps it.
With ``synchronous=NORMAL`` in WAL mode a commit is a write into the WAL without an fsync
(tens of microseconds; benchmarks/store.py), which survives the process dying; only the last
commits before a power loss can be lost, which a measurement log can afford. A writer thread
would batch commits, but it gets no time while the caller's thread is busy, and whatever it
still held died with the process.

The schema is versioned (``PRAGMA user_version``). A store from an older release is migrated
in place when first written, after a copy of it is saved next to it; a store from a newer
release is never written into, and reading it is a :class:`StatsStoreError`.

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
import functools
import json
import logging
import math
import os
import sqlite3
import threading
import warnings
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .._errors import LLMError
from ._row import COLUMNS

log = logging.getLogger("llm_nb.stats")

TEXT_COLUMNS = frozenset({"call_id", "run_id", "provider", "host", "model", "model_reported",
                           "status", "error_type", "finish_reason", "finish_reason_raw",
                           "token_source", "text_sha256", "started_at"})  # fmt: skip


#: What only the store keeps, past the per-call columns: the answer, the session that made
#: the call, the request as sent (JSON, when kept) and the call it replays.
STORE_ONLY = ("text", "reasoning", "session_id", "request", "replay_of")

#: Every column of the calls table.
STORE_COLUMNS = [*COLUMNS, *STORE_ONLY]

#: Columns named, so a store whose older table gained columns at its end still lines up.
_INSERT = "INSERT INTO calls ({}) VALUES ({})".format(
    ", ".join('"' + c + '"' for c in STORE_COLUMNS), ", ".join("?" * len(STORE_COLUMNS))
)

_KNOWN = frozenset({*STORE_COLUMNS, "*"})


@dataclass
class Scan:
    """Rows being read: the column names, how many rows there are, and the rows in chunks."""

    names: list[str]
    total: int
    chunks: Iterator[list[tuple[Any, ...]]]


def _sql_type(column: str) -> str:
    return "TEXT" if column in TEXT_COLUMNS or column in STORE_ONLY else "REAL"


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


#: The schema this release writes. 0: the first releases (no version set; a column may be
#: missing). 1: every column of COLUMNS, the query indexes, the version set. 2: the session,
#: request and replay columns, the conversations table.
SCHEMA_VERSION = 2

#: The indexes :meth:`Store.query` relies on: each filter, then time order within it.
_INDEXES = (
    "CREATE INDEX IF NOT EXISTS calls_run ON calls (run_id, started_at)",
    "CREATE INDEX IF NOT EXISTS calls_model ON calls (model, started_at)",
    "CREATE INDEX IF NOT EXISTS calls_provider ON calls (provider, started_at)",
    "CREATE INDEX IF NOT EXISTS calls_started ON calls (started_at)",
    # Every column summary(model=...) reads: a model's calls are aggregated from the index
    # alone, without a read of each row from all over the table.
    "CREATE INDEX IF NOT EXISTS calls_model_summary ON calls (model, run_id, provider, host, "
    "started_at, warmup, status, ttft_s, tpot_s, e2e_s, output_tps, completion_tokens, "
    "gpu_energy_j, cost_usd)",
    "CREATE INDEX IF NOT EXISTS calls_session ON calls (session_id)",
    "CREATE INDEX IF NOT EXISTS calls_call ON calls (call_id)",
    "CREATE INDEX IF NOT EXISTS runs_run ON runs (run_id)",
    "CREATE INDEX IF NOT EXISTS conversations_name ON conversations (name, seq)",
)

#: A conversation's messages, one row each, in order (``seq``); ``call_id`` is the call
#: that answered, for an assistant message.
_CONVERSATIONS = (
    "CREATE TABLE IF NOT EXISTS conversations (name TEXT, seq INTEGER, role TEXT, "
    "content TEXT, call_id TEXT, at TEXT)"
)

#: A write: (SQL, values).
_Write = tuple[str, list[Any]]

#: How long an append waits for another process's write lock (ours last microseconds).
_BUSY_S = 0.2
_BUSY_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})


class _Newer(Exception):
    """The file was written by a newer release (its schema version is above ours)."""


def newer_message(path: Path, version: int) -> str:
    return (
        f"the stats store {path} was written by a newer llm_nb (schema {version}; this one "
        f"knows up to {SCHEMA_VERSION}); upgrade llm_nb, or set LLM_NB_DATA_DIR to another "
        "directory"
    )


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
        self._pid = os.getpid()
        #: Set when the file is corrupt and could not be moved aside, or is from a newer
        #: release: it is left alone.
        self._frozen = False
        #: Writes that found the file locked by another process, written with the next ones.
        self._pending: list[_Write] = []
        _open_stores.add(self)

    def _connect(self) -> sqlite3.Connection:
        """The writing connection (opened, checked, migrated and set up on first use)."""
        if self._pid != os.getpid():
            # A forked child: the parent's connection is not ours to use, nor to close.
            self._conn, self._pid = None, os.getpid()
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
                self._migrate(conn)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Bring the file to SCHEMA_VERSION, in one transaction that holds the write lock, so
        two kernels opening it at once migrate it once."""
        version = _version(conn)
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise _Newer(newer_message(self.path, version))
        if "calls" in {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}:
            # Outside the write transaction: a backup cannot read a file its own
            # connection holds locked.
            self._back_up(conn, version)
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = _version(conn)  # another process may have migrated it meanwhile
            if version > SCHEMA_VERSION:
                raise _Newer(newer_message(self.path, version))
            if version < SCHEMA_VERSION:
                cols = ", ".join(f'"{c}" {_sql_type(c)}' for c in STORE_COLUMNS)
                conn.execute(f"CREATE TABLE IF NOT EXISTS calls ({cols})")
                have = {row[1] for row in conn.execute("PRAGMA table_info(calls)")}
                for c in STORE_COLUMNS:
                    if c not in have:  # a store written before the column existed
                        conn.execute(f'ALTER TABLE calls ADD COLUMN "{c}" {_sql_type(c)}')
                conn.execute("CREATE TABLE IF NOT EXISTS runs (run_id TEXT, facts TEXT)")
                conn.execute(_CONVERSATIONS)
                for sql in _INDEXES:
                    conn.execute(sql)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.commit()
        except BaseException:
            conn.rollback()
            raise

    def _back_up(self, conn: sqlite3.Connection, version: int) -> None:
        """A consistent copy of the file as it was, next to it, before migrating it."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        target = self.path.with_name(f"{self.path.name}.v{version}-backup-{stamp}")
        copy = sqlite3.connect(target)
        try:
            conn.backup(copy)
        finally:
            copy.close()

    def append(
        self,
        row: Mapping[str, Any],
        text: str,
        reasoning: str,
        extra: Mapping[str, Any] | None = None,
    ) -> bool:
        """Write one call's row (``extra``: values of the other STORE_ONLY columns); True
        when it is committed as this returns. False when the store is faulty (which warns
        once) or another process holds the file locked (the row is written later)."""
        more = {**(extra or {}), "text": text, "reasoning": reasoning}
        values = [_to_sql(row.get(c)) for c in COLUMNS] + [more.get(c) for c in STORE_ONLY]
        return self._commit([(_INSERT, values)])

    def append_run(self, run_id: str, facts: Mapping[str, Any]) -> bool:
        facts_json = json.dumps(facts, default=str)
        return self._commit([("INSERT INTO runs VALUES (?, ?)", [run_id, facts_json])])

    def append_messages(self, name: str, messages: Sequence[tuple[str, str, str | None]]) -> bool:
        """Add (role, content, call id) messages at the end of conversation ``name``, in one
        transaction (numbered after its last, under the write lock)."""
        at = datetime.now(UTC).isoformat()
        sql = (
            "INSERT INTO conversations SELECT ?, coalesce(max(seq), 0) + 1, ?, ?, ?, ? "
            "FROM conversations WHERE name = ?"
        )
        return self._commit([(sql, [name, r, c, i, at, name]) for r, c, i in messages])

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Write what found the file locked, waiting up to ``timeout`` s for the lock; False
        if some is still unwritten. (Every other append is committed when it returns.)"""
        if not self._pending:
            return True
        self._commit([], busy_s=30.0 if timeout is None else timeout)
        return not self._pending

    # -- reading ----------------------------------------------------------------------------

    def read(self) -> tuple[list[str], Sequence[tuple[Any, ...]]]:
        """Column names and every row of the calls table (none if there is no file yet)."""
        return self.query()

    def query(
        self,
        where: Mapping[str, Any] | None = None,
        columns: Sequence[str] | None = None,
        *,
        since: str | None = None,
        until: str | None = None,
        limit: int | None = None,
    ) -> tuple[list[str], Sequence[tuple[Any, ...]]]:
        """Rows of the calls table matching every ``column == value`` in ``where`` and
        ``since <= started_at < until`` (ISO 8601 UTC strings); with ``limit``, the latest
        ``limit`` of them, oldest first. ``columns``: which to read (default all)."""
        with self.scan(where, since=since, until=until, limit=limit, columns=columns) as scan:
            return scan.names, [row for chunk in scan.chunks for row in chunk]

    @contextlib.contextmanager
    def scan(
        self,
        where: Mapping[str, Any] | None = None,
        *,
        since: str | None = None,
        until: str | None = None,
        limit: int | None = None,
        columns: Sequence[str] | None = None,
        chunksize: int = 10_000,
    ) -> Iterator[Scan]:
        """The rows :meth:`query` returns, read ``chunksize`` at a time from one snapshot of
        the file (rows committed meanwhile are not seen), with their count known first, so a
        reader can size its columns once instead of holding every row as Python objects."""
        names = list(columns) if columns is not None else ["*"]
        unknown = [c for c in [*(where or {}), *names] if c not in _KNOWN]
        if unknown:  # names are put into the SQL: only the table's own
            raise ValueError(f"not a column of the stats store: {unknown[0]!r}")
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (where or {}).items():
            clauses.append(f'"{column}" = ?')
            params.append(value)
        if since is not None:
            clauses.append("started_at >= ?")
            params.append(since)
        if until is not None:
            clauses.append("started_at < ?")
            params.append(until)
        select = ", ".join("*" if n == "*" else f'"{n}"' for n in names)
        sql = f"SELECT {select} FROM calls"
        condition = " AND ".join(clauses) or "1"
        if limit is not None:
            # The latest rows (found through the index), then back in time order.
            latest = f"SELECT rowid FROM calls WHERE {condition} ORDER BY started_at DESC LIMIT ?"
            sql += f" WHERE rowid IN ({latest}) ORDER BY started_at"
            params.append(limit)
        elif clauses:
            sql += f" WHERE {condition}"
        with self.reading() as conn:
            if conn is None:
                yield Scan(STORE_COLUMNS if columns is None else names, 0, iter(()))
                return
            conn.execute("BEGIN")  # one snapshot for the count and the rows
            total = conn.execute(f"SELECT count(*) FROM ({sql})", params).fetchone()[0]
            cur = conn.execute(sql, params)
            chunks = iter(functools.partial(cur.fetchmany, max(1, chunksize)), [])
            yield Scan([d[0] for d in cur.description], int(total), chunks)

    def read_runs(self) -> list[tuple[str, dict[str, Any]]]:
        with self.reading() as conn:
            if conn is None:
                return []
            rows = conn.execute("SELECT run_id, facts FROM runs").fetchall()
        return [(r, json.loads(f)) for r, f in rows]

    @contextlib.contextmanager
    def reading(self) -> Iterator[sqlite3.Connection | None]:
        """A read-only connection to the file (None when it has no calls table yet), with
        SQLite's errors, raised while it is in use, turned into one-line StatsStoreErrors."""
        # Rows this process holds back for the same file (it was locked) first.
        for store in list(_open_stores):
            if store.path == self.path:
                store.flush()
        if not self.path.exists():
            yield None
            return
        conn: sqlite3.Connection | None = None
        try:
            conn = _open_read_only(self.path)
            version = _version(conn)
            if version > SCHEMA_VERSION:
                raise StatsStoreError(newer_message(self.path, version))
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            yield conn if "calls" in tables else None
        except sqlite3.DatabaseError as exc:
            hint = "; it is damaged: move it aside (llm_nb then starts a new one)"
            raise StatsStoreError(
                f"cannot read the stats store {self.path}: {cause(exc)}"
                + (hint if is_corrupt(exc) else "")
            ) from None
        finally:
            if conn is not None:
                conn.close()

    def close(self) -> None:
        self.flush()
        self._drop_connection()

    # -- writing ----------------------------------------------------------------------------

    def _commit(self, writes: list[_Write], busy_s: float = _BUSY_S) -> bool:
        """Whether the writes are committed. Nothing here may raise: a store fault must not
        break any call."""
        try:
            return self._write(writes, busy_s)
        except Exception as exc:
            self._drop_connection()
            self._pending = []  # in memory still (the recorder's rows), as the new ones
            if isinstance(exc, _Newer):
                self._frozen = True
                warn_once((str(self.path), "newer"), f"llm_nb cannot write to {exc}; calls go "
                          "on and this session's rows stay in memory (llm_nb.stats())")  # fmt: skip
                return False
            if not is_corrupt(exc):
                self._unwritable(exc)
                return False
            if not self._set_aside(exc):
                return False
            try:
                return self._write(writes)
            except Exception as again:
                self._drop_connection()
                self._unwritable(again)
                return False

    def _write(self, writes: list[_Write], busy_s: float = _BUSY_S) -> bool:
        if self._frozen:
            return False
        with self._lock:
            conn = self._connect()
            batch = self._pending + writes
            # Once the file is known to be locked, later calls do not wait for it again.
            wait_ms = 0 if self._pending and busy_s == _BUSY_S else int(busy_s * 1000)
            conn.execute(f"PRAGMA busy_timeout = {wait_ms}")
            try:
                with conn:  # one transaction: committed, or rolled back on error
                    for sql, values in batch:
                        conn.execute(sql, values)
            except sqlite3.OperationalError as exc:
                if getattr(exc, "sqlite_errorcode", 0) & 0xFF not in _BUSY_CODES:
                    raise
                if not self._pending:
                    log.warning(
                        "llm_nb's stats store %s is locked by another process; rows are kept "
                        "and written when it is free",
                        self.path,
                    )
                self._pending = batch
                return False
            self._pending = []
            return True

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


def _version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


@atexit.register
def _flush_at_exit() -> None:
    # Rows are committed already, but for any that found the file locked. Closing folds the
    # WAL into the file, which a reader without write access can then read whole.
    for store in list(_open_stores):
        store.flush(timeout=10)
        store._drop_connection()


def _to_sql(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
