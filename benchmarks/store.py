"""The call log at scale: filtered and unfiltered reads, summaries, the recorder's memory per
call and the cost of each append, on synthetic stores of 10k, 100k and 1M calls.

Every read is timed in a fresh subprocess of its own, which also reports how much its peak
resident memory grew (``ru_maxrss``); each is compared in the same run with the plain
``pandas.read_sql`` of the same query (for a summary: that read, then the same pandas
aggregation). When DuckDB is importable, the same rows are loaded into a DuckDB file and
the same queries run there (summaries aggregated in DuckDB's SQL), for the choice of engine.

    python -m benchmarks.store [--sizes 10000,100000,1000000] [--calls 100000]
"""

from __future__ import annotations

import argparse
import json
import queue
import random
import resource
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ._common import Row, Section, Sizes, have, run_child, version

T0 = datetime(2026, 1, 1, tzinfo=UTC)
RUN_ROWS = 1_000  # calls per run
MODELS = 10
TEXT = "x" * 200


def _template() -> dict[str, Any]:
    from llm_nb._stats import call_row
    from llm_nb._types import CallTrace, ChatResponse

    r = ChatResponse("openai", "127.0.0.1:9", "m0", text=TEXT, call_id="c0", run_id="run0")
    r.trace = CallTrace(t_send_ns=0, t_first_token_ns=10**7, t_end_ns=10**8,
                        token_times_ns=[10**7 + i * 10**6 for i in range(50)])  # fmt: skip
    r.trace.started_at = T0
    r.status = "ok"
    return call_row(r)


def rows(n: int) -> Iterator[list[Any]]:
    """The values of n calls for the store's INSERT: 1,000 calls a run, ten models, two
    providers, one call a second, latencies drawn at random (fixed seed)."""
    from llm_nb._stats._row import COLUMNS
    from llm_nb._stats._store import STORE_ONLY, _to_sql

    rng = random.Random(0)
    base = _template()
    for i in range(n):
        ttft = rng.uniform(0.01, 0.5)
        own = {"call_id": f"c{i}", "run_id": f"run{i // RUN_ROWS}", "model": f"m{i % MODELS}",
               "provider": "openai" if i % 2 else "ollama",
               "started_at": (T0 + timedelta(seconds=i)).isoformat(), "ttft_s": ttft,
               "e2e_s": ttft + rng.uniform(0.5, 3.0), "output_tps": rng.uniform(20, 80),
               "status": "ok" if i % 50 else "error"}  # fmt: skip
        extra = {"text": TEXT, "reasoning": "", "session_id": "bench"}
        yield [_to_sql(own.get(c, base[c])) for c in COLUMNS] + [extra.get(c) for c in STORE_ONLY]


def build(path: Path, n: int) -> None:
    from llm_nb._stats._store import _INSERT, Store

    store = Store(path)
    store.append_run("setup", {})  # the current schema, indexes included
    store.close()
    conn = sqlite3.connect(path)
    with conn:
        conn.executemany(_INSERT, rows(n))
    conn.close()


def build_duckdb(source: Path, target: Path) -> None:
    import duckdb
    import pandas as pd

    from llm_nb._stats._store import STORE_COLUMNS, STORE_ONLY, TEXT_COLUMNS

    cols = ", ".join(
        f'"{c}" ' + ("VARCHAR" if c in TEXT_COLUMNS or c in STORE_ONLY else "DOUBLE")
        for c in STORE_COLUMNS
    )
    duck = duckdb.connect(str(target))
    duck.execute(f"CREATE TABLE calls ({cols})")
    conn = sqlite3.connect(source)
    for part in pd.read_sql("SELECT * FROM calls", conn, chunksize=100_000):
        duck.register("part", part)
        duck.execute("INSERT INTO calls SELECT * FROM part")
        duck.unregister("part")
    conn.close()
    duck.close()


# -- the reads, each in a subprocess of its own --------------------------------------------


