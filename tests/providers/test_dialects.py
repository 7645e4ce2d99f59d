"""Dialects of the OpenAI wire (and Ollama's) read right, one class of difference per test:
where the model name, usage and reasoning are, how a finish is named, and when a stream that
ends without its end marker is still a whole answer."""

from __future__ import annotations

import json
import math
from typing import Any

import httpx
import pytest

from llm_nb import ContextLengthError, ProtocolError, RateLimitError, ServerError
from llm_nb._stats import call_row
from llm_nb._types import ChatResponse
from llm_nb._wire.finish import normalize_finish
from llm_nb._wire.retry import RetryPolicy
from llm_nb.providers import LlamaCppProvider, OllamaProvider, OpenAIProvider


def sse(*chunks: Any, done: bool = True) -> bytes:
    out = b"".join(
        c if isinstance(c, bytes) else b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks
    )
    return out + (b"data: [DONE]\n\n" if done else b"")


def chunk(
    delta: dict[str, Any] | None = None, finish: str | None = None, **top: Any
) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta or {}, "finish_reason": finish}
    return {"model": "m", "choices": [choice], **top}


def provider(body: bytes, cls: type[Any] = OpenAIProvider, **kw: Any) -> Any:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body)

    return cls(
        "http://127.0.0.1:9",
        transport=httpx.MockTransport(handle),
        retry=RetryPolicy(max_retries=0),
        **kw,
    )


async def read(body: bytes, cls: type[Any] = OpenAIProvider) -> ChatResponse:
    return await provider(body, cls).stream("asked", "hi").collect()


# -- model name -------------------------------------------------------------------------------


async def test_model_comes_from_the_first_chunk_that_names_one() -> None:
    r = await read(
        sse(
            {"choices": [], "model": "", "prompt_filter_results": [{"prompt_index": 0}]},
            chunk({"role": "assistant", "content": ""}, model="gpt-4o-2024-08-06"),
            chunk({"content": "hi"}, model="other-name-later"),
            chunk(finish="stop", model="other-name-later"),
        )
    )
    assert (r.model_reported, r.text, r.status) == ("gpt-4o-2024-08-06", "hi", "ok")


# -- usage ------------------------------------------------------------------------------------


async def test_groq_x_groq_usage_alone_is_server_usage() -> None:
    usage = {"prompt_tokens": 45, "completion_tokens": 3, "total_tokens": 48}
    r = await read(
        sse(
            chunk({"content": "a b c"}, x_groq={"id": "req_1"}),
            chunk(finish="stop", x_groq={"id": "req_1", "usage": usage}),
        )
    )
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (45, 3)
    assert call_row(r)["token_source"] == "server_usage"


async def test_usage_in_every_chunk_the_last_wins_and_null_never_erases() -> None:
    r = await read(
        sse(
            chunk({"content": "a"}, usage={"prompt_tokens": 7, "completion_tokens": 1}),
            chunk({"content": "b"}, usage={"prompt_tokens": 7, "completion_tokens": 2}),
            chunk(finish="stop", usage={"prompt_tokens": 7, "completion_tokens": 3}),
            {"model": "m", "choices": [], "usage": None},
        )
    )
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (7, 3)


@pytest.mark.parametrize(
    ("usage", "prompt", "completion", "source"),
    [
        ({"input_tokens": 4, "output_tokens": 9}, 4, 9, "server_usage"),
        ({"prompt_tokens": 4, "total_tokens": 10}, 4, 6, "server_usage"),
        # The server counted the prompt only: never a chunk count in its place.
        ({"prompt_tokens": 4}, 4, math.nan, "server_usage"),
    ],
)
async def test_usage_field_names_and_partial_usage(
    usage: dict[str, int], prompt: int, completion: float, source: str
) -> None:
    r = await read(sse(chunk({"content": "x y"}), chunk(finish="stop", usage=usage)))
    row = call_row(r)
    assert row["token_source"] == source and row["prompt_tokens"] == prompt
    assert row["completion_tokens"] == completion or (
        math.isnan(completion) and math.isnan(row["completion_tokens"])
    )


