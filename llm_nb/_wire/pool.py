"""httpcore's connection pool, minus the scans that made many concurrent streams slow.

httpcore 1.0's ``AsyncConnectionPool._assign_requests_to_connections`` runs whenever a request
is added or a response is closed. Three things in it cost a client with tens of concurrent
streams to one server more than the streams themselves. Profiled with 64 workers asking for
10 short answers each over 64 warm connections: 4,063 passes, 2.8 M ``is_idle`` calls and
70,000 socket polls for the 640 calls, 5.3 ms of CPU per call against 1.45 ms for plain httpx.
benchmarks/concurrency.py's per-call row (8 warm connections), each pair in one run: 2.8 ms
with httpcore's pool against 1.15 ms for httpx (2.4x), 1.7 ms with this one against 1.26 ms
(1.3x; the rest is mostly the stats record):

* it hands an idle connection to every queued request, including connections already handed
  to another request that has not started on it yet; all but one of those requests then fail
  with ``ConnectionNotAvailable`` and go round again, each round another full pass;
* its keep-alive limit counts *all* connections for every idle one it looks at
  (``len([c.is_idle() for c in connections])``), quadratic in the pool size;
* it polls the socket of every idle connection on every pass (``has_expired``).

:class:`LeanPool` does the same job in one linear pass: a connection already held by a request
in the pool is never handed out again, the idle ones are counted once against
``max_keepalive_connections`` (which is what that limit documents), and the other rules are
httpcore's (closed connections dropped, expired ones closed, a new connection while under
``max_connections``, else an idle one swapped for a new one). Only plain HTTP/1.1 pools are
swapped: there one connection carries one request at a time, which the reservation relies on.

Two leaks of httpcore's pool are closed too (tests/test_pool.py fails on httpcore's for each):
a connection still being opened when the pool is closed stays open once its request ends, and
a connection opened for a request that is cancelled before using it keeps one of the
``max_connections`` slots for good.
"""

from __future__ import annotations

import logging

import httpcore
import httpx
from httpcore._async.interfaces import AsyncConnectionInterface

log = logging.getLogger("llm_nb.http")


class LeanPool(httpcore.AsyncConnectionPool):
    """An ``httpcore.AsyncConnectionPool`` whose assignment pass is linear (see module doc),
    and whose ``aclose`` does not leak a connection that was still being opened."""

    #: Set by aclose; a class default because pools become LeanPools by a class swap.
    _lean_closed = False

    async def aclose(self) -> None:
        # httpcore closes every pooled connection and forgets them all; closing one that is
        # still connecting does nothing, so when the connect completes, the request in flight
        # goes on over it and leaves it open, in no list, until the garbage collector finds
        # the socket (seen: the recorder's background props() call racing a provider's
        # aclose). Here all stay listed: the next pass drops the closed ones, and the pass
        # that ends a request closes its connection (the pool is closed: nothing is kept).
        # Nothing is unlisted first, so a cancelled aclose cannot lose one either.
        self._lean_closed = True
        with self._optional_thread_lock:
            closing = list(self._connections)
        await self._close_connections(closing)

    def _assign_requests_to_connections(self) -> list[AsyncConnectionInterface]:
        # Connections a request in the pool holds, started on or not: never handed out twice.
        held = {id(r.connection) for r in self._requests if r.connection is not None}
        closing: list[AsyncConnectionInterface] = []
        kept: list[AsyncConnectionInterface] = []
        free: list[AsyncConnectionInterface] = []
        for connection in self._connections:
            if connection.is_closed():
                continue
            if id(connection) not in held and not connection.is_idle():
                # Opening, or opened and not yet started on, for a request that was cancelled
                # meanwhile (httpcore leaves these listed for good, each holding one of the
                # max_connections slots, encode/httpcore#1093): no request will use it.
                closing.append(connection)
                continue
            if connection.is_idle():
                # Only an idle connection can have expired (its keep-alive timer runs, and the
                # server may have closed it), so only idle ones pay has_expired's socket poll.
                if self._lean_closed or connection.has_expired():
                    closing.append(connection)
                    continue
                if id(connection) not in held:
                    if len(free) >= self._max_keepalive_connections:
                        closing.append(connection)
                        continue
                    free.append(connection)
            kept.append(connection)
        self._connections = kept

        for pool_request in self._requests:
            if not pool_request.is_queued():
                continue
            origin = pool_request.request.url.origin
            reuse = next((c for c in free if c.can_handle_request(origin)), None)
            if reuse is not None:
                free.remove(reuse)
                connection = reuse
            elif len(kept) < self._max_connections:
                connection = self.create_connection(origin)
                kept.append(connection)
            elif free:  # full: swap an idle connection to another origin for a new one
                idle = free.pop(0)
                kept.remove(idle)
                closing.append(idle)
                connection = self.create_connection(origin)
                kept.append(connection)
            else:
                continue  # stays queued until a response is closed
            pool_request.assign_to_connection(connection)
        return closing


def use_lean_pool(transport: httpx.AsyncHTTPTransport) -> bool:
    """Swap the transport's pool for a :class:`LeanPool` where it is a plain HTTP/1.1
    ``httpcore.AsyncConnectionPool``; return whether it did.

    The class is swapped in place rather than the pool rebuilt, so every option httpx passed
    (TLS context, limits, socket options, local address) stays exactly as httpx set it;
    LeanPool adds no state but a closed flag.
    """
    pool = getattr(transport, "_pool", None)
    if type(pool) is not httpcore.AsyncConnectionPool:
        return False  # a proxy pool, or one swapped already
    if not all(hasattr(pool, name) for name in _RELIED_ON):
        # An httpcore whose internals differ (1.0.2 has no _optional_thread_lock): keep its
        # own pool rather than guess.
        log.debug("httpcore %s: keeping its own connection pool", httpcore.__version__)
        return False
    if pool._http2:
        return False
    pool.__class__ = LeanPool
    return True


#: What LeanPool uses of httpcore's pool besides its public interface.
_RELIED_ON = (
    "_assign_requests_to_connections",
    "_close_connections",
    "_optional_thread_lock",
    "_requests",
    "_connections",
    "_max_connections",
    "_max_keepalive_connections",
    "_http2",
)
