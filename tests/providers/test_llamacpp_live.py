"""The llama.cpp and OpenAI providers against a real llama-server running SmolLM2-135M.

Single-model mode (fixture ``llama_server``) runs on both servers llm_nb can start: the native
build and the prebuilt one from xllamacpp (``LLAMA_SERVER_KINDS``), since everything llm_nb
reads from llama-server must work on either. Router mode, native only, with two names for the
model and ``--models-max 1`` (fixture ``llama_router``), so load, unload and LRU eviction are
real.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import llm_nb
from llm_nb import (
    APIConnectionError,
    ModelNotFoundError,
    TextDelta,
    UnsupportedError,
)
from llm_nb._embedded.binary.program import native_program, prebuilt_program
from llm_nb._embedded.process.server import LlamaServer, free_port
from llm_nb._registry import Registry
from llm_nb._stats._frames import build_label
from llm_nb._wire.retry import RetryPolicy
from llm_nb.providers import LlamaCppProvider, OpenAIProvider

pytestmark = pytest.mark.server

LLAMA_SERVER_KINDS = ("native", "prebuilt")

PROMPT = "List three colors."


@pytest.fixture
async def llama(llama_server: Any) -> AsyncIterator[LlamaCppProvider]:
    async with LlamaCppProvider(llama_server.url) as p:
        yield p


async def test_stream_real_answer(llama: LlamaCppProvider) -> None:
    s = llama.stream("smollm2", PROMPT, max_tokens=24, temperature=0, seed=1)
    pieces = [d.text async for d in s if isinstance(d, TextDelta)]
    r = s.response
    assert r.status == "ok" and r.text == "".join(pieces) and r.text.strip()
    assert r.model_reported == "smollm2"
    assert r.finish_reason in ("stop", "length")
    # Server usage and server timings agree, and each token came in its own chunk.
    assert r.timings is not None and r.usage.completion_tokens == r.timings.decode_n
    assert r.usage.prompt_tokens and r.usage.prompt_tokens > 5
    assert len(r.trace.token_times_ns) == r.usage.completion_tokens
    t = r.trace
    assert t.t_send_ns and t.t_headers_ns and t.t_first_token_ns and t.t_end_ns
    assert t.t_send_ns <= t.t_headers_ns <= t.t_first_token_ns <= t.t_end_ns


async def test_whole_answer_matches_stream_when_greedy(llama: LlamaCppProvider) -> None:
    opts: dict[str, Any] = {"max_tokens": 20, "temperature": 0, "seed": 7}
    whole = await llama.chat("smollm2", PROMPT, **opts)
    streamed = await llama.stream("smollm2", PROMPT, **opts).collect()
    assert whole.stream is False and whole.status == "ok"
    assert whole.text == streamed.text
    assert whole.usage.completion_tokens == streamed.usage.completion_tokens


async def test_max_tokens_and_stop(llama: LlamaCppProvider) -> None:
    r = await llama.chat("smollm2", "Write a long story about a dragon.", max_tokens=5)
    assert r.finish_reason == "length" and r.usage.completion_tokens == 5
    full = await llama.chat(
        "smollm2", "Count from 1 to 10 with commas.", max_tokens=40, temperature=0
    )
    word = full.text.strip().split()[1] if len(full.text.split()) > 1 else full.text[2:4]
    cut = await llama.chat(
        "smollm2", "Count from 1 to 10 with commas.", max_tokens=40, temperature=0, stop=[word]
    )
    assert word not in cut.text and cut.finish_reason == "stop"


async def test_system_prompt_reaches_the_model(llama: LlamaCppProvider) -> None:
    # SmolLM2's template adds its own default system prompt when none is given, so compare
    # against the size of ours rather than against no system prompt.
    r = await llama.chat("smollm2", "hi", system="apple " * 100, max_tokens=1)
    assert r.usage.prompt_tokens and r.usage.prompt_tokens >= 100


async def test_json_object_and_schema_output(llama: LlamaCppProvider) -> None:
    r = await llama.chat(
        "smollm2",
        "Give a JSON object describing a cat.",
        max_tokens=60,
        response_format="json",
        temperature=0,
    )
    if r.finish_reason == "stop":
        assert isinstance(json.loads(r.text), dict)
    else:  # cut by max_tokens: still a JSON prefix, starting an object
        assert r.text.lstrip().startswith("{")
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 12}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    r = await llama.chat(
        "smollm2", "Invent a person.", max_tokens=60, response_format=schema, temperature=0
    )
    obj = json.loads(r.text)
    assert set(obj) == {"name", "age"} and isinstance(obj["age"], int)


@pytest.fixture(scope="module", params=LLAMA_SERVER_KINDS)
def tool_server(request: pytest.FixtureRequest, smollm2_gguf: Path) -> Iterator[Any]:
    """SmolLM2 with llama.cpp's Qwen2.5 template (same <|im_start|> tokens, but it renders
    tool definitions; SmolLM2's own template drops them)."""
    template = (
        Path(__file__).parents[1] / "fixtures" / "llamacpp" / "Qwen-Qwen2.5-7B-Instruct.jinja"
    )
    if request.param == "native":
        program = native_program(request.getfixturevalue("llama_server_bin"))
    else:
        program = prebuilt_program()
    server = LlamaServer(
        program,
        model=smollm2_gguf,
        alias="smollm2-tools",
        ctx_size=2048,
        extra_args=["--chat-template-file", str(template)],
    )
    with server.start():
        yield server


