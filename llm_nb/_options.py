"""The options of a chat call, defined once: their names, types and meaning.

:class:`ChatKwargs` is what a caller passes: every chat entry point (``llm_nb.chat``,
``stream``, ``achat``, ``astream``, ``Provider.chat``/``stream``, ``evaluate``, the panels)
takes it as ``**options: Unpack[ChatKwargs]``, so an IDE and mypy see each option and its
type, and :func:`takes_chat_options` spells the options out in the runtime signature that
``help()`` and Jupyter show. :class:`ChatOptions` is the checked form the providers map to
their wires; building one checks every value (see ``_validate``), which is what keeps a
caller without a type checker (a notebook) safe too.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias, TypedDict, TypeVar, cast

from . import _validate
from ._errors import InvalidOptionError

ResponseFormat: TypeAlias = Literal["json", "text"] | Mapping[str, Any]
"""``"json"`` (any JSON object), ``"text"``, or a JSON-schema dict the answer must match."""

ToolChoice: TypeAlias = Literal["auto", "none", "required"] | Mapping[str, Any]
"""``"auto"``, ``"none"``, ``"required"`` or ``{"type": "function", "function": {"name": ...}}``."""


class ChatKwargs(TypedDict, total=False):
    """The options every chat call takes as keyword arguments; each may be left out (or
    given as None) for the server's or the provider's default. A wrong name or value raises
    :class:`InvalidOptionError` naming the option, before any server is started or request
    sent."""

    temperature: float | None
    """Sampling temperature, 0 to 2: 0 picks the likeliest token at every step."""
    top_p: float | None
    """Nucleus sampling, above 0 and at most 1: sample among the likeliest tokens whose
    probabilities add up to this."""
    max_tokens: int | None
    """Most tokens the answer may have (at least 1)."""
    seed: int | None
    """Seed for sampling, for answers that repeat where the server supports it."""
    stop: str | Sequence[str] | None
    """A string, or a list of non-empty strings, that ends the answer where it appears."""
    system: str | None
    """A system prompt put before the messages, unless they start with one."""
    response_format: ResponseFormat | None
    """``"json"`` for any JSON object, ``"text"``, or a JSON-schema dict (OpenAI's
    ``{"type": "json_schema", "json_schema": {"schema": ...}}`` wrapping is accepted)."""
    tools: Sequence[Mapping[str, Any]] | None
    """OpenAI-style function definitions:
    ``[{"type": "function", "function": {"name": ..., "parameters": {...}}}]``."""
    tool_choice: ToolChoice | None
    """Whether and which tool the model must call: ``"auto"``, ``"none"``, ``"required"``
    or ``{"type": "function", "function": {"name": ...}}``; needs ``tools``."""
    extra: Mapping[str, Any] | None
    """Provider-specific request fields merged into the body as they are: llama.cpp
    ``top_k``/``min_p``/``grammar``, Ollama ``options``/``keep_alive``/``think``..."""
    timeout: float | None
    """Seconds to wait for the server to start answering (loading the model and reading
    the prompt happen then); overrides the provider's for this call."""
    read_timeout: float | None
    """Longest silence, in seconds, once the answer streams; overrides the provider's."""
    connect_timeout: float | None
    """Seconds to wait for a connection; overrides the provider's."""


@dataclass(frozen=True, slots=True)
class ChatOptions:
    """The options of one call, checked and normalized (:class:`ChatKwargs` says what each
    means): a float rather than a numpy scalar, a tuple of stops, OpenAI's response_format
    wrappers unwrapped. Building one with a wrong value raises :class:`InvalidOptionError`
    naming the option and the form it takes."""

    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    system: str | None = None
    response_format: ResponseFormat | None = None
    tools: tuple[Mapping[str, Any], ...] = ()
    tool_choice: ToolChoice | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    timeout: float | None = None
    read_timeout: float | None = None
    connect_timeout: float | None = None

    def __post_init__(self) -> None:
        # Every value in the form the providers expect (a float, not a numpy scalar; a
        # tuple of stops), so nothing below this line meets a type it fails on.
        v = _validate
        put = object.__setattr__
        put(self, "temperature", v.number("temperature", self.temperature, low=0, high=2))
        put(self, "top_p", v.number("top_p", self.top_p, low=0, high=1, low_open=True))
        put(self, "max_tokens", v.whole("max_tokens", self.max_tokens, minimum=1))
        put(self, "seed", v.whole("seed", self.seed))
        put(self, "stop", v.stop(self.stop))
        put(self, "system", v.optional_text("system", self.system))
        put(self, "response_format", v.response_format(self.response_format))
        put(self, "tools", v.tools(self.tools))
        put(self, "tool_choice", v.tool_choice(self.tool_choice, self.tools))
        put(self, "extra", v.extra(self.extra))
        for name in ("timeout", "read_timeout", "connect_timeout"):
            put(self, name, v.seconds(name, getattr(self, name)))

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> ChatOptions:
        """Build from keyword arguments; unknown keys are an error, not silently dropped."""
        known = cls.__dataclass_fields__
        unknown = sorted(k for k in kwargs if k not in known)
        if unknown:
            raise InvalidOptionError(
                f"unknown option {', '.join(unknown)}; known: {', '.join(sorted(known))} "
                "(put provider-specific settings in extra={...})"
            )
        return cls(**kwargs)


_F = TypeVar("_F", bound=Callable[..., Any])


def takes_chat_options(fn: _F) -> _F:
    """Show the options as keyword parameters in ``fn``'s runtime signature (what ``help()``,
    Jupyter's Shift-Tab and its completion of ``name=`` read) in place of ``**options``.
    Type checkers read ``**options: Unpack[ChatKwargs]`` itself; this changes no behaviour."""
    signature = inspect.signature(fn)
    kept = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
    options = [
        # TypedDict keeps each annotation as a ForwardRef; the signature shows its text.
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=getattr(kind, "__forward_arg__", kind),
        )
        for name, kind in ChatKwargs.__annotations__.items()
    ]
    cast(Any, fn).__signature__ = signature.replace(parameters=[*kept, *options])
    return fn
