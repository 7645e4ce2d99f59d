"""The record of one call: :class:`ChatResponse`, with its tool calls, usage, server timings
and trace. Plain data that imports nothing of llm_nb's: the errors carry a partial record,
and everything else builds on both.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

if TYPE_CHECKING:
    from ._types import CallRequest

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
    #: What was sent (a ``CallRequest``: messages and options), for the call log and
    #: ``llm_nb.replay``.
    request: CallRequest | None = field(default=None, repr=False, compare=False)


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