async def test_tools_reach_the_model_and_tool_results_round_trip(tool_server: Any) -> None:
    """This build does not force a tool call from SmolLM2 even with tool_choice=required, so
    the parsing of tool-call deltas is proven on byte fixtures (test_openai.py) and the
    Ollama contract server. Here: the definitions reach the prompt, and a conversation with
    an assistant tool call and a tool result is accepted and answered by the real server."""
    async with LlamaCppProvider(tool_server.url) as llama:
        await _tool_round_trip(llama)


async def _tool_round_trip(llama: LlamaCppProvider) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            },
        }
    ]
    bare = await llama.chat("smollm2", "Weather in Paris?", max_tokens=1)
    with_tools = await llama.chat("smollm2", "Weather in Paris?", tools=tools, max_tokens=1)
    assert bare.usage.prompt_tokens and with_tools.usage.prompt_tokens
    assert with_tools.usage.prompt_tokens > bare.usage.prompt_tokens + 20
    follow = await llama.chat(
        "smollm2",
        [
            {"role": "user", "content": "What is the weather in Paris?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": "c0",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c0", "content": "sunny, 21 C"},
        ],
        tools=tools,
        max_tokens=30,
    )
    assert follow.status == "ok" and follow.text


async def test_health_props_and_models(llama: LlamaCppProvider) -> None:
    h = await llama.health()
    assert h.ok and not h.router and h.detail == "smollm2"
    props = await llama.props()
    assert props["default_generation_settings"]["n_ctx"] > 0
    (m,) = await llama.models()
    assert (m.name, m.status, m.quantization) == ("smollm2", "loaded", "Q4_1")
    assert m.context_length and m.size_bytes and m.size_bytes > 10_000_000


async def test_single_model_server_cannot_load(llama: LlamaCppProvider) -> None:
    with pytest.raises(UnsupportedError, match="router mode"):
        await llama.load("smollm2")


async def test_embeddings(llama: LlamaCppProvider) -> None:
    e = await llama.embed("smollm2", ["a red apple", "a red apple", "quantum chromodynamics"])
    assert len(e.vectors) == 3 and len(e.vectors[0]) == 576  # SmolLM2-135M's n_embd
    # Identical inputs give the same vector up to float noise (which slot ran them matters
    # at ~1e-9); a different input is far away.
    assert e.vectors[0] == pytest.approx(e.vectors[1], abs=1e-6)
    assert e.vectors[0] != pytest.approx(e.vectors[2], abs=1e-3)
    assert e.prompt_tokens and e.prompt_tokens > 3


async def test_server_not_running() -> None:
    port = free_port()
    async with LlamaCppProvider(f"127.0.0.1:{port}", retry=RetryPolicy(max_retries=0)) as p:
        with pytest.raises(APIConnectionError, match=f"127.0.0.1:{port}.*start one with"):
            await p.chat("smollm2", "hi")
        assert (await p.health()).status == "unreachable"


async def test_abandoned_stream_frees_the_server_slot(
    llama: LlamaCppProvider, llama_server: Any
) -> None:
    s = llama.stream("smollm2", "Write a very long essay about the sea.", max_tokens=400)
    async for _ in s:
        if len(s.response.trace.token_times_ns) >= 3:
            break
    await s.aclose()
    assert s.response.status == "cancelled" and s.response.text
    # The server notices the closed connection and stops generating within a second.
    async with httpx.AsyncClient(base_url=llama_server.url) as c:
        deadline = time.monotonic() + 1.0
        while True:
            slots = (await c.get("/slots")).json()
            if not any(sl.get("is_processing") for sl in slots):
                break
            assert time.monotonic() < deadline, "slot still generating 1 s after close"
            await asyncio.sleep(0.05)


async def test_openai_provider_against_llama_server(llama_server: Any) -> None:
    """The OpenAI provider's real wire path, against llama-server's OpenAI-compatible API."""
    async with OpenAIProvider(llama_server.url + "/v1") as p:
        r = await p.stream("smollm2", PROMPT, max_tokens=16, temperature=0).collect()
        assert r.status == "ok" and r.text and r.usage.completion_tokens
        whole = await p.chat("smollm2", PROMPT, max_tokens=16, temperature=0)
        assert whole.text == r.text
        assert [m.name for m in await p.models()] == ["smollm2"]


def test_top_level_sync_api(llama_server: Any) -> None:
    mid = f"llamacpp:smollm2@{llama_server.url.split('://')[1]}"
    r = llm_nb.chat(mid, "Say hello.", max_tokens=8)
    assert r.text and r.provider == "llamacpp"
    s = llm_nb.stream(mid, "Say hello.", max_tokens=8)
    text = "".join(d.text for d in s if isinstance(d, TextDelta))
    assert text == s.response.text and s.response.status == "ok"


def test_server_facts_are_what_the_server_reports(llama_server: Any) -> None:
    """server_build comes from the server's own /props on either build, never filled in by
    llm_nb (placeholders dropped); server_version stays empty for llama-server, which does
    not report one."""
    mid = f"llamacpp:smollm2@{llama_server.url.split('://')[1]}"
    run = f"facts-{llama_server.program.kind}"
    with llm_nb.new_run(run):
        assert llm_nb.chat(mid, "Say hello.", max_tokens=4).text
    props = httpx.get(f"{llama_server.url}/props", timeout=10).json()
    deadline = time.monotonic() + 10
    while True:
        row = llm_nb.summary(run).iloc[0]
        if row.get("quantization") or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    # A build without its git history says b0-unknown: no build at all, so shown as missing.
    assert row["server_build"] == build_label(props["build_info"])
    if props["build_info"] == "b0-unknown":
        assert row["server_build"] is None
    assert row["quantization"] == "Q4_1" and row["n_ctx"] == 1024
    assert not row.get("server_version")


async def test_overhead_is_never_negative_when_calls_share_the_server(
    llama: LlamaCppProvider,
) -> None:
    """Two answers at once on one server, each ending on an end-of-generation token: the
    server's decode time includes that last step, which sends no text, so the last token
    chunk can come well before the chunk with the timings. Overhead measured to that chunk
    is never negative; measured to the last token (e2e_s) it was, under load."""
    from llm_nb._stats._row import call_row

    records = []
    for _ in range(3):
        records += await asyncio.gather(
            *(
                llama.stream(
                    "smollm2", f"Answer yes or no: is {n} even?", max_tokens=32, temperature=0
                ).collect()
                for n in (3, 4)
            )
        )
    for r in records:
        row, t = call_row(r), r.trace
        assert r.status == "ok" and r.finish_reason == "stop", r.finish_reason
        assert t.t_done_ns is not None and t.t_send_ns is not None
        assert t.t_done_ns >= t.token_times_ns[-1]
        # The cause: the server decoded more tokens than came as chunks (its last step made
        # the end-of-generation token), and its decode time covers that step too.
        assert row["srv_decode_n"] > row["n_chunks"]
        server_ms = row["srv_prompt_ms"] + row["srv_decode_ms"]
        assert row["client_overhead_ms"] >= 0, (row["e2e_s"] * 1000, server_ms)
        assert row["client_overhead_ms"] == pytest.approx(
            (t.t_done_ns - t.t_send_ns) / 1e6 - server_ms
        )


async def test_concurrent_streams_all_complete(llama: LlamaCppProvider) -> None:
    streams = [
        llama.stream("smollm2", f"Name an animal number {i}.", max_tokens=12) for i in range(6)
    ]
    results = await asyncio.gather(*(s.collect() for s in streams))
    assert all(r.status == "ok" and r.text for r in results)


async def test_discovery_finds_llama_server(llama_server: Any) -> None:
    port = int(llama_server.url.rsplit(":", 1)[1])
    found = await Registry().discover(ports=((port, "llamacpp"), (free_port(), "ollama")))
    assert len(found) == 1
    assert found[0].provider.name == "llamacpp" and "single-model" in found[0].detail


# -- router mode ---------------------------------------------------------------------------


@pytest.fixture
async def router(llama_router: Any) -> AsyncIterator[LlamaCppProvider]:
    async with LlamaCppProvider(llama_router.url) as p:
        yield p


async def test_router_lists_load_unload_and_evicts(router: LlamaCppProvider) -> None:
    assert await router.is_router()
    names = sorted(m.name for m in await router.models())
    assert names == ["smollm2-a", "smollm2-b"]
    await router.load("smollm2-a")
    status = {m.name: m.status for m in await router.models()}
    assert status["smollm2-a"] == "loaded"
    r = await router.chat("smollm2-a", "hi", max_tokens=4)
    assert r.model_reported == "smollm2-a"
    # --models-max 1: loading b evicts a (LRU).
    await router.load("smollm2-b")
    deadline = time.monotonic() + 30
    while True:
        status = {m.name: m.status for m in await router.models()}
        if status["smollm2-a"] == "unloaded":
            break
        assert time.monotonic() < deadline, status
        await asyncio.sleep(0.2)
    assert status["smollm2-b"] == "loaded"
    # Requests are routed by model name.
    r = await router.stream("smollm2-b", "hi", max_tokens=4).collect()
    assert r.status == "ok" and r.model_reported == "smollm2-b"
    await router.unload("smollm2-b")
    status = {m.name: m.status for m in await router.models()}
    assert status["smollm2-b"] == "unloaded"
    h = await router.health()
    assert h.ok and h.router


async def test_router_unknown_model(router: LlamaCppProvider) -> None:
    with pytest.raises(ModelNotFoundError, match="available: smollm2-a, smollm2-b") as info:
        await router.chat("no-such-model", "hi", max_tokens=2)
    assert info.value.available == ["smollm2-a", "smollm2-b"]
    with pytest.raises(ModelNotFoundError):
        await router.load("no-such-model")
