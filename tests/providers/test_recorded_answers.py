"""Recorded responses of real servers (tests/fixtures/corpus, sources in SOURCES.md) served
over a mock transport and read through llm_nb's public API: ``llm_nb.astream`` /
``llm_nb.achat`` on a registry holding the provider, as a user's notebook would.

Each recording states what a correct reading of it is: the answer text, the model the
server named, the usage it reported (and so the token source of the stats row), the finish
reason normalized and raw, reasoning kept out of the answer, tool calls, or the error class.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

import llm_nb
from llm_nb import (
    APIStatusError,
    ContextLengthError,
    ModelNotFoundError,
    NotFoundError,
    ProtocolError,
    QuotaExceededError,
    ServerError,
)
from llm_nb._registry import Registry
from llm_nb._session import Session
from llm_nb._stats import call_row
from llm_nb._wire.retry import RetryPolicy
from llm_nb.providers import LlamaCppProvider, OllamaProvider, OpenAIProvider
from llm_nb.providers.base import Provider

CORPUS = Path(__file__).parents[1] / "fixtures" / "corpus"
HOST = "corpus.test:8000"
NO_RETRY = RetryPolicy(max_retries=0)
KEY = "sk-corpus-test-0000"

#: Listed by the mock server's /models (and Ollama's /api/tags) for ModelNotFoundError.
LISTED = ("served-a", "served-b")


def body_bytes(path: Path) -> bytes:
    """The bytes the server sent. A ``.chunks.txt`` recording holds one chunk object per
    line (the vercel/ai fixture format); its SSE framing is rebuilt as vercel/ai's own test
    harness does: ``data: <line>`` events, then ``data: [DONE]``."""
    if path.name.endswith(".chunks.txt"):
        lines = [line for line in path.read_text().split("\n") if line.strip()]
        return "".join(f"data: {line}\n\n" for line in lines).encode() + b"data: [DONE]\n\n"
    return path.read_bytes()


def handler_for(body: bytes, status: int, content_type: str) -> Callable[..., httpx.Response]:
    def handle(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/models"):
            return httpx.Response(200, json={"object": "list", "data": [{"id": m} for m in LISTED]})
        if path == "/api/tags":
            return httpx.Response(200, json={"models": [{"name": m} for m in LISTED]})
        if path == "/api/ps":
            return httpx.Response(200, json={"models": []})
        return httpx.Response(status, content=body, headers={"content-type": content_type})

    return handle


PROVIDERS: dict[str, tuple[type[Provider], str]] = {
    "openai": (OpenAIProvider, f"http://{HOST}/v1"),
    "llamacpp": (LlamaCppProvider, f"http://{HOST}"),
    "ollama": (OllamaProvider, f"http://{HOST}"),
}


@pytest.fixture
def reg(session: Session) -> Registry:
    """The registry of a fresh session, made the default for the test."""
    return session.registry


def serve(reg: Registry, wire: str, body: bytes, status: int = 200) -> str:
    """Register a ``wire`` provider answered with ``body``; the model id to call."""
    cls, url = PROVIDERS[wire]
    ctype = "application/x-ndjson" if wire == "ollama" else "text/event-stream"
    if body.lstrip()[:1] in (b"{", b"[") and not body.startswith(b"data:"):
        ctype = "application/json"
    transport = httpx.MockTransport(handler_for(body, status, ctype))
    reg.add(cls(url, api_key=KEY, transport=transport, retry=NO_RETRY))
    return f"{wire}:asked-model@{HOST}"


@dataclass(frozen=True)
class Answer:
    """What a correct reading of one recorded answer gives."""

    file: str
    wire: str
    model: str
    text: str | tuple[str, str]  # the whole text, or (its start, its end)
    finish: str | None
    finish_raw: str | None
    usage: tuple[int, int] | None  # (prompt_tokens, completion_tokens) the server reported
    token_source: str = "server_usage"
    reasoning: str = ""  # how the reasoning starts ("" = none)
    tools: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    @property
    def stream(self) -> bool:
        return not self.file.endswith(".json")


ANSWERS = [
    # Azure: a first chunk with no choices, "model": "" and prompt_filter_results.
    Answer(
        "openai_wire/azure-model-router.chunks.txt", "openai", "gpt-5-nano-2025-08-07",
        "Capital of Denmark.", "stop", "stop", (15, 78),
    ),
    Answer(
        "openai_wire/openai-python-text.sse", "openai", "gpt-4o-2024-08-06",
        ('{"city":"San Francisco","temperature":61', '"units":"f"}'), "stop", "stop", (79, 14),
    ),
    Answer(
        "openai_wire/openai-python-length.sse", "openai", "gpt-4o-2024-08-06",
        '{"', "length", "length", (79, 1),
    ),
    # n=3: only the first choice is the answer.
    Answer(
        "openai_wire/openai-python-n3.sse", "openai", "gpt-4o-2024-08-06",
        ('{"city":"San Francisco","temperature":65', '"units":"f"}'), "stop", "stop", (79, 42),
    ),
    Answer(
        "openai_wire/openai-python-tool-call.sse", "openai", "gpt-4o-2024-08-06", "",
        "tool_calls", "tool_calls", (44, 16), tools=[("get_weather", {"city": "New York City"})],
    ),
    Answer(
        "openai_wire/openai-text.json", "openai", "gpt-4.1-nano-2025-04-14",
        ("**Holiday Name:** Galaxy Day", "dream beyond our world."), "stop", "stop", (16, 363),
    ),
    # Groq: usage both at the top level and under x_groq, reasoning as "reasoning".
    Answer(
        "openai_wire/groq-reasoning.chunks.txt", "openai", "qwen/qwen3-32b",
        ('The word **"strawberry"**', "$\\boxed{3}$"), "stop", "stop", (17, 1107),
        reasoning="Okay, let me try to figure out",
    ),
    Answer(
        "openai_wire/groq-tool-call.chunks.txt", "openai", "llama-3.3-70b-versatile", "",
        "tool_calls", "tool_calls", (210, 15), tools=[("weather", {})],
    ),
    Answer(
        "openai_wire/groq-text.json", "openai", "llama-3.3-70b-versatile",
        ("I'd like to introduce \"Luminaria\"", "brighter, more radiant world."), "stop", "stop",
        (45, 607),
    ),
    # DeepSeek: reasoning_content, usage on the finish chunk, reasoning_content: null after.
    Answer(
        "openai_wire/deepseek-reasoning.chunks.txt", "openai", "deepseek-reasoner",
        'The word "strawberry" contains three "r"s.', "stop", "stop", (18, 219),
        reasoning="We need to count the number of",
    ),
    Answer(
        "openai_wire/deepseek-reasoning.json", "openai", "deepseek-reasoner",
        ('The word "strawberry" contains three', 'two before the "y".'), "stop", "stop",
        (18, 345), reasoning="We are asked:",
    ),
    Answer(
        "openai_wire/deepseek-tool-call.chunks.txt", "openai", "deepseek-reasoner", "",
        "tool_calls", "tool_calls", (339, 83), reasoning="The user is asking for the wea",
        tools=[("weather", {"location": "San Francisco"})],
    ),
    # Mistral: content as a list of typed parts, thinking parts nested.
    Answer(
        "openai_wire/mistral-reasoning.chunks.txt", "openai", "magistral-medium-2507",
        "2 + 2 = 4", "stop", "stop", (10, 46), reasoning="The user is asking for 2+2.",
    ),
    Answer(
        "openai_wire/mistral-reasoning.json", "openai", "magistral-medium-2507",
        "2 + 2 = 4", "stop", "stop", (10, 46), reasoning="The user is asking for 2+2.",
    ),
    Answer(
        "openai_wire/mistral-text.chunks.txt", "openai", "mistral-small-latest",
        "Hello, world! This is a test response.", "stop", "stop", (13, 8),
    ),
    # Mistral: a whole tool call in one chunk, without an index.
    Answer(
        "openai_wire/mistral-tool-call.chunks.txt", "openai", "mistral-small-latest", "",
        "tool_calls", "tool_calls", (124, 22), tools=[("weather", {"location": "San Francisco"})],
    ),
    # Alibaba (Qwen): reasoning_content "" on the role chunk, content null while thinking.
    Answer(
        "openai_wire/alibaba-reasoning.chunks.txt", "openai", "qwen3-max",
        ('The word **"strawberry"** contains **3**', "**Answer: 3**"), "stop", "stop",
        (24, 1355), reasoning="We are asked:",
    ),
    # Moonshot: usage on the chunk that also carries the last token and the finish reason.
    Answer(
        "openai_wire/moonshotai-stream.chunks.txt", "openai", "kimi-k3", "Hello!", "stop",
        "stop", (9, 12), reasoning="Thinking aloud. ",
    ),
    Answer(
        "openai_wire/moonshotai-reasoning.json", "openai", "kimi-k2.6", "There are three.",
        "stop", "stop", (20, 30), reasoning="Let me count the letters carefully.",
    ),
    # Perplexity: usage in every chunk (the last wins), a "chat.completion.done" last chunk.
    Answer(
        "openai_wire/perplexity-text.chunks.txt", "openai", "sonar", "**EcoVista Day**[1][5]",
        "stop", "stop", (11, 434),
    ),
    Answer(
        "openai_wire/xai-text.chunks.txt", "openai", "grok-3-mini", "Hello", "stop", "stop",
        (12, 1), reasoning="First, the user said",
    ),
    Answer(
        "openai_wire/xai-text.json", "openai", "grok-3-mini", "Hello", "stop", "stop", (12, 1),
        reasoning="First, the user said:",
    ),
    # Together: finish_reason "eos"; the legacy "text" field beside the delta is not read twice.
    Answer(
        "openai_wire/together-eos.chunks.txt", "openai",
        "meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo", "ABCABC", "stop", "eos", (12, 27),
    ),
    # Anthropic's OpenAI-compatible endpoint: the first tool call has index 1; no usage.
    Answer(
        "openai_wire/anthropic-fallback-tool-call.sse", "openai", "claude-haiku-4-5-20251001",
        "Reading it.", "tool_calls", "tool_calls", None, token_source="chunk_count",
        tools=[("read_file", {"path": "a.txt"})],
    ),
    # llama-server b11434, recorded: timings on the usage chunk, content null first.
    Answer(
        "openai_wire/llamacpp-b11434-stream.sse", "llamacpp", "smollm2",
        "Alejandro, a wise and compassionate soul.", "stop", "stop", (36, 12),
    ),
    Answer(
        "openai_wire/llamacpp-b11434-whole.json", "llamacpp", "smollm2",
        "Alejandro, a wise and compassionate soul.", "stop", "stop", (36, 12),
    ),
    # timings_per_token without include_usage: the server counted in timings only.
    Answer(
        "openai_wire/llamacpp-b11434-timings-per-token.sse", "llamacpp", "smollm2",
        "I'm sorry for any mis", "length", "length", None, token_source="server_timings",
    ),
    # Ollama's documentation: NDJSON ending at done: true, durations in ns.
    Answer(
        "ollama/docs-chat-stream.ndjson", "ollama", "llama3.2", "The", "stop", None, (26, 282),
    ),
    Answer(
        "ollama/docs-chat-tools-stream.ndjson", "ollama", "llama3.2", "", "tool_calls", "stop",
        (169, 15), tools=[("get_weather", {"city": "Tokyo"})],
    ),
    Answer(
        "ollama/docs-chat-whole.json", "ollama", "llama3.2", "Hello! How are you today?",
        "stop", None, (26, 298),
    ),
    Answer(
        "ollama/docs-chat-tools-whole.json", "ollama", "llama3.2", "", "tool_calls", "stop",
        (169, 18), tools=[("get_weather", {"city": "Tokyo"})],
    ),
]  # fmt: skip


@pytest.mark.parametrize("case", ANSWERS, ids=lambda c: c.file)
async def test_recorded_answer(reg: Registry, case: Answer) -> None:
    model_id = serve(reg, case.wire, body_bytes(CORPUS / case.file))
    if case.stream:
        r = await llm_nb.astream(model_id, "hi").collect()
    else:
        r = await llm_nb.achat(model_id, "hi")
    assert r.status == "ok" and r.error is None
    if isinstance(case.text, str):
        assert r.text == case.text
    else:
        assert r.text.startswith(case.text[0]) and r.text.endswith(case.text[1])
    assert r.model_reported == case.model
    assert (r.finish_reason, r.finish_reason_raw) == (case.finish, case.finish_raw)
    if case.reasoning:
        assert r.reasoning.startswith(case.reasoning)
        assert case.reasoning not in r.text
    else:
        assert r.reasoning == ""
    assert [(c.name, c.args) for c in r.tool_calls] == case.tools
    row = call_row(r)
    assert row["token_source"] == case.token_source
    assert (row["finish_reason"], row["finish_reason_raw"]) == (case.finish, case.finish_raw)
    if case.usage is not None:
        assert (r.usage.prompt_tokens, r.usage.completion_tokens) == case.usage
        assert (row["prompt_tokens"], row["completion_tokens"]) == case.usage


async def test_timings_are_read_from_the_recorded_llama_server(reg: Registry) -> None:
    model_id = serve(reg, "llamacpp", body_bytes(CORPUS / "openai_wire/llamacpp-b11434-stream.sse"))
    r = await llm_nb.astream(model_id, "hi").collect()
    assert r.timings is not None
    assert (r.timings.prompt_n, r.timings.decode_n, r.timings.decode_ms) == (36, 12, 1143.745)


# -- streams that end without their end marker ---------------------------------------------


async def test_recorded_stream_without_done_after_a_finish_is_complete(reg: Registry) -> None:
    # ik_llama.cpp without --send-done: the same stream, minus the final "data: [DONE]".
    body = body_bytes(CORPUS / "openai_wire/llamacpp-b11434-stream.sse")
    assert body.endswith(b"data: [DONE]\n\n")
    model_id = serve(reg, "llamacpp", body.removesuffix(b"data: [DONE]\n\n"))
    r = await llm_nb.astream(model_id, "hi").collect()
    assert (r.status, r.text, r.finish_reason) == (
        "ok",
        "Alejandro, a wise and compassionate soul.",
        "stop",
    )
    assert call_row(r)["token_source"] == "server_usage"


async def test_recorded_stream_cut_before_its_finish_keeps_the_partial_text(
    reg: Registry,
) -> None:
    body = body_bytes(CORPUS / "openai_wire/llamacpp-b11434-stream.sse")
    cut = body[: body.index(b'"finish_reason":"stop"')]
    cut = cut[: cut.rindex(b"\n\n") + 2]  # whole events only, up to the finish chunk
    model_id = serve(reg, "llamacpp", cut)
    stream = llm_nb.astream(model_id, "hi")
    with pytest.raises(ProtocolError, match="before its end marker") as info:
        await stream.collect()
    partial = info.value.partial
    assert partial is not None and partial.status == "error"
    assert "Alejandro, a wise" in partial.text and partial.finish_reason is None


# -- errors ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    file: str
    wire: str
    status: int
    cls: type[APIStatusError]  # exactly this class, not a subclass of it


FAILURES = [
    Failure("errors/openai-400-context-window.json", "openai", 400, ContextLengthError),
    Failure("errors/openai-400-maximum-context-length.json", "openai", 400, ContextLengthError),
    Failure("errors/openai-400-model_not_found.json", "openai", 400, ModelNotFoundError),
    Failure("errors/openai-429-insufficient_quota.json", "openai", 429, QuotaExceededError),
    Failure("errors/openai-429-insufficient_quota-code-null.json", "openai", 429,
            QuotaExceededError),
    Failure("errors/vllm-404-model-does-not-exist.json", "openai", 404, ModelNotFoundError),
    Failure("errors/mistral-400-invalid-model.json", "openai", 400, ModelNotFoundError),
    Failure("errors/deepseek-400-model-not-exist.json", "openai", 400, ModelNotFoundError),
    Failure("errors/openrouter-400-not-a-valid-model.json", "openai", 400, ModelNotFoundError),
    Failure("errors/openrouter-400-maximum-context-length.json", "openai", 400,
            ContextLengthError),
    Failure("errors/anthropic-400-exceed-context-limit.json", "openai", 400, ContextLengthError),
    Failure("errors/litellm-400-invalid-model-name.json", "openai", 400, ModelNotFoundError),
    Failure("errors/gemini-404-not-found-list.json", "openai", 404, NotFoundError),
    Failure("errors/gemini-404-model-not-found.json", "openai", 404, ModelNotFoundError),
    Failure("errors/gemini-400-input-token-count-list.json", "openai", 400, ContextLengthError),
    Failure("errors/xai-400-maximum-prompt-length.json", "openai", 400, ContextLengthError),
    Failure("errors/azure-404-deployment-not-found.json", "openai", 404, ModelNotFoundError),
    Failure("errors/llamacpp-b11434-400-exceed-context.json", "llamacpp", 400,
            ContextLengthError),
    Failure("errors/ollama-404-model-not-found.json", "ollama", 404, ModelNotFoundError),
    Failure("errors/ollama-400-prompt-longer-than-context.json", "ollama", 400,
            ContextLengthError),
    Failure("errors/ollama-500-failed-to-generate.json", "ollama", 500, ServerError),
]  # fmt: skip


@pytest.mark.parametrize("case", FAILURES, ids=lambda c: c.file)
async def test_recorded_error(reg: Registry, case: Failure) -> None:
    model_id = serve(reg, case.wire, (CORPUS / case.file).read_bytes(), case.status)
    with pytest.raises(APIStatusError) as info:
        await llm_nb.achat(model_id, "hi")
    exc = info.value
    assert type(exc) is case.cls
    assert exc.status_code == case.status
    message = str(exc)
    assert "\n" not in message and KEY not in message
    if case.cls is ModelNotFoundError:
        assert isinstance(exc, ModelNotFoundError)
        assert exc.available == list(LISTED) and "served-a, served-b" in message


async def test_recorded_error_inside_a_stream(reg: Registry) -> None:
    # vercel/ai's structured error part: data: {"error": {..., "code": "CONTEXT_LENGTH_..."}}.
    model_id = serve(reg, "openai", body_bytes(CORPUS / "openai_wire/vercel-structured-error.sse"))
    with pytest.raises(ContextLengthError, match="mid-stream: Context length exceeded") as info:
        await llm_nb.astream(model_id, "hi").collect()
    assert info.value.status_code == 400 and info.value.partial is not None


async def test_recorded_error_event(reg: Registry) -> None:
    # An SSE "error" event carrying OpenAI's current context error.
    model_id = serve(reg, "openai", body_bytes(CORPUS / "openai_wire/openai-error-event.sse"))
    with pytest.raises(ContextLengthError, match="exceeds the context window"):
        await llm_nb.astream(model_id, "hi").collect()


async def test_recorded_ollama_error_line_keeps_what_came_before(reg: Registry) -> None:
    model_id = serve(reg, "ollama", body_bytes(CORPUS / "ollama/docs-error-midstream.ndjson"))
    with pytest.raises(ServerError, match="error was encountered while running") as info:
        await llm_nb.astream(model_id, "hi").collect()
    assert info.value.partial is not None and info.value.partial.status == "error"


def test_every_recording_is_used_and_sourced() -> None:
    used = {c.file for c in ANSWERS} | {c.file for c in FAILURES}
    used |= {
        "openai_wire/vercel-structured-error.sse",
        "openai_wire/openai-error-event.sse",
        "ollama/docs-error-midstream.ndjson",
    }
    files = {
        str(p.relative_to(CORPUS)) for p in CORPUS.rglob("*") if p.is_file() and p.suffix != ".md"
    }
    assert files == used
    sources = (CORPUS / "SOURCES.md").read_text()
    for name in files:
        assert Path(name).name in sources, f"{name} has no source in SOURCES.md"
    for name in files:
        if name.endswith(".json"):
            json.loads((CORPUS / name).read_text())
