"""Per-call rows (METRICS.md), recorder, frames, store, pricing; fidelity on the real server."""

from __future__ import annotations

import asyncio
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import llm_nb
from llm_nb._session import Session, use_session
from llm_nb._stats import COLUMNS, Recorder, _frames, call_row, new_run, set_price, warmup
from llm_nb._stats._store import Store
from llm_nb._types import CallTrace, ChatResponse, ServerTimings, Usage
from llm_nb._wire.retry import RetryPolicy
from llm_nb.providers import LlamaCppProvider, OllamaProvider, OpenAIProvider

MS = 1_000_000


def record(**kw: Any) -> ChatResponse:
    trace = CallTrace(
        t_send_ns=0,
        t_headers_ns=5 * MS,
        t_first_token_ns=100 * MS,
        t_first_answer_ns=150 * MS,
        t_done_ns=510 * MS,
        t_end_ns=520 * MS,
        token_times_ns=[100 * MS, 150 * MS, 200 * MS, 300 * MS, 500 * MS],
    )
    r = ChatResponse(
        "llamacpp",
        "127.0.0.1:8080",
        "m",
        text="hello",
        trace=trace,
        usage=Usage(10, 5, 15),
        finish_reason="stop",
    )
    for k, v in kw.items():
        setattr(r, k, v)
    return r


def test_row_definitions() -> None:
    r = record(timings=ServerTimings(prompt_n=10, prompt_ms=80.0, decode_n=5, decode_ms=390.0))
    row = call_row(r)
    assert list(row) == list(COLUMNS)
    assert row["ttfb_s"] == pytest.approx(0.005)
    assert row["ttft_s"] == pytest.approx(0.100)
    assert row["ttfo_s"] == pytest.approx(0.150)
    # e2e ends at the last token chunk, not at t_end (a trailing usage chunk doesn't count)
    assert row["e2e_s"] == pytest.approx(0.500)
    assert row["decode_s"] == pytest.approx(0.400)
    assert row["tpot_s"] == pytest.approx(0.400 / 4)
    assert row["output_tps"] == pytest.approx(5 / 0.4)
    # gaps 50, 50, 100, 200 ms
    assert row["gap_p50_s"] == pytest.approx(0.075)
    assert row["gap_max_s"] == pytest.approx(0.2)
    assert row["gap_p95_s"] == pytest.approx(0.185)
    assert row["n_chunks"] == 5
    assert row["token_source"] == "server_usage"
    assert row["srv_output_tps"] == pytest.approx(5 / 390 * 1000)
    # to the chunk carrying the timings (t_done), which the server's time ends before
    assert row["client_overhead_ms"] == pytest.approx(510 - (80 + 390))
    assert math.isnan(row["srv_load_ms"]) and math.isnan(row["cost_usd"])
    assert row["chars"] == 5 and len(row["text_sha256"]) == 64
    assert row["queue_s"] == 0.0


def test_overhead_is_measured_to_the_timings_chunk_not_the_last_token() -> None:
    """The server's decode time runs to its last step (an end-of-generation token, which sends
    no text), so the last token chunk can come long before the chunk with the timings (seen:
    1.2 s before it, with two calls sharing a loaded server). Against e2e this gave negative
    overheads; against the timings chunk it is what the server did not account for."""
    timings = ServerTimings(prompt_n=10, prompt_ms=300.0, decode_n=6, decode_ms=900.0)
    r = record(timings=timings)
    r.trace.t_done_ns = 1250 * MS  # the final chunk, 750 ms after the last token (500 ms)
    row = call_row(r)
    assert row["e2e_s"] == pytest.approx(0.5)  # e2e itself still ends at the last token
    assert row["client_overhead_ms"] == pytest.approx(1250 - (300 + 900))
    r.trace.t_done_ns = None  # the stream never reached its end: nothing to compare
    assert math.isnan(call_row(r)["client_overhead_ms"])


