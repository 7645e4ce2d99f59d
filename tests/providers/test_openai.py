"""The OpenAI provider over byte fixtures of OpenAI's real API (tests/fixtures/openai, each
validated with the official ``openai`` types in tests/doubles/test_openai_fixtures.py), and
over scripted responses: deltas, usage, tool-call fragments, an unknown model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

import llm_nb
from llm_nb import (
    ModelNotFoundError,
    TextDelta,
)
from llm_nb._wire.retry import RetryPolicy
from llm_nb.providers import OpenAIProvider
from tests.scripted import Closing, chunk, provider, sse

FIXTURES = Path(__file__).parents[1] / "fixtures" / "openai"
NO_RETRY = RetryPolicy(max_retries=0)


def events(name: str) -> list[dict[str, Any]]:
    out = []
    for block in (FIXTURES / name).read_text().split("\n\n"):
        data = block.removeprefix("data: ").strip()
        if data and data != "[DONE]":
            out.append(json.loads(data))
    return out


def serving(name: str, status: int = 200) -> OpenAIProvider:
    body = (FIXTURES / name).read_bytes()
    ctype = "text/event-stream" if name.endswith(".sse") else "application/json"

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models") and name.startswith("error_404"):
            return httpx.Response(200, content=(FIXTURES / "models_list.json").read_bytes())
        return httpx.Response(status, content=body, headers={"content-type": ctype})

    return OpenAIProvider(api_key="sk-test", transport=httpx.MockTransport(handler), retry=NO_RETRY)


@pytest.mark.parametrize(
    "name", ["chat_stream.sse", "chat_stream_length.sse", "chat_stream_refusal.sse"]
)
async def test_stream_fixtures(name: str) -> None:
    evs = events(name)
    expected = "".join(
        (c["delta"].get("content") or "") + (c["delta"].get("refusal") or "")
        for e in evs
        for c in e["choices"]
    )
    usage = next((e["usage"] for e in evs if e.get("usage")), None)
    finish = next(c["finish_reason"] for e in evs for c in e["choices"] if c["finish_reason"])
    s = serving(name).stream("gpt-4o", "hi")
    deltas = [d async for d in s]
    r = s.response
    assert r.text == expected == "".join(d.text for d in deltas if isinstance(d, TextDelta))
    assert r.finish_reason == finish and r.status == "ok"
    assert r.model_reported == evs[0]["model"]
    if usage:
        assert r.usage.completion_tokens == usage["completion_tokens"]
        assert r.usage.prompt_tokens == usage["prompt_tokens"]
    # OpenAI's first chunk has role + content "": not a token.
    assert len(r.trace.token_times_ns) == sum(
        1
        for e in evs
        for c in e["choices"]
        if c["delta"].get("content") or c["delta"].get("refusal")
    )


async def test_tool_call_fixture() -> None:
    evs = events("chat_stream_tool_calls.sse")
    want: dict[int, dict[str, str]] = {}
    for e in evs:
        for c in e["choices"]:
            for tc in c["delta"].get("tool_calls") or ():
                slot = want.setdefault(tc["index"], {"name": "", "args": ""})
                fn = tc.get("function") or {}
                slot["name"] += fn.get("name") or ""
                slot["args"] += fn.get("arguments") or ""
    r = await serving("chat_stream_tool_calls.sse").stream("gpt-4o", "hi").collect()
    assert r.finish_reason == "tool_calls"
    assert [(c.name, c.args) for c in r.tool_calls] == [
        (w["name"], json.loads(w["args"])) for _, w in sorted(want.items())
    ]
    assert len(r.tool_calls) >= 2 and all(c.id for c in r.tool_calls)


async def test_whole_completion_fixture() -> None:
    body = json.loads((FIXTURES / "chat_completion.json").read_text())
    r = await serving("chat_completion.json").chat("gpt-4o", "hi")
    assert r.text == body["choices"][0]["message"]["content"]
    u = body["usage"]
    assert r.usage.cached_tokens == u["prompt_tokens_details"]["cached_tokens"]
    assert r.usage.reasoning_tokens == u["completion_tokens_details"]["reasoning_tokens"]


@pytest.mark.parametrize(
    ("name", "status", "cls", "match"),
    [
        ("error_401_invalid_api_key.json", 401, llm_nb.AuthenticationError, "Incorrect API key"),
        ("error_404_model_not_found.json", 404, ModelNotFoundError, "available: gpt-4o-mini"),
        ("error_429_rate_limit.json", 429, llm_nb.RateLimitError, "Rate limit"),
        ("error_429_insufficient_quota.json", 429, llm_nb.RateLimitError, "quota"),
        ("error_400_context_length_exceeded.json", 400, llm_nb.ContextLengthError, "context"),
    ],
)
async def test_error_fixtures(name: str, status: int, cls: type[Exception], match: str) -> None:
    with pytest.raises(cls, match=match) as info:
        await serving(name, status).chat("gpt-4o-nonexistent", "hi")
    assert "\n" not in str(info.value) and "sk-test" not in str(info.value)


async def test_models_fixture() -> None:
    ids = [m["id"] for m in json.loads((FIXTURES / "models_list.json").read_text())["data"]]
    assert [m.name for m in await serving("models_list.json").models()] == ids


# -- over scripted responses ----------------------------------------------------------------


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
