"""The evaluation runner (llm_nb/_eval/_runner.py): warm-up, failed cells, cancel and Ctrl-C
with resume, the sync call inside a running loop, a light import; then runs against the
real llama-server, one in a kernel interrupted and resumed.

Fast tests script llama-servers with ``httpx.MockTransport`` providers registered in a fresh
registry (``scripted_server.py``), and count the chat requests they receive."""

from __future__ import annotations

import asyncio
import json
import math
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import matplotlib
import pandas as pd
import pytest

matplotlib.use("Agg")

import llm_nb
from llm_nb import InvalidOptionError
from llm_nb._eval._store import CellStore, run_path
from llm_nb._registry import Registry
from llm_nb._session import get_loop
from llm_nb._wire.retry import RetryPolicy
from llm_nb.providers import LlamaCppProvider
from tests.eval.scripted_server import MockServer, serve
from tests.kernels import iopub_until_idle, started_kernel


async def test_warmup_is_recorded_and_left_out_of_the_summary(reg: Registry) -> None:
    server = MockServer()
    model = serve(reg, server, "eval-a:3").format("m")
    result = await llm_nb.aevaluate(
        ["a", "b"], [model], warmup=2, repeats=2, run="warm-test", progress=False
    )
    assert server.requests == 2 + 4
    assert server.bodies[0]["messages"][-1]["content"] == "a"  # the first cell's prompt
    stats = llm_nb.stats("warm-test")
    assert stats["warmup"].tolist() == [True, True, False, False, False, False]
    assert not result.frame["warmup"].any() and len(result.frame) == 4
    assert result.summary.iloc[0]["n_ok"] == 4
    assert llm_nb.summary("warm-test").iloc[0]["n_ok"] == 4


async def test_failed_cells_are_recorded_and_the_run_goes_on(reg: Registry) -> None:
    def answer(prompt: str) -> str:
        if prompt == "bad":
            raise RuntimeError("model crashed")
        return "fine"

    server = MockServer(answer=answer)
    model = serve(reg, server, "eval-a:5").format("m")
    result = await llm_nb.aevaluate(
        ["ok1", "bad", "ok2"], [model], expected="fine", warmup=0, progress=False
    )
    df = result.frame.set_index("prompt")
    assert df.loc["bad", "status"] == "error" and df.loc["bad", "error_type"] == "ServerError"
    assert "model crashed" in df.loc["bad", "error"]
    assert math.isnan(df.loc["bad", "score_exact"])  # failed cells are not scored
    assert df.loc["ok1", "status"] == "ok" and df.loc["ok2", "score_exact"] == 1.0
    row = result.summary.iloc[0]
    assert (row["n_ok"], row["n_error"], row["score_exact"]) == (2, 1, 1.0)
    assert row["error_rate"] == pytest.approx(1 / 3)
    # Two ok calls cannot bound a median: no interval rather than a made-up one.
    assert math.isnan(row["ttft_s_p50_ci_low"]) and math.isnan(row["e2e_s_p50_ci_high"])
    assert "1 failed" in repr(result)


async def test_cancelled_run_resumes_without_redoing_finished_cells(reg: Registry) -> None:
    prompts = [f"p{i}" for i in range(6)]
    first = MockServer(hold=frozenset({"p3"}))
    model = serve(reg, first, "eval-a:6").format("m")
    task = asyncio.create_task(
        llm_nb.aevaluate(prompts, [model], run="resume-me", concurrency=1, progress=False)
    )
    while first.requests < 5:  # warm-up, p0..p2, then p3 is held
        await asyncio.sleep(0.005)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert first.cancelled == 1
    saved = CellStore(run_path("resume-me")).load()
    assert sorted(c["answer"] for c in saved.values()) == [f"answer to p{i}" for i in range(3)]

    with pytest.raises(InvalidOptionError, match="resume=True"):
        await llm_nb.aevaluate(prompts, [model], run="resume-me", progress=False)

    second = MockServer()
    reg.add(
        LlamaCppProvider(
            "eval-a:6", transport=httpx.MockTransport(second.handle), retry=RetryPolicy(0)
        )
    )
    result = await llm_nb.aevaluate(
        prompts, [model], run="resume-me", resume=True, concurrency=1, progress=False
    )
    sent = [b["messages"][-1]["content"] for b in second.bodies]
    assert sent == ["p3", "p3", "p4", "p5"]  # a warm-up, then only the cells left
    assert result.resumed == 3 and len(result.frame) == 6
    assert result.frame["prompt"].tolist() == prompts and (result.frame["status"] == "ok").all()

    # More repeats later: only the new cells are sent; resume=False starts over.
    more = await llm_nb.aevaluate(
        prompts, [model], run="resume-me", resume=True, repeats=2, warmup=0, progress=False
    )
    assert second.requests == 4 + 6 and more.resumed == 6 and len(more.frame) == 12
    await llm_nb.aevaluate(
        prompts, [model], run="resume-me", resume=False, warmup=0, progress=False
    )
    assert second.requests == 4 + 6 + 6


