"""Plain data types shared by every layer: messages, stream deltas, model listings, and the
final record of a call (defined in ``_record``, below the errors that carry it).

They are provider-neutral: each provider maps them to and from its own wire format, so
nothing above the providers ever sees an OpenAI, llama.cpp or Ollama shape.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, cast

from . import _validate
from ._errors import InvalidOptionError

# The record of a call lives below the errors, which carry a partial one; re-exported here.
from ._record import CallTrace as CallTrace
from ._record import ChatResponse as ChatResponse
from ._record import FinishReason as FinishReason
from ._record import ServerTimings as ServerTimings
from ._record import Status as Status
from ._record import ToolCall as ToolCall
from ._record import Usage as Usage

if TYPE_CHECKING:
    from ._options import ChatOptions

Role: TypeAlias = Literal["system", "user", "assistant", "tool"]


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


@dataclass(frozen=True, slots=True)
class CallRequest:
    """A call's request as the caller gave it: the messages (system prompt first, when
    there is one) and the options, tools and response format included."""

    messages: tuple[Message, ...]
    options: ChatOptions


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
