"""Incremental splitting of a byte stream into lines, shared by the SSE and NDJSON decoders.

Lines are split on bytes, before decoding, which is safe for UTF-8: no byte of a multi-byte
character equals LF or CR, so a character split across two reads is reassembled intact.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Protocol, TypeVar

import httpx

from .._errors import ProtocolError

T_co = TypeVar("T_co", covariant=True)

#: A single line longer than this is treated as a broken stream rather than buffered forever.
MAX_LINE_BYTES = 16 * 1024 * 1024


class LineSplitter:
    """Feed bytes, get complete lines (without their terminator: LF, CRLF or lone CR)."""

    __slots__ = ("_max", "_parts", "_size")

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        # The unfinished line, as the pieces it arrived in: joining them only once a line end
        # comes keeps a long line linear in its length rather than quadratic.
        self._parts: list[bytes] = []
        self._size = 0
        self._max = max_line_bytes

    @property
    def idle(self) -> bool:
        """No unfinished line is held: the next chunk starts a fresh line."""
        return not self._parts

    def feed(self, chunk: bytes) -> list[bytes]:
        held_cr = bool(self._parts) and self._parts[-1].endswith(b"\r")
        if not held_cr and b"\n" not in chunk and b"\r" not in chunk:
            self._parts.append(chunk)
            self._size += len(chunk)
            self._check(self._size)
            return []
        if self._parts:
            self._parts.append(chunk)
            chunk = b"".join(self._parts)
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
        rest = lines.pop()
        self._parts = [rest] if rest else []
        self._size = len(rest)
        self._check(max((len(line) for line in lines), default=0))
        self._check(self._size)
        return lines

    def _check(self, size: int) -> None:
        if size > self._max:
            self._parts = []
            self._size = 0
            raise ProtocolError(
                f"a stream line exceeded {self._max} bytes ({size} seen); "
                "the server is not sending line-delimited events"
            )

    def flush(self) -> list[bytes]:
        """The unterminated last line, if any (a stream may end without a final newline)."""
        rest = b"".join(self._parts).rstrip(b"\r")
        self._parts = []
        self._size = 0
        return [rest] if rest else []


def decode_utf8(line: bytes) -> str:
    # Invalid bytes become U+FFFD rather than an error: the rest of the answer is still
    # worth keeping, and a JSON frame with bad bytes in it fails its own parse clearly.
    return line.decode("utf-8", "replace")


class IncrementalDecoder(Protocol[T_co]):
    def feed(self, chunk: bytes) -> Iterable[T_co]: ...

    def flush(self) -> Iterable[T_co]: ...


#: After the end marker, how much of the body is still read so the connection can go back to
#: the pool (the chunked body's terminator usually follows at once).
DRAIN_MAX_ITEMS = 64
DRAIN_MAX_S = 0.5


async def drain(items: AsyncIterator[object]) -> None:
    """Read what remains of a body after its end marker, within bounds. A response read to its
    end returns its connection to the pool; one closed early is dropped, and the next call pays
    a new connection (a TLS handshake on a remote API)."""
    try:
        async with asyncio.timeout(DRAIN_MAX_S):
            n = 0
            async for _ in items:
                n += 1
                if n >= DRAIN_MAX_ITEMS:
                    break
    except (TimeoutError, httpx.HTTPError, ProtocolError):
        pass  # the connection is closed instead: only reuse is lost


async def decoded(
    response: httpx.Response, decoder: IncrementalDecoder[T_co]
) -> AsyncIterator[T_co]:
    """Everything ``decoder`` makes of a response body, including what only EOF completes."""
    async for chunk in response.aiter_bytes():
        for item in decoder.feed(chunk):
            yield item
    for item in decoder.flush():
        yield item
