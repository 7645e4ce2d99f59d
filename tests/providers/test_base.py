"""Provider behaviour over httpx.MockTransport: wire mapping, errors, closing.

Retries are in test_retry.py.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

import llm_nb
from llm_nb import (
    APIConnectionError,
    AuthenticationError,
    ModelNotFoundError,
    ProtocolError,
    TextDelta,
    ToolCallDelta,
    UnsupportedError,
)
from llm_nb.providers import LlamaCppProvider, OllamaProvider, OpenAIProvider
from tests.scripted import FAST, provider, replies


class Closing(httpx.AsyncByteStream):
    """A response body that records whether the client closed it."""

    def __init__(self, parts: list[bytes], delay: float = 0.0) -> None:
        self.parts = parts
        self.delay = delay
        self.closed = False

    async def __aiter__(self) -> Any:
        for p in self.parts:
            if self.delay:
                await asyncio.sleep(self.delay)
            yield p

    async def aclose(self) -> None:
        self.closed = True


def sse(*objs: Any, done: bool = True) -> list[bytes]:
    out = [f"data: {json.dumps(o)}\n\n".encode() for o in objs]
    return [*out, b"data: [DONE]\n\n"] if done else out


def chunk(content: str | None = None, finish: str | None = None, **delta: Any) -> dict[str, Any]:
    d: dict[str, Any] = dict(delta)
    if content is not None:
        d["content"] = content
    return {"model": "m", "choices": [{"index": 0, "delta": d, "finish_reason": finish}]}


async def test_openai_stream_deltas_usage_and_closing() -> None:
    body = Closing(
        sse(
            chunk("", role="assistant"),
            chunk("Hel"),
            chunk("lo", reasoning_content="hmm"),
            chunk(finish="stop"),
            {
                "model": "m",
                "choices": [],
                "usage": {
                    "prompt_tokens": 3,
                    "completion_tokens": 2,
                    "total_tokens": 5,
                    "prompt_tokens_details": {"cached_tokens": 1},
                },
            },
        )
    )
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, stream=body, headers={"content-type": "text/event-stream"})

    p = provider(OpenAIProvider, handler)
    s = p.stream("m", "hi", max_tokens=5, stop="x")
    deltas = [d async for d in s]
    assert [d.text for d in deltas if isinstance(d, TextDelta)] == ["Hel", "lo"]
    r = s.response
    assert (r.text, r.reasoning, r.finish_reason, r.status) == ("Hello", "hmm", "stop", "ok")
    assert r.usage.prompt_tokens == 3 and r.usage.cached_tokens == 1
    # The role-only first chunk is not a token; the trailing usage chunk is not one either.
    assert len(r.trace.token_times_ns) == 2
    assert body.closed
    sent = json.loads(seen[0].content)
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert sent["max_tokens"] == 5 and sent["stop"] == ["x"]


async def test_tool_call_fragments_are_assembled() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            stream=Closing(
                sse(
                    chunk(
                        tool_calls=[
                            {
                                "index": 0,
                                "id": "c1",
                                "type": "function",
                                "function": {"name": "get_weather", "arguments": ""},
                            }
                        ]
                    ),
                    chunk(tool_calls=[{"index": 0, "function": {"arguments": '{"city":'}}]),
                    chunk(
                        tool_calls=[
                            {"index": 1, "id": "c2", "function": {"name": "now", "arguments": "{}"}}
                        ]
                    ),
                    chunk(tool_calls=[{"index": 0, "function": {"arguments": '"Oslo"}'}}]),
                    chunk(finish="tool_calls"),
                )
            ),
        )

    p = provider(OpenAIProvider, handler)
    r = await p.stream(
        "m",
        "weather?",
        tools=[
            {
                "type": "function",
                "function": {"name": "get_weather", "parameters": {"type": "object"}},
            }
        ],
    ).collect()
    assert [(c.id, c.name, c.args) for c in r.tool_calls] == [
        ("c1", "get_weather", {"city": "Oslo"}),
        ("c2", "now", {}),
    ]
    assert r.finish_reason == "tool_calls"


async def test_midstream_error_keeps_partial_text() -> None:
    body = Closing(
        [
            *sse(chunk("par"), chunk("tial"), done=False),
            b'data: {"error":{"code":500,"message":"slot crashed","type":"server_error"}}\n\n',
        ]
    )
    p = provider(LlamaCppProvider, lambda r: httpx.Response(200, stream=body))
    s = p.stream("m", "hi")
    with pytest.raises(llm_nb.ServerError, match="slot crashed") as info:
        async for _ in s:
            pass
    assert info.value.partial is s.response
    assert s.response.text == "partial" and s.response.status == "error"
    assert body.closed


async def test_stream_cut_without_done_is_protocol_error_with_partial() -> None:
    body = Closing(sse(chunk("abc"), done=False))
    p = provider(OpenAIProvider, lambda r: httpx.Response(200, stream=body))
    s = p.stream("m", "hi")
    with pytest.raises(ProtocolError, match="before its end marker"):
        await s.collect()
    assert s.response.text == "abc" and s.response.status == "error"


async def test_abandoned_stream_closes_response_and_records_cancelled() -> None:
    body = Closing(sse(*[chunk(str(i)) for i in range(50)], chunk(finish="stop")))
    p = provider(OpenAIProvider, lambda r: httpx.Response(200, stream=body))
    s = p.stream("m", "hi")
    async for _ in s:
        break
    await s.aclose()
    assert body.closed
    assert s.response.status == "cancelled" and s.response.text == "0"


async def test_task_cancellation_closes_response() -> None:
    body = Closing(sse(*[chunk(str(i)) for i in range(100)]), delay=0.01)
    p = provider(OpenAIProvider, lambda r: httpx.Response(200, stream=body))
    s = p.stream("m", "hi")
    task = asyncio.create_task(s.collect())
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert body.closed and s.response.status == "cancelled"
    assert 0 < len(s.response.text) < 100


async def test_auth_error_message_has_no_key() -> None:
    key = "sk-canary-do-not-print-1234"
    handler, _ = replies(
        httpx.Response(
            401,
            json={
                "error": {
                    # A server that quotes the key it was sent: the error must not pass it on.
                    "message": f"Incorrect API key provided: {key}",
                    "type": "invalid_request_error",
                    "code": "invalid_api_key",
                }
            },
        )
    )
    p = provider(OpenAIProvider, handler, api_key=key)
    with pytest.raises(AuthenticationError) as info:
        await p.chat("m", "hi")
    assert key not in str(info.value) and key not in repr(info.value)
    assert "Incorrect API key provided" in str(info.value)  # the server's words still shown


async def test_unknown_model_lists_available() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(
                200,
                json={
                    "object": "list",
                    "data": [{"id": "qwen", "object": "model"}, {"id": "phi", "object": "model"}],
                },
            )
        return httpx.Response(
            404,
            json={
                "error": {
                    "message": "The model `nope` does not exist or you do not have access to it.",
                    "code": "model_not_found",
                }
            },
        )

    p = provider(OpenAIProvider, handler)
    with pytest.raises(
        ModelNotFoundError, match=r"'nope' not found on openai@.*available: qwen, phi"
    ):
        await p.chat("nope", "hi")


async def test_router_unknown_model_400_becomes_model_not_found() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(
                200,
                json={
                    "data": [
                        {"id": "a", "status": {"value": "loaded"}},
                        {"id": "b", "status": {"value": "unloaded"}},
                    ]
                },
            )
        return httpx.Response(
            400,
            json={
                "error": {
                    "code": 400,
                    "message": "model 'zz' not found",
                    "type": "invalid_request_error",
                }
            },
        )

    with pytest.raises(
        ModelNotFoundError, match=r"'zz' not found on llamacpp@.*available: a, b"
    ) as info:
        await provider(LlamaCppProvider, handler).chat("zz", "hi")
    assert info.value.available == ["a", "b"]


async def test_connection_refused_says_how_to_start() -> None:
    p = LlamaCppProvider("127.0.0.1:9", retry=FAST)  # nothing listens on the discard port
    with pytest.raises(
        APIConnectionError, match=r"no llama-server answers at http://127.0.0.1:9.*llama-server -m"
    ):
        await p.chat("m", "hi")
    p2 = OllamaProvider("127.0.0.1:9", retry=FAST)
    with pytest.raises(APIConnectionError, match="is Ollama running"):
        await p2.chat("m", "hi")


def ndjson(*objs: Any) -> list[bytes]:
    return [json.dumps(o).encode() + b"\n" for o in objs]


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


async def test_unsupported_operation_is_clear() -> None:
    p = provider(OpenAIProvider, lambda r: httpx.Response(500))
    with pytest.raises(UnsupportedError, match="cannot unload models; supported here:"):
        await p.unload("x")


async def test_llama_embeddings_disabled_says_how() -> None:
    handler, _ = replies(
        httpx.Response(
            501,
            json={
                "error": {
                    "code": 501,
                    "message": "This server does not support embeddings. Start it with "
                    "`--embeddings`",
                    "type": "not_supported_error",
                }
            },
        )
    )
    with pytest.raises(UnsupportedError, match="restart it with --embeddings"):
        await provider(LlamaCppProvider, handler).embed("m", "hello")


def test_sync_facade_inside_running_loop() -> None:
    """The sync API works while another event loop is running in this thread (a kernel)."""

    def handler(request: httpx.Request) -> httpx.Response:
        if json.loads(request.content).get("stream"):
            return httpx.Response(200, stream=Closing(sse(chunk("o"), chunk("k", finish="stop"))))
        return httpx.Response(
            200,
            json={
                "model": "m",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "ok"},
                        "finish_reason": "stop",
                    }
                ],
            },
        )

    p = provider(OpenAIProvider, handler)

    async def cell() -> tuple[str, str]:
        whole = llm_nb.sync(p).chat("m", "hi").text
        streamed = "".join(
            d.text for d in llm_nb.sync(p).stream("m", "hi") if isinstance(d, TextDelta)
        )
        return whole, streamed

    assert asyncio.run(cell()) == ("ok", "ok")


@pytest.mark.parametrize(
    ("cls", "base"),
    [
        (OpenAIProvider, "http://127.0.0.1:8000/v1"),
        (OpenAIProvider, "https://example.invalid/openai/v1/"),
        (LlamaCppProvider, "http://127.0.0.1:8080"),
        (OllamaProvider, "http://127.0.0.1:11434/"),
    ],
)
@pytest.mark.parametrize("path", ["/chat/completions", "/api/tags", "/models?reload=1", "/"])
async def test_requests_go_where_httpx_would_send_the_relative_path(
    cls: type[Any], base: str, path: str
) -> None:
    # Providers join each path to the base URL once and reuse it (httpx re-parses both on
    # every request otherwise); the URL must be the one httpx builds from the relative path.
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json={})

    p = cls(base, transport=httpx.MockTransport(handler), retry=FAST)
    client = p._client()
    for _ in range(2):  # joined, then from the cache
        await p._request("GET", path)
    assert seen == [str(client.build_request("GET", path).url)] * 2
    await p.aclose()


async def test_paths_that_are_not_cached_still_work() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(200, json={})

    p = OpenAIProvider(
        "http://127.0.0.1:8000/v1", transport=httpx.MockTransport(handler), retry=FAST
    )
    for i in range(70):  # more distinct paths than are kept
        await p._request("GET", f"/models/m{i}")
    await p._request("GET", "models/relative")  # no leading slash: joined by httpx itself
    assert seen == [f"/v1/models/m{i}" for i in range(70)] + ["/v1/models/relative"]
    await p.aclose()