def test_row_nan_rules_and_token_sources() -> None:
    one = record(usage=Usage(), timings=None)
    one.trace.token_times_ns = [100 * MS]
    row = call_row(one)
    assert row["token_source"] == "chunk_count" and row["completion_tokens"] == 1
    assert math.isnan(row["tpot_s"]) and math.isnan(row["output_tps"])  # < 2 tokens
    assert math.isnan(row["gap_p50_s"]) and math.isnan(row["client_overhead_ms"])
    srv = record(usage=Usage(), timings=ServerTimings(prompt_n=7, decode_n=4, decode_ms=1.0))
    row = call_row(srv)
    assert (row["token_source"], row["prompt_tokens"], row["completion_tokens"]) == (
        "server_timings",
        7,
        4,
    )
    failed = record(
        status="error",
        error=llm_nb.ServerError("x", status_code=500),
        text="",
        trace=CallTrace(t_send_ns=0, t_end_ns=30 * MS),
    )
    row = call_row(failed)
    assert row["error_type"] == "ServerError" and row["status"] == "error"
    assert row["e2e_s"] == pytest.approx(0.03) and math.isnan(row["ttft_s"])


def test_pricing_metered_and_local() -> None:
    from llm_nb._stats._pricing import cost_usd

    assert cost_usd("openai", "api.openai.com:443", "gpt-4o-mini-2024-07-18", 1e6, 1e6) == (
        pytest.approx(0.75)
    )
    assert cost_usd("openai", "api.openai.com:443", "gpt-4o", 1e6, 0, 5e5) == pytest.approx(
        0.5 * 2.5 + 0.5 * 1.25
    )
    assert math.isnan(cost_usd("openai", "127.0.0.1:1234", "gpt-4o", 10, 10))  # LM Studio
    assert math.isnan(cost_usd("llamacpp", "127.0.0.1:8080", "smollm2", 10, 10))
    assert math.isnan(cost_usd("openai", "api.openai.com:443", "unknown-model", 10, 10))
    set_price("my-model", 1.0, 2.0, provider="ollama")
    assert cost_usd("ollama", "h:1", "my-model", 1e6, 1e6) == pytest.approx(3.0)


class Sampler:
    """Records acquire/release and answers a fixed window."""

    def __init__(self) -> None:
        self.active = 0
        self.windows: list[tuple[int, int]] = []

    def acquire(self) -> None:
        self.active += 1

    def release(self) -> None:
        self.active -= 1

    def window(self, t0: int, t1: int) -> dict[str, float]:
        self.windows.append((t0, t1))
        return {"cpu_pct": 42.0, "rss_mb": 100.0}


@pytest.fixture
def rec(tmp_path: Path) -> Iterator[Recorder]:
    """The recorder (with its store and a stand-in sampler) of a session of the test's own,
    made the default while the test runs."""
    r = Recorder(Store(tmp_path / "calls.sqlite"), Sampler())  # type: ignore[arg-type]
    with Session(recorder=r) as s, use_session(s):
        yield r
    assert r.store is not None
    r.store.close()


def sse_handler(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content)
    if not body.get("stream"):
        return httpx.Response(
            200,
            json={
                "model": "gpt-4o-mini",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "whole"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 1000, "completion_tokens": 2000, "total_tokens": 3000},
            },
        )
    chunks = [
        {"model": "m", "choices": [{"index": 0, "delta": {"content": c}, "finish_reason": None}]}
        for c in "abc"
    ]
    text = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks)
    text += 'data: {"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
    return httpx.Response(200, text=text + "data: [DONE]\n\n")


def mock(cls: type[Any], handler: Any = sse_handler, host: str = "127.0.0.1:9") -> Any:
    return cls(
        host, transport=httpx.MockTransport(handler), api_key="k", retry=RetryPolicy(max_retries=0)
    )


