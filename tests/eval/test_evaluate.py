"""The evaluation runner: scorers, frames and summaries, per-host concurrency, warm-up, seeds,
errors, interrupt and resume, progress and plots; then one run against the real llama-server.

Fast tests script llama-servers with ``httpx.MockTransport`` providers registered in a fresh
registry, and count the chat requests they receive.
"""

from __future__ import annotations

import asyncio
import io
import json
import math
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import matplotlib
import pandas as pd
import pytest

matplotlib.use("Agg")

import llm_nb
from llm_nb import InvalidOptionError, scorers
from llm_nb._eval import _progress
from llm_nb._eval import scorers as scorer_module
from llm_nb._eval._store import CellStore, run_path
from llm_nb._registry import Registry
from llm_nb._session import Session, get_loop
from llm_nb._wire.retry import RetryPolicy
from llm_nb.providers import LlamaCppProvider
from tests.kernels import iopub_until_idle, started_kernel

# -- a scripted llama-server -------------------------------------------------------------------


class MockServer:
    """Answers chat requests with SSE; counts them and how many are in flight at once.

    ``answer(prompt)`` gives the text (raise to answer 500); ``delay_s`` holds each request;
    a prompt in ``hold`` waits until ``release`` is set (or the request is cancelled).
    ``arrivals``, which several servers may share, gets (model, prompt) as requests arrive.
    """

    def __init__(
        self,
        answer: Callable[[str], str] = lambda p: f"answer to {p}",
        delay_s: float = 0.0,
        hold: frozenset[str] = frozenset(),
        arrivals: list[tuple[str, str]] | None = None,
    ) -> None:
        self.answer = answer
        self.delay_s = delay_s
        self.hold = hold
        self.arrivals = arrivals if arrivals is not None else []
        self.release = asyncio.Event()
        self.bodies: list[dict[str, Any]] = []
        self.inflight = 0
        self.max_inflight = 0
        self.per_model: dict[str, int] = {}
        self.max_models_at_once = 0
        self.cancelled = 0

    @property
    def requests(self) -> int:
        return len(self.bodies)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if not request.url.path.endswith("/chat/completions"):
            return httpx.Response(404, json={"error": {"message": "not here"}})
        body = json.loads(request.content)
        self.bodies.append(body)
        prompt = body["messages"][-1]["content"]
        self.arrivals.append((body["model"], prompt))
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        model = body["model"]
        self.per_model[model] = self.per_model.get(model, 0) + 1
        busy = sum(1 for n in self.per_model.values() if n)
        self.max_models_at_once = max(self.max_models_at_once, busy)
        try:
            if prompt in self.hold:
                await self.release.wait()
            await asyncio.sleep(self.delay_s)
            try:
                text = self.answer(prompt)
            except Exception as exc:
                return httpx.Response(500, json={"error": {"code": 500, "message": str(exc)}})
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.inflight -= 1
            self.per_model[model] -= 1
        words = text.split(" ")
        chunks = [w if i == 0 else " " + w for i, w in enumerate(words)]
        events = [
            {"model": body["model"], "choices": [{"index": 0, "delta": {"content": c}}]}
            for c in chunks
        ]
        events.append(
            {
                "model": body["model"],
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 5, "completion_tokens": len(chunks)},
            }
        )
        sse = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
        return httpx.Response(200, text=sse, headers={"content-type": "text/event-stream"})


