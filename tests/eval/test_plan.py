"""An evaluation's plan (llm_nb/_eval/_plan.py): the order cells are sent in (grouped,
interleaved round by round, shuffled), the seeds, a resumed run's order, and bad arguments
refused before any call."""

from __future__ import annotations

import asyncio
from typing import Any

import pandas as pd
import pytest

import llm_nb
from llm_nb import InvalidOptionError
from llm_nb._registry import Registry
from tests.eval.scripted_server import MockServer, serve


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
