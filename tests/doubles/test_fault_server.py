"""The fault server (tests/faults) itself: the instrument behind the wire tests counts
connections and requests, leaves no socket when stopped, and plays the wire a provider reads."""

from __future__ import annotations

import gc
import socket
import time
import warnings

import pytest

from llm_nb._session import Session
from llm_nb._stats import Recorder
from tests.faults import (
    OLLAMA,
    OPENAI,
    Conn,
    FaultServer,
    Request,
    Wire,
    client_sockets,
    plays,
    server_sockets,
)
from tests.faults.checks import (
    FAST,
    FULL,
    PROMPTLY_S,
)

pytestmark = [pytest.mark.doubles, pytest.mark.timeout(90)]


@pytest.fixture
def rec(session: Session) -> Recorder:
    """The only call observer during the test: the in-memory recorder of a session of the
    test's own."""
    return session.recorder


def test_fault_server_counts_connections_and_requests() -> None:
    """The instrument behind every check above: it sees requests, holds and releases
    connections, and notices a client that leaves mid-answer."""
    seen: list[Request] = []

    async def play(req: Request, conn: Conn) -> None:
        seen.append(req)
        await conn.head(200, {"content-type": "text/plain"})
        await conn.send(b"x")
        await conn.hold(30)

    with FaultServer(play) as srv:
        sock = socket.create_connection(("127.0.0.1", srv.port))
        sock.sendall(b"POST /p HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}")
        assert sock.recv(1000).startswith(b"HTTP/1.1 200 OK")
        assert srv.wait_requests(1) and srv.open_connections == 1
        assert client_sockets(srv.port) != []
        t0 = time.monotonic()
        sock.close()
        assert srv.wait_disconnects(1, PROMPTLY_S) and srv.disconnects[0] - t0 < PROMPTLY_S
        assert srv.wait_idle(PROMPTLY_S) and client_sockets(srv.port) == []
    assert seen[0].path == "/p" and seen[0].json() == {}


def test_fault_server_stopped_under_an_unread_answer_leaves_no_socket() -> None:
    """A client that stops reading keeps the server's answer in its send buffer, and a plain
    close waits for that buffer forever: stop() must still end the connection, or its socket
    outlives the server's loop and the garbage collector reports it in some later test."""

    async def play(req: Request, conn: Conn) -> None:
        await conn.head(200, {"content-type": "text/plain"})
        for _ in range(200):
            await conn.send(b"x" * 65536)

    srv = FaultServer(play).start()
    port = srv.port
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        sock.sendall(b"POST /p HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}")
        assert srv.wait_requests(1)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            srv.stop()
            gc.collect()
        assert server_sockets(port) == []
    assert [str(w.message) for w in caught if w.category is ResourceWarning] == []


@pytest.mark.parametrize("wire", [OPENAI, OLLAMA], ids=lambda w: w.name)
async def test_fault_server_plays_the_wire_the_provider_reads(wire: Wire, rec: Recorder) -> None:
    with FaultServer(plays.answer(wire)) as srv:
        p = wire.provider(srv.url, retry=FAST)
        r = await p.stream("m", "hello there").collect()
        assert r.text == FULL and r.finish_reason == "stop"
        assert r.usage.completion_tokens == len(plays.TOKENS)
        (req,) = srv.requests
        assert req.path == wire.path and req.prompt() == "hello there"
        await p.aclose()
