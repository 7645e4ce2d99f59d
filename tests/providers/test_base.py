"""What every provider does (llm_nb/providers/base.py), over httpx.MockTransport: the partial
answer kept when a stream fails or is cut, the response closed when a stream is abandoned or
cancelled, no key in an error, clear errors for an unsupported operation or a server that is
not running, the sync facade inside a running loop, and where requests go.

Each provider's own wire: test_openai.py, test_llamacpp.py, test_ollama.py. Retries:
tests/wire/test_retry.py.
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
    ProtocolError,
    TextDelta,
    UnsupportedError,
)
from llm_nb.providers import LlamaCppProvider, OllamaProvider, OpenAIProvider
from tests.scripted import FAST, Closing, chunk, provider, replies, sse


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


async def test_connection_refused_says_how_to_start() -> None:
    p = LlamaCppProvider("127.0.0.1:9", retry=FAST)  # nothing listens on the discard port
    with pytest.raises(
        APIConnectionError, match=r"no llama-server answers at http://127.0.0.1:9.*llama-server -m"
    ):
        await p.chat("m", "hi")
    p2 = OllamaProvider("127.0.0.1:9", retry=FAST)
    with pytest.raises(APIConnectionError, match="is Ollama running"):
        await p2.chat("m", "hi")


async def test_unsupported_operation_is_clear() -> None:
    p = provider(OpenAIProvider, lambda r: httpx.Response(500))
    with pytest.raises(UnsupportedError, match="cannot unload models; supported here:"):
        await p.unload("x")


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
