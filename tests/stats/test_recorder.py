"""The recorder (llm_nb/_stats/_recorder.py): rows of runs, warm-up and the store, failed and
cancelled calls, the run id across threads, no pandas while recording; fidelity against the
real llama-server."""

from __future__ import annotations

import asyncio
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

import llm_nb
from llm_nb._stats import Recorder, _frames, new_run, warmup
from llm_nb.providers import LlamaCppProvider, OpenAIProvider
from tests.stats.calls import mock


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
