"""What a test checks after a fault server played: the call's outcome, its one stats row, and
that no connection is left open on either side."""

from __future__ import annotations

from typing import Any

import pytest

from llm_nb._errors import LLMError
from llm_nb._stats import Recorder
from llm_nb._stream import ChatStream
from llm_nb._wire.retry import RetryPolicy
from llm_nb.providers.base import Provider

from . import client_sockets, plays, until
from .server import FaultServer
from .wires import WIRES

#: No retries: each fault is seen by the call it hits.
FAST = RetryPolicy(max_retries=0)
#: How soon the server must see a stopped call hang up: at once on an idle machine, within
#: this on a loaded one; the plays it cuts short would go on for 15 s or more.
PROMPTLY_S = 5.0
PARTIAL = "".join(plays.TOKENS[:3])  # what every "n=3 then fault" play sends first
FULL = "".join(plays.TOKENS)

#: Runs a test once on each wire.
wires = pytest.mark.parametrize("wire", WIRES, ids=lambda w: w.name)


def only_row(rec: Recorder) -> dict[str, Any]:
    (row,) = rec.rows()
    return row


async def assert_released(srv: FaultServer, p: Provider, *, pooled_ok: bool = False) -> None:
    """No connection left open. Unless the body was complete (then the connection may idle in
    the provider's keep-alive pool), the call itself must have closed it; after
    ``aclose()`` nothing at all may remain, on either side."""
    if not pooled_ok:
        assert await until(lambda: srv.open_connections == 0), (
            f"server still holds {srv.open_connections} connection(s) after the call"
        )
        assert client_sockets(srv.port) == []
    await p.aclose()
    assert await until(lambda: srv.open_connections == 0)
    assert await until(lambda: client_sockets(srv.port) == []), client_sockets(srv.port)
    assert srv.play_errors == []


async def attempt(p: Provider, prompt: str = "hi") -> tuple[LLMError | None, ChatStream]:
    s = p.stream("m", prompt)
    try:
        await s.collect()
    except LLMError as exc:
        return exc, s
    return None, s
