"""The Ollama contract server over a llama-server: the real-backend code path, first over a
scripted llama-server behind ``httpx.MockTransport`` (requests mapped, streams and timings
translated, errors and disconnects passed on), then (``server``) over the real one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import ollama
import pytest

from tests.contract import OllamaContractServer
from tests.doubles.ollama_calls import TIME_TOOL, WEATHER_TOOL, drain, eventually, user

pytestmark = pytest.mark.doubles  # these tests check the doubles against the real clients


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