@pytest.fixture
def reg(session: Session, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Registry:
    """The registry of a fresh session, made the default for the test, and an empty data
    dir for saved runs."""
    monkeypatch.setenv("LLM_NB_DATA_DIR", str(tmp_path))
    return session.registry


def serve(reg: Registry, server: MockServer, host: str) -> str:
    """Register a llama.cpp provider at ``host`` answered by ``server``; its model id prefix."""
    reg.add(
        LlamaCppProvider(
            host,
            transport=httpx.MockTransport(server.handle),
            retry=RetryPolicy(max_retries=0),
        )
    )
    return f"llamacpp:{{}}@{host}"


# -- scorers ------------------------------------------------------------------------------------


def test_builtin_scorers() -> None:
    assert scorers.exact("  Paris\n", "Paris") is True
    assert scorers.exact("paris", "Paris") is False
    assert scorers.exact("x", None) is None
    assert scorers.contains("It is Paris.", "Paris") and not scorers.contains("paris", "Paris")
    assert scorers.icontains("It is PARIS.", "paris") is True
    assert scorers.regex("answer: 42", r"\b4\d\b") is True
    assert scorers.regex("answer: 4", r"\b4\d\b") is False
    assert scorers.matches(r"^\d+$")("123", None) is True
    assert scorers.valid_json('{"a": 1}') and scorers.valid_json('```json\n{"a": 1}\n```')
    assert not scorers.valid_json("{'a': 1}") and not scorers.valid_json("")
    schema = {
        "type": "object",
        "required": ["name", "age"],
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    }
    check = scorers.json_schema(schema)
    assert check('{"name": "Ada", "age": 36}', None) is True
    assert check('{"name": "Ada"}', None) is False
    assert check('{"name": "Ada", "age": "old"}', None) is False
    assert check("not json", None) is False
    per_row = scorers.json_schema()
    assert per_row("[1, 2]", {"type": "array", "items": {"type": "number"}}) is True
    assert per_row("[1, 2]", None) is None
    with pytest.raises(InvalidOptionError, match="invalid JSON schema"):
        scorers.json_schema({"type": 12})


def test_json_schema_fallback_without_jsonschema(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scorer_module, "_jsonschema", lambda: None)
    schema = {
        "type": "object",
        "required": ["tags"],
        "properties": {
            "tags": {"type": "array", "items": {"type": "string"}},
            "n": {"type": ["integer", "null"]},
            "kind": {"enum": ["a", "b"]},
        },
        "additionalProperties": False,
    }
    check = scorers.json_schema(schema)
    assert check('{"tags": ["x"], "n": 3, "kind": "a"}', None) is True
    assert check('{"tags": ["x"], "n": null}', None) is True
    assert check('{"tags": ["x"], "n": 2.0}', None) is True  # 2.0 is an integer in JSON Schema
    assert check('{"tags": [1]}', None) is False
    assert check('{"n": 3}', None) is False
    assert check('{"tags": [], "kind": "c"}', None) is False
    assert check('{"tags": [], "extra": 1}', None) is False
    assert check('{"tags": [], "n": true}', None) is False  # a bool is not an integer
    assert scorer_module.schema_errors([1], {"type": "object"}) == ["$: [1] is not of type object"]


# -- the runner against scripted servers ------------------------------------------------------


async def test_frame_summary_and_scores(reg: Registry) -> None:
    a, b = MockServer(), MockServer(answer=lambda p: "wrong")
    ma = serve(reg, a, "eval-a:1").format("m1")
    mb = serve(reg, b, "eval-b:1").format("m2")
    prompts = pd.DataFrame(
        {
            "prompt": ["one", "two", "three"],
            "expected": ["answer to one", "answer to two", None],
            "topic": ["x", "y", "z"],
        }
    )

    def row_aware(answer: str, expected: Any, row: dict[str, Any]) -> float:
        return 0.5 if row["topic"] == "x" else 1.0

    result = await llm_nb.aevaluate(
        prompts,
        [ma, mb],
        repeats=2,
        warmup=0,
        scorers=["exact", "icontains", row_aware, lambda ans, exp: len(ans) > 3],
        progress=False,
        max_tokens=8,
    )
    df = result.frame
    assert len(df) == 12 and list(df.columns[:3]) == ["prompt", "expected", "topic"]
    assert list(df[["prompt", "model_id", "repeat"]].itertuples(index=False))[:4] == [
        ("one", ma, 0),
        ("one", ma, 1),
        ("one", mb, 0),
        ("one", mb, 1),
    ]
    for col in ("answer", "error", "score_exact", "score_icontains", "score_row_aware",
                "score_lambda", "ttft_s", "queue_s", "output_tps", "completion_tokens",
                "text_sha256", "call_id", "run_id"):  # fmt: skip
        assert col in df.columns, col
    assert set(df["status"]) == {"ok"} and df["error"].isna().all()
    assert (df["run_id"] == result.run).all() and result.run.startswith("eval-")
    on_a = df[df["model_id"] == ma]
    assert on_a["score_exact"].tolist()[:4] == [1.0, 1.0, 1.0, 1.0]
    assert on_a["score_exact"].isna().sum() == 2  # no expected answer for "three"
    assert df[df["model_id"] == mb]["score_exact"].tolist()[:4] == [0.0] * 4
    assert df[df["topic"] == "x"]["score_row_aware"].eq(0.5).all()
    assert df["completion_tokens"].tolist()[:2] == [3.0, 3.0]
    assert (df["token_source"] == "server_usage").all()
    assert a.requests == b.requests == 6 and a.bodies[0]["max_tokens"] == 8

    summ = result.summary
    assert summ["model_id"].tolist() == [ma, mb]
    first = summ.iloc[0]
    assert first["score_exact"] == 1.0 and summ.iloc[1]["score_exact"] == 0.0
    assert first["score_row_aware"] == pytest.approx((0.5 * 2 + 1.0 * 4) / 6)
    assert (first["n"], first["n_ok"], first["error_rate"]) == (6, 6, 0.0)
    for col in ("ttft_s_p50", "ttft_s_p95", "output_tps_mean", "e2e_s_mean", "host_cpu"):
        assert col in summ.columns, col
    assert first["ttft_s_p50"] == pytest.approx(on_a["ttft_s"].median())
    assert result.resumed == 0 and "12 cells" in repr(result)
    html = result._repr_html_()
    assert f"<b>evaluation {result.run}</b>: 12 cells" in html
    # The summary table: one row per model, its scores, its cell count (n = 6); key columns
    # only, with units, while .summary keeps them all.
    heads = re.findall(r"<th\b[^>]*>(.*?)</th>", html)
    scores = [f"score: {c[len('score_') :]}" for c in summ.columns if c.startswith("score_")]
    assert heads[: len(scores) + 2] == ["model", *scores, "cells"], heads
    assert "TTFT p50 (s)" in heads and len(heads) < len(summ.columns)
    rows = html.split("<tbody>")[1].split("</tbody>")[0].split("<tr>")[1:]
    assert len(rows) == 2
    for row, model_id in zip(rows, (ma, mb), strict=True):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
        assert cells[0] == model_id and cells[len(scores) + 1] == "6", cells
    assert f"of {len(summ.columns)} columns" in html

    again = result.rescore({"has_to": scorers.contains})
    assert list(again.summary.columns[:2]) == ["model_id", "score_has_to"]
    assert a.requests == 6  # rescoring makes no call


async def test_grouped_order_runs_models_in_turn_and_counts_queue_time(reg: Registry) -> None:
    a, b = MockServer(delay_s=0.1), MockServer(delay_s=0.1)
    a_models = [serve(reg, a, "eval-a:2").format(m) for m in ("m1", "m2")]
    b_model = serve(reg, b, "eval-b:2").format("m3")
    prompts = [f"p{i}" for i in range(9)]
    result = await llm_nb.aevaluate(
        prompts, [*a_models, b_model], concurrency=3, warmup=1, order="grouped", progress=False
    )
    assert a.max_inflight == 3 and b.max_inflight == 3
    # On one server the models take turns: never two models' calls at once.
    assert a.max_models_at_once == 1
    assert a.requests == 2 * (9 + 1) and b.requests == 9 + 1
    df = result.frame
    # 9 cells, 3 at a time: the last wave waited two rounds of 100 ms, and says so in
    # queue_s; ttft_s starts at the send, so it holds one server delay, not three.
    on_b = df[df["model_id"] == b_model].sort_values("queue_s")
    assert on_b["queue_s"].iloc[-1] >= 0.2
    assert (on_b["ttft_s"] < on_b["queue_s"].iloc[-1]).all()
    assert (df["ttft_s"] >= 0.1).all()
    # The servers ran side by side: b started before a's second model was done.
    on_a2 = df[df["model_id"] == a_models[1]]
    assert on_b["started_at"].min() < on_a2["started_at"].max()


def _rounds(models: list[str], prompts: list[str], repeats: int = 1) -> list[tuple[str, str]]:
    """The interleaved order: round by round, the models' order turning by one each round."""
    order = []
    for number in range(repeats * len(prompts)):
        turn = number % len(models)
        for m in [*models[turn:], *models[:turn]]:
            order.append((m, prompts[number % len(prompts)]))
    return order


async def test_contenders_are_interleaved_round_by_round_across_servers(reg: Registry) -> None:
    arrivals: list[tuple[str, str]] = []
    a = MockServer(delay_s=0.01, arrivals=arrivals)
    b = MockServer(delay_s=0.01, arrivals=arrivals)
    models = [serve(reg, a, "eval-a:20").format("m1"), serve(reg, a, "eval-a:20").format("m2")]
    models.append(serve(reg, b, "eval-b:20").format("m3"))
    prompts = ["p0", "p1", "p2", "p3"]
    result = await llm_nb.aevaluate(
        prompts, models, repeats=2, warmup=1, concurrency=1, progress=False
    )
    names = ["m1", "m2", "m3"]
    # Every warm-up first (each model's first prompt), then prompt by prompt on every model:
    # never one model's prompts back to back while the others wait.
    assert arrivals[:3] == [("m1", "p0"), ("m2", "p0"), ("m3", "p0")]
    assert arrivals[3:] == _rounds(names, prompts, repeats=2)
    assert a.max_inflight == 1 and b.max_inflight == 1
    # Each model went first in a round as often as the others.
    firsts = [arrivals[3 + 3 * r][0] for r in range(8)]
    assert sorted(firsts.count(n) for n in names) == [2, 3, 3]
    # The frame keeps its own order (prompt, model, repeat), whatever the send order.
    assert result.frame["model_id"].tolist()[:2] == [models[0], models[0]]
    started = result.frame.sort_values("started_at")
    assert [m.split(":")[1].split("@")[0] for m in started["model_id"][:3]] == names
    # Cells of one prompt and repeat pair up across models.
    paired = result.compare(models[0], models[2])
    assert list(paired.index) == ["ttft_s", "tpot_s", "e2e_s", "output_tps"]
    assert (paired["n_pairs"] == 8).all() and paired["verdict"].notna().all()


async def test_interleaving_keeps_the_per_server_concurrency(reg: Registry) -> None:
    arrivals: list[tuple[str, str]] = []
    a = MockServer(delay_s=0.05, arrivals=arrivals)
    b = MockServer(delay_s=0.05, arrivals=arrivals)
    models = [serve(reg, a, "eval-a:21").format(m) for m in ("m1", "m2")]
    models.append(serve(reg, b, "eval-b:21").format("m3"))
    prompts = [f"p{i}" for i in range(6)]
    result = await llm_nb.aevaluate(prompts, models, concurrency=2, warmup=0, progress=False)
    assert a.max_inflight == 2 and b.max_inflight <= 2 and len(arrivals) == 18
    # Sent in round order even with calls in flight side by side.
    assert arrivals == _rounds(["m1", "m2", "m3"], prompts)
    # Two models share server a's two slots, so some waited for one: queue time, not ttft.
    on_a = result.frame[result.frame["model_id"] != models[2]]
    assert on_a["queue_s"].max() >= 0.04 and (on_a["ttft_s"] < 0.5).all()


async def test_shuffled_order_is_seeded_and_still_round_by_round(reg: Registry) -> None:
    async def arrivals_for(seed: int | None, port: int) -> list[tuple[str, str]]:
        arrivals: list[tuple[str, str]] = []
        server = MockServer(arrivals=arrivals)
        host = f"eval-a:{port}"
        ids = [serve(reg, server, host).format(m) for m in ("m1", "m2", "m3", "m4")]
        await llm_nb.aevaluate(
            [f"p{i}" for i in range(6)], ids, order="shuffled", seed=seed, warmup=0,
            concurrency=1, progress=False,
        )  # fmt: skip
        return arrivals

    first = await arrivals_for(5, 22)
    rounds = [first[i : i + 4] for i in range(0, 24, 4)]
    for number, found in enumerate(rounds):
        assert sorted(found) == [(m, f"p{number}") for m in ("m1", "m2", "m3", "m4")]
    assert len({tuple(m for m, _ in r) for r in rounds}) > 1  # not one fixed order
    assert await arrivals_for(5, 23) == first  # a rerun sends in the same order
    assert await arrivals_for(6, 24) != first


async def test_resumed_run_keeps_the_interleaved_order(reg: Registry) -> None:
    arrivals: list[tuple[str, str]] = []
    server = MockServer(hold=frozenset({"p2"}), arrivals=arrivals)
    models = [serve(reg, server, "eval-a:25").format(m) for m in ("m1", "m2")]
    prompts = ["p0", "p1", "p2", "p3"]
    task = asyncio.create_task(
        llm_nb.aevaluate(
            prompts, models, run="resume-order", warmup=0, concurrency=1, progress=False
        )
    )
    async with asyncio.timeout(30):
        while len(arrivals) < 5:  # p0 and p1 on both, then p2 held on the first model
            await asyncio.sleep(0.005)
    assert arrivals == _rounds(["m1", "m2"], prompts)[:5]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    server.hold = frozenset()
    arrivals.clear()
    await llm_nb.aevaluate(
        prompts, models, run="resume-order", resume=True, warmup=0, concurrency=1,
        progress=False,
    )  # fmt: skip
    assert arrivals == _rounds(["m1", "m2"], prompts)[4:]


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


async def test_seed_per_prompt_and_repeat_same_on_every_model(reg: Registry) -> None:
    server = MockServer()
    models = [serve(reg, server, "eval-a:4").format(m) for m in ("m1", "m2")]
    result = await llm_nb.aevaluate(
        ["a", "b"], models, repeats=3, seed=7, warmup=0, progress=False, temperature=0.5
    )
    sent = {(b["model"], b["messages"][-1]["content"], b["seed"]) for b in server.bodies}
    assert sent == {(m, p, 7 + r) for m in ("m1", "m2") for p in "ab" for r in range(3)}
    assert all(b["temperature"] == 0.5 for b in server.bodies)
    df = result.frame
    assert (df["seed"] == 7 + df["repeat"]).all()
    plain = MockServer()
    model = serve(reg, plain, "eval-b:4").format("m")
    unseeded = await llm_nb.aevaluate(["a"], [model], warmup=0, progress=False)
    assert "seed" not in plain.bodies[0] and unseeded.frame["seed"].isna().all()


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


async def test_bad_arguments_are_refused_before_any_call(reg: Registry) -> None:
    server = MockServer()
    model = serve(reg, server, "eval-a:9").format("m")
    bad: list[tuple[dict[str, Any], str]] = [
        ({"prompts": ["a"], "models": [model], "colour": 1}, "unknown option colour"),
        ({"prompts": ["a"], "models": [model], "repeats": 0}, "repeats"),
        ({"prompts": ["a"], "models": [model], "concurrency": 0}, "concurrency"),
        ({"prompts": ["a"], "models": [model], "order": "random"}, "order must be one of"),
        ({"prompts": [], "models": [model]}, "no prompts"),
        ({"prompts": ["a"], "models": []}, "models"),
        ({"prompts": ["a"], "models": [model, model]}, "twice"),
        ({"prompts": ["a"], "models": ["nope"]}, "provider"),
        ({"prompts": pd.DataFrame({"q": ["a"]}), "models": [model]}, "'prompt' column"),
        ({"prompts": pd.DataFrame({"prompt": ["a"], "status": [1]}), "models": [model]}, "rename"),
        ({"prompts": ["a", "b"], "models": [model], "expected": ["x"]}, "one per prompt"),
        ({"prompts": ["a"], "models": [model], "resume": True}, "run's name"),
        ({"prompts": ["a"], "models": [model], "scorers": ["nope"]}, "unknown scorer"),
        ({"prompts": ["a"], "models": [model], "temperature": 9}, "temperature"),
    ]
    for kwargs, match in bad:
        with pytest.raises(InvalidOptionError, match=match):
            await llm_nb.aevaluate(progress=False, **kwargs)
    assert server.requests == 0


async def test_a_failing_scorer_warns_and_scores_nan(reg: Registry) -> None:
    server = MockServer()
    model = serve(reg, server, "eval-a:10").format("m")

    def broken(answer: str, expected: Any) -> float:
        raise ValueError("oops")

    with pytest.warns(RuntimeWarning, match="scorer 'broken' failed on 2 cell"):
        result = await llm_nb.aevaluate(
            ["a", "b"], [model], scorers=[broken, "valid_json"], warmup=0, progress=False
        )
    assert result.frame["score_broken"].isna().all()
    assert result.frame["score_valid_json"].tolist() == [0.0, 0.0]


def test_saved_cells_survive_a_torn_line(tmp_path: Path) -> None:
    store = CellStore(tmp_path / "run.jsonl")
    store.append({"key": "a", "status": "ok"})
    store.close()
    with (tmp_path / "run.jsonl").open("a") as f:
        f.write('{"key": "b", "sta')  # the process died mid-write
    store.append({"key": "c", "status": "ok"})
    store.close()
    assert sorted(store.load()) == ["a", "c"]


# -- progress and plots -------------------------------------------------------------------------


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_text_progress_rewrites_one_line_on_a_terminal_only() -> None:
    tty = Tty()
    shown = _progress.TextProgress("evaluate r", tty, every_s=0)
    shown.start(3, 1)
    shown.current("llamacpp:m@h:1")
    shown.advance(error=True)
    shown.advance(error=False)
    shown.close()
    out = tty.getvalue()
    assert out.count("\n") == 1 and out.endswith("\n") and out.count("\r") >= 4
    assert "evaluate r: 3/3 cells · 1 failed" in out.rsplit("\r", 1)[1]
    pipe = io.StringIO()
    shown = _progress.TextProgress("evaluate r", pipe, every_s=0)
    shown.start(2, 0)
    shown.advance(error=False)
    shown.close("interrupted", failed=True)
    assert pipe.getvalue().count("\n") == 1 and "1/2 cells" in pipe.getvalue()
    assert "interrupted" in pipe.getvalue()


def test_widget_progress_in_a_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_progress, "in_kernel", lambda: True)
    shown = _progress.make_progress(True, "evaluate r")
    assert isinstance(shown, _progress.WidgetProgress)
    shown.start(4, 1)
    shown.advance(error=False)
    shown.close()
    assert (shown.bar.value, shown.bar.max, shown.bar.bar_style) == (2, 4, "success")
    assert "2/4 cells" in shown.text.value
    monkeypatch.setattr(_progress, "in_kernel", lambda: False)
    assert isinstance(_progress.make_progress(True, "x"), _progress.TextProgress)
    assert isinstance(_progress.make_progress(False, "x"), _progress.NullProgress)