async def test_recorder_rows_runs_warmup_and_store(rec: Recorder, tmp_path: Path) -> None:
    p = mock(LlamaCppProvider)
    with warmup():
        await p.stream("m", "hi").collect()
    with new_run("cmp-1") as run_id:
        await p.stream("m", "hi").collect()
        await p.chat("m", "hi")
    rows = rec.rows()
    assert [r["warmup"] for r in rows] == [True, False, False]
    assert [r["run_id"] for r in rows][1:] == ["cmp-1", "cmp-1"] and run_id == "cmp-1"
    assert rows[0]["run_id"] == rec.session_run_id
    assert rows[1]["completion_tokens"] == 3 and rows[1]["token_source"] == "chunk_count"
    assert rows[1]["cpu_pct"] == 42.0 and rows[2]["stream"] is False
    assert rec.sampler is not None and rec.sampler.active == 0  # type: ignore[attr-defined]
    assert rec.text(rows[2]["call_id"]) == "whole"
    # The store holds the same rows, with the text, readable back after a "restart".
    assert rec.store is not None
    rec.store.close()
    hist = _frames.history(tmp_path / "calls.sqlite")
    assert list(hist["call_id"]) == [r["call_id"] for r in rows]
    assert list(hist["text"]) == ["abc", "abc", "whole"]
    assert hist["warmup"].tolist() == [True, False, False]
    assert hist["started_at"].dt.tz is not None


async def test_failed_and_cancelled_calls_keep_partial_text(rec: Recorder) -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            text='data: {"choices":[{"index":0,"delta":{"content":"par'
            'tial"}}]}\n\ndata: {"error":{"code":500,"message":"boom"}}\n\n',
        )

    with pytest.raises(llm_nb.ServerError):
        await mock(LlamaCppProvider, broken).stream("m", "hi").collect()
    s = mock(LlamaCppProvider).stream("m", "hi")
    async for _ in s:
        break
    await s.aclose()
    err, cancelled = rec.rows()
    assert (err["status"], err["error_type"]) == ("error", "ServerError")
    assert rec.text(err["call_id"]) == "partial"
    assert cancelled["status"] == "cancelled" and rec.text(cancelled["call_id"]) == "a"


async def test_run_id_follows_sync_calls_onto_the_loop_thread(rec: Recorder) -> None:
    p = mock(OpenAIProvider, host="api.openai.com:443")  # the mock transport answers

    def sync_calls() -> None:
        with new_run("sync-run"):
            llm_nb.sync(p).chat("gpt-4o-mini", "hi")
            list(llm_nb.sync(p).stream("gpt-4o-mini", "hi"))

    await asyncio.to_thread(sync_calls)
    a, b = rec.rows()
    assert a["run_id"] == b["run_id"] == "sync-run"
    # gpt-4o-mini on api.openai.com is metered: 1000 prompt + 2000 completion tokens
    assert a["cost_usd"] == pytest.approx((1000 * 0.15 + 2000 * 0.60) / 1e6)
    assert math.isnan(b["cost_usd"])  # no usage reported: unknown, not 0


async def test_summary_excludes_warmup_and_counts_errors(rec: Recorder) -> None:
    p = mock(LlamaCppProvider)
    with new_run("s1"):
        with warmup():
            await p.chat("m", "hi")
        for _ in range(4):
            await p.stream("m", "hi").collect()
        bad = mock(
            LlamaCppProvider, lambda r: httpx.Response(400, json={"error": {"message": "x"}})
        )
        with pytest.raises(llm_nb.BadRequestError):
            await bad.chat("m", "hi")
        # A stream the user stopped: cancelled, neither ok nor an error.
        stopped = p.stream("m", "hi")
        async for _ in stopped:
            break
        await stopped.aclose()
    assert stopped.response.status == "cancelled"
    df = _frames.frame(rec.rows())
    summ = _frames.summary(df)
    (row,) = summ.to_dict("records")
    assert (row["n_ok"], row["n_error"], row["n_cancelled"]) == (4, 1, 1)
    assert row["error_rate"] == 0.2  # 1 error in the 5 calls that were not stopped
    assert row["output_tokens"] == 12
    ok = df[(df.status == "ok") & ~df.warmup]
    assert row["ttft_s_p50"] == pytest.approx(ok["ttft_s"].median())
    assert row["e2e_s_max"] == pytest.approx(ok["e2e_s"].max())
    for m in ("ttft_s", "tpot_s", "e2e_s", "output_tps"):
        for q in ("mean", "p50", "p90", "p95", "p99", "max"):
            assert f"{m}_{q}" in summ.columns
    assert math.isnan(row["cost_usd"])


