"""OpenAI chat completions, and any server that speaks them (LM Studio, vLLM, LocalAI...).

Wire facts handled here (PROTOCOLS.md): SSE ending in ``data: [DONE]``; a first chunk that is
role-only (content ``""`` on OpenAI, ``null`` on llama.cpp); usage on a trailing
``choices: []`` chunk when ``stream_options.include_usage`` is set, or on the finish chunk on
older servers; reasoning as ``reasoning_content`` (llama.cpp) or ``reasoning`` (Ollama /v1,
vLLM); an ``{"error": ...}`` event inside a stream.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, ClassVar

from .._config import normalize_url
from .._errors import ConfigError, InvalidOptionError, LLMError, ModelNotFoundError
from .._options import ChatOptions
from .._types import (
    ChatResponse,
    Delta,
    Embeddings,
    Health,
    Message,
    ModelInfo,
    ReasoningDelta,
    ServerTimings,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from .._wire._lines import IncrementalDecoder
from .._wire.finish import record_finish
from .._wire.ndjson import loads_frame
from .._wire.sse import SSEDecoder, SSEEvent, data_or_event
from .base import END, Provider

OPENAI_URL = "https://api.openai.com/v1"


class OpenAIProvider(Provider):
    """OpenAI's API, or an OpenAI-compatible server at ``base_url`` (which should end in /v1;
    a bare ``host:port`` gets ``/v1`` added)."""

    name: ClassVar[str] = "openai"
    label: ClassVar[str] = "OpenAI-compatible server"
    default_url: ClassVar[str] = OPENAI_URL
    env_url: ClassVar[tuple[str, ...]] = ("OPENAI_BASE_URL",)
    env_key: ClassVar[tuple[str, ...]] = ("OPENAI_API_KEY",)
    start_hint = (
        "check the base URL (OPENAI_BASE_URL) and that the server is running, "
        "e.g. LM Studio on :1234 or vLLM on :8000"
    )
    capabilities = frozenset({"chat", "stream", "models", "embed", "tools", "json"})
    #: Path of the OpenAI-compatible API below base_url ("" when base_url ends in /v1).
    api_prefix: ClassVar[str] = ""

    @classmethod
    def _normalize_base_url(cls, url: str) -> str:
        url = normalize_url(url)
        # "host:port" for a local server means its OpenAI-compatible root, which is /v1.
        if url.count("/") == 2:
            url += "/v1"
        return url

    @property
    def is_openai(self) -> bool:
        return self.host == "api.openai.com:443"

    def _check_ready(self) -> None:
        if self.is_openai and not self.has_api_key:
            raise ConfigError(
                "no OpenAI API key: set OPENAI_API_KEY, or pass api_key=..., or add "
                "api_key under [openai] in the llm_nb config file",
                provider=self.label,
                url=self.base_url,
            )

    # -- request ----------------------------------------------------------------------------

    def _chat_path(self) -> str:
        return f"{self.api_prefix}/chat/completions"

    def _max_tokens_field(self) -> str:
        # OpenAI deprecated max_tokens (and rejects it for reasoning models); many compatible
        # servers only know max_tokens.
        return "max_completion_tokens" if self.is_openai else "max_tokens"

    def _chat_body(
        self, model: str, messages: list[Message], options: ChatOptions, stream: bool
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model, "messages": [_wire_message(m) for m in messages]}
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        if options.temperature is not None:
            body["temperature"] = options.temperature
        if options.top_p is not None:
            body["top_p"] = options.top_p
        if options.max_tokens is not None:
            body[self._max_tokens_field()] = options.max_tokens
        if options.seed is not None:
            body["seed"] = options.seed
        if options.stop:
            body["stop"] = list(options.stop)
        fmt = options.response_format
        if fmt == "json":
            body["response_format"] = {"type": "json_object"}
        elif fmt == "text":
            body["response_format"] = {"type": "text"}
        elif fmt is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "response", "schema": dict(fmt)},
            }
        if options.tools:
            body["tools"] = [dict(t) for t in options.tools]
        if options.tool_choice is not None:
            body["tool_choice"] = options.tool_choice
        body.update(options.extra)
        return body

    # -- response ---------------------------------------------------------------------------

    def _chunk_decoder(self) -> IncrementalDecoder[Any]:
        return _SSEChunks(f"{self.label} stream event")

    def _apply_chunk(self, obj: Any, record: ChatResponse) -> list[Delta]:
        if not isinstance(obj, dict):
            raise self._protocol(f"expected a JSON object per event, got {type(obj).__name__}")
        if obj.get("error"):
            raise self._stream_error(obj, record)
        if not record.model_reported:
            # Azure's first chunk (prompt_filter_results, no choices) says "model": "".
            record.model_reported = obj.get("model") or None
        # Usage can come in any chunk, and in every one (vLLM's continuous usage, Perplexity):
        # the last one wins. Groq's older API put it under x_groq only.
        usage = obj.get("usage")
        if usage:
            _apply_usage(usage, record)
        elif "x_groq" in obj:
            _apply_usage((obj["x_groq"] or {}).get("usage"), record)
        timings = obj.get("timings")
        if timings:
            record.timings = _llama_timings(timings)
        deltas: list[Delta] = []
        for choice in obj.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            content = delta.get("content")
            if content:
                if isinstance(content, str):
                    deltas.append(TextDelta(content))
                else:
                    _content_parts(content, deltas)
            # Nearly every chunk is {"content": "..."} alone; the other fields are looked for
            # only when something else is there.
            if len(delta) > 1 or not content:
                _other_deltas(delta, deltas)
            finish = choice.get("finish_reason")
            if finish:
                record_finish(record, finish)
        return deltas

    def _apply_whole(self, obj: Any, record: ChatResponse) -> list[Delta]:
        if isinstance(obj, dict) and obj.get("error"):
            # Some gateways answer 200 with an error body.
            raise self._stream_error(obj, record)
        if not isinstance(obj, dict) or not isinstance(obj.get("choices"), list):
            raise self._protocol("chat response has no choices list")
        record.model_reported = obj.get("model") or None
        _apply_usage(obj.get("usage") or (obj.get("x_groq") or {}).get("usage"), record)
        if obj.get("timings"):
            record.timings = _llama_timings(obj["timings"])
        deltas: list[Delta] = []
        for choice in obj["choices"][:1]:
            msg = choice.get("message") or {}
            _reasoning(msg, deltas)
            content = msg.get("content")
            if isinstance(content, str) and content:
                deltas.append(TextDelta(content))
            elif isinstance(content, list):
                _content_parts(content, deltas)
            if msg.get("refusal"):
                deltas.append(TextDelta(msg["refusal"]))
            calls = list(msg.get("tool_calls") or ())
            if msg.get("function_call"):
                calls.append({"function": msg["function_call"]})
            for i, tc in enumerate(calls):
                fn = tc.get("function") or {}
                deltas.append(ToolCallDelta(i, tc.get("id"), fn.get("name"), _args(fn)))
            record_finish(record, choice.get("finish_reason"))
        return deltas

    def _protocol(self, what: str) -> Exception:
        from .._errors import ProtocolError

        return ProtocolError(f"{self.label} at {self.host}: {what}", provider=self.label)

    # -- models, health, embeddings ---------------------------------------------------------

    async def models(self) -> list[ModelInfo]:
        obj = await self._get_json(f"{self.api_prefix}/models", timeout=10)
        return [
            ModelInfo(self.name, self.host, m["id"], "available", details=m)
            for m in obj.get("data") or ()
            if isinstance(m, dict) and "id" in m
        ]

    async def health(self) -> Health:
        try:
            n = len(await self.models())
        except Exception as exc:
            return Health(self.name, self.base_url, "error", str(exc))
        return Health(self.name, self.base_url, "ok", f"{n} models")

    async def embed(self, model: str, inputs: str | Sequence[str]) -> Embeddings:
        texts = [inputs] if isinstance(inputs, str) else list(inputs)
        if not texts:
            raise InvalidOptionError("embed() needs at least one input text")
        try:
            obj = await self._post_json(
                f"{self.api_prefix}/embeddings", {"model": model, "input": texts}
            )
        except ModelNotFoundError as exc:
            raise await self._model_not_found(model, exc) from exc
        data = sorted(obj.get("data") or (), key=lambda d: d.get("index", 0))
        usage = obj.get("usage") or {}
        return Embeddings(
            obj.get("model") or model,
            [list(map(float, d["embedding"])) for d in data],
            usage.get("prompt_tokens"),
        )


class _SSEChunks:
    """SSE events to JSON objects; ``data: [DONE]`` is the end."""

    __slots__ = ("_sse", "_what")

    def __init__(self, what: str) -> None:
        self._sse = SSEDecoder()
        self._what = what

    def feed(self, chunk: bytes) -> list[Any]:
        return self._objects(self._sse.feed_data(chunk))

    def flush(self) -> list[Any]:
        return self._objects([data_or_event(event) for event in self._sse.flush()])

    def _objects(self, datas: list[str | SSEEvent]) -> list[Any]:
        what = self._what
        return [
            (END if data == "[DONE]" else loads_frame(data, what))
            if isinstance(data, str)
            else self._named(data)
            for data in datas
        ]

    def _named(self, event: SSEEvent) -> Any:
        """An event with a name: ``error`` events become an error chunk (what openai-python
        raises on), any other name is read as a plain event."""
        if event.data == "[DONE]":
            return END
        if event.event != "error":
            return loads_frame(event.data, self._what)
        try:
            obj = loads_frame(event.data, self._what)
        except LLMError:
            obj = event.data  # an error event may carry plain text
        if isinstance(obj, dict) and obj.get("error"):
            return obj
        return {"error": obj if isinstance(obj, dict) else {"message": str(obj)}}


def _other_deltas(delta: dict[str, Any], deltas: list[Delta]) -> None:
    """Refusal, reasoning and tool-call fragments of a chunk's delta, added to ``deltas``."""
    refusal = delta.get("refusal")
    if refusal:
        deltas.append(TextDelta(refusal))
    _reasoning(delta, deltas)
    for i, tc in enumerate(delta.get("tool_calls") or ()):
        fn = tc.get("function") or {}
        # Mistral sends whole calls without an index: their place in the list is theirs.
        deltas.append(ToolCallDelta(tc.get("index", i), tc.get("id"), fn.get("name"), _args(fn)))
    legacy = delta.get("function_call")
    if legacy:
        deltas.append(ToolCallDelta(0, None, legacy.get("name"), _args(legacy)))


