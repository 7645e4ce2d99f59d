"""Plain data types shared by every layer: messages, stream deltas, final records.

They are provider-neutral: each provider maps them to and from its own wire format, so
nothing above the providers ever sees an OpenAI, llama.cpp or Ollama shape.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeAlias, cast

from . import _validate
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


ROLES: tuple[Role, ...] = ("system", "user", "assistant", "tool")
#: Keys a message dict may carry (OpenAI's, plus Ollama's ``tool_name``); other keys are an
#: error unless their value is None, as in a message dumped from an SDK object.
MESSAGE_KEYS = frozenset({"role", "content", "tool_calls", "tool_call_id", "name", "tool_name"})
_PROMPT_FORM = "a string, a message dict {'role': ..., 'content': ...} or a list of them"


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message. ``tool_call_id`` / ``name`` identify the call a tool result answers."""

    role: Role
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if not _validate.is_one(self.role, ROLES):
            raise _validate.fail("a message's role", "one of " + ", ".join(ROLES), self.role)
        _validate.text(f"a {self.role} message's content", self.content)
        _validate.optional_text("a message's tool_call_id", self.tool_call_id)
        _validate.optional_text("a message's name", self.name)
        if not isinstance(self.tool_calls, tuple) or not all(
            isinstance(c, ToolCall) for c in self.tool_calls
        ):
            raise _validate.fail("a message's tool_calls", "a tuple of ToolCall", self.tool_calls)

    @classmethod
    def coerce(cls, value: object) -> Message:
        """Accept a Message, an OpenAI-style dict, or a bare string (a user message)."""
        if isinstance(value, Message):
            return value
        if isinstance(value, str):
            return cls("user", value)
        if not isinstance(value, Mapping):
            raise _validate.fail("each message", _PROMPT_FORM, value)
        unknown = sorted(
            str(k) for k, v in value.items() if k not in MESSAGE_KEYS and v is not None
        )
        if unknown:
            raise InvalidOptionError(
                f"a message has unknown key {', '.join(unknown)}; a message takes "
                f"{', '.join(sorted(MESSAGE_KEYS))}"
            )
        role = value.get("role")
        if not _validate.is_one(role, ROLES):
            raise _validate.fail("a message's role", "one of " + ", ".join(ROLES), role)
        calls = value.get("tool_calls")
        if calls is None:
            calls = ()
        if not isinstance(calls, list | tuple):
            raise _validate.fail("a message's tool_calls", "a list of tool calls", calls)
        name = value.get("name")
        return cls(
            cast(Role, role),
            _content(role, value.get("content")),
            tuple(_coerce_tool_call(c) for c in calls),
            value.get("tool_call_id"),
            value.get("tool_name") if name is None else name,
        )


def _content(role: str, content: object) -> str:
    """A message's text: a string, None, or OpenAI's list of text parts (joined)."""
    if content is None:
        return ""
    if isinstance(content, list):
        pieces = []
        for part in content:
            if not (isinstance(part, Mapping) and _validate.is_one(part.get("type"), ("text",))):
                raise _validate.fail(
                    f"a {role} message's content parts",
                    "{'type': 'text', 'text': ...} (only text is sent)",
                    part.get("type") if isinstance(part, Mapping) else part,
                )
            pieces.append(_validate.text(f"a {role} message's text part", part.get("text")))
        return "".join(pieces)
    return _validate.text(f"a {role} message's content", content)


def _coerce_tool_call(call: object) -> ToolCall:
    if isinstance(call, ToolCall):
        return call
    shape = "{'id': ..., 'function': {'name': ..., 'arguments': ...}}"
    fn = call.get("function", call) if isinstance(call, Mapping) else None
    if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str):
        raise _validate.fail("each tool call in a message", shape, call)
    args = fn.get("arguments", "")
    if not isinstance(args, str):
        _validate.plain_json("a tool call's arguments", args)
        args = json.dumps(args)
    call_id = call.get("id") if isinstance(call, Mapping) else None
    return ToolCall(
        _validate.text("a tool call's name", fn["name"]),
        _validate.text("a tool call's arguments", args),
        _validate.optional_text("a tool call's id", call_id),
    )


def build_messages(prompt: object, system: str | None) -> list[Message]:
    """Normalize a prompt (string, message or list of them) and prepend the system prompt."""
    if isinstance(prompt, str | Message | Mapping):
        items = [Message.coerce(prompt)]
    elif isinstance(prompt, list):
        items = [Message.coerce(m) for m in prompt]
    elif isinstance(prompt, tuple):
        # ("user", "hi") would otherwise be two user messages, "user" and "hi".
        raise InvalidOptionError(
            "the prompt is a tuple; give messages as a list: [{'role': 'user', 'content': ...}]"
        )
    else:
        raise _validate.fail("the prompt", _PROMPT_FORM, prompt)
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
    ``*_duration`` (nanoseconds, converted). Field names match the ``srv_*`` columns of
    docs/METRICS.md."""

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
    #: The stream's last chunk read (its end marker, or the body's end): the chunk carrying
    #: the server's timings, which the last token-carrying chunk may precede.
    t_done_ns: int | None = None
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
    #: Identity for the stats: set when the call starts (see llm_nb.new_run / llm_nb.warmup).
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
