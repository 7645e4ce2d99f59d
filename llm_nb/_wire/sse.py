"""Server-sent events decoder (the framing of OpenAI and llama-server streams).

Implements the event-stream parsing rules of the HTML standard: ``field: value`` lines,
multiple ``data`` lines joined by newlines, ``:`` comment lines (llama-server's keep-alives)
ignored, and an event dispatched at each blank line.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._lines import MAX_LINE_BYTES, LineSplitter, decode_utf8


@dataclass(frozen=True, slots=True)
class SSEEvent:
    data: str
    event: str | None = None
    id: str | None = None


def data_or_event(event: SSEEvent) -> str | SSEEvent:
    """The event's data alone when it is a plain message event, else the event."""
    return event.data if event.event in (None, "message") else event


class SSEDecoder:
    """Incremental: ``feed(bytes)`` returns the events completed so far; ``flush()`` at EOF."""

    __slots__ = ("_data", "_event", "_id", "_lines")

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self._lines = LineSplitter(max_line_bytes)
        self._data: list[str] = []
        self._event: str | None = None
        self._id: str | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        out: list[SSEEvent] = []
        for line in self._lines.feed(chunk):
            self._line(line, out)
        return out

    def feed_data(self, chunk: bytes) -> list[str | SSEEvent]:
        """The data of each event ``chunk`` completes, for streams that mostly use data alone
        (the OpenAI wire: one JSON object per event). An event with a name of its own (an
        ``error`` event) comes as its :class:`SSEEvent`, so the name is not lost."""
        if (
            not self._data
            and self._event is None
            and self._lines.idle
            and chunk.startswith(b"data: ")
            and chunk.find(b"\n") == len(chunk) - 2
            and chunk.endswith(b"\n\n")
            and b"\r" not in chunk
        ):
            # The hot path: servers send each event as one chunk, "data: {...}" and a blank
            # line, so there is nothing to split, buffer or join.
            self._event = None
            return [decode_utf8(chunk[6:-2])]
        if (
            not self._data
            and self._event is None
            and self._lines.idle
            and chunk.endswith(b"\n\n")
            and b"\r" not in chunk
        ):
            # Several whole events in one read (concurrent streams, a client that fell behind):
            # split on the blank lines, if each event is one "data: " line and nothing else.
            events = chunk[:-2].split(b"\n\n")
            if chunk.count(b"\n") == 2 * len(events):  # no line inside an event but its data
                out: list[str | SSEEvent] = []
                for event in events:
                    if not event.startswith(b"data: "):
                        break
                    out.append(decode_utf8(event[6:]))
                else:
                    self._event = None
                    return out
        return [data_or_event(event) for event in self.feed(chunk)]

    def flush(self) -> list[SSEEvent]:
        out: list[SSEEvent] = []
        for line in self._lines.flush():
            self._line(line, out)
        # A stream cut right after its last data line still delivers that event.
        self._line(b"", out)
        return out

    def _line(self, line: bytes, out: list[SSEEvent]) -> None:
        if not line:
            if self._data or self._event is not None:
                out.append(SSEEvent("\n".join(self._data), self._event, self._id))
            self._data = []
            self._event = None
            return
        if line[0] == 0x3A:  # ":" comment / keep-alive
            return
        # The hot path: almost every line of an LLM stream is "data: {...}".
        if line.startswith(b"data: "):
            self._data.append(decode_utf8(line[6:]))
            return
        text = decode_utf8(line)
        name, sep, value = text.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        # "retry" and unknown fields are ignored, as the standard says.