@pytest.mark.parametrize(
    ("build_info", "shown"),
    [
        ("b0-unknown", None),  # built without git history: no build at all
        ("b11434-unknown", "b11434"),
        ("b0-a2cbcf7", "a2cbcf7"),
        ("b11434-a2cbcf7", "b11434-a2cbcf7"),
        ("0.12.3", "0.12.3"),  # another server's own string passes as given
        ("", None),
        (None, None),
        (7, None),
    ],
)
def test_server_build_drops_placeholders(build_info: Any, shown: str | None) -> None:
    assert _frames.build_label(build_info) == shown
    df = _frames.frame([call_row(record(run_id="r"))])
    key = ("r", "llamacpp", "127.0.0.1:8080", "m")
    (row,) = _frames.summary(df, servers={key: {"build": build_info}}).to_dict("records")
    assert row["server_build"] == shown


def test_export_csv_and_bad_suffix(rec: Recorder, tmp_path: Path) -> None:
    import pandas as pd

    df = _frames.frame([call_row(record())])
    out = _frames.export(df, tmp_path / "s.csv")
    back = pd.read_csv(out)
    assert back.loc[0, "ttft_s"] == pytest.approx(0.1)
    with pytest.raises(llm_nb.InvalidOptionError, match=r"\.csv or \.parquet"):
        _frames.export(df, tmp_path / "s.xlsx")


def test_recording_does_not_import_pandas(tmp_path: Path) -> None:
    code = """
import sys, httpx, llm_nb
from llm_nb.providers import LlamaCppProvider
def h(r):
    return httpx.Response(200, json={"model": "m", "choices": [{"index": 0, "message":
        {"role": "assistant", "content": "x"}, "finish_reason": "stop"}]})
p = LlamaCppProvider("127.0.0.1:9", transport=httpx.MockTransport(h))
llm_nb.sync(p).chat("m", "hi")
from llm_nb._session import get_recorder
assert len(get_recorder().rows()) == 1, get_recorder().rows()
assert "pandas" not in sys.modules, "pandas imported by recording"
print(type(llm_nb.stats()).__name__)
"""
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"LLM_NB_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "DataFrame"
    assert (tmp_path / "calls.sqlite").exists()


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
from test_recorder import record
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


async def test_ollama_durations_map_to_srv_columns(rec: Recorder) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        lines = [
            {
                "model": "q",
                "created_at": "t",
                "message": {"role": "assistant", "content": "hi"},
                "done": False,
            },
            {
                "model": "q",
                "created_at": "t",
                "message": {"role": "assistant", "content": ""},
                "done": True,
                "done_reason": "stop",
                "total_duration": 50_000_000,
                "load_duration": 20_000_000,
                "prompt_eval_count": 3,
                "prompt_eval_duration": 10_000_000,
                "eval_count": 1,
                "eval_duration": 5_000_000,
            },
        ]
        return httpx.Response(200, text="".join(json.dumps(x) + "\n" for x in lines))

    t = (await mock(OllamaProvider, handler).stream("q", "hi").collect()).trace
    (row,) = rec.rows()
    assert (
        row["srv_load_ms"],
        row["srv_prompt_ms"],
        row["srv_decode_ms"],
        row["srv_total_ms"],
    ) == (20.0, 10.0, 5.0, 50.0)
    # Measured to the done:true line, which carries the durations and follows the last token.
    assert t.t_done_ns is not None and t.t_send_ns is not None
    assert t.t_done_ns >= t.token_times_ns[-1]
    assert row["client_overhead_ms"] == pytest.approx((t.t_done_ns - t.t_send_ns) / 1e6 - 35.0)


