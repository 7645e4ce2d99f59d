"""The contract server's HTTP side: a threaded HTTP/1.1 server whose handler reads requests,
records them, routes them to the contract server and writes its replies, streams as chunked
NDJSON the way gin's ``c.Stream`` does. A client that hangs up mid-stream is noticed and counted
as a disconnect, which closes the stream's upstream request."""

from __future__ import annotations

import contextlib
import json
import select
import socket
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, cast

from pydantic import BaseModel

from .contract import ErrorBody
from .wire import JSON, APIError, Failure, Lines, StreamReply

if TYPE_CHECKING:
    from .server import OllamaContractServer

#: The error a client gets when a reply broke the contract.
VIOLATION = "contract violation; see server.violations"
_INJECTED_ERROR = "an error was encountered while running the model: injected fault"


@dataclass
class Faults:
    """Failures to inject; all off by default. Tests change fields on ``server.faults``."""

    chunk_delay_s: float = 0.0
    """Sleep before each streamed line: a slow model or a slow network."""
    stream_error_after: int | None = None
    """After this many lines of a chat or pull stream, send an ``{"error"}`` line and end it
    (HTTP 200, as Ollama does when a runner dies mid-stream)."""


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the client sent it."""

    method: str
    path: str
    body: Any
    headers: Mapping[str, str]


class HTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # a stream the client never finishes must not block stop()

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        contract: OllamaContractServer,
    ) -> None:
        self.contract = contract
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up is normal; anything else is a bug that must fail tests."""
        error = sys.exc_info()[1]
        if not isinstance(error, ConnectionError):
            self.contract.violations.append(f"unhandled error in handler: {error!r}")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked streaming, as Go's net/http
    server_version = "ollama-contract"
    sys_version = ""

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request stderr lines; tests read ``contract.requests`` instead."""

    @property
    def contract(self) -> OllamaContractServer:
        return cast(HTTPServer, self.server).contract

    def _dispatch(self) -> None:
        path = self.path.split("?", 1)[0]
        raw = self._read_body()
        error = None
        try:
            body: Any = json.loads(raw) if raw.strip() else None
        except json.JSONDecodeError as exc:
            body, error = raw.decode(errors="replace"), f"invalid JSON body: {exc}"
        headers = dict(self.headers.items())
        self.contract.requests.append(RecordedRequest(self.command, path, body, headers))
        try:
            if error:
                raise APIError(400, error)
            reply = self.contract.route(self.command, path, body)
        except APIError as exc:
            self._send_error(exc.status, exc.message)
            return
        except Exception as exc:  # a bug in this server must fail tests, not hang a client
            self.contract.violations.append(f"{self.command} {path}: server error: {exc!r}")
            self._send_error(500, f"contract server error: {exc!r}")
            return
        if isinstance(reply, StreamReply):
            self._stream(reply)
        elif reply.text is not None:
            self._send(reply.status, reply.text.encode(), "text/plain; charset=utf-8")
        elif reply.body is None:
            self._send(reply.status, b"", None)
        else:
            self._send_object(reply.status, reply.body, reply.schema)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline().strip():
                pass  # trailers
            return b"".join(parts)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, data: bytes, content_type: str | None) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _send_object(self, status: int, obj: JSON, schema: type[BaseModel] | None) -> None:
        data = self.contract.encode(f"{self.command} {self.path}", obj, schema or ErrorBody)
        if data is None:
            self._send_error(500, VIOLATION)
            return
        self._send(status, data, "application/json; charset=utf-8")

    def _send_error(self, status: int, message: str) -> None:
        self._send(status, self._error_bytes(message), "application/json; charset=utf-8")

    def _error_bytes(self, message: str) -> bytes:
        data = self.contract.encode(f"{self.command} {self.path}", {"error": message}, ErrorBody)
        return data or json.dumps({"error": VIOLATION}).encode()

    def _stream(self, reply: StreamReply) -> None:
        """Write NDJSON as gin's c.Stream does in streamResponse: headers leave with the first
        line, so an error that comes before any line still gets its own status and JSON body."""
        where = f"{self.command} {self.path}"
        started = False
        with contextlib.closing(reply.lines) as lines:
            try:
                for sent, item in enumerate(self._guarded(lines, where)):
                    faults = self.contract.faults
                    if faults.stream_error_after is not None and sent >= faults.stream_error_after:
                        item = Failure(_INJECTED_ERROR)
                    data = None
                    if not isinstance(item, Failure):
                        data = self.contract.encode(where, item, reply.schema)
                    if data is None:
                        failure = item if isinstance(item, Failure) else Failure(VIOLATION)
                        if not started:
                            self._send_error(failure.status, failure.message)
                            return
                        self._write_chunk(self._error_bytes(failure.message) + b"\n")
                        break
                    if faults.chunk_delay_s:
                        time.sleep(faults.chunk_delay_s)
                    if started and self._peer_closed():
                        self._abandon()
                        return
                    if not started:
                        self.send_response(200)
                        self.send_header("Content-Type", "application/x-ndjson")
                        self.send_header("Transfer-Encoding", "chunked")
                        self.end_headers()
                        started = True
                    self._write_chunk(data + b"\n")
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                self._abandon()

    def _guarded(self, lines: Lines, where: str) -> Lines:
        """Turn a bug while producing lines into a violation and an error line."""
        try:
            yield from lines
        except Exception as exc:
            self.contract.violations.append(f"{where}: server error: {exc!r}")
            yield Failure(f"contract server error: {exc!r}")

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _peer_closed(self) -> bool:
        """A closed peer reads as EOF; writes alone can keep succeeding into kernel buffers."""
        sock = self.connection
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _abandon(self) -> None:
        # Returning closes the line generator, and with it the upstream llama-server request.
        self.close_connection = True
        self.contract.count_disconnect()