#: Where servers put reasoning: llama-server, DeepSeek, vLLM < 0.10, Moonshot
#: (``reasoning_content``); Ollama /v1, Groq, OpenRouter, vLLM (``reasoning``); some
#: gateways (``thinking``).
_REASONING_FIELDS = ("reasoning_content", "reasoning", "thinking")


def _reasoning(part: dict[str, Any], deltas: list[Delta]) -> None:
    """Reasoning text of a delta or message, under whichever name the server uses. The first
    field found wins: OpenRouter repeats ``reasoning`` in ``reasoning_details``."""
    for name in _REASONING_FIELDS:
        text = part.get(name)
        if text and isinstance(text, str):
            deltas.append(ReasoningDelta(text))
            return
    details = part.get("reasoning_details")
    if details and isinstance(details, list):
        text = "".join(
            str(d.get("text") or d.get("summary") or "") for d in details if isinstance(d, dict)
        )
        if text:
            deltas.append(ReasoningDelta(text))


def _content_parts(parts: Any, deltas: list[Delta]) -> None:
    """Content sent as a list of typed parts (Mistral's magistral models): ``text`` parts are
    the answer, ``thinking`` parts (themselves lists of text parts) are reasoning."""
    if not isinstance(parts, list):
        return
    for part in parts:
        if isinstance(part, str):
            if part:
                deltas.append(TextDelta(part))
            continue
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "text" and part.get("text"):
            deltas.append(TextDelta(str(part["text"])))
        elif kind in ("thinking", "reasoning"):
            inner = part.get("thinking", part.get("text"))
            if isinstance(inner, list):
                text = "".join(str(p.get("text", "")) for p in inner if isinstance(p, dict))
            else:
                text = str(inner or "")
            if text:
                deltas.append(ReasoningDelta(text))


