"""One HTTP/1.1 exchange on the fault server: the request as read off the socket, and the
response side a play writes with (status and headers, a body in chunks or pieces, or a fault:
a hang-up, a reset, a hold)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .server import FaultServer

#: Upper bound for any single play's sleep, so a forgotten server can never hang a test run.
MAX_HOLD_S = 30.0


@dataclass
class Request:
    index: int  #: arrival order on this server, from 0
    conn_id: int
    method: str
    path: str
    headers: dict[str, str]  #: lower-case names
    body: bytes
    at: float = field(default_factory=time.monotonic)

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def prompt(self) -> str:
        """The text of the last message of a chat request ("" when there is none)."""
        obj = self.json() or {}
        messages = obj.get("messages") or [{}]
        return str(messages[-1].get("content") or "")


class ClientGone(Exception):
    """The client closed the connection while a play was writing to it."""


class Conn:
    """The response side of one request: what a play writes with."""

    def __init__(self, server: FaultServer, writer: asyncio.StreamWriter, req: Request) -> None:
        self._server = server
        self._writer = writer
        self.request = req
        self.chunked = False
        self.head_sent = False
        self.finished = False
        #: Close the connection after this response (no keep-alive).
        self.close_after = False
        #: Set when the play ended the connection itself (hang-up, reset).
        self.dropped = False

    async def _write(self, data: bytes) -> None:
        if self._writer.is_closing():
            raise ClientGone
        self._writer.write(data)
        try:
            await self._writer.drain()
        except (ConnectionError, OSError) as exc:
            raise ClientGone from exc

    async def head(
        self,
        status: int = 200,
        headers: dict[str, str] | None = None,
        *,
        chunked: bool = True,
        reason: str | None = None,
        content_length: int | None = None,
    ) -> None:
        lines = [f"HTTP/1.1 {status} {reason or _REASONS.get(status, 'Status')}"]
        hdrs = {"server": "faults", **(headers or {})}
        if chunked:
            hdrs["transfer-encoding"] = "chunked"
        elif content_length is not None:
            hdrs["content-length"] = str(content_length)
        if self.close_after:
            hdrs["connection"] = "close"
        lines += [f"{k}: {v}" for k, v in hdrs.items()]
        self.chunked = chunked
        self.head_sent = True
        await self._write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    async def send(self, data: bytes) -> None:
        """One body write (one HTTP chunk when chunked)."""
        if not data:
            return
        if self.chunked:
            data = b"%x\r\n%s\r\n" % (len(data), data)
        await self._write(data)

    async def send_pieces(self, data: bytes, sizes: list[int], delay_s: float = 0.0) -> None:
        """``data`` as several writes of the given sizes (cycled), ``delay_s`` apart."""
        i = 0
        for size in itertools.cycle(sizes or [len(data) or 1]):
            if i >= len(data):
                break
            await self.send(data[i : i + size])
            i += size
            if delay_s:
                await asyncio.sleep(delay_s)

    async def end(self) -> None:
        """Finish the body properly (the last chunk of a chunked body)."""
        if self.chunked:
            await self._write(b"0\r\n\r\n")
        self.finished = True

    async def respond(
        self, status: int, body: bytes | dict[str, Any] | str, headers: dict[str, str] | None = None
    ) -> None:
        """A whole response with Content-Length."""
        if isinstance(body, dict):
            data = json.dumps(body).encode()
            headers = {"content-type": "application/json", **(headers or {})}
        else:
            data = body.encode() if isinstance(body, str) else body
        await self.head(status, headers, chunked=False, content_length=len(data))
        await self._write(data)
        self.finished = True

    def hang_up(self) -> None:
        """Close the socket (FIN) without finishing the body."""
        self.dropped = True
        self._writer.close()

    def reset(self) -> None:
        """Abort the connection with a TCP RST, as a killed process's socket may."""
        self.dropped = True
        sock = self._writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._writer.transport.abort()

    async def hold(self, seconds: float = MAX_HOLD_S) -> None:
        """Wait (for the client to give up, usually); bounded by MAX_HOLD_S."""
        await asyncio.sleep(min(seconds, MAX_HOLD_S))


Play = Callable[[Request, Conn], Awaitable[None]]

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def writer_closed(conn: Conn) -> bool:
    return conn._writer.is_closing()


async def read_request(
    reader: asyncio.StreamReader, buf: bytearray, conn_id: int
) -> Request | None:
    while b"\r\n\r\n" not in buf:
        data = await reader.read(65536)
        if not data:
            return None
        buf += data
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    need = int(headers.get("content-length", "0"))
    body = bytearray(rest)
    while len(body) < need:
        data = await reader.read(65536)
        if not data:
            return None
        body += data
    buf[:] = body[need:]
    return Request(-1, conn_id, method, path, headers, bytes(body[:need]))
