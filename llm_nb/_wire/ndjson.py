"""Newline-delimited JSON decoder (the framing of Ollama's native streams)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .._errors import ProtocolError
from ._lines import MAX_LINE_BYTES, LineSplitter
from .redact import redact_keylike


def parse_json(text: str | bytes, what: str = "stream frame") -> Any:
    """json.loads with a ProtocolError that shows the start of the bad frame."""
    try:
        return json.loads(text)
    except ValueError as exc:
        # UnicodeDecodeError (bad UTF-8 in a bytes frame) is a ValueError too.
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "invalid UTF-8"
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        raise ProtocolError(f"malformed JSON in {what}: {reason} in {_excerpt(text)!r}") from exc


#: The C scanner json.loads ends up in, called directly: json.loads adds three Python frames
#: and two whitespace regex matches per frame, a measurable share of a chunk's cost.
#: (The decoder's own C scanner: typeshed types the scanner factory's argument wrongly.)
_scan_once: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def loads_frame(text: str, what: str = "stream frame") -> Any:
    """:func:`parse_json` for the per-chunk hot path; the same results and errors."""
    try:
        obj, end = _scan_once(text, 0)
    except (StopIteration, ValueError):
        # Not a clean frame (leading whitespace, bad JSON): the general path accepts the
        # first and words the second.
        return parse_json(text, what)
    if end != len(text):
        return parse_json(text, what)
    return obj


def _excerpt(text: str) -> str:
    """The start of a bad frame for an error message, minus anything shaped like an API key:
    servers echo keys back (``Incorrect API key provided: sk-...``), and unlike the error
    bodies a provider maps, this text reaches the message without the provider's redaction.
    Redacted before it is cut, so a key at the cut cannot leave a piece behind."""
    return redact_keylike(text[:1000])[:80]


_ASCII_SPACE = " \t\n\r\x0b\x0c"


class NDJSONDecoder:
    """Incremental: ``feed(bytes)`` returns the objects of the complete lines so far."""

    __slots__ = ("_lines",)

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self._lines = LineSplitter(max_line_bytes)

    def feed(self, chunk: bytes) -> list[Any]:
        if self._lines.idle and chunk.find(b"\n") == len(chunk) - 1 and b"\r" not in chunk:
            # The usual chunk is exactly one whole line: no splitting, no buffering.
            line = chunk[:-1]
            if not line.strip():  # bytes.strip, as below: ASCII whitespace only
                return []
            try:
                text = line.decode()
            except UnicodeDecodeError:
                return [parse_json(line, "NDJSON line")]  # raises, naming the bad bytes
            return [loads_frame(text, "NDJSON line")]
        if self._lines.idle and chunk.endswith(b"\n") and b"\r" not in chunk:
            # Several whole lines in one read (concurrent streams, a client that fell behind):
            # one decode and one split, and each line through the fast JSON path.
            try:
                lines = chunk.decode().split("\n")
            except UnicodeDecodeError:
                pass  # the general path names the bad line
            else:
                lines.pop()  # the empty string after the final newline
                # Blank means ASCII whitespace only, as bytes.strip() decides on the other paths.
                return [loads_frame(x, "NDJSON line") for x in lines if x.strip(_ASCII_SPACE)]
        # json.loads takes bytes and validates UTF-8 itself, so no decode step is needed.
        return [parse_json(line, "NDJSON line") for line in self._lines.feed(chunk) if line.strip()]

    def flush(self) -> list[Any]:
        return [parse_json(line, "NDJSON line") for line in self._lines.flush() if line.strip()]
