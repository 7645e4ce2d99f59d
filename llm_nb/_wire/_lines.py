"""Incremental splitting of a byte stream into lines, shared by the SSE and NDJSON decoders.

Lines are split on bytes, before decoding, which is safe for UTF-8: no byte of a multi-byte
character equals LF or CR, so a character split across two reads is reassembled intact.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Protocol, TypeVar

import httpx

from .._errors import ProtocolError

T_co = TypeVar("T_co", covariant=True)

#: A single line longer than this is treated as a broken stream rather than buffered forever.
MAX_LINE_BYTES = 16 * 1024 * 1024


class LineSplitter:
    """Feed bytes, get complete lines (without their terminator: LF, CRLF or lone CR)."""

    __slots__ = ("_buf", "_max")

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self._buf = b""
        self._max = max_line_bytes

    def feed(self, chunk: bytes) -> list[bytes]:
        if self._buf:
            chunk = self._buf + chunk
        if b"\r" in chunk:
            # A CR at the very end may be the first half of a CRLF split across reads:
            # hold it back so it is not taken for a line end of its own.
            hold = chunk.endswith(b"\r")
            if hold:
                chunk = chunk[:-1]
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            if hold:
                chunk += b"\r"
        lines = chunk.split(b"\n")
        self._buf = lines.pop()
        if len(self._buf) > self._max:
            size = len(self._buf)
            self._buf = b""
            raise ProtocolError(
                f"a stream line exceeded {self._max} bytes ({size} buffered); "
                "the server is not sending line-delimited events"
            )
        return lines

    def flush(self) -> list[bytes]:
        """The unterminated last line, if any (a stream may end without a final newline)."""
        rest = self._buf.rstrip(b"\r")
        self._buf = b""
        return [rest] if rest else []


def decode_utf8(line: bytes) -> str:
    # Invalid bytes become U+FFFD rather than an error: the rest of the answer is still
    # worth keeping, and a JSON frame with bad bytes in it fails its own parse clearly.
    return line.decode("utf-8", "replace")


class IncrementalDecoder(Protocol[T_co]):
    def feed(self, chunk: bytes) -> Iterable[T_co]: ...

    def flush(self) -> Iterable[T_co]: ...


async def decoded(
    response: httpx.Response, decoder: IncrementalDecoder[T_co]
) -> AsyncIterator[T_co]:
    """Everything ``decoder`` makes of a response body, including what only EOF completes."""
    async for chunk in response.aiter_bytes():
        for item in decoder.feed(chunk):
            yield item
    for item in decoder.flush():
        yield item