def _args(fn: dict[str, Any]) -> str:
    """Tool-call arguments as JSON text: some servers send the object itself."""
    args = fn.get("arguments")
    if args is None:
        return ""
    return args if isinstance(args, str) else json.dumps(args)


def _wire_message(m: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.tool_calls:
        out["tool_calls"] = [
            {
                "id": c.id or f"call_{i}",
                "type": "function",
                "function": {"name": c.name, "arguments": c.arguments},
            }
            for i, c in enumerate(m.tool_calls)
        ]
    if m.role == "tool":
        out["tool_call_id"] = m.tool_call_id or ""
    return out


def _apply_usage(u: Any, record: ChatResponse) -> None:
    """Take a usage object into the record, under the field names OpenAI uses or the
    ``input_tokens`` / ``output_tokens`` of Anthropic-style servers."""
    if not isinstance(u, dict):
        return
    prompt = _first(u, "prompt_tokens", "input_tokens")
    completion = _first(u, "completion_tokens", "output_tokens")
    total = u.get("total_tokens")
    if completion is None and isinstance(total, int) and isinstance(prompt, int):
        completion = total - prompt
    if prompt is None and completion is None and total is None:
        return
    prompt_details = u.get("prompt_tokens_details") or u.get("input_tokens_details") or {}
    completion_details = u.get("completion_tokens_details") or u.get("output_tokens_details") or {}
    cached = prompt_details.get("cached_tokens")
    if cached is None:
        cached = u.get("prompt_cache_hit_tokens")  # DeepSeek
    record.usage = Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=total,
        reasoning_tokens=completion_details.get("reasoning_tokens"),
        cached_tokens=cached,
    )


def _first(u: dict[str, Any], *names: str) -> Any:
    for name in names:
        value = u.get(name)
        if value is not None:
            return value
    return None


def _llama_timings(t: Any) -> ServerTimings | None:
    if not isinstance(t, dict):
        return None
    prompt_ms = t.get("prompt_ms")
    decode_ms = t.get("predicted_ms")
    total = None if prompt_ms is None or decode_ms is None else prompt_ms + decode_ms
    return ServerTimings(
        prompt_n=t.get("prompt_n"),
        prompt_ms=prompt_ms,
        cache_n=t.get("cache_n"),
        decode_n=t.get("predicted_n"),
        decode_ms=decode_ms,
        load_ms=None,
        total_ms=total,
    )