async def test_llama_timings_without_usage_are_the_token_source() -> None:
    timings = {"prompt_n": 5, "prompt_ms": 10.0, "predicted_n": 2, "predicted_ms": 20.0}
    r = await read(sse(chunk({"content": "ab"}), chunk(finish="stop", timings=timings)))
    row = call_row(r)
    assert (row["token_source"], row["completion_tokens"]) == ("server_timings", 2)


# -- the end of a stream ----------------------------------------------------------------------


@pytest.mark.parametrize("cls", [OpenAIProvider, LlamaCppProvider])
async def test_a_finish_without_done_is_a_whole_answer(cls: type[Any]) -> None:
    r = await read(sse(chunk({"content": "whole"}), chunk(finish="stop"), done=False), cls)
    assert (r.status, r.text, r.finish_reason) == ("ok", "whole", "stop")


async def test_a_cut_before_any_finish_is_a_protocol_error_keeping_the_text() -> None:
    with pytest.raises(ProtocolError, match="before its end marker") as info:
        await read(sse(chunk({"content": "part"}), chunk({"content": "ial"}), done=False))
    assert info.value.partial is not None and info.value.partial.text == "partial"


async def test_ollama_cut_before_done_is_a_protocol_error() -> None:
    line = {"model": "m", "message": {"role": "assistant", "content": "half"}, "done": False}
    with pytest.raises(ProtocolError) as info:
        await read(json.dumps(line).encode() + b"\n", OllamaProvider)
    assert info.value.partial is not None and info.value.partial.text == "half"


# -- finish reasons ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("stop", "stop"),
        ("eos", "stop"),  # Together
        ("eos_token", "stop"),  # TGI
        ("end_turn", "stop"),  # Anthropic-compatible
        ("STOP", "stop"),  # Gemini
        ("length", "length"),
        ("model_length", "length"),  # Mistral
        ("max_tokens", "length"),
        ("function_call", "tool_calls"),  # OpenAI's legacy functions
        ("tool_use", "tool_calls"),
        ("tool_calls", "tool_calls"),
        ("content_filter", "content_filter"),
        ("SAFETY", "content_filter"),
        ("model_context_window_exceeded", "length"),  # Anthropic, the context filled up
        ("ERROR_TOXIC", "content_filter"),  # Cohere
        ("abort", None),  # no answer end: only the raw column says it
        ("error", None),
    ],
)
async def test_finish_reasons_are_normalized_and_the_raw_one_kept(
    raw: str, normal: str | None
) -> None:
    assert normalize_finish(raw) == normal
    r = await read(sse(chunk({"content": "t"}), chunk(finish=raw)))
    assert (r.finish_reason, r.finish_reason_raw) == (normal, raw)
    row = call_row(r)
    assert (row["finish_reason"], row["finish_reason_raw"]) == (normal, raw)


@pytest.mark.parametrize(("done_reason", "normal"), [("stop", "stop"), ("length", "length")])
async def test_ollama_done_reason(done_reason: str, normal: str) -> None:
    lines = [
        {"model": "m", "message": {"role": "assistant", "content": "x"}, "done": False},
        {"model": "m", "message": {"role": "assistant", "content": ""}, "done": True,
         "done_reason": done_reason, "eval_count": 1},
    ]  # fmt: skip
    r = await read(b"".join(json.dumps(x).encode() + b"\n" for x in lines), OllamaProvider)
    assert (r.finish_reason, r.finish_reason_raw) == (normal, done_reason)


# -- reasoning --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "delta",
    [
        {"reasoning_content": "think"},  # llama-server, DeepSeek
        {"reasoning": "think"},  # Ollama /v1, Groq, OpenRouter, vLLM
        {"thinking": "think"},
        {"reasoning_details": [{"type": "reasoning.text", "text": "think"}]},  # OpenRouter
        {"reasoning_details": [{"type": "reasoning.summary", "summary": "think"}]},
        # OpenRouter repeats the text in both fields: it counts once.
        {"reasoning": "think", "reasoning_details": [{"type": "reasoning.text", "text": "think"}]},
        {"content": [{"type": "thinking", "thinking": [{"type": "text", "text": "think"}]}]},
    ],
)
async def test_reasoning_under_every_field_stays_out_of_the_answer(delta: dict[str, Any]) -> None:
    r = await read(sse(chunk(delta), chunk({"content": "answer"}), chunk(finish="stop")))
    assert (r.reasoning, r.text) == ("think", "answer")


