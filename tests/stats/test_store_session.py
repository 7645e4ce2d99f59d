"""A long session holds nothing per call: its rows live in the store, marked with the
recorder's session id, and stats() reads them back; only rows the store did not take stay
in memory, up to a cap. A store of the previous schema is migrated to carry the session."""

from __future__ import annotations

import sqlite3
import tracemalloc
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import llm_nb
from llm_nb._stats import Recorder, StatsStoreWarning, _frames, _unstored
from llm_nb._stats._row import COLUMNS
from llm_nb._stats._store import SCHEMA_VERSION, STORE_ONLY, Store
from llm_nb._types import CallTrace, ChatResponse

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def record(i: int, run: str = "r") -> ChatResponse:
    r = ChatResponse("openai", "127.0.0.1:9", f"m{i % 3}", text=f"answer {i}",
                     call_id=f"c{i}", run_id=run)  # fmt: skip
    r.trace = CallTrace(t_send_ns=0, t_end_ns=10**8, token_times_ns=[10**7, 5 * 10**7])
    r.trace.started_at = T0 + timedelta(seconds=i)
    r.status = "ok"
    return r


def test_stats_reads_the_sessions_rows_back_from_the_store(tmp_path: Path) -> None:
    path = tmp_path / "calls.sqlite"
    earlier = Recorder(Store(path))  # another session, same file
    for i in range(3):
        earlier.call_finished(record(i, run="old"))
    rec = Recorder(Store(path))
    for i in range(10, 15):
        rec.call_finished(record(i, run="a" if i < 13 else "b"))
    assert rec.unstored_rows() == []  # all of them in the store: nothing in memory
    df = _frames.stats(rec)
    assert list(df["call_id"]) == ["c10", "c11", "c12", "c13", "c14"]
    assert list(_frames.stats(rec, "b")["call_id"]) == ["c13", "c14"]
    assert df["e2e_s"].dtype == "float64" and str(df["started_at"].dtype).startswith("datetime")
    assert rec.text("c12") == "answer 12"
    assert [r["call_id"] for r in rec.rows()] == ["c10", "c11", "c12", "c13", "c14"]
    assert rec.rows()[0]["started_at"] == T0 + timedelta(seconds=10)
    assert len(llm_nb.history(path)) == 8
    assert set(llm_nb.history(path)["session_id"]) == {earlier.session_id, rec.session_id}
    rec.clear()
    assert _frames.stats(rec).empty
    rec.call_finished(record(20))
    assert list(_frames.stats(rec)["call_id"]) == ["c20"]


def test_memory_per_call_is_bounded_with_a_store(tmp_path: Path) -> None:
    rec = Recorder(Store(tmp_path / "calls.sqlite"))
    records = [record(i) for i in range(2_200)]
    for r in records[:200]:  # caches, the connection and first-use imports
        rec.call_finished(r)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for r in records[200:]:
            rec.call_finished(r)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    per_call = grown / 2_000
    assert per_call < 500, f"{per_call:.0f} bytes kept per call"
    assert len(_frames.stats(rec)) == 2_200


def test_rows_the_store_did_not_take_stay_in_memory_up_to_a_cap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_unstored, "MEMORY_CAP", 50)
    rec = Recorder(None)
    records = [record(i) for i in range(120)]
    with pytest.warns(StatsStoreWarning) as caught:
        list(map(rec.call_finished, records))
    messages = [str(w.message) for w in caught.list if w.category is StatsStoreWarning]
    assert len(messages) == 1 and "50" in messages[0] and "\n" not in messages[0]
    df = _frames.stats(rec)
    assert list(df["call_id"]) == [f"c{i}" for i in range(70, 120)]  # the latest 50
    assert rec.text("c119") == "answer 119"
    with pytest.raises(KeyError):
        rec.text("c3")


def test_rows_held_back_by_a_locked_file_are_shown_once(tmp_path: Path) -> None:
    path = tmp_path / "calls.sqlite"
    rec = Recorder(Store(path))
    rec.call_finished(record(0))
    other = sqlite3.connect(path, timeout=0)
    other.execute("BEGIN IMMEDIATE")  # another process writing: the file is locked
    try:
        for i in range(1, 4):
            rec.call_finished(record(i))
        assert [r["call_id"] for r in rec.unstored_rows()] == ["c1", "c2", "c3"]
    finally:
        other.rollback()
        other.close()
    # Reading writes what was held back first; each call is shown once.
    assert list(_frames.stats(rec)["call_id"]) == ["c0", "c1", "c2", "c3"]
    assert len(llm_nb.history(path)) == 4


def v1_store(path: Path) -> None:
    """A store as the previous release wrote it: schema 1, no session or request columns."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    cols = ", ".join(f'"{c}"' for c in COLUMNS)
    conn.execute(f"CREATE TABLE calls ({cols}, text TEXT, reasoning TEXT)")
    conn.execute("CREATE TABLE runs (run_id TEXT, facts TEXT)")
    conn.execute("CREATE INDEX calls_run ON calls (run_id, started_at)")
    conn.execute(
        f"INSERT INTO calls (call_id, run_id, started_at, stream, warmup, status, text, "
        f"reasoning) VALUES ('old1', 'r', '{T0.isoformat()}', 1, 0, 'ok', 'old answer', '')"
    )
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()


def test_a_schema_1_store_is_migrated_with_a_backup(tmp_path: Path) -> None:
    path = tmp_path / "calls.sqlite"
    v1_store(path)
    rec = Recorder(Store(path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rec.call_finished(record(1))
    assert SCHEMA_VERSION == 2
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
        have = {r[1] for r in conn.execute("PRAGMA table_info(calls)")}
        assert set(STORE_ONLY) <= have
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        assert {"conversations", "calls_session", "calls_call"} <= tables
    finally:
        conn.close()
    hist = llm_nb.history(path)
    assert list(hist["call_id"]) == ["old1", "c1"]
    assert hist["session_id"].isna().tolist() == [True, False]
    assert list(_frames.stats(rec)["call_id"]) == ["c1"]
    backups = [p for p in tmp_path.iterdir() if p.name.startswith("calls.sqlite.v1-backup-")]
    assert len(backups) == 1
