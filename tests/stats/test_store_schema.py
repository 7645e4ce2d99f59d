"""The store's schema version, and history() / summary() filtered in the store.

A store from the previous release (no version, no finish_reason_raw column) opens in this
one, migrated in place after a copy is saved; a store from a newer release is neither
written into nor read, with one line saying why.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import llm_nb
from llm_nb import LLMError
from llm_nb._errors import InvalidOptionError
from llm_nb._stats import Recorder, StatsStoreError, StatsStoreWarning, call_row
from llm_nb._stats._frames import recorded
from llm_nb._stats._row import COLUMNS
from llm_nb._stats._store import SCHEMA_VERSION, Store
from llm_nb._types import CallTrace, ChatResponse

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def record(i: int, *, run: str = "r", model: str = "m", provider: str = "openai") -> ChatResponse:
    trace = CallTrace(t_send_ns=0, t_end_ns=10**8, token_times_ns=[10**7, 5 * 10**7])
    trace.started_at = T0 + timedelta(minutes=i)
    r = ChatResponse(provider, "127.0.0.1:9", model, text=f"t{i}", call_id=f"c{i}", run_id=run)
    r.trace = trace
    r.status = "ok"
    return r


def fill(path: Path, n: int) -> None:
    store = Store(path)
    for i in range(n):
        store.append(
            call_row(record(i, run=f"r{i % 3}", model=f"m{i % 2}", provider="p" if i < 5 else "q")),
            f"t{i}",
            "",
        )
    store.close()


def old_store(path: Path) -> None:
    """A store as the previous release wrote it: no user_version, no finish_reason_raw."""
    cols = [c for c in COLUMNS if c != "finish_reason_raw"]
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"CREATE TABLE calls ({', '.join(cols)}, text TEXT, reasoning TEXT)")
    conn.execute("CREATE TABLE runs (run_id TEXT, facts TEXT)")
    row = call_row(record(0))
    values = [row[c] if not isinstance(row[c], datetime) else row[c].isoformat() for c in cols]
    conn.execute(f"INSERT INTO calls VALUES ({', '.join('?' * (len(cols) + 2))})",
                 [*values, "old answer", ""])  # fmt: skip
    conn.commit()
    conn.close()


def append_five(store: Store) -> None:
    for i in range(5):
        store.append(call_row(record(10 + i)), "x", "")


def version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


# -- schema version ----------------------------------------------------------------------


def test_a_new_store_carries_the_schema_version(tmp_path: Path) -> None:
    fill(tmp_path / "calls.sqlite", 1)
    assert version(tmp_path / "calls.sqlite") == SCHEMA_VERSION >= 1
    assert not [p for p in tmp_path.iterdir() if "backup" in p.name]


def test_a_store_from_the_previous_release_is_migrated_in_place_with_a_backup(
    tmp_path: Path,
) -> None:
    path = tmp_path / "calls.sqlite"
    old_store(path)
    store = Store(path)
    store.append(call_row(record(1)), "new answer", "")
    store.close()
    assert version(path) == SCHEMA_VERSION
    hist = llm_nb.history(path)
    assert list(hist["text"]) == ["old answer", "new answer"]
    assert "finish_reason_raw" in hist.columns
    backups = [p for p in tmp_path.iterdir() if p.name.startswith("calls.sqlite.v0-backup-")]
    assert len(backups) == 1
    assert version(backups[0]) == 0
    conn = sqlite3.connect(backups[0])
    try:
        assert conn.execute("SELECT text FROM calls").fetchall() == [("old answer",)]
    finally:
        conn.close()
    # Opened again: already current, no second backup.
    fill(path, 1)
    assert len([p for p in tmp_path.iterdir() if "backup" in p.name]) == 1


def test_a_store_from_a_newer_release_is_not_written_and_reading_it_is_one_line(
    tmp_path: Path,
) -> None:
    path = tmp_path / "calls.sqlite"
    fill(path, 2)
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    before = path.read_bytes()
    store = Store(path)
    with pytest.warns(StatsStoreWarning) as caught:
        append_five(store)
    store.close()
    messages = [str(w.message) for w in caught.list if w.category is StatsStoreWarning]
    assert len(messages) == 1 and "\n" not in messages[0], messages
    assert "newer llm_nb" in messages[0] and str(path) in messages[0]
    assert path.read_bytes() == before
    with pytest.raises(StatsStoreError) as err:
        llm_nb.history(path)
    assert isinstance(err.value, LLMError)
    assert "\n" not in str(err.value) and "newer llm_nb" in str(err.value)
    assert f"schema {SCHEMA_VERSION + 1}" in str(err.value)


# -- filters pushed into the store -------------------------------------------------------


def ids(df: Any) -> list[str]:
    return list(df["call_id"])


def test_history_filters_by_run_model_provider_time_and_limit(tmp_path: Path) -> None:
    path = tmp_path / "calls.sqlite"
    fill(path, 12)
    assert ids(llm_nb.history(path, run="r1")) == ["c1", "c4", "c7", "c10"]
    assert ids(llm_nb.history(path, model="m0", limit=2)) == ["c8", "c10"]
    assert ids(llm_nb.history(path, provider="p", run="r0")) == ["c0", "c3"]
    since, until = T0 + timedelta(minutes=3), T0 + timedelta(minutes=6)
    assert ids(llm_nb.history(path, since=since, until=until)) == ["c3", "c4", "c5"]
    assert ids(llm_nb.history(path, since=since.isoformat(), limit=1)) == ["c11"]
    assert len(llm_nb.history(path)) == 12
    assert ids(llm_nb.history(path, run="nope")) == []
    assert llm_nb.history(path, run="r2")["text"].tolist() == ["t2", "t5", "t8", "t11"]


@pytest.mark.parametrize(
    ("option", "value", "words"),
    [
        ("limit", -1, "limit"),
        ("limit", True, "limit"),
        ("since", "yesterday", "since"),
        ("until", 3, "until"),
        ("run", 7, "run"),
    ],
)
def test_history_bad_filters_are_one_line_errors(
    tmp_path: Path, option: str, value: Any, words: str
) -> None:
    with pytest.raises(InvalidOptionError) as err:
        llm_nb.history(tmp_path / "calls.sqlite", **{option: value})
    assert words in str(err.value) and "\n" not in str(err.value)


def test_the_filters_use_the_indexes(tmp_path: Path) -> None:
    path = tmp_path / "calls.sqlite"
    fill(path, 3)
    conn = sqlite3.connect(path)
    try:
        for column, index in (("run_id", "calls_run"), ("model", "calls_model"),
                              ("provider", "calls_provider")):  # fmt: skip
            plan = conn.execute(
                f"EXPLAIN QUERY PLAN SELECT * FROM calls WHERE {column} = ? "
                "ORDER BY started_at DESC LIMIT 5",
                ["x"],
            ).fetchall()
            text = " ".join(str(p[-1]) for p in plan)
            assert f"USING INDEX {index}" in text and "TEMP B-TREE" not in text, text
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT * FROM calls WHERE started_at >= ?", ["x"]
        ).fetchall()
        assert "calls_started" in " ".join(str(p[-1]) for p in plan)
    finally:
        conn.close()


def test_summary_of_a_run_reads_the_store_and_adds_unstored_session_rows(tmp_path: Path) -> None:
    path = tmp_path / "calls.sqlite"
    fill(path, 6)  # an earlier session: r0 has c0 and c3
    rec = Recorder(Store(path))
    for i in (20, 21):
        rec.call_finished(record(i, run="r0", model="m0" if i == 20 else "m1"))
    store, rec.store = rec.store, None  # later rows could not be stored: in memory only
    rec.call_finished(record(22, run="r0", model="m0"))
    rec.call_finished(record(23, run="r1"))
    rec.store = store
    df = recorded(rec, "r0", None)
    assert sorted(ids(df)) == ["c0", "c20", "c21", "c22", "c3"]
    assert "text" not in df.columns
    by_model = recorded(rec, "r0", "m0")
    assert sorted(ids(by_model)) == ["c0", "c20", "c22"]
