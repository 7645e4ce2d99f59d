"""An httpx transport that keeps httpcore's stock connection pool from leaking.

Three ways httpcore 1.0's pool loses track of a connection matter in a notebook, where calls
are interrupted and providers closed while background calls run:

* a request cancelled just after the pool assigned it a new connection leaves that connection
  listed for good (never connected, never idle, never closed), holding one of
  ``max_connections``; enough of them and every later request waits out its pool timeout;
* the same goes for a response whose close is cancelled: its connection stays busy for good;
* a pool closed while one of its requests is still connecting forgets that connection; the
  request then goes on over it and the socket stays open until the garbage collector finds it.

RenewingTransport works around all three with httpx's public transport interface only. It
sends through an ``httpx.AsyncHTTPTransport`` built by a factory. When a request is cancelled
before its response arrived, or a response while it was being closed, later requests go to a
fresh transport, and the old one is closed once its last request and response have ended,
which closes whatever it still lists. Closing this transport closes its inner ones the same
way: at once when idle, else when their last response is closed, so no connection being
opened is forgotten. A retired transport's connections count against no limit of the new one,
so for a moment the total can exceed ``max_connections`` by the requests already in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from functools import partial

import httpx


class _Generation:
    """One inner transport and the requests and responses still using it."""

    __slots__ = ("active", "retired", "transport")

    def __init__(self, transport: httpx.AsyncBaseTransport) -> None:
        self.transport = transport
        self.active = 0
        self.retired = False


_Closing = asyncio.Task[None] | None


class _TrackedStream(httpx.AsyncByteStream):
    """A response body that tells its transport when it is closed, and whether the close
    was cancelled (httpcore then leaves the connection busy for good)."""

    def __init__(self, stream: httpx.AsyncByteStream, done: Callable[[bool], _Closing]) -> None:
        self._stream = stream
        self._done: Callable[[bool], _Closing] | None = done

    def __aiter__(self) -> AsyncIterator[bytes]:
        # The body's own iterator, not a generator around it: no extra step per chunk.
        return self._stream.__aiter__()

    async def aclose(self) -> None:
        cancelled = True
        try:
            await self._stream.aclose()
            cancelled = False
        finally:
            done, self._done = self._done, None
            if done is not None:
                await _settle(done(cancelled))


async def _settle(closing: _Closing) -> None:
    """Wait for a close that was started, without letting a cancellation stop it."""
    if closing is not None:
        await asyncio.shield(closing)


class RenewingTransport(httpx.AsyncBaseTransport):
    """Sends through ``make()``'s transport; replaces it after a cancelled request and closes
    each one only once nothing uses it (see the module docstring)."""

    def __init__(self, make: Callable[[], httpx.AsyncBaseTransport]) -> None:
        self._make = make
        self._current = _Generation(make())
        self._closed = False
        self._closing: set[asyncio.Task[None]] = set()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise RuntimeError("the transport has been closed")
        generation = self._current
        generation.active += 1
        try:
            response = await generation.transport.handle_async_request(request)
        except BaseException as exc:
            task = asyncio.current_task()
            cancelled = isinstance(exc, asyncio.CancelledError) or bool(
                task is not None and task.cancelling()
            )
            if cancelled:
                self._retire(generation)
            await _settle(self._release(generation))
            if cancelled and not isinstance(exc, asyncio.CancelledError):
                # Some anyio releases (4.14, Colab's) turn a connect cancelled at the wrong
                # moment into ValueError; the caller asked for a cancellation, and gets one.
                raise asyncio.CancelledError() from exc
            raise
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _TrackedStream(response.stream, partial(self._closed_one, generation))
        return response

    def _closed_one(self, generation: _Generation, cancelled: bool) -> _Closing:
        if cancelled:
            self._retire(generation)
        return self._release(generation)

    def _retire(self, generation: _Generation) -> None:
        generation.retired = True
        if generation is self._current and not self._closed:
            self._current = _Generation(self._make())

    def _release(self, generation: _Generation) -> _Closing:
        """One user of ``generation`` is done; start closing it if it was the last of a
        retired one. The close runs as its own task so a cancellation of the caller cannot
        stop it halfway (httpcore unlists every connection before closing them)."""
        generation.active -= 1
        if not generation.retired or generation.active > 0:
            return None
        generation.active = -1  # closed once only
        task = asyncio.ensure_future(generation.transport.aclose())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        return task

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            generation = self._current
            generation.retired = True
            generation.active += 1  # released below, so an idle one closes now
            self._release(generation)
        if self._closing:
            await asyncio.shield(asyncio.gather(*self._closing))
