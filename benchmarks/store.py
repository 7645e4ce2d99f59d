"""The call log: cost of committing each row before the call returns, against a background
writer thread that batches commits (the previous design), and filtered reads against plain
``pandas.read_sql`` of the same query, on synthetic stores of growing size.

    python -m benchmarks.store [--sizes 10000,100000]
"""

from __future__ import annotations

import argparse
import queue
import sqlite3
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from llm_nb._stats import call_row
from llm_nb._stats._frames import history, recorded
from llm_nb._stats._recorder import Recorder
from llm_nb._stats._row import COLUMNS
from llm_nb._stats._store import _INSERT, Store, _to_sql
from llm_nb._types import CallTrace, ChatResponse


def row(i: int) -> dict[str, object]:
    r = ChatResponse("openai", "127.0.0.1:9", f"m{i % 10}", text="x" * 200,
                     call_id=f"c{i}", run_id=f"run{i // 1000}")  # fmt: skip
    r.trace = CallTrace(t_send_ns=0, t_end_ns=10**8, token_times_ns=[10**7, 5 * 10**7])
    r.trace.started_at = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=i)
    r.status = "ok"
    return call_row(r)


def per_call_inline(path: Path, n: int) -> float:
    store = Store(path)
    rows = [row(i) for i in range(n)]
    t0 = time.perf_counter()
    for r in rows:
        store.append(r, "x" * 200, "")
    dt = time.perf_counter() - t0
    store.close()
    return dt / n


def per_call_writer_thread(path: Path, n: int) -> float:
    """The caller's share with a writer thread: queue the row (committed later, in batches)."""
    create(path)
    conn = sqlite3.connect(path, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    q: queue.SimpleQueue[list[object] | None] = queue.SimpleQueue()

    def write() -> None:
        while (item := q.get()) is not None:
            batch = [item]
            while not q.empty():
                nxt = q.get()
                if nxt is None:
                    q.put(None)
                    break
                batch.append(nxt)
            with conn:
                conn.executemany(_INSERT, batch)

    t = threading.Thread(target=write)
    t.start()
    rows = [row(i) for i in range(n)]
    t0 = time.perf_counter()
    for r in rows:
        q.put([_to_sql(r.get(c)) for c in COLUMNS] + ["x" * 200, ""])
    dt = time.perf_counter() - t0
    q.put(None)
    t.join()
    conn.close()
    return dt / n


def create(path: Path) -> None:
    store = Store(path)
    store.append_run("setup", {})
    store.close()


def build(path: Path, n: int) -> None:
    create(path)
    conn = sqlite3.connect(path)
    with conn:
        conn.executemany(_INSERT, ([_to_sql(v) for v in row(i).values()] + ["x" * 200, ""]
                                   for i in range(n)))  # fmt: skip
    conn.close()


def timed(fn: object) -> float:
    t0 = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - t0


def measure(path: Path, n: int) -> None:
    import pandas as pd

    run = f"run{n // 2000}"
    conn = sqlite3.connect(path)
    base = {
        "history(run)": lambda: pd.read_sql(
            "SELECT * FROM calls WHERE run_id = ?", conn, params=[run]),
        "history(model, limit=100)": lambda: pd.read_sql(
            "SELECT * FROM calls WHERE model = ? ORDER BY started_at DESC LIMIT 100",
            conn, params=["m3"]),
    }  # fmt: skip
    rec = Recorder(Store(path))
    ours = {
        "history(run)": lambda: history(path, run=run),
        "history(model, limit=100)": lambda: history(path, model="m3", limit=100),
        "summary(run) rows": lambda: recorded(rec, run, None),
    }
    for name, fn in ours.items():
        ref = base.get(name)
        extra = f"  read_sql {timed(ref) * 1e3:.1f} ms" if ref else ""
        print(f"{n:>8} rows  {name:<26} {timed(fn) * 1e3:7.1f} ms{extra}")
    conn.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,100000")
    sizes = [int(s) for s in ap.parse_args().sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        a = per_call_inline(Path(tmp) / "a.sqlite", 2000)
        b = per_call_writer_thread(Path(tmp) / "b.sqlite", 2000)
        print(f"append per call: commit before return {a * 1e6:.0f} us, writer thread "
              f"{b * 1e6:.0f} us (ratio {a / b:.1f})")  # fmt: skip
        for n in sizes:
            path = Path(tmp) / f"s{n}.sqlite"
            build(path, n)
            measure(path, n)


if __name__ == "__main__":
    main()