async def test_whole_answer_reasoning_fields() -> None:
    body = {
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "answer", "reasoning": "think"},
                "finish_reason": "stop",
            }
        ],
    }
    r = await provider(json.dumps(body).encode()).chat("asked", "hi")
    assert (r.reasoning, r.text, r.finish_reason_raw) == ("think", "answer", "stop")


async def test_ollama_thinking_stays_out_of_the_answer() -> None:
    lines = [
        {"model": "m", "message": {"role": "assistant", "content": "", "thinking": "hmm"},
         "done": False},
        {"model": "m", "message": {"role": "assistant", "content": "ok"}, "done": False},
        {"model": "m", "message": {"role": "assistant", "content": ""}, "done": True,
         "done_reason": "stop"},
    ]  # fmt: skip
    r = await read(b"".join(json.dumps(x).encode() + b"\n" for x in lines), OllamaProvider)
    assert (r.reasoning, r.text) == ("hmm", "ok")


# -- other chunk shapes -----------------------------------------------------------------------


async def test_legacy_function_call_delta_is_a_tool_call() -> None:
    r = await read(
        sse(
            chunk({"function_call": {"name": "lookup", "arguments": '{"q":'}}),
            chunk({"function_call": {"arguments": ' "x"}'}}),
            chunk(finish="function_call"),
        )
    )
    assert [(c.name, c.args) for c in r.tool_calls] == [("lookup", {"q": "x"})]
    assert r.finish_reason == "tool_calls"


async def test_a_null_error_field_is_not_an_error() -> None:
    r = await read(sse(chunk({"content": "fine"}, error=None), chunk(finish="stop")))
    assert (r.status, r.text) == ("ok", "fine")


async def test_sse_error_event_with_plain_text_data() -> None:
    body = sse(chunk({"content": "so far"}), b"event: error\ndata: upstream went away\n\n")
    with pytest.raises(ServerError, match="mid-stream: upstream went away") as info:
        await read(body)
    assert info.value.partial is not None and info.value.partial.text == "so far"


async def test_sse_error_event_split_across_reads() -> None:
    parts = [
        sse(chunk({"content": "so far"}), done=False),
        b"event: error\n",
        b'data: {"error": {"message": "slow down", "type": "rate_limit_error"}}\n\n',
    ]

    async def body() -> Any:
        for part in parts:
            yield part

    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body())

    p = OpenAIProvider(
        "http://127.0.0.1:9",
        transport=httpx.MockTransport(handle),
        retry=RetryPolicy(max_retries=0),
    )
    with pytest.raises(RateLimitError, match="slow down") as info:
        await p.stream("asked", "hi").collect()
    assert info.value.status_code == 429


async def test_a_200_answer_with_an_error_body_is_that_error() -> None:
    body = {"error": {"message": "too long", "code": "context_length_exceeded"}}
    with pytest.raises(ContextLengthError):
        await provider(json.dumps(body).encode()).chat("asked", "hi")


@pytest.mark.parametrize(
    "bad",
    [
        {"model": "m", "choices": [None]},
        {"model": "m", "choices": [{"index": 0, "delta": "text"}]},
        {"model": "m", "choices": [{"index": 0, "delta": {"tool_calls": [5]}}]},
        {"model": "m", "choices": [], "x_groq": 5},
        {"model": "m", "choices": "none"},
    ],
)
async def test_a_chunk_of_the_wrong_shape_is_a_protocol_error(bad: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError, match="unexpected shape") as info:
        await read(sse(chunk({"content": "kept"}), bad, chunk(finish="stop")))
    assert info.value.partial is not None and info.value.partial.text == "kept"
