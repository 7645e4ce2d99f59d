"""The providers' HTTP client (llm_nb._wire.http.make_client over RenewingTransport), seen
from outside: what a user would notice if a connection leaked.

httpcore's stock pool has two leaks (see llm_nb/_wire/transport.py): a request cancelled at
the wrong moment holds a pool slot for good, and a client closed while a request is still
connecting leaves that socket open. Interrupting a cell and closing a provider while a
background call runs hit both. Each test below drives the client only through httpx's public
API and checks what a user would see: the next request is answered, no socket stays open.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import httpx
import pytest

from llm_nb._wire.http import HTTPConfig, make_client
from tests.faults import Conn, FaultServer, Request, client_sockets, until

pytestmark = pytest.mark.timeout(60)

# The cancellation and close land after 0, 1, 2... event-loop steps of the request's way, so
# every await point of httpx and httpcore (pool queue, connect, send, headers) gets hit.
STEPS = range(16)


def ok() -> Callable[[Request, Conn], Awaitable[None]]:
    async def play(req: Request, conn: Conn) -> None:
        await conn.respond(200, {"n": req.index})

    return play


def all_at_once(n: int) -> Callable[[Request, Conn], Awaitable[None]]:
    """Answers nobody until ``n`` requests are in, so ``n`` connections are open at once."""
    arrived = 0
    everyone: asyncio.Event | None = None

    async def play(req: Request, conn: Conn) -> None:
        nonlocal arrived, everyone
        everyone = everyone or asyncio.Event()
        arrived += 1
        if arrived >= n:
            everyone.set()
        await asyncio.wait_for(everyone.wait(), 20)
        await conn.respond(200, {"n": req.index})

    return play


def slow_stream(pieces: int, delay_s: float) -> Callable[[Request, Conn], Awaitable[None]]:
    async def play(req: Request, conn: Conn) -> None:
        await conn.head(200, {"content-type": "text/plain"})
        for i in range(pieces):
            await conn.send(b"%d\n" % i)
            await asyncio.sleep(delay_s)
        await conn.end()

    return play


def port_of(srv: FaultServer) -> int:
    return int(srv.url.rsplit(":", 1)[1])


async def left_open(srv: FaultServer) -> list[str]:
    """This process's sockets still connected to ``srv`` once closes have settled."""
    port = port_of(srv)
    await until(lambda: not client_sockets(port))
    return client_sockets(port)


async def test_a_request_cancelled_anywhere_on_its_way_frees_its_slot() -> None:
    """One connection allowed, a request cancelled at each step in turn: the next request is
    answered at once (with httpcore's pool alone, one step count left the only slot held by
    a connection nobody would use, and the next request ended in PoolTimeout)."""
    with FaultServer(ok()) as srv:
        for steps in STEPS:
            client = make_client(srv.url, {}, HTTPConfig(max_connections=1, pool_s=2.0))
            try:
                request = asyncio.ensure_future(client.get("/cancelled"))
                for _ in range(steps):
                    await asyncio.sleep(0)
                request.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await request
                assert (await client.get("/next")).status_code == 200, steps
            finally:
                await client.aclose()
            assert not await left_open(srv), steps


async def test_closing_the_client_mid_request_leaves_no_socket_open() -> None:
    """A client closed while a request of its own is still on its way (a provider closed
    while a background call runs): whatever that request does then, once it has ended no
    socket of this process is connected to the server (httpcore's pool forgot a connection
    still being opened, and its socket stayed open until garbage collection)."""
    with FaultServer(ok()) as srv:
        outcomes: set[object] = set()
        for steps in STEPS:
            client = make_client(srv.url, {}, HTTPConfig())
            request = asyncio.ensure_future(client.get(f"/{steps}"))
            for _ in range(steps):
                await asyncio.sleep(0)
            await client.aclose()
            try:
                outcomes.add((await request).status_code)
            # Closed before it was sent (RuntimeError from httpx) or under it: an error is
            # fine, a leak is not.
            except (httpx.HTTPError, RuntimeError) as exc:
                outcomes.add(type(exc).__name__)
            assert not await left_open(srv), steps
    # The close did land mid-request for some step counts, and before it for others.
    assert 200 in outcomes and len(outcomes) > 1, outcomes


async def test_a_cancelled_close_still_closes_every_connection() -> None:
    with FaultServer(all_at_once(12)) as srv:
        client = make_client(srv.url, {}, HTTPConfig())
        await asyncio.gather(*(client.get(f"/{i}") for i in range(12)))
        assert len(client_sockets(port_of(srv))) == 12
        closing = asyncio.ensure_future(client.aclose())
        await asyncio.sleep(0)
        closing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await closing
        assert not await left_open(srv)


async def test_streams_in_flight_survive_another_requests_cancellation() -> None:
    """A cancelled request moves later requests to fresh connections; a stream already
    running on the old ones reads on to its end, and nothing is left open after."""
    with FaultServer(slow_stream(10, 0.02)) as srv:
        client = make_client(srv.url, {}, HTTPConfig())
        try:
            async with client.stream("GET", "/long") as long:
                lines = long.aiter_lines()
                first = await anext(lines)
                request = asyncio.ensure_future(client.get("/cancelled"))
                await asyncio.sleep(0)
                request.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await request
                rest = [line async for line in lines]
            assert [first, *rest] == [str(i) for i in range(10)]
            after = await client.get("/after")
            assert after.text.split() == [str(i) for i in range(10)]
        finally:
            await client.aclose()
        assert not await left_open(srv)


async def test_max_connections_queues_the_rest() -> None:
    with FaultServer(ok()) as srv:
        client = make_client(srv.url, {}, HTTPConfig(max_connections=4))
        try:
            responses = await asyncio.gather(*(client.get(f"/{i}") for i in range(40)))
        finally:
            await client.aclose()
    assert sorted(r.json()["n"] for r in responses) == list(range(40))
    assert srv.peak_connections <= 4


async def test_a_burst_reuses_warm_connections() -> None:
    with FaultServer(ok()) as srv:
        client = make_client(srv.url, {}, HTTPConfig())
        try:
            await asyncio.gather(*(client.get("/warm") for _ in range(8)))
            responses = await asyncio.gather(*(client.get(f"/{i}") for i in range(64)))
        finally:
            await client.aclose()
    assert [r.status_code for r in responses] == [200] * 64
    assert srv.connections_total <= 64


async def test_a_connection_the_server_closed_is_not_reused() -> None:
    async def then_close(req: Request, conn: Conn) -> None:
        await conn.respond(200, {"n": req.index})
        conn.dropped = True

    with FaultServer(then_close) as srv:
        client = make_client(srv.url, {}, HTTPConfig())
        try:
            for i in range(3):
                response = await client.get(f"/{i}")
                assert response.json() == {"n": i}
                assert await until(lambda: srv.open_connections == 0)
        finally:
            await client.aclose()
    assert srv.connections_total == 3
