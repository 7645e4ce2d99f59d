"""Wire fixtures and the Ollama contract server, checked with the official client types.

OpenAI cannot be reached and Ollama cannot be installed here, so the shapes llm_nb is tested
against must not drift from the real ones: every OpenAI fixture is validated with the ``openai``
package's types and parsed by its SDK, every Ollama line with the ``ollama`` package's types, and
the contract server (tests/contract) is driven by ``ollama.AsyncClient`` itself.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import httpx
import ollama
import openai
import pytest
from openai.types import Model as OpenAIModel
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.shared import ErrorObject
from pydantic import BaseModel

from tests.contract import ErrorBody, OllamaContractServer, contract_problems
from tests.contract.ollama_server import store as contract_store

pytestmark = pytest.mark.doubles  # these tests check the doubles against the real clients

FIXTURES = Path(__file__).parents[1] / "fixtures"
OPENAI = FIXTURES / "openai"
OLLAMA = FIXTURES / "ollama"
SSE_FIXTURES = sorted(p.name for p in OPENAI.glob("*.sse"))
NDJSON_FIXTURES = sorted(p.name for p in OLLAMA.glob("*.ndjson"))
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
        },
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Local time in a timezone",
        "parameters": {
            "type": "object",
            "properties": {"timezone": {"type": "string"}},
            "required": ["timezone"],
        },
    },
}


# -- helpers ---------------------------------------------------------------------------------


def sse_payloads(name: str) -> list[str]:
    """The ``data:`` payloads of an SSE fixture, checking the framing as it goes."""
    text = (OPENAI / name).read_text()
    assert text.endswith("data: [DONE]\n\n"), "an OpenAI stream ends with data: [DONE]"
    events = text.split("\n\n")
    assert events[-1] == ""
    payloads = []
    for event in events[:-1]:
        assert event.startswith("data: ") and "\n" not in event, (
            f"one data line per event: {event!r}"
        )
        payloads.append(event.removeprefix("data: "))
    return payloads


def chunks(name: str) -> list[ChatCompletionChunk]:
    payloads = sse_payloads(name)
    assert payloads[-1] == "[DONE]"
    return [ChatCompletionChunk.model_validate_json(p, strict=True) for p in payloads[:-1]]


def unknown_fields(model: Any, path: str = "") -> list[str]:
    """Fields an openai model kept only as extras: names the SDK does not know."""
    found: list[str] = []
    if isinstance(model, BaseModel):
        found += [f"{path}{key}" for key in model.model_extra or {}]
        for name in type(model).model_fields:
            found += unknown_fields(getattr(model, name), f"{path}{name}.")
    elif isinstance(model, list):
        for item in model:
            found += unknown_fields(item, path)
    return found


def ndjson(name: str) -> list[dict[str, Any]]:
    lines = (OLLAMA / name).read_bytes().split(b"\n")
    assert lines[-1] == b"", "NDJSON ends with a newline"
    return [json.loads(line) for line in lines[:-1]]


def openai_client(handler: Callable[[httpx.Request], httpx.Response]) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        api_key="sk-test-0000",
        base_url="http://openai.test/v1",
        max_retries=0,
        # openai 3.x is typed for httpx2 but also takes an httpx client, the only kind 1.x knows.
        http_client=cast(Any, httpx.AsyncClient(transport=httpx.MockTransport(handler))),
    )


def replay(body: bytes, status: int = 200, content_type: str = "application/json") -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers={"content-type": content_type})

    return handler


# -- OpenAI fixtures -------------------------------------------------------------------------


@pytest.mark.parametrize("name", SSE_FIXTURES)
def test_openai_stream_chunks_are_valid(name: str) -> None:
    parsed = chunks(name)
    assert len({c.id for c in parsed}) == 1, "every chunk of one completion shares its id"
    for chunk in parsed:
        assert chunk.object == "chat.completion.chunk"
        assert unknown_fields(chunk) == []
    first = parsed[0].choices[0].delta
    assert first.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in parsed if c.choices]
    assert finishes[-1] is not None and all(f is None for f in finishes[:-1])


def test_openai_stream_with_usage() -> None:
    parsed = chunks("chat_stream.sse")
    assert parsed[0].choices[0].delta.content == "", "OpenAI opens with role and empty content"
    text = "".join(c.choices[0].delta.content or "" for c in parsed if c.choices)
    assert text == "Hello! How can I help you today?"
    assert parsed[-2].choices[0].finish_reason == "stop"
    last = parsed[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert all(c.usage is None for c in parsed[:-1]), "include_usage: null usage until the end"


def test_openai_stream_parallel_tool_calls() -> None:
    parsed = chunks("chat_stream_tool_calls.sse")
    calls: dict[int, dict[str, str]] = {}
    for chunk in parsed:
        for choice in chunk.choices:
            for part in choice.delta.tool_calls or []:
                call = calls.setdefault(part.index, {"id": "", "name": "", "arguments": ""})
                call["id"] += part.id or ""
                if part.function:
                    call["name"] += part.function.name or ""
                    call["arguments"] += part.function.arguments or ""
    assert [c["name"] for c in calls.values()] == ["get_weather", "get_time"]
    assert all(c["id"].startswith("call_") for c in calls.values())
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris", "unit": "celsius"}
    assert json.loads(calls[1]["arguments"]) == {"timezone": "Europe/Paris"}
    fragments = [p for c in parsed for ch in c.choices for p in ch.delta.tool_calls or []]
    assert sum(1 for p in fragments if p.index == 0) > 2, "arguments arrive split across chunks"
    assert parsed[-2].choices[0].finish_reason == "tool_calls"
    assert parsed[-1].usage is not None


def test_openai_stream_refusal() -> None:
    payloads = sse_payloads("chat_stream_refusal.sse")[:-1]
    assert all("usage" not in json.loads(p) for p in payloads), "no include_usage, no usage key"
    parsed = chunks("chat_stream_refusal.sse")
    refusal = "".join(c.choices[0].delta.refusal or "" for c in parsed)
    assert refusal == "I'm sorry, I can't assist with that request."
    assert all(not c.choices[0].delta.content for c in parsed)
    assert parsed[-1].choices[0].finish_reason == "stop"


def test_openai_stream_cut_by_length() -> None:
    parsed = chunks("chat_stream_length.sse")
    pieces = [
        c.choices[0].delta.content for c in parsed[1:] if c.choices and c.choices[0].delta.content
    ]
    assert parsed[-2].choices[0].finish_reason == "length"
    assert parsed[-1].usage is not None and parsed[-1].usage.completion_tokens == len(pieces)


@pytest.mark.parametrize("name", SSE_FIXTURES)
async def test_openai_sdk_reads_stream_fixtures(name: str) -> None:
    body = (OPENAI / name).read_bytes()
    async with openai_client(replay(body, content_type="text/event-stream")) as client:
        stream = await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        received = [chunk async for chunk in stream]
    assert len(received) == len(sse_payloads(name)) - 1  # everything but [DONE]


async def test_openai_chat_completion_body() -> None:
    body = (OPENAI / "chat_completion.json").read_bytes()
    completion = ChatCompletion.model_validate_json(body, strict=True)
    assert unknown_fields(completion) == []
    usage = completion.usage
    assert usage is not None and usage.prompt_tokens_details and usage.completion_tokens_details
    assert usage.prompt_tokens_details.cached_tokens == 1664
    assert usage.completion_tokens_details.reasoning_tokens == 384
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    async with openai_client(replay(body)) as client:
        via_sdk = await client.chat.completions.create(
            model="o4-mini", messages=[{"role": "user", "content": "6 x 7?"}]
        )
    assert via_sdk.choices[0].message.content == completion.choices[0].message.content


@pytest.mark.parametrize(
    ("name", "status", "error", "code"),
    [
        ("error_401_invalid_api_key.json", 401, openai.AuthenticationError, "invalid_api_key"),
        ("error_404_model_not_found.json", 404, openai.NotFoundError, "model_not_found"),
        ("error_429_rate_limit.json", 429, openai.RateLimitError, "rate_limit_exceeded"),
        ("error_429_insufficient_quota.json", 429, openai.RateLimitError, "insufficient_quota"),
        (
            "error_400_context_length_exceeded.json",
            400,
            openai.BadRequestError,
            "context_length_exceeded",
        ),
    ],
)
async def test_openai_error_bodies(
    name: str, status: int, error: type[openai.APIStatusError], code: str
) -> None:
    body = (OPENAI / name).read_bytes()
    envelope = json.loads(body)
    assert set(envelope) == {"error"}
    parsed = ErrorObject.model_validate(envelope["error"], strict=True)
    assert unknown_fields(parsed) == []
    assert set(envelope["error"]) == {"message", "type", "param", "code"}
    async with openai_client(replay(body, status)) as client:
        with pytest.raises(error) as caught:
            await client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
            )
    assert caught.value.status_code == status
    assert caught.value.code == code


async def test_openai_models_list() -> None:
    body = (OPENAI / "models_list.json").read_bytes()
    listing = json.loads(body)
    assert listing["object"] == "list"
    models = [OpenAIModel.model_validate(m, strict=True) for m in listing["data"]]
    assert all(unknown_fields(m) == [] and m.object == "model" for m in models)
    async with openai_client(replay(body)) as client:
        ids = [m.id async for m in client.models.list()]
    assert ids == [m.id for m in models]


# -- Ollama fixtures -------------------------------------------------------------------------


@pytest.mark.parametrize("name", NDJSON_FIXTURES)
def test_ollama_fixture_lines_are_valid(name: str) -> None:
    schema = ollama.ProgressResponse if name.startswith("pull") else ollama.ChatResponse
    for line in (OLLAMA / name).read_text().splitlines():
        is_error = "error" in json.loads(line)
        assert contract_problems(line, ErrorBody if is_error else schema) == [], line


@pytest.mark.parametrize("name", [n for n in NDJSON_FIXTURES if n.startswith("chat")])
def test_ollama_chat_fixture_shapes(name: str) -> None:
    lines = ndjson(name)
    if "error" in lines[-1]:
        assert all(not line["done"] for line in lines[:-1]), "the error cuts the stream short"
        return
    *parts, final = lines
    assert all(p["done"] is False and "done_reason" not in p for p in parts)
    assert final["done"] is True and final["done_reason"] in ("stop", "length")
    assert final["message"] == {"role": "assistant", "content": ""}
    for key in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration"):
        assert isinstance(final[key], int) and final[key] > 0, f"{key} is integer nanoseconds"
    assert final["total_duration"] > final["eval_duration"]
    for part in parts:
        for call in part["message"].get("tool_calls", []):
            assert isinstance(call["function"]["arguments"], dict), "Ollama sends an object"


def test_ollama_pull_fixture_shapes() -> None:
    lines = ndjson("pull_progress.ndjson")
    assert lines[0] == {"status": "pulling manifest"}
    assert [line["status"] for line in lines[-3:]] == [
        "verifying sha256 digest",
        "writing manifest",
        "success",
    ]
    for line in lines:
        if "digest" in line:
            assert re.fullmatch(r"sha256:[0-9a-f]{64}", line["digest"])
            assert line["status"] == f"pulling {line['digest'][7:19]}"
            assert line.get("completed", 0) <= line["total"]
    assert ndjson("pull_missing_model.ndjson")[-1] == {
        "error": "pull model manifest: file does not exist"
    }


async def test_ollama_client_reads_fixtures() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        model = json.loads(request.content)["model"]
        name = {
            "chat": "chat_stream.ndjson",
            "tools": "chat_tool_call.ndjson",
            "think": "chat_thinking.ndjson",
            "broken": "chat_error_midstream.ndjson",
            "pull-ok": "pull_progress.ndjson",
            "pull-missing": "pull_missing_model.ndjson",
        }[model]
        body = (OLLAMA / name).read_bytes()
        return httpx.Response(200, content=body, headers={"content-type": "application/x-ndjson"})

    transport = httpx.MockTransport(handler)
    async with ollama.AsyncClient(host="http://ollama.test", transport=transport) as client:
        parts = [p async for p in await client.chat(model="chat", messages=[], stream=True)]
        assert "".join(p.message.content or "" for p in parts).startswith("The sky looks blue")
        assert parts[-1].eval_count == 11
        tools = [p async for p in await client.chat(model="tools", messages=[], stream=True)]
        calls = tools[0].message.tool_calls or []
        assert [c.function.name for c in calls] == ["get_weather", "get_time"]
        think = [p async for p in await client.chat(model="think", messages=[], stream=True)]
        assert "".join(p.message.thinking or "" for p in think).startswith("Okay")
        progress = [p async for p in await client.pull("pull-ok", stream=True)]
        assert progress[-1].status == "success"
        with pytest.raises(ollama.ResponseError, match="unexpected EOF"):
            await drain(await client.chat(model="broken", messages=[], stream=True))
        with pytest.raises(ollama.ResponseError, match="file does not exist"):
            await drain(await client.pull("pull-missing", stream=True))


# -- the contract server, deterministic fake backend ----------------------------------------


@pytest.fixture
def server() -> Iterator[OllamaContractServer]:
    with OllamaContractServer(None) as srv:
        yield srv
    assert srv.violations == []


@pytest.fixture
async def client(server: OllamaContractServer) -> AsyncIterator[ollama.AsyncClient]:
    async with ollama.AsyncClient(host=server.url, timeout=30) as c:
        yield c


def user(content: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": content}]


async def eventually(condition: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    """Poll ``condition`` while the server thread catches up."""
    for _ in range(int(timeout_s / 0.02)):
        if condition():
            return True
        await asyncio.sleep(0.02)
    return condition()


async def drain(stream: AsyncIterator[Any], into: list[Any] | None = None) -> list[Any]:
    """Read a client stream to the end, keeping what arrived before any error."""
    received = [] if into is None else into
    async for part in stream:
        received.append(part)
    return received


async def test_chat_streams_ndjson(client: ollama.AsyncClient) -> None:
    parts = [p async for p in await client.chat("smollm2:135m", user("Hi there"), stream=True)]
    text = "".join(p.message.content or "" for p in parts)
    assert text == "Hello! This is a deterministic reply to: Hi there"
    assert all(not p.done for p in parts[:-1])
    final = parts[-1]
    assert final.done and final.done_reason == "stop" and final.message.content == ""
    assert final.eval_count == len(parts) - 1
    assert final.prompt_eval_count and final.total_duration and final.eval_duration
    assert final.total_duration >= final.eval_duration


async def test_chat_stream_wire_format(server: OllamaContractServer) -> None:
    body = {"model": "smollm2", "messages": user("x")}
    async with httpx.AsyncClient(base_url=server.url) as http:
        missing = await http.post("/api/chat", json=body)  # no tag means :latest: not installed
        assert missing.status_code == 404
        assert missing.json() == {"error": "model 'smollm2' not found"}
        async with http.stream("POST", "/api/chat", json={**body, "model": "smollm2:135m"}) as r:
            assert r.status_code == 200
            assert r.headers["content-type"] == "application/x-ndjson"
            assert r.headers["transfer-encoding"] == "chunked"
            lines = [line async for line in r.aiter_lines()]
    assert all(json.loads(line)["model"] == "smollm2:135m" for line in lines)
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", json.loads(lines[0])["created_at"]
    )


async def test_chat_non_streaming(client: ollama.AsyncClient) -> None:
    response = await client.chat("smollm2:135m", user("Hi"), stream=False)
    assert response.done and response.done_reason == "stop"
    assert response.message.content == "Hello! This is a deterministic reply to: Hi"


async def test_chat_options_num_predict_and_stop(
    client: ollama.AsyncClient, server: OllamaContractServer
) -> None:
    cut = await client.chat("smollm2:135m", user("a b c d e f"), options={"num_predict": 3})
    assert cut.done_reason == "length" and cut.eval_count == 3
    assert cut.message.content == "Hello! This is"
    stopped = await client.chat("smollm2:135m", user("x"), options={"stop": ["reply"]})
    assert stopped.done_reason == "stop"
    assert stopped.message.content == "Hello! This is a deterministic "
    assert server.requests[-1].body["options"] == {"stop": ["reply"]}


async def test_chat_bad_option_type(client: ollama.AsyncClient) -> None:
    with pytest.raises(ollama.ResponseError) as caught:
        await client.chat("smollm2:135m", user("x"), options={"top_k": "many"})
    assert caught.value.status_code == 500
    assert caught.value.error == 'option "top_k" must be of type integer'


async def test_chat_format(client: ollama.AsyncClient) -> None:
    as_json = await client.chat("smollm2:135m", user("hello"), format="json")
    assert json.loads(as_json.message.content or "") == {"reply": "hello"}
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    shaped = await client.chat("smollm2:135m", user("Paris"), format=schema)
    assert json.loads(shaped.message.content or "") == {"city": "Paris"}


async def test_chat_thinking(client: ollama.AsyncClient) -> None:
    parts = [p async for p in await client.chat("qwen3:0.6b", user("hi"), stream=True)]
    assert "".join(p.message.thinking or "" for p in parts) == "Let me think about that."
    assert parts[-1].message.thinking is None
    off = await client.chat("qwen3:0.6b", user("hi"), think=False)
    assert off.message.thinking is None
    with pytest.raises(ollama.ResponseError) as caught:
        await client.chat("smollm2:135m", user("hi"), think=True)
    assert caught.value.status_code == 400
    assert caught.value.error == '"smollm2:135m" does not support thinking'


async def test_chat_capability_errors(client: ollama.AsyncClient) -> None:
    with pytest.raises(ollama.ResponseError, match="does not support chat"):
        await client.chat("all-minilm:22m", user("hi"))
    with pytest.raises(ollama.ResponseError) as caught:
        await client.chat("nope:1b", user("hi"))
    assert (caught.value.status_code, caught.value.error) == (404, "model 'nope:1b' not found")


async def test_chat_tool_call_round_trip(
    client: ollama.AsyncClient, server: OllamaContractServer
) -> None:
    ask = user("Use get_weather and get_time for Paris")
    first = await client.chat("smollm2:135m", ask, tools=[WEATHER_TOOL, TIME_TOOL])
    calls = first.message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_weather", "get_time"]
    assert calls[0].function.arguments == {"city": "Paris", "unit": "celsius"}
    assert calls[1].function.arguments == {"timezone": "Paris"}
    assert first.done_reason == "stop"
    history: list[Any] = [
        *ask,
        first.message,
        {"role": "tool", "content": "18 degrees", "tool_name": "get_weather"},
    ]
    second = await client.chat("smollm2:135m", history, tools=[WEATHER_TOOL, TIME_TOOL])
    assert second.message.content == "The get_weather tool returned: 18 degrees"
    sent = server.requests[-1].body
    assert sent["messages"][-1] == {
        "role": "tool",
        "content": "18 degrees",
        "tool_name": "get_weather",
    }
    assert isinstance(sent["messages"][1]["tool_calls"][0]["function"]["arguments"], dict)


async def test_chat_tools_on_model_without_tools(client: ollama.AsyncClient) -> None:
    await client.pull("tinyllama")
    with pytest.raises(ollama.ResponseError) as caught:
        await client.chat("tinyllama", user("hi"), tools=[WEATHER_TOOL])
    assert caught.value.status_code == 400
    assert caught.value.error.endswith("tinyllama:latest does not support tools")


async def test_keep_alive_load_unload_and_ps(
    client: ollama.AsyncClient, server: OllamaContractServer
) -> None:
    assert (await client.ps()).models == []
    loaded = await client.chat("smollm2:135m", [], keep_alive="10m")
    assert loaded.done_reason == "load" and loaded.message.content == ""
    (entry,) = (await client.ps()).models
    assert entry.model == entry.name == "smollm2:135m"
    assert entry.expires_at is not None and entry.context_length == 4096
    remaining = entry.expires_at - datetime.now(UTC)
    assert timedelta(minutes=9) < remaining <= timedelta(minutes=10)
    assert entry.size_vram == entry.size
    unloaded = await client.chat("smollm2:135m", [], keep_alive=0)
    assert unloaded.done_reason == "unload"
    assert (await client.ps()).models == []
    await client.chat("smollm2:135m", user("hi"), keep_alive=0)
    assert server.loaded_models == [], "keep_alive 0 unloads once the request is done"
    await client.chat("qwen3:0.6b", user("hi"), keep_alive=-1, options={"num_ctx": 8192})
    (forever,) = (await client.ps()).models
    assert forever.expires_at is not None and forever.expires_at.year > 2200
    assert forever.context_length == 8192
    with pytest.raises(ollama.ResponseError, match="invalid duration"):
        await client.chat("qwen3:0.6b", [], keep_alive="soon")


async def test_list_show_delete(client: ollama.AsyncClient, server: OllamaContractServer) -> None:
    names = [m.model for m in (await client.list()).models]
    assert names == ["qwen3:0.6b", "smollm2:135m", "all-minilm:22m"], "newest first"
    shown = await client.show("smollm2:135m")
    assert shown.capabilities == ["completion", "tools"]
    assert shown.details and shown.details.parameter_size == "134.52M"
    assert shown.modelinfo and shown.modelinfo["llama.context_length"] == 8192
    assert shown.modelfile and shown.modelfile.startswith('# Modelfile generated by "ollama show"')
    with pytest.raises(ollama.ResponseError) as missing:
        await client.show("smollm2")
    assert missing.value.status_code == 404
    assert (await client.delete("all-minilm:22m")).status == "success"
    assert server.requests[-1].method == "DELETE"
    with pytest.raises(ollama.ResponseError) as again:
        await client.delete("all-minilm:22m")
    assert (again.value.status_code, again.value.error) == (404, "model 'all-minilm:22m' not found")


async def test_delete_answers_empty_200(server: OllamaContractServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        r = await http.request("DELETE", "/api/delete", json={"model": "smollm2:135m"})
    assert r.status_code == 200 and r.content == b""


async def test_pull_streams_progress_then_lists(client: ollama.AsyncClient) -> None:
    progress = [p async for p in await client.pull("tinyllama", stream=True)]
    statuses = [p.status for p in progress]
    assert statuses[0] == "pulling manifest"
    assert statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    layers = [p for p in progress if p.digest]
    assert layers and all(p.total for p in layers)
    weights = [p for p in layers if p.digest == layers[0].digest]
    assert weights[0].completed is None, "completed is omitted while it is 0"
    assert [p.completed for p in weights[1:]] == sorted(p.completed or 0 for p in weights[1:])
    assert weights[-1].completed == weights[-1].total
    assert "tinyllama:latest" in [m.model for m in (await client.list()).models]
    assert (await client.pull("tinyllama", stream=False)).status == "success"


async def test_pull_missing_model(client: ollama.AsyncClient, server: OllamaContractServer) -> None:
    seen: list[Any] = []
    with pytest.raises(ollama.ResponseError) as in_stream:
        await drain(await client.pull("nope:1b", stream=True), seen)
    assert [p.status for p in seen] == ["pulling manifest"]
    assert in_stream.value.error == "pull model manifest: file does not exist"
    with pytest.raises(ollama.ResponseError) as whole:
        await client.pull("nope:1b", stream=False)
    assert whole.value.status_code == 500
    async with httpx.AsyncClient(base_url=server.url) as http:
        r = await http.post("/api/pull", json={"model": "nope:1b"})
    assert r.status_code == 200, "the error arrives inside an HTTP 200 stream"
    assert r.text.splitlines()[-1] == '{"error":"pull model manifest: file does not exist"}'


async def test_embed(client: ollama.AsyncClient) -> None:
    one = await client.embed("all-minilm:22m", "hello world")
    assert len(one.embeddings) == 1 and len(one.embeddings[0]) == 384
    assert abs(sum(v * v for v in one.embeddings[0]) - 1) < 1e-9, "Ollama L2-normalizes"
    assert one.prompt_eval_count == 2 and one.total_duration and one.load_duration
    many = await client.embed("all-minilm:22m", ["hello world", "bye"])
    assert many.embeddings[0] == one.embeddings[0], "deterministic"
    small = await client.embed("all-minilm:22m", "hello", dimensions=8)
    assert len(small.embeddings[0]) == 8
    empty = await client.embed("all-minilm:22m", "")
    assert empty.embeddings == [] and empty.total_duration is None
    with pytest.raises(ollama.ResponseError, match="model 'nope' not found"):
        await client.embed("nope", "x")


async def test_version_root_and_unknown_routes(server: OllamaContractServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        assert (await http.get("/api/version")).json() == {"version": "0.12.10"}
        root = await http.get("/")
        assert root.text == "Ollama is running"
        unknown = await http.get("/api/generate-nothing")
        assert (unknown.status_code, unknown.text) == (404, "404 page not found")
        assert (await http.get("/api/chat")).status_code == 405
        no_body = await http.post("/api/chat")
        assert (no_body.status_code, no_body.json()) == (400, {"error": "missing request body"})


async def test_requests_are_logged(
    client: ollama.AsyncClient, server: OllamaContractServer
) -> None:
    await client.chat("smollm2:135m", user("hi"), options={"temperature": 0}, keep_alive="1m")
    (request,) = server.requests
    assert (request.method, request.path) == ("POST", "/api/chat")
    assert request.body["options"] == {"temperature": 0}
    assert request.body["keep_alive"] == "1m"
    assert request.headers["user-agent"].startswith("ollama-python/")


async def test_fault_mid_stream_error_line(
    client: ollama.AsyncClient, server: OllamaContractServer
) -> None:
    server.faults.stream_error_after = 2
    seen: list[Any] = []
    with pytest.raises(ollama.ResponseError) as caught:
        await drain(await client.chat("smollm2:135m", user("hi"), stream=True), seen)
    assert len(seen) == 2
    assert caught.value.status_code == -1, "an error line, after an HTTP 200"
    server.faults.stream_error_after = 0
    with pytest.raises(ollama.ResponseError) as before_any:
        await drain(await client.chat("smollm2:135m", user("hi"), stream=True))
    assert before_any.value.status_code == 500, "nothing sent yet: a real status and JSON body"


async def test_client_disconnect_stops_the_stream(server: OllamaContractServer) -> None:
    server.faults.chunk_delay_s = 0.02
    long_prompt = " ".join(["word"] * 200)
    async with ollama.AsyncClient(host=server.url, timeout=30) as client:
        stream = await client.chat("smollm2:135m", user(long_prompt), stream=True)
        async for part in stream:
            if not part.done:
                break
        await stream.aclose()
    assert await eventually(lambda: server.disconnects == 1)
    # The model stays listed; a new request still works after the abandoned one.
    async with ollama.AsyncClient(host=server.url, timeout=30) as client:
        server.faults.chunk_delay_s = 0
        assert (await client.chat("smollm2:135m", user("again"))).done


async def test_violations_are_caught(
    server: OllamaContractServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(contract_store, "go_time", lambda _moment: "last tuesday")
    async with httpx.AsyncClient(base_url=server.url) as http:
        r = await http.get("/api/tags")
    assert r.status_code == 500
    assert r.json() == {"error": "contract violation; see server.violations"}
    assert len(server.violations) == 1 and "ListResponse" in server.violations[0]
    server.violations.clear()  # this test made the violation on purpose


def test_contract_problems_reports_drift() -> None:
    good = {"model": "m", "created_at": "2025-01-01T00:00:00Z", "message": {"role": "assistant"}}
    assert contract_problems(json.dumps(good), ollama.ChatResponse) == []
    typo = {**good, "done": True, "eval_cnt": 3}
    assert contract_problems(json.dumps(typo), ollama.ChatResponse) == ["drops eval_cnt"]
    float_ns = {**good, "done": True, "eval_duration": 1.5}
    assert contract_problems(json.dumps(float_ns), ollama.ChatResponse) != []
    string_count = {**good, "eval_count": "3"}
    assert contract_problems(json.dumps(string_count), ollama.ChatResponse) != []
    nested = {"models": [{"model": "m", "name": "m", "detials": {}}]}
    assert contract_problems(json.dumps(nested), ollama.ListResponse) == ["drops models[].detials"]


# -- the contract server over a scripted llama-server (real-backend code path) ---------------


class ScriptedLlamaServer:
    """A llama-server stand-in behind httpx.MockTransport: answers the probes the contract
    server makes at start and replays a scripted /v1/chat/completions SSE stream."""

    def __init__(self) -> None:
        self.chat_requests: list[dict[str, Any]] = []
        self.script: list[dict[str, Any] | str] = []
        self.chat_status = 200
        self.delay_s = 0.0
        self.closed = False

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/health":
            return httpx.Response(200, json={"status": "ok"})
        if path == "/props":
            return httpx.Response(200, json={"default_generation_settings": {"n_ctx": 2048}})
        if path == "/v1/models":
            meta = {
                "n_ctx_train": 8192,
                "n_embd": 576,
                "n_params": 134515008,
                "size": 96576768,
                "ftype": "Q4_1",
            }
            return httpx.Response(
                200, json={"object": "list", "data": [{"id": "smollm2", "meta": meta}]}
            )
        if path == "/v1/embeddings":
            error = {
                "code": 501,
                "message": "This server does not support embeddings.",
                "type": "not_supported_error",
            }
            return httpx.Response(501, json={"error": error})
        assert path == "/v1/chat/completions"
        self.chat_requests.append(json.loads(request.content))
        if self.chat_status != 200:
            error = {
                "code": self.chat_status,
                "message": "the request exceeds the available context size",
                "type": "exceed_context_size_error",
            }
            return httpx.Response(self.chat_status, json={"error": error})
        return httpx.Response(
            200, stream=_SSEStream(self), headers={"content-type": "text/event-stream"}
        )


class _SSEStream(httpx.SyncByteStream):
    def __init__(self, backend: ScriptedLlamaServer) -> None:
        self.backend = backend

    def __iter__(self) -> Iterator[bytes]:
        for event in self.backend.script:
            time.sleep(self.backend.delay_s)
            yield f"data: {event if isinstance(event, str) else json.dumps(event)}\n\n".encode()

    def close(self) -> None:
        self.backend.closed = True


def sse_chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "choices": [{"finish_reason": finish, "index": 0, "delta": delta}],
        "created": 1795317488,
        "id": "chatcmpl-scripted",
        "model": "smollm2",
        "object": "chat.completion.chunk",
        **extra,
    }


TIMINGS = {"cache_n": 4, "prompt_n": 10, "prompt_ms": 12.5, "predicted_n": 3, "predicted_ms": 30.25}


@pytest.fixture
def scripted() -> ScriptedLlamaServer:
    return ScriptedLlamaServer()


@pytest.fixture
def backed(scripted: ScriptedLlamaServer) -> Iterator[OllamaContractServer]:
    transport = scripted.transport()
    with OllamaContractServer("http://llama.test", backend_transport=transport) as srv:
        yield srv
    assert srv.violations == []


async def test_backend_stream_maps_text_and_timings(
    backed: OllamaContractServer, scripted: ScriptedLlamaServer
) -> None:
    scripted.script = [
        sse_chunk({"role": "assistant", "content": None}),
        *(sse_chunk({"content": piece}) for piece in ["Hi", " there", "!"]),
        sse_chunk({}, "stop", timings=TIMINGS),
        "[DONE]",
    ]
    async with ollama.AsyncClient(host=backed.url, timeout=30) as client:
        parts = [p async for p in await client.chat("smollm2:135m", user("hi"), stream=True)]
    assert [p.message.content for p in parts] == ["Hi", " there", "!", ""]
    final = parts[-1]
    assert final.done_reason == "stop"
    assert final.prompt_eval_count == 14, "cached + evaluated prompt tokens"
    assert final.prompt_eval_duration == 12_500_000 and final.eval_duration == 30_250_000
    assert final.eval_count == 3
    assert final.total_duration and final.load_duration
    assert final.total_duration >= final.load_duration


async def test_backend_request_mapping(
    backed: OllamaContractServer, scripted: ScriptedLlamaServer
) -> None:
    scripted.script = [sse_chunk({"content": "{}"}), sse_chunk({}, "length", timings=TIMINGS)]
    history = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}],
        },
        {"role": "tool", "content": "18 degrees", "tool_name": "get_weather"},
    ]
    schema = {"type": "object", "properties": {"t": {"type": "number"}}}
    options = {
        "num_predict": 7,
        "temperature": 0.2,
        "seed": 42,
        "top_k": 20,
        "stop": ["\n"],
        "num_ctx": 8192,
        "num_thread": 2,
    }
    async with ollama.AsyncClient(host=backed.url, timeout=30) as client:
        response = await client.chat(
            "smollm2:135m", history, tools=[WEATHER_TOOL], format=schema, options=options
        )
    assert response.done_reason == "length"
    (sent,) = scripted.chat_requests
    assert sent["stream"] is True and sent["model"] == "smollm2:135m"
    assert {k: sent[k] for k in ("n_predict", "temperature", "seed", "top_k", "stop")} == {
        "n_predict": 7,
        "temperature": 0.2,
        "seed": 42,
        "top_k": 20,
        "stop": ["\n"],
    }
    assert "num_ctx" not in sent and "n_ctx" not in sent, "load-time options are not per request"
    assert sent["response_format"] == {"type": "json_schema", "json_schema": {"schema": schema}}
    assert sent["tools"][0]["function"]["name"] == "get_weather"
    assistant, tool = sent["messages"][2], sent["messages"][3]
    call = assistant["tool_calls"][0]
    assert call["type"] == "function" and json.loads(call["function"]["arguments"]) == {
        "city": "Paris"
    }
    assert tool == {
        "role": "tool",
        "content": "18 degrees",
        "name": "get_weather",
        "tool_call_id": call["id"],
    }


async def test_backend_tool_call_arguments_become_objects(
    backed: OllamaContractServer, scripted: ScriptedLlamaServer
) -> None:
    def part(index: int, **function: str) -> dict[str, Any]:
        return sse_chunk({"tool_calls": [{"index": index, "function": function}]})

    scripted.script = [
        sse_chunk({"role": "assistant", "content": None}),
        sse_chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "x1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"ci'},
                    }
                ]
            }
        ),
        part(0, arguments='ty": "Paris", "unit": "celsius"}'),
        sse_chunk(
            {
                "tool_calls": [
                    {
                        "index": 1,
                        "id": "x2",
                        "type": "function",
                        "function": {"name": "get_time", "arguments": "{}"},
                    }
                ]
            }
        ),
        sse_chunk({}, "tool_calls", timings=TIMINGS),
        "[DONE]",
    ]
    async with ollama.AsyncClient(host=backed.url, timeout=30) as client:
        parts = [
            p
            async for p in await client.chat(
                "smollm2:135m", user("weather?"), tools=[WEATHER_TOOL, TIME_TOOL], stream=True
            )
        ]
    calls = parts[0].message.tool_calls or []
    assert [(c.function.name, c.function.arguments) for c in calls] == [
        ("get_weather", {"city": "Paris", "unit": "celsius"}),
        ("get_time", {}),
    ]
    assert parts[-1].done_reason == "stop", "Ollama reports stop after tool calls"


async def test_backend_error_mid_stream(
    backed: OllamaContractServer, scripted: ScriptedLlamaServer
) -> None:
    error = {"code": 500, "message": "slot crashed", "type": "server_error"}
    scripted.script = [sse_chunk({"content": "Hi"}), {"error": error}]
    async with httpx.AsyncClient(base_url=backed.url) as http:
        r = await http.post("/api/chat", json={"model": "smollm2:135m", "messages": user("x")})
    assert r.status_code == 200
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert lines[0]["message"]["content"] == "Hi"
    assert lines[-1] == {"error": "slot crashed"}


async def test_backend_http_error_before_stream(
    backed: OllamaContractServer, scripted: ScriptedLlamaServer
) -> None:
    scripted.chat_status = 400
    async with ollama.AsyncClient(host=backed.url, timeout=30) as client:
        with pytest.raises(ollama.ResponseError) as caught:
            await drain(await client.chat("smollm2:135m", user("x"), stream=True))
    assert caught.value.status_code == 500
    assert "exceeds the available context size" in caught.value.error


async def test_backend_closed_when_client_disconnects(
    backed: OllamaContractServer, scripted: ScriptedLlamaServer
) -> None:
    scripted.delay_s = 0.02
    scripted.script = [sse_chunk({"content": f" w{i}"}) for i in range(300)]
    async with ollama.AsyncClient(host=backed.url, timeout=30) as client:
        stream = await client.chat("smollm2:135m", user("go on"), stream=True)
        async for _part in stream:
            break
        await stream.aclose()
    assert await eventually(lambda: scripted.closed), "the upstream request is closed"
    assert backed.disconnects == 1


async def test_backend_describes_its_model(backed: OllamaContractServer) -> None:
    async with ollama.AsyncClient(host=backed.url, timeout=30) as client:
        (listed,) = (await client.list()).models
        assert listed.model == "smollm2:135m" and listed.size == 96576768
        assert listed.details and listed.details.quantization_level == "Q4_1"
        await client.chat("smollm2:135m", [])
        (running,) = (await client.ps()).models
        assert running.context_length == 2048, "the backend's real context, not a request's"
        vectors = await client.embed("smollm2:135m", "hi")
        assert len(vectors.embeddings[0]) == 576, "hashed fallback when /v1/embeddings is 501"


# -- the contract server over the real llama-server -----------------------------------------


@pytest.fixture
def real(request: pytest.FixtureRequest) -> Iterator[OllamaContractServer]:
    try:
        backend = request.getfixturevalue("llama_server")
    except pytest.FixtureLookupError:
        pytest.skip("no llama_server fixture in tests/conftest.py")
    with OllamaContractServer(backend.url) as srv:
        yield srv
    assert srv.violations == []


@pytest.mark.server
async def test_real_chat_stream(real: OllamaContractServer) -> None:
    async with ollama.AsyncClient(host=real.url, timeout=120) as client:
        parts = [
            p
            async for p in await client.chat(
                "smollm2:135m", user("Say hello."), stream=True, options={"num_predict": 16}
            )
        ]
    final = parts[-1]
    assert "".join(p.message.content or "" for p in parts).strip()
    assert final.done and final.done_reason in ("stop", "length")
    assert final.prompt_eval_count and final.eval_count and 0 < final.eval_count <= 16
    assert final.prompt_eval_duration and final.eval_duration and final.total_duration
    assert final.total_duration > final.eval_duration


@pytest.mark.server
async def test_real_chat_limits_and_format(real: OllamaContractServer) -> None:
    async with ollama.AsyncClient(host=real.url, timeout=120) as client:
        cut = await client.chat("smollm2:135m", user("Count to fifty."), options={"num_predict": 4})
        assert (cut.done_reason, cut.eval_count) == ("length", 4)
        shaped = await client.chat(
            "smollm2:135m", user("Reply in JSON."), format="json", options={"num_predict": 24}
        )
        assert (shaped.message.content or "").lstrip().startswith("{")
        tooled = await client.chat(
            "smollm2:135m",
            user("Weather in Paris?"),
            tools=[WEATHER_TOOL],
            options={"num_predict": 48},
        )
        assert tooled.done
        for call in tooled.message.tool_calls or []:
            assert isinstance(call.function.arguments, dict)


@pytest.mark.server
async def test_real_ps_embed_and_disconnect(real: OllamaContractServer) -> None:
    assert real.backend_url
    async with httpx.AsyncClient(base_url=real.backend_url) as http:
        n_ctx = (await http.get("/props")).json()["default_generation_settings"]["n_ctx"]
    async with ollama.AsyncClient(host=real.url, timeout=120) as client:
        await client.chat("smollm2:135m", [], keep_alive="2m")
        (running,) = (await client.ps()).models
        assert running.context_length == n_ctx, "the backend's real per-slot context"
        embedded = await client.embed("smollm2:135m", ["hello there", "bye"])
        assert len(embedded.embeddings) == 2 and len(embedded.embeddings[0]) == 576
        assert embedded.prompt_eval_count and embedded.prompt_eval_count > 2
        stream = await client.chat(
            "smollm2:135m", user("Tell a long story."), stream=True, options={"num_predict": 400}
        )
        async for _part in stream:
            break
        await stream.aclose()
        assert await eventually(lambda: real.disconnects == 1)
        after = await client.chat("smollm2:135m", user("Hi"), options={"num_predict": 2})
        assert after.done, "the abandoned generation freed the slot"