async def test_progress_line_on_stderr(reg: Registry, capsys: pytest.CaptureFixture[str]) -> None:
    server = MockServer()
    model = serve(reg, server, "eval-a:11").format("m")
    result = await llm_nb.aevaluate(["a", "b"], [model], warmup=0, run="shown")
    err = capsys.readouterr().err
    assert err == err.splitlines()[0] + "\n" and "evaluate shown: 2/2 cells" in err
    assert result.run == "shown"


def test_import_stays_light() -> None:
    code = (
        "import sys, llm_nb; llm_nb.scorers.exact; llm_nb.evaluate; "
        "print(sorted(m for m in ('ipywidgets', 'matplotlib', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


async def test_plots(reg: Registry) -> None:
    from matplotlib.figure import Figure

    server = MockServer(answer=lambda p: " ".join(["w"] * len(p)))
    models = [serve(reg, server, "eval-a:12").format(m) for m in ("m1", "m2")]
    result = await llm_nb.aevaluate(
        ["a", "bbb", "ccccc"], models, expected="w", scorers=["exact", "contains"],
        warmup=0, repeats=2, progress=False,
    )  # fmt: skip
    import matplotlib.pyplot as plt

    open_before = plt.get_fignums()
    for kind in ("ttft", "tps", "score", "latency"):
        fig = result.plot(kind)
        assert isinstance(fig, Figure) and fig.axes, kind
        fig.savefig(io.BytesIO(), format="png")
    ax = result.plot("ttft").axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == models
    # Beside each box, the median's interval: 6 calls per model give [min, max].
    from matplotlib.container import ErrorbarContainer

    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 2
    for bar, model_id in zip(bars, models, strict=True):
        ttft = result.frame.loc[result.frame["model_id"] == model_id, "ttft_s"]
        (_, y), *_ = bar.lines[0].get_xydata()
        assert y == pytest.approx(ttft.median())
        low, high = result.summary.set_index("model_id").loc[
            model_id, ["ttft_s_p50_ci_low", "ttft_s_p50_ci_high"]
        ]
        assert (low, high) == (pytest.approx(ttft.min()), pytest.approx(ttft.max()))
    points = result.plot("latency").axes[0].collections
    assert sorted(len(c.get_offsets()) for c in points) == [6, 6]
    bars = result.plot("score").axes[0].patches
    assert len(bars) == 4
    fig, own = plt.subplots()
    assert result.plot("tps", ax=own) is fig
    plt.close(fig)
    with pytest.raises(InvalidOptionError, match="unknown plot"):
        result.plot("pie")
    with pytest.raises(InvalidOptionError, match="no scores"):
        result.rescore([]).plot("score")
    assert plt.get_fignums() == open_before  # nothing left open in pyplot


# -- the real llama-server ----------------------------------------------------------------------


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
