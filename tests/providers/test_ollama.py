"""llm_nb's Ollama provider against the Ollama contract server (tests/contract), whose every
reply is validated by the official ``ollama`` package's types. Fake-backend tests run
anywhere; the ``server`` ones put a real llama-server behind it, so text and durations are real.
Then over scripted responses: thinking, tool calls and durations in one stream, an error line.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

import llm_nb
from llm_nb import (
    ModelNotFoundError,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
)
from llm_nb.providers import OllamaProvider
from tests.contract import OllamaContractServer
from tests.scripted import Closing, ndjson, provider

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}]  # fmt: skip


@pytest.fixture
def fake() -> Iterator[OllamaContractServer]:
    with OllamaContractServer(None) as server:
        yield server
    assert server.violations == []


@pytest.fixture
async def ollama(fake: OllamaContractServer) -> AsyncIterator[OllamaProvider]:
    async with OllamaProvider(fake.url) as p:
        yield p


async def test_stream_and_whole_answer(ollama: OllamaProvider, fake: OllamaContractServer) -> None:
    s = ollama.stream("smollm2:135m", "Say hi", max_tokens=8, temperature=0.2, seed=1)
    text = "".join([d.text async for d in s if isinstance(d, TextDelta)])
    r = s.response
    assert r.status == "ok" and text == r.text and r.text
    assert r.finish_reason in ("stop", "length") and r.model_reported == "smollm2:135m"
    assert r.timings and r.timings.decode_n == r.usage.completion_tokens
    assert r.timings.total_ms and r.timings.total_ms > 0
    sent = fake.requests[-1].body
    assert sent["options"] == {"num_predict": 8, "temperature": 0.2, "seed": 1}
    whole = await ollama.chat("smollm2:135m", "Say hi", max_tokens=8)
    assert whole.stream is False and whole.text and whole.status == "ok"


async def test_tool_calls_arrive_as_json_strings(ollama: OllamaProvider) -> None:
    s = ollama.stream("smollm2:135m", "Weather in Oslo?", tools=TOOLS)
    deltas = [d async for d in s]
    calls = [d for d in deltas if isinstance(d, ToolCallDelta)]
    assert calls and calls[0].index == 0 and calls[0].name == "get_weather"
    r = s.response
    assert r.finish_reason == "tool_calls"
    assert isinstance(r.tool_calls[0].arguments, str) and "city" in r.tool_calls[0].args
    # The tool result goes back with tool_name, and the model answers.
    follow = await ollama.chat(
        "smollm2:135m",
        [
            {"role": "user", "content": "Weather in Oslo?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {"function": {"name": "get_weather", "arguments": r.tool_calls[0].arguments}}
                ],
            },
            {"role": "tool", "content": "sunny", "tool_name": "get_weather"},
        ],
        tools=TOOLS,
    )
    assert follow.status == "ok" and follow.text


async def test_thinking_is_reasoning(ollama: OllamaProvider) -> None:
    s = ollama.stream("qwen3:0.6b", "Why is the sky blue?", extra={"think": True})
    deltas = [d async for d in s]
    assert any(isinstance(d, ReasoningDelta) for d in deltas)
    assert s.response.reasoning and s.response.text
    assert s.response.trace.t_first_token_ns is not None
    assert s.response.trace.t_first_answer_ns is not None
    assert s.response.trace.t_first_answer_ns > s.response.trace.t_first_token_ns


async def test_json_schema_format(ollama: OllamaProvider, fake: OllamaContractServer) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    r = await ollama.chat("smollm2:135m", "A number", response_format=schema)
    assert fake.requests[-1].body["format"] == schema
    assert isinstance(json.loads(r.text)["n"], int)


async def test_models_load_unload_show(ollama: OllamaProvider) -> None:
    models = {m.name: m for m in await ollama.models()}
    assert set(models) == {"smollm2:135m", "qwen3:0.6b", "all-minilm:22m"}
    assert models["qwen3:0.6b"].quantization == "Q4_K_M"
    assert all(m.status == "unloaded" for m in models.values())
    await ollama.load("qwen3:0.6b", keep_alive="10m")
    models = {m.name: m for m in await ollama.models()}
    assert models["qwen3:0.6b"].status == "loaded"
    assert models["qwen3:0.6b"].context_length
    await ollama.unload("qwen3:0.6b")
    assert {m.name: m.status for m in await ollama.models()}["qwen3:0.6b"] == "unloaded"
    show = await ollama.show("qwen3:0.6b")
    assert "thinking" in show["capabilities"]


async def test_pull_progress_then_listed_then_delete(ollama: OllamaProvider) -> None:
    steps = [p async for p in ollama.pull("tinyllama")]
    assert steps[0].status == "pulling manifest" and steps[-1].status == "success"
    # Progress is per layer (digest): each one climbs to 1.0.
    layers: dict[str, list[float]] = {}
    for p in steps:
        if p.fraction is not None and p.digest:
            layers.setdefault(p.digest, []).append(p.fraction)
    assert layers
    assert all(f == sorted(f) and f[-1] == 1.0 for f in layers.values())
    assert "tinyllama:latest" in {m.name for m in await ollama.models()}
    await ollama.delete("tinyllama")
    assert "tinyllama:latest" not in {m.name for m in await ollama.models()}
    with pytest.raises(ModelNotFoundError, match=r"available: .*smollm2:135m"):
        await ollama.delete("tinyllama")


async def test_pull_unknown_model_fails_clearly(ollama: OllamaProvider) -> None:
    with pytest.raises(ModelNotFoundError, match="could not pull 'no-such-model'"):
        async for _ in ollama.pull("no-such-model"):
            pass


async def test_unknown_model_lists_available(ollama: OllamaProvider) -> None:
    with pytest.raises(ModelNotFoundError, match=r"'llama9' not found on ollama@.*qwen3:0.6b"):
        await ollama.stream("llama9", "hi").collect()


async def test_embed_version_health(ollama: OllamaProvider) -> None:
    e = await ollama.embed("all-minilm:22m", ["a", "b"])
    assert len(e.vectors) == 2 and len(e.vectors[0]) == 384
    assert await ollama.version() == "0.12.10"
    assert (await ollama.health()).ok


async def test_error_line_mid_stream_keeps_partial(
    ollama: OllamaProvider, fake: OllamaContractServer
) -> None:
    fake.faults.stream_error_after = 3
    s = ollama.stream("smollm2:135m", "Tell me a story", max_tokens=50)
    with pytest.raises(llm_nb.ServerError):
        await s.collect()
    assert s.response.text and s.response.status == "error"


async def test_abandoned_stream_closes_connection(
    ollama: OllamaProvider, fake: OllamaContractServer
) -> None:
    fake.faults.chunk_delay_s = 0.05
    s = ollama.stream("smollm2:135m", "Tell me a long story", max_tokens=200)
    async for _ in s:
        break
    await s.aclose()
    deadline = time.monotonic() + 2
    while fake.disconnects == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert fake.disconnects == 1 and s.response.status == "cancelled"


def test_sync_facade_pull(fake: OllamaContractServer) -> None:
    with llm_nb.sync(OllamaProvider(fake.url)) as p:
        statuses = [s.status for s in p.pull("tinyllama")]
        assert statuses[-1] == "success"
        assert "tinyllama:latest" in {m.name for m in p.models()}


@pytest.mark.server
async def test_real_text_and_durations_through_contract_server(llama_server: Any) -> None:
    with OllamaContractServer(llama_server.url) as server:
        async with OllamaProvider(server.url) as p:
            name = (await p.models())[0].name
            r = await p.stream(name, "List three fruits.", max_tokens=20, temperature=0).collect()
            assert r.status == "ok" and r.text
            assert r.timings and r.timings.decode_ms and r.timings.decode_ms > 0
            assert r.usage.completion_tokens == len(r.trace.token_times_ns)
        assert server.violations == []


# -- over scripted responses ----------------------------------------------------------------


async def test_ollama_chat_stream_tools_and_durations() -> None:
    sent: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(
            200,
            stream=Closing(
                ndjson(
                    {
                        "model": "q:1b",
                        "created_at": "t",
                        "message": {"role": "assistant", "content": "", "thinking": "let me see"},
                        "done": False,
                    },
                    {
                        "model": "q:1b",
                        "created_at": "t",
                        "message": {"role": "assistant", "content": "Hi"},
                        "done": False,
                    },
                    {
                        "model": "q:1b",
                        "created_at": "t",
                        "message": {
                            "role": "assistant",
                            "content": "",
                            "tool_calls": [
                                {"function": {"name": "f", "arguments": {"x": 1}}},
                                {"function": {"name": "g", "arguments": {}}},
                            ],
                        },
                        "done": False,
                    },
                    {
                        "model": "q:1b",
                        "created_at": "t",
                        "message": {"role": "assistant", "content": ""},
                        "done": True,
                        "done_reason": "stop",
                        "total_duration": 9_000_000,
                        "load_duration": 1_000_000,
                        "prompt_eval_count": 4,
                        "prompt_eval_duration": 2_000_000,
                        "eval_count": 3,
                        "eval_duration": 5_000_000,
                    },
                )
            ),
        )

    p = provider(OllamaProvider, handler)
    s = p.stream(
        "q:1b",
        "hi",
        max_tokens=7,
        temperature=0.1,
        seed=3,
        response_format={"type": "object"},
        extra={"keep_alive": "1m", "num_ctx": 4096},
    )
    deltas = [d async for d in s]
    r = s.response
    assert r.text == "Hi" and r.reasoning == "let me see"
    assert [d.index for d in deltas if isinstance(d, ToolCallDelta)] == [0, 1]
    assert [(c.name, c.args) for c in r.tool_calls] == [("f", {"x": 1}), ("g", {})]
    assert r.timings is not None
    assert (r.timings.prompt_ms, r.timings.decode_ms, r.timings.load_ms, r.timings.total_ms) == (
        2.0,
        5.0,
        1.0,
        9.0,
    )
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (4, 3)
    body = sent[0]
    assert body["options"] == {"num_predict": 7, "temperature": 0.1, "seed": 3, "num_ctx": 4096}
    assert body["format"] == {"type": "object"} and body["keep_alive"] == "1m"


async def test_ollama_error_line_inside_200_stream() -> None:
    body = Closing(
        [
            *ndjson(
                {
                    "model": "q",
                    "created_at": "t",
                    "message": {"role": "assistant", "content": "ab"},
                    "done": False,
                }
            ),
            b'{"error":"model runner crashed"}\n',
        ]
    )
    s = provider(OllamaProvider, lambda r: httpx.Response(200, stream=body)).stream("q", "hi")
    with pytest.raises(llm_nb.ServerError, match="runner crashed"):
        await s.collect()
    assert s.response.text == "ab" and body.closed
