"""The store's writes (llm_nb/_stats/_store.py): appends do not wait for the database, and rows
queued when the process exits are written."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from llm_nb._stats import call_row
from llm_nb._stats._store import Store
from tests.stats.calls import record


def test_store_appends_do_not_wait_for_the_database(tmp_path: Path) -> None:
    """A database another process holds locked costs one call a short wait and the next ones
    nothing: the rows are held back and land once it is free, in order."""
    import sqlite3

    path = tmp_path / "calls.sqlite"
    store = Store(path)
    store.append(call_row(record(call_id="c0")), "zero", "")
    assert store.flush()
    blocker = sqlite3.connect(path, timeout=0)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        t0 = time.perf_counter()
        for i in range(1, 51):
            store.append(call_row(record(call_id=f"c{i}")), f"text {i}", "")
        # A synchronous write would wait for the lock on each append (10 s at the store's
        # 0.2 s busy wait); held back, only the first waits. The bound leaves room for load.
        assert time.perf_counter() - t0 < 2.0
        assert not store.flush(timeout=0.2)  # the writer is still waiting for the lock
    finally:
        blocker.rollback()
        blocker.close()
    names, rows = store.read()  # read waits for the queue
    store.close()
    got = [dict(zip(names, r, strict=True)) for r in rows]
    assert [g["call_id"] for g in got] == [f"c{i}" for i in range(51)]
    assert got[7]["text"] == "text 7" and got[0]["text"] == "zero"


def test_store_rows_queued_at_exit_are_written(tmp_path: Path) -> None:
    """A process that exits right after its last call (no close) still stores every row."""
    code = """
import sys
from llm_nb._stats._store import Store
from llm_nb._stats._row import call_row
sys.path.insert(0, sys.argv[2])
from calls import record
store = Store(__import__("pathlib").Path(sys.argv[1]))
for i in range(200):
    store.append(call_row(record(call_id=f"x{i}")), "t" * 1000, "")
"""
    path = tmp_path / "calls.sqlite"
    out = subprocess.run(
        [sys.executable, "-c", code, str(path), str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    names, rows = Store(path).read()
    assert len(rows) == 200 and rows[-1][names.index("call_id")] == "x199"
