"""summary(run_id=, model=) computed in the store gives the figures of the pandas summary of
the same rows, and uses an index that holds every column it reads."""

from __future__ import annotations

import math
import random
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from llm_nb._stats import Recorder, _aggregate, _frames, call_row
from llm_nb._stats._row import COLUMNS
from llm_nb._stats._store import _INSERT, STORE_ONLY, Store, _to_sql
from llm_nb._types import CallTrace, ChatResponse

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def template() -> dict[str, Any]:
    r = ChatResponse("openai", "127.0.0.1:9", "m", call_id="c", run_id="r")
    r.trace = CallTrace(t_send_ns=0, t_end_ns=10**8, token_times_ns=[10**7, 5 * 10**7])
    r.trace.started_at = T0
    return call_row(r)


def random_store(path: Path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    base = template()
    store = Store(path)
    store.append_run("setup", {})
    store.close()

    def maybe(value: float, p: float = 0.2) -> float | None:
        return None if rng.random() < p else value

    values = []
    for i in range(n):
        own = {
            "call_id": f"c{i}", "run_id": rng.choice(["a", "b", "c"]),
            "provider": rng.choice(["openai", "ollama"]), "host": rng.choice(["h:1", "h:2"]),
            "model": rng.choice(["m1", "m2", "m3"]), "warmup": rng.random() < 0.1,
            "status": rng.choice(["ok"] * 6 + ["error", "cancelled", "timeout"]),
            "started_at": T0 + timedelta(seconds=rng.randint(0, 10_000),
                                         microseconds=rng.randint(0, 999) * 1000),
            "ttft_s": maybe(rng.uniform(0.01, 1)), "tpot_s": maybe(rng.uniform(0.001, 0.1)),
            "e2e_s": maybe(rng.uniform(0.5, 30)), "output_tps": maybe(rng.uniform(5, 100)),
            "completion_tokens": maybe(rng.randint(0, 500), 0.1),
            "gpu_energy_j": maybe(rng.uniform(1, 50), 0.5),
            "cost_usd": maybe(rng.uniform(0, 0.01), 0.5),
        }  # fmt: skip
        row = [_to_sql(own.get(c, base[c])) for c in COLUMNS]
        values.append(row + [None] * len(STORE_ONLY))
    conn = sqlite3.connect(path)
    with conn:
        conn.executemany(_INSERT, values)
    conn.close()


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize(
    "where", [{"run_id": "a"}, {"model": "m2"}, {"run_id": "b", "model": "m3"}]
)
def test_the_store_computes_the_pandas_summary(
    tmp_path: Path, seed: int, where: dict[str, str]
) -> None:
    path = tmp_path / "calls.sqlite"
    random_store(path, 400, seed)
    store = Store(path)
    rec = Recorder(store)
    host = {"cpu_model": "cpu", "ram_gb": 8}
    servers = {(where.get("run_id", "a"), "openai", "h:1", "m2"): {"build": "b9-abc", "n_ctx": 512}}
    run, model = where.get("run_id"), where.get("model")
    expected = _frames.summary(
        _frames.recorded(rec, run, model, _frames.SUMMARY_COLUMNS), host, servers
    )
    got = _aggregate.summary(store, where, host, servers)
    assert list(got.columns) == list(expected.columns)
    assert len(got) == len(expected) >= 2
    pd.testing.assert_frame_equal(got, expected, check_dtype=False, rtol=1e-6)
    # Times are kept to the millisecond: a throughput over seconds agrees closely.
    assert not got["throughput_tps"].isna().all()


def test_an_empty_selection_is_an_empty_summary(tmp_path: Path) -> None:
    path = tmp_path / "calls.sqlite"
    random_store(path, 20, 0)
    assert _aggregate.summary(Store(path), {"run_id": "nope"}, None, None).empty
    assert _aggregate.summary(Store(tmp_path / "none.sqlite"), {"run_id": "a"}, None, None).empty


def test_groups_without_values_get_nan() -> None:
    got = _aggregate.figures(["3,1,2", None, "5"], [0.5, 0.9])
    assert list(got["mean"][[0, 2]]) == [2.0, 5.0] and math.isnan(got["mean"][1])
    assert got[0.5][0] == 2.0 and got[0.9][0] == pytest.approx(2.8) and got[0.5][2] == 5.0
    assert math.isnan(got[0.9][1]) and got["max"][0] == 3.0


def test_a_summary_by_model_reads_only_an_index(tmp_path: Path) -> None:
    path = tmp_path / "calls.sqlite"
    random_store(path, 10, 0)
    sql = _aggregate._sql(["model"], _frames.SUMMARY_METRICS)
    conn = sqlite3.connect(path)
    try:
        plan = " ".join(str(r[-1]) for r in conn.execute("EXPLAIN QUERY PLAN " + sql, ["m1"]))
    finally:
        conn.close()
    assert "COVERING INDEX" in plan, plan


def test_summary_takes_the_store_path_unless_memory_holds_rows_of_the_selection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import llm_nb
    from llm_nb import _session
    from llm_nb._session import Session

    path = tmp_path / "calls.sqlite"
    random_store(path, 200, 5)

    rec = Recorder(Store(path))
    session = Session(recorder=rec, server_facts=False)
    monkeypatch.setattr(_session, "_default", session)
    calls: list[Any] = []
    real = _aggregate.summary
    monkeypatch.setattr(_aggregate, "summary", lambda *a: calls.append(a) or real(*a))
    before = llm_nb.summary("a")
    assert len(calls) == 1 and before["n_ok"].sum() > 0
    # A call the store did not take: the summary must count it, so it is read from memory.
    r = ChatResponse("openai", "h:1", "m1", call_id="extra", run_id="a")
    r.trace = CallTrace(t_send_ns=0, t_end_ns=10**8, token_times_ns=[10**7])
    r.trace.started_at = T0
    store, rec.store = rec.store, None
    rec.call_finished(r)
    rec.store = store
    after = llm_nb.summary("a")
    assert len(calls) == 1
    assert after["n_ok"].sum() == before["n_ok"].sum() + 1
    assert len(llm_nb.summary("b")) and len(calls) == 2  # no row of run b in memory


def test_a_frame_with_columns_of_none_is_summarized() -> None:
    rows = [{**template(), "status": "ok", "gpu_energy_j": None, "cost_usd": None,
             "ttft_s": None, "warmup": False}]  # fmt: skip
    df = pd.DataFrame(rows, columns=list(COLUMNS)).astype({"gpu_energy_j": object})
    df["started_at"] = pd.to_datetime(df["started_at"], utc=True)
    (row,) = _frames.summary(df).to_dict("records")
    assert row["n_ok"] == 1 and math.isnan(row["energy_j_per_token"])
    assert math.isnan(row["ttft_s_mean"]) and math.isnan(row["cost_usd"])
