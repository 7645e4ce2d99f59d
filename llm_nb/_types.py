"""Plain data types shared by every layer: messages, options, stream deltas, final records.

They are provider-neutral: each provider maps them to and from its own wire format, so
nothing above the providers ever sees an OpenAI, llama.cpp or Ollama shape.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeAlias

from ._errors import InvalidOptionError

Role: TypeAlias = Literal["system", "user", "assistant", "tool"]
FinishReason: TypeAlias = Literal["stop", "length", "tool_calls", "content_filter"]
Status: TypeAlias = Literal["ok", "error", "cancelled", "timeout"]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A complete tool call. ``arguments`` is always a JSON string, whatever the wire sent
    (Ollama sends an object, OpenAI and llama.cpp a string)."""

    name: str
    arguments: str
    id: str | None = None

    @property
    def args(self) -> Any:
        """The arguments parsed from JSON."""
        return json.loads(self.arguments) if self.arguments else {}


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message. ``tool_call_id`` / ``name`` identify the call a tool result answers."""

    role: Role
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None

    @classmethod
    def coerce(cls, value: Message | Mapping[str, Any] | str) -> Message:
        """Accept a Message, an OpenAI-style dict, or a bare string (a user message)."""
        if isinstance(value, Message):
            return value
        if isinstance(value, str):
            return cls("user", value)
        role = value.get("role")
        if role not in ("system", "user", "assistant", "tool"):
            raise InvalidOptionError(
                f"message role {role!r} is not one of system, user, assistant, tool"
            )
        calls = tuple(_coerce_tool_call(c) for c in value.get("tool_calls") or ())
        return cls(
            role,
            value.get("content") or "",
            calls,
            value.get("tool_call_id"),
            value.get("name") or value.get("tool_name"),
        )


def _coerce_tool_call(call: ToolCall | Mapping[str, Any]) -> ToolCall:
    if isinstance(call, ToolCall):
        return call
    fn = call.get("function", call)
    args = fn.get("arguments", "")
    if not isinstance(args, str):
        args = json.dumps(args)
    return ToolCall(fn["name"], args, call.get("id"))


ResponseFormat: TypeAlias = Literal["json", "text"] | Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ChatOptions:
    """Generation options, mapped by each provider to its wire.

    ``response_format`` is ``"json"`` for any JSON object or a JSON-schema dict.
    ``tools`` are OpenAI-style function definitions (``{"type": "function", "function": {...}}``).
    ``extra`` is merged into the request body as-is, for provider-specific settings
    (llama.cpp ``top_k``/``min_p``/``grammar``, Ollama ``options``/``keep_alive``/``think``...).
    """

    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    system: str | None = None
    response_format: ResponseFormat | None = None
    tools: tuple[Mapping[str, Any], ...] = ()
    tool_choice: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Reject bad values here, once, so no provider sends a request the user can't read
        # an error for.
        if self.temperature is not None and not (
            math.isfinite(self.temperature) and 0 <= self.temperature <= 2
        ):
            raise InvalidOptionError(f"temperature must be between 0 and 2, got {self.temperature}")
        if self.top_p is not None and not (0 < self.top_p <= 1):
            raise InvalidOptionError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_tokens is not None and (
            isinstance(self.max_tokens, bool)
            or not isinstance(self.max_tokens, int)
            or self.max_tokens < 1
        ):
            raise InvalidOptionError(
                f"max_tokens must be a positive whole number, got {self.max_tokens!r}"
            )
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int)
        ):
            raise InvalidOptionError(f"seed must be a whole number, got {self.seed!r}")
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        if isinstance(self.response_format, str) and self.response_format not in ("json", "text"):
            raise InvalidOptionError(
                f"response_format must be 'json', 'text' or a JSON-schema dict, "
                f"got {self.response_format!r}"
            )
        for tool in self.tools:
            if not isinstance(tool, Mapping) or "function" not in tool:
                raise InvalidOptionError(
                    "each tool must be {'type': 'function', 'function': {'name': ..., "
                    "'parameters': {...}}}"
                )

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> ChatOptions:
        """Build from keyword arguments; unknown keys are an error, not silently dropped."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise InvalidOptionError(
                f"unknown option {', '.join(unknown)}; known: {', '.join(sorted(known))} "
                "(put provider-specific settings in extra={...})"
            )
        if "stop" in kwargs and kwargs["stop"] is not None:
            stop = kwargs["stop"]
            kwargs["stop"] = (stop,) if isinstance(stop, str) else tuple(stop)
        elif "stop" in kwargs:
            kwargs["stop"] = ()
        if "tools" in kwargs:
            kwargs["tools"] = tuple(kwargs["tools"] or ())
        if kwargs.get("extra") is None:
            kwargs.pop("extra", None)
        return cls(**kwargs)