async def test_llama_server_timings_map_to_srv_columns(rec: Recorder) -> None:
    """llama-server's ``timings`` (already in ms) land in the srv_* columns unchanged."""
    timings = {
        "prompt_n": 10,
        "prompt_ms": 12.5,
        "cache_n": 4,
        "predicted_n": 3,
        "predicted_ms": 30.25,
        "predicted_per_second": 99.17,
    }

    def handler(request: httpx.Request) -> httpx.Response:
        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            obj = {"model": "m", "object": "chat.completion.chunk", "choices": [choice], **extra}
            return f"data: {json.dumps(obj)}\n\n"

        body = chunk({"role": "assistant", "content": None})
        body += "".join(chunk({"content": t}) for t in ("a", "b", "c"))
        body += chunk({}, "stop", timings=timings)
        usage = {"prompt_tokens": 14, "completion_tokens": 3, "total_tokens": 17}
        body += f"data: {json.dumps({'model': 'm', 'choices': [], 'usage': usage})}\n\n"
        return httpx.Response(200, text=body + "data: [DONE]\n\n")

    r = await mock(LlamaCppProvider, handler).stream("m", "hi").collect()
    assert r.text == "abc"
    (row,) = rec.rows()
    assert (row["srv_prompt_n"], row["srv_cache_n"], row["srv_decode_n"]) == (10, 4, 3)
    assert (row["srv_prompt_ms"], row["srv_decode_ms"], row["srv_total_ms"]) == (
        12.5,
        30.25,
        42.75,
    )
    assert math.isnan(row["srv_load_ms"])  # llama-server does not report a load time
    assert row["srv_output_tps"] == pytest.approx(3 / 30.25 * 1000)
    # To the chunk with the timings (t_done), which may come after the last token.
    t = r.trace
    assert t.t_done_ns is not None and t.t_send_ns is not None
    assert row["client_overhead_ms"] == pytest.approx((t.t_done_ns - t.t_send_ns) / 1e6 - 42.75)


# -- fidelity against the real llama-server ---------------------------------------------------


@pytest.mark.server
async def test_fidelity_against_llama_server(rec: Recorder, llama_server: Any) -> None:
    """Median client decode_s within 2% of the server's predicted_ms, and token counts equal
    to the server's usage, over a batch of sequential calls."""
    async with LlamaCppProvider(llama_server.url) as p:
        with new_run("fidelity"):
            for i in range(8):
                await p.stream(
                    "smollm2",
                    f"Tell a story about a fox, part {i}.",
                    max_tokens=120,
                    temperature=0.7,
                    seed=i,
                ).collect()
    rows = [r for r in rec.rows() if r["run_id"] == "fidelity"]
    assert all(r["status"] == "ok" for r in rows)
    ratios, literal = [], []
    for r in rows:
        assert r["completion_tokens"] == r["srv_decode_n"] == r["n_chunks"]
        assert r["prompt_tokens"] == r["srv_prompt_n"] + r["srv_cache_n"]
        # Client decode_s spans first → last token (n-1 intervals); the server's predicted_ms
        # covers n token steps, so compare per-interval rates.
        client = r["decode_s"] * 1000 / (r["completion_tokens"] - 1)
        server = r["srv_decode_ms"] / r["srv_decode_n"]
        ratios.append(client / server)
        literal.append(r["decode_s"] * 1000 / r["srv_decode_ms"])
        assert r["ttft_s"] * 1000 > r["srv_prompt_ms"]  # the prompt is inside ttft
        assert not math.isnan(r["client_overhead_ms"])
    assert abs(statistics.median(ratios) - 1) < 0.02, ratios
    assert abs(statistics.median(literal) - 1) < 0.02, literal
    # Host and server facts reach the summary (the server's are fetched in the background).
    key = ("fidelity", "llamacpp", rows[0]["host"], "smollm2")
    for _ in range(100):
        if rec.server_facts.get(key, {}).get("fetched_at"):
            break
        await asyncio.sleep(0.05)
    summ = _frames.summary(_frames.frame(rows), rec.host_facts(), rec.server_facts)
    (row,) = summ.to_dict("records")
    assert row["quantization"] == "Q4_1" and row["n_ctx"] == 1024
    assert row["host_cores"] == os.cpu_count() and row["host_cpu"]
    assert row["n_ok"] == 8 and row["throughput_tps"] > 0
