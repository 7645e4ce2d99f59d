"""Plays: what a fault server does with each request. Each factory returns a ``Play``.

A play is ``async def play(req, conn)``; see :mod:`tests.faults.exchange`. Every sleep is
bounded, so no play can keep a test waiting longer than ``exchange.MAX_HOLD_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
from collections.abc import Sequence

from .exchange import Conn, Play, Request
from .wires import Wire

TOKENS = ["Hel", "lo", ",", " wor", "ld", "!", " — ", "é", "😀", " done"]


def stream_head(wire: Wire) -> dict[str, str]:
    return {"content-type": wire.content_type}


async def _start(wire: Wire, conn: Conn) -> None:
    await conn.head(200, stream_head(wire))
    first = wire.first()
    if first:
        await conn.send(first)


def answer(wire: Wire, tokens: Sequence[str] = TOKENS, *, delay_s: float = 0.0) -> Play:
    """A complete, well-formed answer: streamed, one write per token, or whole when the
    request says ``"stream": false``."""

    async def play(req: Request, conn: Conn) -> None:
        # Ollama streams unless told not to; the OpenAI API only when told to.
        if not (req.json() or {}).get("stream", wire.name == "ollama"):
            body = wire.whole("".join(tokens))
            await conn.respond(200, body, {"content-type": "application/json"})
            return
        await _start(wire, conn)
        for t in tokens:
            await conn.send(wire.token(t))
            if delay_s:
                await asyncio.sleep(delay_s)
        await conn.send(wire.finish(len(tokens)))
        await conn.end()

    return play


def then_fault(wire: Wire, n: int, fault: str, tokens: Sequence[str] = TOKENS) -> Play:
    """``n`` tokens, then: ``hang_up`` (FIN mid-body), ``reset`` (RST), ``malformed`` (a cut
    JSON frame, then the rest of the answer), ``error`` (an error event/line, then the end of
    the body without an end marker), ``stall`` (nothing more until the client leaves),
    ``eof`` (the body ends properly, but without the end marker)."""

    async def play(req: Request, conn: Conn) -> None:
        await _start(wire, conn)
        for t in tokens[:n]:
            await conn.send(wire.token(t))
        await asyncio.sleep(0.02)  # let those arrive as reads of their own
        if fault == "hang_up":
            conn.hang_up()
        elif fault == "reset":
            conn.reset()
        elif fault == "malformed":
            await conn.send(wire.malformed())
            for t in tokens[n:]:
                await conn.send(wire.token(t))
            await conn.send(wire.finish(len(tokens)))
            await conn.end()
        elif fault == "error":
            await conn.send(wire.error("model crashed: out of memory"))
            await conn.end()
        elif fault == "stall":
            await conn.hold()
        elif fault == "eof":
            await conn.end()
        else:  # pragma: no cover - a typo in a test
            raise ValueError(fault)

    return play


def statuses_then(
    wire: Wire,
    failures: Sequence[tuple[int, dict[str, str], bytes]],
    then: Play | None = None,
) -> Play:
    """Answer the first requests with the given (status, headers, body), then play ``then``."""
    ok = then or answer(wire)

    async def play(req: Request, conn: Conn) -> None:
        if req.index < len(failures):
            status, headers, body = failures[req.index]
            await conn.respond(status, body, {"content-type": "application/json", **headers})
            return
        await ok(req, conn)

    return play


def slow_headers(delay_s: float) -> Play:
    """Say nothing for ``delay_s`` after the request (a stuck server)."""

    async def play(req: Request, conn: Conn) -> None:
        await conn.hold(delay_s)
        conn.hang_up()

    return play


def trickle(
    wire: Wire, tokens: Sequence[str], *, delay_s: float, seed: int = 0, max_piece: int = 7
) -> Play:
    """The whole answer, every frame cut into 1..max_piece byte writes, ``delay_s`` apart."""

    async def play(req: Request, conn: Conn) -> None:
        rnd = random.Random(seed)
        await conn.head(200, stream_head(wire))
        data = wire.stream(list(tokens))
        i = 0
        while i < len(data):
            size = rnd.randint(1, max_piece)
            await conn.send(data[i : i + size])
            i += size
            await asyncio.sleep(delay_s)
        await conn.end()

    return play


def raw_frames(wire: Wire, frames: Sequence[bytes], *, delay_s: float = 0.01) -> Play:
    """Exactly these body writes (each its own read on the client, given the delay)."""

    async def play(req: Request, conn: Conn) -> None:
        await conn.head(200, stream_head(wire))
        for f in frames:
            await conn.send(f)
            await asyncio.sleep(delay_s)
        await conn.end()

    return play


def huge_line(wire: Wire, n_tokens: int, size: int) -> Play:
    """``n_tokens`` tokens, then one line of ``size`` bytes that never ends (64 KiB writes)."""

    async def play(req: Request, conn: Conn) -> None:
        await _start(wire, conn)
        for t in TOKENS[:n_tokens]:
            await conn.send(wire.token(t))
        await asyncio.sleep(0.02)
        prefix = b'data: {"choices":[{"index":0,"delta":{"content":"'
        if wire.name == "ollama":
            prefix = b'{"message":{"role":"assistant","content":"'
        await conn.send(prefix)
        block = b"x" * 65536
        sent = 0
        while sent < size:
            await conn.send(block)
            sent += len(block)
        await conn.hold(5)

    return play


# -- per-stream known content (load tests) -----------------------------------------------------


def expected_tokens(key: str, n: int) -> list[str]:
    """The tokens a firehose sends for a request whose prompt is ``key``: distinct per stream
    and per position, with multi-byte characters, so any loss, duplicate, reordering or
    cross-talk between streams changes the text."""
    digest = hashlib.sha256(key.encode()).hexdigest()
    return [f"{digest[i % 64]}{i}·{key[-3:]} " for i in range(n)]


class Firehose:
    """A play: tokens derived from the prompt (see :func:`expected_tokens`), ``per_write``
    frames per write, as fast as the client reads. With ``barrier`` set, each stream sends its
    first token and then waits (at most ``barrier_s``) until ``barrier`` requests have
    arrived since the last :meth:`reset`, so that many streams are really open at once."""

    def __init__(
        self, wire: Wire, n_tokens: int, *, per_write: int = 8, barrier_s: float = 10.0
    ) -> None:
        self.wire = wire
        self.n_tokens = n_tokens
        self.per_write = per_write
        self.barrier = 0
        self.barrier_s = barrier_s
        self._arrived = 0
        self._gate: asyncio.Event | None = None

    def reset(self, barrier: int = 0) -> None:
        """Call between rounds, while no request is in flight."""
        self.barrier = barrier
        self._arrived = 0
        self._gate = None

    async def __call__(self, req: Request, conn: Conn) -> None:
        wire = self.wire
        tokens = expected_tokens(req.prompt(), self.n_tokens)
        frames = [wire.token(t) for t in tokens]
        await _start(wire, conn)
        await conn.send(frames[0])
        if self.barrier:
            if self._gate is None:
                self._gate = asyncio.Event()  # created on the server's loop
            gate = self._gate
            self._arrived += 1
            if self._arrived >= self.barrier:
                gate.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(gate.wait(), self.barrier_s)
        for i in range(1, len(frames), self.per_write):
            await conn.send(b"".join(frames[i : i + self.per_write]))
        await conn.send(wire.finish(self.n_tokens))
        await conn.end()