def build_messages(
    prompt: str | Message | Mapping[str, Any] | Sequence[Message | Mapping[str, Any] | str],
    system: str | None,
) -> list[Message]:
    """Normalize a prompt (string, message or list of them) and prepend the system prompt."""
    if isinstance(prompt, str | Message | Mapping):
        items = [Message.coerce(prompt)]
    else:
        items = [Message.coerce(m) for m in prompt]
    if not items:
        raise InvalidOptionError("the prompt is empty: give a string or a list of messages")
    if system is not None and items[0].role != "system":
        items.insert(0, Message("system", system))
    return items


# --- stream deltas ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the answer text."""

    text: str


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    """A piece of the model's reasoning ("thinking") text, kept apart from the answer."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A fragment of tool call number ``index``: the id and name come once, the arguments
    in pieces that concatenate to a JSON string."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


Delta: TypeAlias = TextDelta | ReasoningDelta | ToolCallDelta


# --- final records ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts as the server reported them (None where it did not)."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    reasoning_tokens: int | None = None
    cached_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class ServerTimings:
    """Server-side timings in milliseconds, from llama-server ``timings`` or Ollama
    ``*_duration`` (nanoseconds, converted). Field names match METRICS.md's ``srv_*`` columns."""

    prompt_n: int | None = None
    prompt_ms: float | None = None
    cache_n: int | None = None
    decode_n: int | None = None
    decode_ms: float | None = None
    load_ms: float | None = None
    total_ms: float | None = None


@dataclass(slots=True)
class CallTrace:
    """Monotonic timestamps (``time.perf_counter_ns``) of one call, plus one wall-clock anchor.

    ``token_times_ns`` holds the arrival time of every token-carrying chunk (role-only,
    empty and usage-only chunks are not counted), which is what the gap statistics need.
    """

    started_at: datetime | None = None
    #: Set by a concurrency limiter when the call started waiting for its turn (queue_s).
    t_queued_ns: int | None = None
    t_send_ns: int | None = None
    t_headers_ns: int | None = None
    t_first_token_ns: int | None = None
    t_first_answer_ns: int | None = None
    t_end_ns: int | None = None
    token_times_ns: list[int] = field(default_factory=list)
    retries: int = 0

    @property
    def t_last_token_ns(self) -> int | None:
        return self.token_times_ns[-1] if self.token_times_ns else None


class _GrowingText:
    """Text built from many small pieces, joined when read and cached until the next piece.

    ``record.text += piece`` copies the whole answer at every chunk (CPython extends a string
    in place only when nothing else references it, and the record does), which is quadratic:
    seconds of copying for a long answer. Appends here are a list append; a read joins the
    pieces into the cached head once. The stream engine appends on its loop thread while a
    display may read from another: appends are atomic list operations, and readers take a
    lock so two of them never fold the same pieces in twice.
    """

    __slots__ = ("_head", "_parts", "append")
    _fold_lock = threading.Lock()

    def __init__(self, text: str = "") -> None:
        self._head = text
        self._parts: list[str] = []
        #: Add a piece (the list's own append: no Python frame per chunk).
        self.append = self._parts.append

    def __str__(self) -> str:
        parts = self._parts
        if not parts:
            return self._head
        with self._fold_lock:
            # Only the pieces present now are folded; one appended meanwhile stays queued.
            n = len(parts)
            if n:
                self._head += "".join(parts[:n])
                del parts[:n]
            return self._head


