"""A loopback chat server that streams as fast as a socket takes it, for measuring clients.

It speaks just enough HTTP/1.1 (keep-alive, Content-Length or chunked request bodies) on raw
asyncio protocols, and answers

* ``POST …/chat/completions``: an OpenAI chat-completion SSE stream (role-only first chunk,
  one content chunk per token, a finish chunk, a usage chunk when
  ``stream_options.include_usage`` is set, ``data: [DONE]``);
* ``POST /api/chat``: an Ollama NDJSON chat stream ending in ``done: true`` with durations;
* any other request: a small JSON body (model lists, version probes).

Each event is its own HTTP chunk, as llama-server and OpenAI send them. Responses are built
once per (wire, model, token count) and cached, so serving costs a memcpy, not JSON encoding:
what the client process spends is the client's cost.

The token count is the request's ``max_tokens`` / ``max_completion_tokens`` (OpenAI) or
``options.num_predict`` (Ollama). The model name picks the pacing: ``paced-<R>`` sends R tokens
per second in 5 ms ticks, anything else sends the whole answer at once (with the first token in
the first write, so the first content byte leaves as soon as the request is read).

    python -m benchmarks.firehose [--port 0] [--max-seconds 3600]   # prints FIREHOSE_PORT <n>
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import stat
import sys
import time
from typing import Any

#: Tokens cycled through; ~5 characters each, like English BPE tokens.
WORDS = (
    " the",
    " quick",
    " brown",
    " fox",
    " jumps",
    " over",
    " lazy",
    " dog",
    ".",
    " A",
    " stream",
    " of",
    " tokens",
    ",",
    " each",
    " its",
    " own",
    " chunk",
    " and",
    " line",
)
FIRST_TOKEN = WORDS[0]
DEFAULT_TOKENS = 100
TICK_S = 0.005
CREATED = 1_700_000_000

_JSON_HEADERS = b"Content-Type: application/json\r\n"
#: Response bodies are handed to the socket in slices of this size, as it drains: one huge
#: write would make asyncio shift its send buffer after every partial send (quadratic).
SLICE_BYTES = 256 * 1024

_cache: dict[tuple[str, str, int, bool], tuple[list[bytes], int, bytes]] = {}


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _framed(payload: bytes) -> bytes:
    """One HTTP/1.1 chunk."""
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def sse_events(model: str, n: int, usage: bool) -> list[bytes]:
    """The framed chunks of an OpenAI streaming answer of ``n`` tokens."""
    head = {
        "id": "chatcmpl-firehose",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": model,
        "system_fingerprint": "fp_firehose",
    }
    prefix = _dumps(head)[:-1]

    def chunk(delta: dict[str, Any], finish: str | None) -> bytes:
        choices = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
        return _framed(f"data: {prefix},{_dumps({'choices': choices})[1:]}\n\n".encode())

    out = [chunk({"role": "assistant", "content": ""}, None)]
    out += [chunk({"content": WORDS[i % len(WORDS)]}, None) for i in range(n)]
    out.append(chunk({}, "stop"))
    if usage:
        tail = {
            "choices": [],
            "usage": {"prompt_tokens": 5, "completion_tokens": n, "total_tokens": n + 5},
        }
        out.append(_framed(f"data: {prefix},{_dumps(tail)[1:]}\n\n".encode()))
    out.append(_framed(b"data: [DONE]\n\n"))
    out.append(b"0\r\n\r\n")
    return out


def ndjson_events(model: str, n: int) -> list[bytes]:
    """The framed chunks of an Ollama streaming chat answer of ``n`` tokens."""
    prefix = _dumps({"model": model, "created_at": "2025-01-01T00:00:00.000000000Z"})[:-1]

    def line(obj: dict[str, Any]) -> bytes:
        return _framed(f"{prefix},{_dumps(obj)[1:]}\n".encode())

    out = [
        line({"message": {"role": "assistant", "content": WORDS[i % len(WORDS)]}, "done": False})
        for i in range(n)
    ]
    out.append(
        line(
            {
                "message": {"role": "assistant", "content": ""},
                "done_reason": "stop",
                "done": True,
                "total_duration": 1_000_000,
                "load_duration": 1000,
                "prompt_eval_count": 5,
                "prompt_eval_duration": 1000,
                "eval_count": n,
                "eval_duration": 1_000_000,
            }
        )
    )
    out.append(b"0\r\n\r\n")
    return out


def _events(wire: str, model: str, n: int, usage: bool) -> tuple[list[bytes], int, bytes]:
    """(framed events, index just past the last token event, all events joined), cached."""
    key = (wire, model, n, usage)
    found = _cache.get(key)
    if found is None:
        events = sse_events(model, n, usage) if wire == "sse" else ndjson_events(model, n)
        found = events, (1 + n if wire == "sse" else n), b"".join(events)
        if len(_cache) > 64:
            _cache.clear()
        _cache[key] = found
    return found


def _token_count(body: dict[str, Any]) -> int:
    for value in (
        body.get("max_tokens"),
        body.get("max_completion_tokens"),
        (body.get("options") or {}).get("num_predict"),
    ):
        if isinstance(value, int) and value > 0:
            return value
    return DEFAULT_TOKENS


def _pace(model: str) -> float | None:
    """Tokens per second for ``paced-<R>`` models, else None (as fast as possible)."""
    if model.startswith("paced-"):
        try:
            return max(float(model[6:]), 1.0)
        except ValueError:
            return None
    return None


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self._buf = b""
        self._transport: asyncio.Transport | None = None
        self._busy = False
        self._close_after = False
        self._paused = False
        self._pending: memoryview | None = None
        self._pos = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.set_write_buffer_limits(high=4 * SLICE_BYTES)
        self._transport = transport

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._pump()

    def _send(self, blob: bytes) -> None:
        self._busy = True
        self._pending = memoryview(blob)
        self._pos = 0
        self._pump()

    def _pump(self) -> None:
        while self._pending is not None and not self._paused and self._transport is not None:
            piece = self._pending[self._pos : self._pos + SLICE_BYTES]
            self._pos += len(piece)
            self._transport.write(piece)
            if self._pos >= len(self._pending):
                self._pending = None
                self._done()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if not self._busy:
            self._next_request()

    def _next_request(self) -> None:
        while self._transport is not None and not self._busy:
            request = self._take_request()
            if request is None:
                return
            self._answer(*request)

    def _take_request(self) -> tuple[str, str, dict[str, str], bytes] | None:
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            return None
        lines = self._buf[:end].decode("latin-1").split("\r\n")
        method, path, _ = [*lines[0].split(" ", 2), "", ""][:3]
        headers = {}
        for raw in lines[1:]:
            name, _, value = raw.partition(":")
            headers[name.strip().lower()] = value.strip()
        start = end + 4
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body, consumed = _dechunk(self._buf, start)
            if body is None:
                return None
            self._buf = self._buf[consumed:]
        else:
            length = int(headers.get("content-length") or 0)
            if len(self._buf) < start + length:
                return None
            body = self._buf[start : start + length]
            self._buf = self._buf[start + length :]
        return method, path, headers, body

    def _answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        assert self._transport is not None
        self._close_after = headers.get("connection", "").lower() == "close"
        route = path.split("?", 1)[0]
        wire = (
            "sse"
            if route.endswith("/chat/completions")
            else "ndjson"
            if route == "/api/chat"
            else None
        )
        if method != "POST" or wire is None:
            self._small(route)
            return
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            request = {}
        model = str(request.get("model") or "firehose")
        usage = bool((request.get("stream_options") or {}).get("include_usage"))
        events, tokens_end, blob = _events(wire, model, _token_count(request), usage)
        kind = b"text/event-stream" if wire == "sse" else b"application/x-ndjson"
        head = (
            b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nCache-Control: no-cache\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" % kind
        )
        rate = _pace(model)
        if rate is None:
            # The first write carries the headers, the first token and more after it.
            self._transport.write(head)
            self._send(blob)
            return
        self._busy = True
        self._transport.write(head + events[0])
        _Pacer(self, events, tokens_end, rate).schedule()

    def _small(self, route: str) -> None:
        assert self._transport is not None
        if route.endswith("/models"):
            obj: Any = {"object": "list", "data": [{"id": "firehose", "object": "model"}]}
        elif route == "/api/tags" or route == "/api/ps":
            obj = {"models": []}
        elif route == "/api/version":
            obj = {"version": "0.0.0-firehose"}
        else:
            obj = {}
        payload = _dumps(obj).encode()
        self._transport.write(
            b"HTTP/1.1 200 OK\r\n%sContent-Length: %d\r\n\r\n%s"
            % (_JSON_HEADERS, len(payload), payload)
        )
        self._done()

    def _done(self) -> None:
        self._busy = False
        if self._close_after and self._transport is not None:
            self._transport.close()
            return
        if self._buf:
            asyncio.get_running_loop().call_soon(self._next_request)


class _Pacer:
    """Sends ``events[1:]`` at ``rate`` tokens per second, in ticks, then ends the response;
    the trailer events (finish, usage, end marker) go with the last token."""

    def __init__(
        self, conn: _Connection, events: list[bytes], tokens_end: int, rate: float
    ) -> None:
        self._conn = conn
        self._events = events
        self._tokens_end = tokens_end
        self._i = 1
        self._rate = rate
        self._loop = asyncio.get_running_loop()
        self._t0 = self._loop.time()

    def schedule(self) -> None:
        self._loop.call_later(TICK_S, self._tick)

    def _tick(self) -> None:
        transport = self._conn._transport
        if transport is None:
            return
        due = 1 + int((self._loop.time() - self._t0) * self._rate)
        stop = len(self._events) if due >= self._tokens_end else max(due, self._i)
        if stop > self._i:
            transport.write(b"".join(self._events[self._i : stop]))
            self._i = stop
        if self._i >= len(self._events):
            self._conn._done()
            return
        self.schedule()


def _dechunk(buf: bytes, pos: int) -> tuple[bytes | None, int]:
    """(body, end offset) of a chunked request body starting at ``pos``; None if incomplete."""
    parts = []
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None, 0
        size = int(buf[pos:eol].split(b";", 1)[0], 16)
        pos = eol + 2
        if size == 0:
            end = buf.find(b"\r\n\r\n", pos - 2)
            return (b"".join(parts), end + 4) if end >= 0 else (None, 0)
        if len(buf) < pos + size + 2:
            return None, 0
        parts.append(buf[pos : pos + size])
        pos += size + 2


async def start_server(host: str = "127.0.0.1", port: int = 0) -> asyncio.Server:
    """Start serving on the running loop; the bound port is ``server.sockets[0]``."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(_Connection, host, port, backlog=256)


