"""What the contract server's parts hand each other: request errors, model events, replies,
and Ollama's JSON forms (compact bytes, Go timestamps, tool calls)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

JSON = dict[str, Any]


class APIError(Exception):
    """A request Ollama refuses: answered with ``status`` and ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Delta:
    """A piece of the model's answer."""

    content: str = ""
    thinking: str = ""
    tool_calls: list[JSON] = field(default_factory=list)


@dataclass
class Done:
    """The end of an answer, with its counts and timings (ns)."""

    reason: str
    prompt_tokens: int = 0
    prompt_ns: int = 0
    eval_tokens: int = 0
    eval_ns: int = 0


@dataclass
class Failure:
    """An error where a line was expected: a status before the stream starts, an
    ``{"error"}`` line after."""

    message: str
    status: int = 500


Event = Delta | Done | Failure
# Generators, not plain iterators: closing one closes the upstream request it is reading.
Events = Generator[Event, None, None]
Lines = Generator[JSON | Failure, None, None]


@dataclass
class Reply:
    """A whole reply: a JSON ``body`` checked against ``schema``, plain ``text``, or empty."""

    status: int
    body: JSON | None = None
    schema: type[BaseModel] | None = None
    text: str | None = None


@dataclass
class StreamReply:
    """An NDJSON stream, each line checked against ``schema``."""

    lines: Lines
    schema: type[BaseModel]


def dumps(obj: JSON) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def go_time(moment: datetime) -> str:
    """time.Time's JSON form in UTC: RFC 3339, trailing fractional zeros trimmed, then Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0").rstrip(".") + "Z"


def tool_call(seq: int, index: int, name: str, arguments: JSON) -> JSON:
    """A tool call as Ollama sends it (arguments an object)."""
    # Ollama ids are "call_" + 8 of [a-z0-9]; derived from the request here to stay repeatable.
    call_id = "call_" + hashlib.sha256(f"{seq}:{index}".encode()).hexdigest()[:8]
    return {"id": call_id, "function": {"index": index, "name": name, "arguments": arguments}}
