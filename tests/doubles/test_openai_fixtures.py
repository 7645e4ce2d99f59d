"""The OpenAI wire fixtures (tests/fixtures/openai), checked with the official client: OpenAI
cannot be reached here, so every fixture llm_nb is tested against is validated with the
``openai`` package's types (no field the SDK does not know) and parsed by its SDK.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import httpx
import openai
import pytest
from openai.types import Model as OpenAIModel
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.shared import ErrorObject
from pydantic import BaseModel

pytestmark = pytest.mark.doubles  # these tests check the doubles against the real clients

OPENAI = Path(__file__).parents[1] / "fixtures" / "openai"
SSE_FIXTURES = sorted(p.name for p in OPENAI.glob("*.sse"))


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