async def _serve(host: str, port: int, max_seconds: float) -> None:
    server = await start_server(host, port)
    bound = server.sockets[0].getsockname()[1]
    print(f"FIREHOSE_PORT {bound}", flush=True)
    loop = asyncio.get_running_loop()
    stdin_closed = loop.create_future()

    def on_stdin() -> None:
        # The parent closing our stdin (or exiting) is the signal to stop.
        if not sys.stdin.buffer.read1(4096) and not stdin_closed.done():
            stdin_closed.set_result(None)

    # Only a pipe means a parent is watching; a terminal or /dev/null leaves it to the deadline
    # (or Ctrl-C).
    if stat.S_ISFIFO(os.fstat(sys.stdin.fileno()).st_mode):
        loop.add_reader(sys.stdin.fileno(), on_stdin)
    deadline = time.monotonic() + max_seconds
    async with server:
        while not stdin_closed.done() and time.monotonic() < deadline:
            await asyncio.wait([stdin_closed], timeout=1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--max-seconds", type=float, default=3600.0, help="stop after this")
    args = parser.parse_args()
    if not args.host.startswith("127.") and args.host not in ("localhost", "::1"):
        parser.error("the firehose only binds loopback addresses")
    asyncio.run(_serve(args.host, args.port, args.max_seconds))


if __name__ == "__main__":
    main()
