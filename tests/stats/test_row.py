"""A call's row (llm_nb/_stats/_row.py, docs/METRICS.md): the definitions, the overhead, the NaN
rules and token sources, and llama-server ``timings`` and Ollama ``*_duration`` in the srv_*
columns."""

from __future__ import annotations

import json
import math
from typing import Any

import httpx
import pytest

import llm_nb
from llm_nb._stats import COLUMNS, Recorder, call_row
from llm_nb._types import CallTrace, ServerTimings, Usage
from llm_nb.providers import LlamaCppProvider, OllamaProvider
from tests.stats.calls import MS, mock, record


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