def test_ctrl_c_stops_sync_evaluate_and_keeps_finished_cells(reg: Registry, ctrl_c: None) -> None:
    server = MockServer(hold=frozenset({"p2"}))
    model = serve(reg, server, "eval-a:7").format("m")
    prompts = [f"p{i}" for i in range(4)]

    def interrupt_when_held() -> None:
        deadline = time.monotonic() + 60
        while server.requests < 3 and time.monotonic() < deadline:
            time.sleep(0.005)
        if server.requests < 3:  # never got there: let the run end and the test fail
            get_loop().call_soon_threadsafe(server.release.set)
            return
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    threading.Thread(target=interrupt_when_held, daemon=True).start()
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        llm_nb.evaluate(prompts, [model], run="ctrl-c", warmup=0, concurrency=1, progress=False)
    assert time.monotonic() - t0 < 5
    assert server.cancelled == 1  # the held call was closed, not left running
    server.hold = frozenset()
    result = llm_nb.evaluate(
        prompts, [model], run="ctrl-c", resume=True, warmup=0, concurrency=1, progress=False
    )
    assert server.requests == 3 + 2 and result.resumed == 2
    assert result.frame["answer"].tolist() == [f"answer to {p}" for p in prompts]


async def test_sync_evaluate_inside_a_running_loop(reg: Registry) -> None:
    """As in a Jupyter cell: the kernel's loop is running; evaluate() must not touch it."""
    server = MockServer()
    model = serve(reg, server, "eval-a:8").format("m")
    asyncio.get_running_loop()  # this test body runs inside the loop, like a kernel cell
    result = llm_nb.evaluate(["a", "b"], model, warmup=0, progress=False)
    assert len(result.frame) == 2 and server.requests == 2