def _ops(path: Path, n: int) -> dict[str, Callable[[], Any]]:
    import pandas as pd

    from llm_nb._stats import _aggregate, _frames
    from llm_nb._stats._store import Store

    run, since, until = f"run{n // RUN_ROWS // 2}", T0 + timedelta(seconds=n // 3), None
    until = T0 + timedelta(seconds=n // 3 + 5_000)

    def read_sql(sql: str, *params: Any) -> pd.DataFrame:
        conn = sqlite3.connect(path)
        try:
            return pd.read_sql(sql, conn, params=list(params))
        finally:
            conn.close()

    def plain_summary(column: str, value: str) -> pd.DataFrame:
        df = read_sql(f"SELECT * FROM calls WHERE {column} = ?", value)
        df["started_at"] = pd.to_datetime(df["started_at"], utc=True, format="ISO8601")
        df["warmup"] = df["warmup"].astype(bool)
        return _frames.summary(df)

    def chunks(parts: Any) -> int:
        return sum(len(p) for p in parts)

    store = Store(path)
    window = "provider = ? AND started_at >= ? AND started_at < ?"
    return {
        "history(run=)": lambda: _frames.history(path, run=run),
        "read_sql run": lambda: read_sql("SELECT * FROM calls WHERE run_id = ?", run),
        "history(model=, limit=100)": lambda: _frames.history(path, model="m3", limit=100),
        "read_sql model limit": lambda: read_sql(
            "SELECT * FROM calls WHERE model = ? ORDER BY started_at DESC LIMIT 100", "m3"),
        "history(provider=, since=, until=)": lambda: _frames.history(
            path, provider="openai", since=since, until=until),
        "read_sql provider time": lambda: read_sql(
            f"SELECT * FROM calls WHERE {window}", "openai", since.isoformat(), until.isoformat()),
        "summary(run)": lambda: _aggregate.summary(store, {"run_id": run}, None, None),
        "read_sql + summary run": lambda: plain_summary("run_id", run),
        "summary(model=)": lambda: _aggregate.summary(store, {"model": "m3"}, None, None),
        "read_sql + summary model": lambda: plain_summary("model", "m3"),
        "history()": lambda: _frames.history(path),
        "read_sql all": lambda: read_sql("SELECT * FROM calls"),
        "history(chunksize=)": lambda: chunks(_frames.history(path, chunksize=50_000)),
        "read_sql chunksize": lambda: chunks(pd.read_sql(
            "SELECT * FROM calls", sqlite3.connect(path), chunksize=50_000)),
    }  # fmt: skip


_QUANTILES = "[0.5, 0.9, 0.95, 0.99]"


def _duck_ops(path: Path, n: int) -> dict[str, Callable[[], Any]]:
    import duckdb

    duck = duckdb.connect(str(path), read_only=True)
    run = f"run{n // RUN_ROWS // 2}"

    def summary(column: str, value: str) -> Any:
        metrics = ", ".join(
            f"avg({m}) FILTER (status = 'ok'), quantile_cont({m}, {_QUANTILES}) "
            f"FILTER (status = 'ok'), max({m}) FILTER (status = 'ok')"
            for m in ("ttft_s", "tpot_s", "e2e_s", "output_tps")
        )
        return duck.execute(
            f"SELECT run_id, provider, host, model, count(*) FILTER (status = 'ok'), "
            f"count(*) FILTER (status = 'error'), {metrics} FROM calls "
            f"WHERE {column} = ? AND warmup = 0 GROUP BY ALL", [value]).df()  # fmt: skip

    return {
        "duckdb run": lambda: duck.execute("SELECT * FROM calls WHERE run_id = ?", [run]).df(),
        "duckdb model limit": lambda: duck.execute(
            "SELECT * FROM calls WHERE model = ? ORDER BY started_at DESC LIMIT 100",
            ["m3"]).df(),
        "duckdb summary run": lambda: summary("run_id", run),
        "duckdb summary model": lambda: summary("model", "m3"),
        "duckdb all": lambda: duck.execute("SELECT * FROM calls").df(),
    }  # fmt: skip


def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def _peak_reset() -> int:
    """Reset this process's peak resident set to its current size (Linux: clear_refs 5);
    the current size in KiB, from which the next peak is measured."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _status_kb("VmRSS")
    except (OSError, KeyError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _peak() -> int:
    try:
        return _status_kb("VmHWM")
    except (OSError, KeyError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def worker(op: str, path: Path, n: int, reps: int) -> dict[str, Any]:
    """Time one read (median of ``reps``) and how far this process's resident memory
    rose above where it was before the first (its peak, in MB)."""
    import pandas  # noqa: F401  (imported before the baseline of memory is taken)

    ops = _duck_ops(path, n) if op.startswith("duckdb") else _ops(path, n)
    fn = ops[op]
    before = _peak_reset()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"s": statistics.median(times), "peak_mb": max(_peak() - before, 0) / 1024}


def _child(op: str, path: Path, n: int, reps: int) -> dict[str, Any]:
    return run_child(["-m", "benchmarks.store", "--worker", op, str(path), str(n), str(reps)],
                     timeout=900)  # fmt: skip


# -- in-process parts -------------------------------------------------------------------


def append_cost(folder: Path, n: int) -> tuple[float, float]:
    """Seconds per call on the caller's thread: the commit before the call returns, and
    queueing the row to a writer thread that commits in batches (the earlier design)."""
    from llm_nb._stats._store import _INSERT, Store

    values = list(rows(n))
    store = Store(folder / "inline.sqlite")
    store.append_run("setup", {})
    from llm_nb._stats._row import COLUMNS

    dicts = [dict(zip(COLUMNS, v, strict=False)) for v in values]
    t0 = time.perf_counter()
    for d in dicts:
        store.append(d, TEXT, "", {"session_id": "bench"})
    inline = (time.perf_counter() - t0) / n
    store.close()

    path = folder / "thread.sqlite"
    build(path, 0)
    conn = sqlite3.connect(path, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    q: queue.SimpleQueue[list[Any] | None] = queue.SimpleQueue()

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
    t0 = time.perf_counter()
    for v in values:
        q.put(list(v))
    threaded = (time.perf_counter() - t0) / n
    q.put(None)
    t.join()
    conn.close()
    return inline, threaded


def duckdb_append_cost(folder: Path, n: int) -> float:
    import duckdb

    from llm_nb._stats._store import STORE_COLUMNS

    duck = duckdb.connect(str(folder / "append.duckdb"))
    columns = ", ".join(f"c{i} VARCHAR" for i in range(len(STORE_COLUMNS)))
    duck.execute(f"CREATE TABLE calls ({columns})")
    insert = f"INSERT INTO calls VALUES ({', '.join('?' * len(STORE_COLUMNS))})"
    values = [[None if v is None else str(v) for v in r] for r in rows(n)]
    t0 = time.perf_counter()
    for v in values:
        duck.execute(insert, v)  # autocommit: one transaction per call, as the log needs
    per_call = (time.perf_counter() - t0) / n
    duck.close()
    return per_call


def recorder_memory(folder: Path, n: int) -> tuple[float, float]:
    """Bytes kept per call by the recorder over n calls (tracemalloc), against the same
    recorder also keeping each row and answer in memory, as it did before."""
    from llm_nb._stats import call_row
    from llm_nb._stats._recorder import Recorder
    from llm_nb._stats._store import Store
    from llm_nb._types import CallTrace, ChatResponse

    class Keeping(Recorder):
        """Also keeps each row and answer in memory, as the recorder did before."""

        def __init__(self, store: Store) -> None:
            super().__init__(store)
            self.kept: list[tuple[dict[str, Any], str, str]] = []

        def call_finished(self, record: ChatResponse) -> None:
            super().call_finished(record)
            self.kept.append((call_row(record), record.text, record.reasoning))

    def records(count: int) -> Iterator[ChatResponse]:
        for i in range(count):
            r = ChatResponse("openai", "127.0.0.1:9", f"m{i % MODELS}", text=TEXT,
                             call_id=f"c{i}", run_id=f"run{i // RUN_ROWS}")  # fmt: skip
            r.trace = CallTrace(t_send_ns=0, t_end_ns=10**8, token_times_ns=[10**7, 5 * 10**7])
            r.trace.started_at = T0 + timedelta(seconds=i)
            yield r

    out = []
    for name, cls in (("now", Recorder), ("keeping", Keeping)):
        rec = cls(Store(folder / f"{name}.sqlite"))
        for r in records(200):
            rec.call_finished(r)
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for r in records(n):
            rec.call_finished(r)
        grown = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        out.append(grown / n)
        assert rec.store is not None
        rec.store.close()
    return out[0], out[1]


# -- the section --------------------------------------------------------------------------

#: (our op, its baseline, what is compared, target on time)
PAIRS = (
    ("history(run=)", "read_sql run", "1,000 rows", 0.5),
    ("history(model=, limit=100)", "read_sql model limit", "100 rows", 0.5),
    ("history(provider=, since=, until=)", "read_sql provider time", "2,500 rows", 0.5),
    ("summary(run)", "read_sql + summary run", "1,000 calls", 0.5),
    ("summary(model=)", "read_sql + summary model", "a tenth of the calls", 0.5),
    ("history()", "read_sql all", "every row", None),
    ("history(chunksize=)", "read_sql chunksize", "every row, 50,000 at a time", None),
)
DUCK = {"history(run=)": "duckdb run", "history(model=, limit=100)": "duckdb model limit",
        "summary(run)": "duckdb summary run", "summary(model=)": "duckdb summary model",
        "history()": "duckdb all"}  # fmt: skip


def measure(sizes: Sizes, log: Callable[[str], None] = lambda _: None) -> Section:
    section = Section("store")
    duck = have("duckdb")
    with tempfile.TemporaryDirectory(prefix="llm_nb-bench-store-") as tmp:
        folder = Path(tmp)
        inline, threaded = append_cost(folder, sizes.store_appends)
        section.rows.append(Row("store", "append per call (committed before the call returns)",
                                inline * 1e6, threaded * 1e6, "queued to a writer thread", "µs",
                                target="reported", note="on the caller's thread, once per call "
                                "after its last chunk"))  # fmt: skip
        section.raw["append_s"] = {"inline": inline, "thread": threaded}
        if duck:
            d = duckdb_append_cost(folder, sizes.store_appends)
            section.rows.append(Row("store", "append per call: SQLite (ours) vs DuckDB",
                                    inline * 1e6, d * 1e6, "DuckDB INSERT + commit", "µs",
                                    target="reported"))  # fmt: skip
            section.raw["append_s"]["duckdb"] = d
        now, before = recorder_memory(folder, sizes.store_calls)
        section.rows.append(Row("store", f"recorder memory per call, over {sizes.store_calls:,} "
                                "calls", now, before, "rows kept in memory (before)", "bytes",
                                target="< 512 bytes", met=now < 512))  # fmt: skip
        section.raw["memory_per_call"] = {"now": now, "before": before}
        for n in sizes.store_rows:
            path = folder / f"calls-{n}.sqlite"
            t0 = time.perf_counter()
            build(path, n)
            log(f"store: {n:,} rows built in {time.perf_counter() - t0:.0f} s")
            figures: dict[str, dict[str, Any]] = {}
            for ours, base, what, target in PAIRS:
                reps = 1 if "history()" in ours or "chunksize" in ours else 3
                for op in (ours, base):
                    figures[op] = _child(op, path, n, reps)
                log(f"store: {n:,} {ours} {figures[ours]} / {figures[base]}")
                _pair_rows(section, n, ours, base, what, target, figures)
            if duck:
                dpath = folder / f"calls-{n}.duckdb"
                build_duckdb(path, dpath)
                for ours, op in DUCK.items():
                    reps = 1 if ours == "history()" else 3
                    figures[op] = _child(op, dpath, n, reps)
                    _duck_row(section, n, ours, op, figures)
            section.raw[str(n)] = figures
    section.notes.append(
        "store: each read runs in a fresh process; its peak memory is how far its resident "
        "set rose above where it was before the read (VmHWM after a reset). Baselines read "
        "the same rows with pandas.read_sql (summaries: that read plus the same pandas "
        "aggregation); DuckDB rows hold the same rows in a DuckDB file "
        f"({version('duckdb') or 'not installed'}), its summaries aggregated in SQL."
    )
    return section


def _label(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 else f"{n // 1_000}k"


def _pair_rows(section: Section, n: int, ours: str, base: str, what: str,
               target: float | None, figures: dict[str, dict[str, Any]]) -> None:  # fmt: skip
    a, b = figures[ours], figures[base]
    if "error" in a or "error" in b:
        why = a.get("error") or b.get("error")
        section.rows.append(Row("store", f"{_label(n)} rows: {ours}", None, None, "read_sql",
                                "s", note=f"failed: {why}"))  # fmt: skip
        return
    met = None if target is None else a["s"] <= target and a["peak_mb"] < 200
    section.rows.append(Row("store", f"{_label(n)} rows: {ours} ({what})", a["s"], b["s"],
                            "pandas.read_sql" + (" + summary" if "summary" in ours else ""),
                            "s", target=f"≤ {target} s, < 200 MB" if target else "reported",
                            met=met))  # fmt: skip
    section.rows.append(Row("store", f"{_label(n)} rows: {ours}, peak memory", a["peak_mb"],
                            b["peak_mb"], "pandas.read_sql", "MB", target="reported"))  # fmt: skip


def _duck_row(section: Section, n: int, ours: str, op: str,
              figures: dict[str, dict[str, Any]]) -> None:  # fmt: skip
    a, d = figures.get(ours, {}), figures[op]
    if "error" in a or "error" in d:
        section.rows.append(Row("store", f"{_label(n)} rows: {ours}, SQLite vs DuckDB", None,
                                None, "DuckDB", "s", note=f"failed: {d.get('error')}"))  # fmt: skip
        return
    peaks = f"peak {a['peak_mb']:.0f} MB vs {d['peak_mb']:.0f} MB"
    what = f"{_label(n)} rows: {ours}, SQLite (ours) vs DuckDB"
    section.rows.append(Row("store", what, a["s"], d["s"], "DuckDB", "s", target="reported",
                            note=peaks))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", nargs=4, metavar=("OP", "PATH", "N", "REPS"))
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--calls", type=int, default=100_000)
    args = ap.parse_args()
    if args.worker:
        op, path, n, reps = args.worker
        print("BENCH_JSON " + json.dumps(worker(op, Path(path), int(n), int(reps))), flush=True)
        return
    sizes = Sizes(store_rows=tuple(int(s) for s in args.sizes.split(",")),
                  store_calls=args.calls)  # fmt: skip
    section = measure(sizes, lambda line: print(line, file=sys.stderr, flush=True))
    from .report import table

    print("\n".join(table(section.rows)))
    for note in section.notes:
        print(f"- {note}")


if __name__ == "__main__":
    main()