@dataclass(slots=True)
class _ChatResponseFields:
    """The fields of :class:`ChatResponse` (its constructor, repr and equality)."""

    provider: str
    host: str
    model: str
    text: str = ""
    reasoning: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    #: stop · length · tool_calls · content_filter, whatever the server called it.
    finish_reason: str | None = None
    #: The finish reason as the server sent it (``eos``, ``end_turn``, ``done_reason``...).
    finish_reason_raw: str | None = None
    model_reported: str | None = None
    usage: Usage = field(default_factory=Usage)
    timings: ServerTimings | None = None
    status: Status = "ok"
    error: BaseException | None = None
    stream: bool = True
    trace: CallTrace = field(default_factory=CallTrace)
    #: Identity for the stats: set when the call starts (see llm_nb.run / llm_nb.warmup).
    call_id: str = ""
    run_id: str | None = None
    warmup: bool = False
    raw: dict[str, Any] | None = field(default=None, repr=False)


class ChatResponse(_ChatResponseFields):
    """The final record of a call: the whole answer and everything measured about it.

    A stream's record exists from the start and fills as chunks arrive, so a failed or
    cancelled call still has its partial ``text`` and a ``status`` saying why it ended.
    ``text`` and ``reasoning`` grow through :meth:`add_text` / :meth:`add_reasoning` in
    linear time; reading them is always the whole text so far.
    """

    # The properties below shadow the dataclass slots of the same names: the constructor's
    # ``self.text = ...`` goes through the setter, so the growing buffers always exist.
    __slots__ = ("_reasoning_buf", "_text_buf")

    @property
    def text(self) -> str:
        return str(self._text_buf)

    @text.setter
    def text(self, value: str) -> None:
        self._text_buf = _GrowingText(value)

    @property
    def reasoning(self) -> str:
        return str(self._reasoning_buf)

    @reasoning.setter
    def reasoning(self, value: str) -> None:
        self._reasoning_buf = _GrowingText(value)

    def add_text(self, piece: str) -> None:
        self._text_buf.append(piece)

    def add_reasoning(self, piece: str) -> None:
        self._reasoning_buf.append(piece)

    def __str__(self) -> str:
        return self.text

    def _repr_html_(self) -> str:
        # The answer is untrusted: rendered and sanitized, never handed over as Markdown.
        from ._safe_html import markdown_html

        return markdown_html(self.text)

    @property
    def model_id(self) -> str:
        return f"{self.provider}:{self.model}@{self.host}"


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """One model a server knows. ``status`` is loaded · loading · unloaded · failed ·
    downloading · available (listed, load state not reported)."""

    provider: str
    host: str
    name: str
    status: str = "available"
    size_bytes: int | None = None
    quantization: str | None = None
    parameter_size: str | None = None
    family: str | None = None
    context_length: int | None = None
    details: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def id(self) -> str:
        return f"{self.provider}:{self.name}@{self.host}"


@dataclass(frozen=True, slots=True)
class Health:
    """What a server said about itself: ``status`` is ok · loading · error · unreachable."""

    provider: str
    url: str
    status: str
    detail: str = ""
    version: str | None = None
    router: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True, slots=True)
class PullProgress:
    """One step of a model download: ``completed``/``total`` bytes where the server says."""

    status: str
    completed: int | None = None
    total: int | None = None
    digest: str | None = None

    @property
    def fraction(self) -> float | None:
        if self.total and self.completed is not None:
            return min(1.0, self.completed / self.total)
        return None


@dataclass(frozen=True, slots=True)
class Embeddings:
    """Vectors for each input, in input order."""

    model: str
    vectors: list[list[float]]
    prompt_tokens: int | None = None
