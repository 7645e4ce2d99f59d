"""history() over a large store: read in chunks, with memory bounded by the chunk, not the
store; whole frames built column by column, typed, from one snapshot of the file."""

from __future__ import annotations

import math
import sqlite3
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import llm_nb
from llm_nb._errors import InvalidOptionError
from llm_nb._stats import call_row
from llm_nb._stats._row import COLUMNS
from llm_nb._stats._store import _INSERT, Store, _to_sql
from llm_nb._types import CallTrace, ChatResponse

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def row(i: int) -> dict[str, Any]:
    r = ChatResponse("openai", "127.0.0.1:9", f"m{i % 4}", text=f"answer {i} " + "x" * 150,
                     call_id=f"c{i}", run_id=f"r{i // 100}")  # fmt: skip
    r.trace = CallTrace(t_send_ns=0, t_end_ns=10**8, token_times_ns=[10**7, 5 * 10**7])
    r.trace.started_at = T0 + timedelta(seconds=i)
    r.status = "ok"
    return call_row(r)


def build(path: Path, n: int) -> None:
    """n rows written in one transaction (the same rows Store.append writes, faster)."""
    store = Store(path)
    store.append_run("setup", {})  # creates the current schema
    store.close()
    template = row(0)
    conn = sqlite3.connect(path)
    with conn:
        conn.executemany(_INSERT, (values(template, i) for i in range(n)))
    conn.close()


def values(template: dict[str, Any], i: int) -> list[Any]:
    """Call i's values for _INSERT: its ids, model and time, the rest from template."""
    own = {"call_id": f"c{i}", "run_id": f"r{i // 100}", "model": f"m{i % 4}",
           "started_at": T0 + timedelta(seconds=i)}  # fmt: skip
    text = f"answer {i} " + "x" * 150
    return [_to_sql(own.get(c, template[c])) for c in COLUMNS] + [text, "", None, None, None]


def peak(fn: Callable[[], Any]) -> tuple[Any, int]:
    """What fn returns, and the peak of memory allocated while it ran (bytes)."""
    tracemalloc.start()
    try:
        result = fn()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_chunks_hold_every_row_once_in_order_and_equal_the_whole_frame(tmp_path: Path) -> None:
    path = tmp_path / "calls.sqlite"
    build(path, 2_345)
    parts = list(llm_nb.history(path, chunksize=1_000))
    assert [len(p) for p in parts] == [1_000, 1_000, 345]
    joined = pd.concat(parts, ignore_index=True)
    whole = llm_nb.history(path)
    assert list(joined["call_id"]) == [f"c{i}" for i in range(2_345)]
    pd.testing.assert_frame_equal(joined, whole)


def test_chunks_with_filters_and_limit(tmp_path: Path) -> None:
    path = tmp_path / "calls.sqlite"
    build(path, 1_000)
    parts = list(llm_nb.history(path, model="m1", limit=30, chunksize=7))
    ids = [c for p in parts for c in p["call_id"]]
    # The latest 30 calls of m1 (every fourth from c1), oldest first.
    assert ids == [f"c{i}" for i in range(1, 1_000, 4)][-30:]
    assert max(len(p) for p in parts) == 7
    assert list(llm_nb.history(path, run="r3", columns=["call_id"])["call_id"]) == [
        f"c{i}" for i in range(300, 400)
    ]


def test_an_empty_or_missing_store_gives_one_empty_frame_with_the_columns(
    tmp_path: Path,
) -> None:
    parts = list(llm_nb.history(tmp_path / "none.sqlite", chunksize=10))
    assert len(parts) == 1 and len(parts[0]) == 0
    assert list(parts[0].columns)[: len(COLUMNS)] == list(COLUMNS)
    path = tmp_path / "calls.sqlite"
    build(path, 3)
    assert [len(p) for p in llm_nb.history(path, run="nope", chunksize=10)] == [0]


def test_columns_have_their_types_even_when_every_value_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "calls.sqlite"
    build(path, 50)
    df = llm_nb.history(path)
    # cost_usd is unknown for every row (an unpriced model): NaN floats, not None objects.
    assert df["cost_usd"].dtype == "float64" and df["cost_usd"].isna().all()
    assert df["e2e_s"].dtype == "float64" and math.isclose(df["e2e_s"][0], 0.05)
    assert str(df["started_at"].dtype) == "datetime64[ns, UTC]"
    assert df["started_at"][3] == pd.Timestamp(T0 + timedelta(seconds=3))
    assert df["stream"].dtype == bool and df["warmup"].dtype == bool
    assert not df["warmup"].any() and df["stream"].all()
    # Repeated text is one object per distinct value, not one per row.
    assert len({id(v) for v in df["provider"].array}) == 1
    assert df["text"][7].startswith("answer 7 ")


def test_rows_committed_while_chunks_are_read_are_not_mixed_in(tmp_path: Path) -> None:
    path = tmp_path / "calls.sqlite"
    build(path, 300)
    parts = llm_nb.history(path, chunksize=100)
    first = next(parts)
    writer = Store(path)
    writer.append(row(10_000), "late", "")  # committed between two chunks
    writer.close()
    rest = list(parts)
    assert len(first) + sum(len(p) for p in rest) == 300
    assert len(llm_nb.history(path)) == 301


@pytest.mark.slow
def test_memory_of_a_read_is_bounded_by_the_chunk_and_below_read_sql(tmp_path: Path) -> None:
    path = tmp_path / "calls.sqlite"
    build(path, 20_000)

    def plain() -> pd.DataFrame:
        conn = sqlite3.connect(path)
        try:
            return pd.read_sql("SELECT * FROM calls", conn)
        finally:
            conn.close()

    def chunked() -> int:
        return sum(len(p) for p in llm_nb.history(path, chunksize=500))

    plain(), llm_nb.history(path, limit=1)  # modules loaded outside the measurement
    base_df, base = peak(plain)
    ours_df, ours = peak(lambda: llm_nb.history(path))
    n, streamed = peak(chunked)
    assert len(base_df) == len(ours_df) == n == 20_000
    # A whole frame built column by column: well under the plain read's peak.
    assert ours < 0.6 * base, (ours, base)
    # Chunks of 500: a small fraction of the whole frame, whatever the store's size.
    assert streamed < 0.25 * ours, (streamed, ours)


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"chunksize": 0}, "chunksize"),
        ({"chunksize": 2.5}, "chunksize"),
        ({"columns": "model"}, "columns"),
        ({"columns": ["model", "nope"]}, "'nope'"),
    ],
)
def test_bad_read_options_are_one_line_errors(
    tmp_path: Path, options: dict[str, Any], words: str
) -> None:
    with pytest.raises(InvalidOptionError) as err:
        llm_nb.history(tmp_path / "calls.sqlite", **options)
    assert words in str(err.value) and "\n" not in str(err.value)
