"""LeanPool (llm_nb._wire.pool): httpcore's connection pool with a linear assignment pass.

What it must keep from httpcore: every request answered, never two requests on one HTTP/1.1
connection, ``max_connections`` and ``max_keepalive_connections`` honoured, idle connections
the server closed or whose keep-alive expired not reused, a full pool swapping an idle
connection for one to another origin. What it must drop: the rounds of
``ConnectionNotAvailable`` a burst of requests caused, each a full pass over the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import httpcore
import httpx
import pytest

from llm_nb._wire.http import HTTPConfig, make_client
from llm_nb._wire.pool import LeanPool, use_lean_pool
from tests.faults import Conn, FaultServer, Request, client_sockets, until

pytestmark = pytest.mark.timeout(60)


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


def then_close() -> Callable[[Request, Conn], Awaitable[None]]:
    """A keep-alive answer (no ``Connection: close``), then the server closes the socket, as
    a server restarting or timing out idle connections does."""

    async def play(req: Request, conn: Conn) -> None:
        await conn.respond(200, {"n": req.index})
        conn.dropped = True

    return play


def lean_transport(**limits: Any) -> httpx.AsyncHTTPTransport:
    transport = httpx.AsyncHTTPTransport(limits=httpx.Limits(**limits))
    assert use_lean_pool(transport)
    return transport


def watch_passes(pool: Any) -> list[int]:
    """Count assignment passes; after each, check no connection is held by two requests."""
    passes: list[int] = []
    assign = pool._assign_requests_to_connections

    def counted() -> list[Any]:
        closing = assign()
        held = [id(r.connection) for r in pool._requests if r.connection is not None]
        assert len(held) == len(set(held)), "one connection handed to two requests"
        passes.append(len(held))
        return list(closing)

    pool._assign_requests_to_connections = counted
    return passes


def test_provider_clients_get_the_lean_pool() -> None:
    client = make_client("http://127.0.0.1:9", {}, HTTPConfig())
    pool = client._transport._pool  # type: ignore[attr-defined]
    assert type(pool) is LeanPool
    # Swapped in place: httpx's options stay as it set them.
    assert pool._max_connections == 256 and pool._max_keepalive_connections == 64
    assert pool._socket_options  # TCP_NODELAY, from make_client


def test_pools_it_cannot_vouch_for_are_left_alone() -> None:
    # A proxy pool is another class with other internals; it keeps httpcore's own pass.
    proxied = httpx.AsyncHTTPTransport(proxy="http://127.0.0.1:9")
    assert not use_lean_pool(proxied)
    assert type(proxied._pool) is httpcore.AsyncHTTPProxy
    # Swapping twice is a no-op, not a second swap.
    plain = httpx.AsyncHTTPTransport()
    assert use_lean_pool(plain) and not use_lean_pool(plain)


async def test_a_burst_over_warm_connections_takes_one_pass_per_request() -> None:
    """64 requests at once while 8 keep-alive connections sit idle: httpcore handed the same
    idle connection to every queued request and sent all but one round again (277 retries
    counted in benchmarks/ for 64 streams). Here each request costs one pass when it comes
    and one when its response closes, and no connection is ever handed out twice."""
    with FaultServer(ok()) as srv:
        client = make_client(srv.url, {}, HTTPConfig())
        try:
            await asyncio.gather(*(client.get("/warm") for _ in range(8)))
            passes = watch_passes(client._transport._pool)  # type: ignore[attr-defined]
            responses = await asyncio.gather(*(client.get(f"/{i}") for i in range(64)))
        finally:
            await client.aclose()
    assert [r.status_code for r in responses] == [200] * 64
    assert len(passes) <= 2 * 64, f"{len(passes)} passes for 64 requests"
    # The 8 warm connections were reused, the rest opened: 64 connections, not more.
    assert srv.connections_total <= 64


async def test_max_connections_queues_the_rest() -> None:
    with FaultServer(ok()) as srv:
        client = httpx.AsyncClient(base_url=srv.url, transport=lean_transport(max_connections=4))
        try:
            responses = await asyncio.gather(*(client.get(f"/{i}") for i in range(40)))
        finally:
            await client.aclose()
    assert sorted(r.json()["n"] for r in responses) == list(range(40))
    assert srv.peak_connections <= 4


async def test_idle_connections_beyond_the_keepalive_limit_are_closed() -> None:
    with FaultServer(all_at_once(12)) as srv:
        transport = lean_transport(max_connections=32, max_keepalive_connections=3)
        client = httpx.AsyncClient(base_url=srv.url, transport=transport)
        try:
            responses = await asyncio.gather(*(client.get(f"/{i}") for i in range(12)))
            assert srv.peak_connections == 12
            # Closing a response runs a pass; after the last, 3 idle connections stay.
            await client.get("/one-more")
            pool = transport._pool
            assert len(pool.connections) == 3
            assert all(c.is_idle() for c in pool.connections)
            assert await until(lambda: srv.open_connections == 3), srv.open_connections
        finally:
            await client.aclose()
    assert [r.status_code for r in responses] == [200] * 12
    assert srv.connections_total == 12  # "one-more" went on a kept connection


async def test_a_connection_the_server_closed_is_not_reused() -> None:
    with FaultServer(then_close()) as srv:
        client = make_client(srv.url, {}, HTTPConfig())
        try:
            for i in range(3):
                response = await client.get(f"/{i}")
                assert response.json() == {"n": i}
                # The server's close reaches the idle socket before the next request.
                assert await until(lambda: srv.open_connections == 0)
        finally:
            await client.aclose()
    assert srv.connections_total == 3


async def test_an_expired_keepalive_connection_is_replaced() -> None:
    with FaultServer(ok()) as srv:
        transport = lean_transport(keepalive_expiry=0.05)
        client = httpx.AsyncClient(base_url=srv.url, transport=transport)
        try:
            await client.get("/a")
            await client.get("/b")  # at once: the same connection
            assert srv.connections_total == 1
            await asyncio.sleep(0.1)
            await client.get("/c")  # past the expiry: a new one, the old one closed
            assert srv.connections_total == 2
            assert await until(lambda: srv.open_connections == 1)
        finally:
            await client.aclose()


async def test_a_full_pool_swaps_an_idle_connection_for_another_origin() -> None:
    with FaultServer(ok()) as a, FaultServer(ok()) as b:
        client = httpx.AsyncClient(transport=lean_transport(max_connections=1))
        try:
            assert (await client.get(f"{a.url}/x")).status_code == 200
            assert a.open_connections == 1
            assert (await client.get(f"{b.url}/y")).status_code == 200
            assert await until(lambda: a.open_connections == 0)
            assert b.open_connections == 1
        finally:
            await client.aclose()


async def test_closing_the_client_mid_connect_leaves_no_socket_open() -> None:
    """A client closed while a request of its own is still connecting (the recorder's
    background props() call racing a provider's aclose did this): httpcore's pool closed
    the connections it listed, which does nothing to one being opened; the request then went
    on over it and left the socket open in no list. The close lands at each point of the
    request's way in turn (after 0, 1, 2... loop steps); whatever the request does then, once
    it has ended no socket of this process is left connected to the server."""
    with FaultServer(ok()) as srv:
        port = int(srv.url.rsplit(":", 1)[1])
        outcomes = set()
        for steps in range(12):
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
            assert await until(lambda: not client_sockets(port)), (steps, client_sockets(port))
    # The close did land mid-request for some step counts, and after it for others.
    assert 200 in outcomes and len(outcomes) > 1, outcomes


async def test_a_request_cancelled_anywhere_on_its_way_frees_its_slot() -> None:
    """One connection allowed; a request cancelled after 0, 1, 2... loop steps. httpcore
    left a connection opened (or being opened) for a cancelled request listed for good,
    holding the only slot, so the next request waited out its pool timeout."""
    with FaultServer(ok()) as srv:
        port = int(srv.url.rsplit(":", 1)[1])
        for steps in range(12):
            transport = lean_transport(max_connections=1)
            client = httpx.AsyncClient(
                base_url=srv.url, transport=transport, timeout=httpx.Timeout(5, pool=1.0)
            )
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
            assert await until(lambda: not client_sockets(port)), (steps, client_sockets(port))


async def test_a_cancelled_aclose_loses_no_connection() -> None:
    """httpcore's aclose unlists every connection before closing them one by one; cancelled
    midway, the rest stayed open in no list. Here they stay listed, so closing again (or the
    next pass) reaches them."""
    with FaultServer(all_at_once(12)) as srv:
        port = int(srv.url.rsplit(":", 1)[1])
        transport = lean_transport(max_connections=32, max_keepalive_connections=32)
        client = httpx.AsyncClient(base_url=srv.url, transport=transport)
        await asyncio.gather(*(client.get(f"/{i}") for i in range(12)))
        assert len(client_sockets(port)) == 12
        closing = asyncio.ensure_future(transport.aclose())
        await asyncio.sleep(0)
        closing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await closing
        await transport.aclose()
        assert await until(lambda: not client_sockets(port)), client_sockets(port)
