"""Fault injection for llm_nb's provider layer: a loopback server that plays each fault on
each wire (SSE as OpenAI and llama-server send it, NDJSON as Ollama sends it).

    from tests.faults import FaultServer, plays, OPENAI
    with FaultServer(plays.then_fault(OPENAI, 3, "hang_up")) as srv:
        p = OPENAI.provider(srv.url)
        ...

See server.py for the server and what it records, exchange.py for a request and what a
play writes back, wires.py for the wire shapes and plays.py for the faults.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import psutil

from . import plays
from .exchange import MAX_HOLD_S, ClientGone, Conn, Play, Request
from .server import FaultServer
from .wires import LLAMACPP, OLLAMA, OPENAI, WIRES, Wire

__all__ = [
    "LLAMACPP",
    "MAX_HOLD_S",
    "OLLAMA",
    "OPENAI",
    "WIRES",
    "ClientGone",
    "Conn",
    "FaultServer",
    "Play",
    "Request",
    "Wire",
    "client_sockets",
    "plays",
    "server_sockets",
    "until",
]


def client_sockets(port: int) -> list[str]:
    """This process's TCP sockets connected *to* ``port`` (the client side), in any state, as
    ``"laddr->raddr STATUS"``. A socket that is still here after a call is a leak: a closed
    response would have released it (TIME_WAIT sockets belong to no process)."""
    out = []
    proc = psutil.Process()
    # net_connections() is psutil >= 6.0, which deprecates connections(); 5.9 has only that.
    listed = proc.net_connections if hasattr(proc, "net_connections") else proc.connections
    for c in listed(kind="tcp"):
        if c.raddr and c.raddr.port == port:
            out.append(f"{c.laddr.ip}:{c.laddr.port}->{c.raddr.ip}:{c.raddr.port} {c.status}")
    return out


def server_sockets(port: int) -> list[str]:
    """This process's TCP sockets on ``port`` itself (a server's side: its listener and the
    connections it accepted), as ``"laddr->raddr STATUS"``."""
    out = []
    proc = psutil.Process()
    listed = proc.net_connections if hasattr(proc, "net_connections") else proc.connections
    for c in listed(kind="tcp"):
        if c.laddr and c.laddr.port == port:
            raddr = f"{c.raddr.ip}:{c.raddr.port}" if c.raddr else "-"
            out.append(f"{c.laddr.ip}:{c.laddr.port}->{raddr} {c.status}")
    return out


async def until(pred: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``pred`` without blocking the loop (socket closes complete on the loop); whether
    it came true within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True