def test_import_stays_light() -> None:
    code = (
        "import sys, llm_nb; llm_nb.scorers.exact; llm_nb.evaluate; "
        "print(sorted(m for m in ('ipywidgets', 'matplotlib', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_evaluate_on_llama_server(llama_server: Any) -> None:
    host = llama_server.url.split("://", 1)[1]
    # A single-model llama-server answers any model name with its one model.
    models = [f"llamacpp:first@{host}", f"llamacpp:second@{host}"]
    prompts = pd.DataFrame(
        {
            "prompt": ["What is 2 + 2?", "Name a colour.", "Say hello."],
            "expected": ["4", "red", "hello"],
        }
    )
    result = llm_nb.evaluate(
        prompts,
        models,
        repeats=2,
        seed=11,
        scorers=["icontains", "exact"],
        run="server-eval",
        resume=False,
        progress=False,
        temperature=0.7,
        max_tokens=8,
    )
    df = result.frame
    assert len(df) == 12 and (df["status"] == "ok").all()
    assert (df["answer"].str.len() > 0).all() and (df["chars"] == df["answer"].str.len()).all()
    assert (df["ttft_s"] > 0).all() and (df["e2e_s"] >= df["ttft_s"]).all()
    assert (df["completion_tokens"] > 0).all() and (df["completion_tokens"] <= 8).all()
    assert df["srv_decode_ms"].notna().all() and (df["model_reported"] == "smollm2").all()
    assert df["score_icontains"].isin([0.0, 1.0]).all()
    # Same seed per (prompt, repeat) on both models, and one model behind both ids:
    # the answers agree cell for cell.
    pivot = df.pivot_table(
        index=["prompt", "repeat"], columns="model_id", values="answer", aggfunc="first"
    )
    assert (pivot[models[0]] == pivot[models[1]]).all()
    summ = result.summary
    assert summ["model_id"].tolist() == models
    assert (summ["n_ok"] == 6).all() and (summ["error_rate"] == 0).all()
    assert (summ["ttft_s_p50"] > 0).all() and (summ["ttft_s_p95"] >= summ["ttft_s_p50"]).all()
    assert (summ["output_tps_mean"] > 0).all() and summ["score_icontains"].between(0, 1).all()
    stats = llm_nb.stats("server-eval")
    assert stats["warmup"].sum() == 2 and (~stats["warmup"]).sum() == 12
    assert set(stats.loc[~stats["warmup"], "call_id"]) == set(df["call_id"])
    assert result.plot("latency").axes


def test_evaluate_in_a_kernel_shows_a_widget_and_survives_an_interrupt(
    llama_server: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Sync evaluate() in a real IPython kernel (its loop is running): a progress widget,
    and a kernel interrupt that stops the run within moments and keeps finished cells."""
    with started_kernel(tmp_path_factory, "llm_nb eval") as (km, kc):
        out = _interrupt_then_resume(km, kc, llama_server)
    assert out["n"] == out["ok"] == 8 and out["resumed"] >= 1
    # Every cell was answered once: the finished ones were not sent again.
    assert out["calls_ok"] == 8 and out["cancelled"] >= 1


def _interrupt_then_resume(km: Any, kc: Any, llama_server: Any) -> dict[str, Any]:
    """Run evaluate() in the kernel, interrupt it once a cell has finished, then resume;
    what the resumed run printed."""

    def execute(
        code: str, interrupt_when: Callable[[dict[str, Any]], bool] | None = None
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        msg_id = kc.execute(code)
        messages: list[dict[str, Any]] = []
        for msg in iopub_until_idle(kc, msg_id, 120):
            messages.append(msg)
            if interrupt_when is not None and interrupt_when(msg):
                interrupt_when = None
                interrupted_at.append(time.monotonic())
                km.interrupt_kernel()
        while True:  # skip stale replies (wait_for_ready may leave a kernel_info one)
            reply = kc.get_shell_msg(timeout=10)
            if reply["parent_header"].get("msg_id") == msg_id:
                return messages, reply["content"]

    interrupted_at: list[float] = []

    def a_cell_done(msg: dict[str, Any]) -> bool:
        state = (
            msg["content"].get("data", {}).get("state", {}) if msg["msg_type"] == "comm_msg" else {}
        )
        value = state.get("value")
        return isinstance(value, int) and not isinstance(value, bool) and value >= 1

    model = f"llamacpp:smollm2@{llama_server.url.split('://', 1)[1]}"
    setup = (
        "import json, llm_nb\n"
        "prompts = [f'Count from 1 to {n}.' for n in range(1, 9)]\n"
        f"kw = dict(run='kernel-run', concurrency=2, warmup=0, max_tokens=32, "
        f"extra={{'ignore_eos': True}})\n"
        f"models = [{model!r}]\n"
    )
    _, content = execute(setup)
    assert content["status"] == "ok", content
    messages, content = execute(
        "r = llm_nb.evaluate(prompts, models, resume=False, **kw)", a_cell_done
    )
    assert content["status"] == "error" and content["ename"] == "KeyboardInterrupt"
    assert time.monotonic() - interrupted_at[0] < 5  # stopped promptly
    widgets = [
        m for m in messages
        if "application/vnd.jupyter.widget-view+json" in m["content"].get("data", {})
    ]  # fmt: skip
    assert len(widgets) == 1
    printed, content = execute(
        "r = llm_nb.evaluate(prompts, models, resume=True, **kw)\n"
        "s = llm_nb.stats('kernel-run')\n"
        "print(json.dumps({'resumed': r.resumed, 'n': len(r.frame), "
        "'ok': int((r.frame.status == 'ok').sum()), "
        "'calls_ok': int((s.status == 'ok').sum()), "
        "'cancelled': int((s.status == 'cancelled').sum())}))"
    )
    assert content["status"] == "ok", content
    out = json.loads(
        "".join(
            m["content"]["text"]
            for m in printed
            if m["msg_type"] == "stream" and m["content"]["name"] == "stdout"
        )
    )
    return out
