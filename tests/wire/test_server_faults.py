"""A broken or slow server, on every wire, over real loopback sockets.

For each fault the test checks four things: the typed error (or the successful retry), the
partial answer kept (``error.partial.text`` and the stats row's text), the stats row's status
(error / timeout / cancelled / ok), and that no connection is left open (the fault server's
count of the sockets it holds, and psutil's list of this process's sockets to its port).

The wires: SSE as OpenAI sends it, SSE as llama-server sends it, NDJSON as Ollama sends it
(tests/faults/wires.py). A real llama-server is also SIGKILLed mid-answer. Bytes that are hard
to decode are in test_decoders.py, stopped calls in test_connections.py.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import time
from pathlib import Path

import pytest

from llm_nb._embedded.model import DEFAULT_MODEL_ALIAS
from llm_nb._embedded.process.server import LlamaServer, free_port
from llm_nb._errors import (
    APIConnectionError,
    APITimeoutError,
    ProtocolError,
    ServerError,
)
from llm_nb._stats import Recorder
from llm_nb._types import TextDelta
from llm_nb._wire.http import HTTPConfig
from llm_nb._wire.retry import RetryPolicy
from llm_nb.providers import LlamaCppProvider
from tests.faults import (
    OLLAMA,
    Conn,
    FaultServer,
    Request,
    Wire,
    client_sockets,
    plays,
    until,
)
from tests.faults.checks import (
    FAST,
    PARTIAL,
    PROMPTLY_S,
    assert_released,
    attempt,
    only_row,
    wires,
)

pytestmark = pytest.mark.timeout(90)


# -- no server -----------------------------------------------------------------------------


@wires
async def test_connection_refused(wire: Wire, rec: Recorder) -> None:
    port = free_port()  # nothing listens here now
    p = wire.provider(
        f"http://127.0.0.1:{port}", retry=RetryPolicy(max_retries=1, initial_delay_s=0.01)
    )
    err, s = await attempt(p)
    assert type(err) is APIConnectionError, err
    assert f"127.0.0.1:{port}" in str(err) and "ConnectError" in str(err)
    assert err.partial is None and s.response.text == ""
    assert s.response.status == "error" and s.response.trace.retries == 1
    row = only_row(rec)
    assert (row["status"], row["error_type"]) == ("error", "APIConnectionError")
    assert rec.text(row["call_id"]) == ""
    await p.aclose()
    assert client_sockets(port) == []


# -- faults in the middle of a streamed answer ---------------------------------------------

MID_STREAM = {
    # fault: (error class, exact class?, row status, body complete?, message part)
    "hang_up": (APIConnectionError, True, "error", False, "broke mid-answer"),
    "reset": (APIConnectionError, True, "error", False, "broke mid-answer"),
    "malformed": (ProtocolError, True, "error", False, "malformed JSON"),
    "error": (ServerError, True, "error", False, "out of memory"),
    "eof": (ProtocolError, True, "error", True, "before its end marker"),
    "stall": (APITimeoutError, True, "timeout", False, "read timeout"),
}


@wires
@pytest.mark.parametrize("fault", list(MID_STREAM))
async def test_fault_mid_stream_keeps_partial_and_closes(
    wire: Wire, fault: str, rec: Recorder
) -> None:
    cls, exact, status, complete, words = MID_STREAM[fault]
    with FaultServer(plays.then_fault(wire, 3, fault)) as srv:
        read_s = 0.4 if fault == "stall" else 10.0
        p = wire.provider(srv.url, retry=FAST, http=HTTPConfig(read_s=read_s))
        err, s = await attempt(p)
        assert isinstance(err, cls) and (type(err) is cls or not exact), repr(err)
        assert words in str(err)
        # The partial answer survives in the error, the record and the stats row.
        assert err.partial is s.response
        assert err.partial.text == PARTIAL
        assert s.response.status == status and s.response.error is err
        row = only_row(rec)
        assert (row["status"], row["error_type"]) == (status, cls.__name__)
        assert rec.text(row["call_id"]) == PARTIAL
        assert row["n_chunks"] == 3 and row["chars"] == len(PARTIAL)
        await assert_released(srv, p, pooled_ok=complete)
        if fault == "stall":
            # The server was still holding the answer: it must have seen the client leave.
            assert srv.wait_disconnects(1, PROMPTLY_S)


@pytest.mark.parametrize("cut", ["hang_up", "reset", "stall", "cancel"])
async def test_whole_body_request_cut_short_closes_its_response(cut: str) -> None:
    """A request read whole (show, props, models: not streamed) whose body is cut short after
    its headers: a typed error, and the response is closed. Left open, it kept the provider's
    connection pool from ever closing, so the pooled connection of the next request stayed
    open after ``aclose()`` and the garbage collector reported its socket in a later test."""

    async def play(req: Request, conn: Conn) -> None:
        if req.index == 0:
            await conn.head(200, {"content-type": "application/json"}, chunked=False,
                            content_length=100)  # fmt: skip
            await conn.send(b'{"modelfile": ')
            await asyncio.sleep(0.02)  # the headers and these bytes arrive before the cut
            if cut == "hang_up":
                conn.hang_up()
            elif cut == "reset":
                conn.reset()
            else:
                await conn.hold()
        else:
            await conn.respond(200, {"modelfile": "FROM m"})

    with FaultServer(play) as srv:
        # A whole body is read under the start timeout (the answer has not begun for the caller).
        start_s = 0.3 if cut == "stall" else 30.0
        p = OLLAMA.provider(srv.url, retry=FAST, http=HTTPConfig(start_s=start_s))
        if cut == "cancel":
            # Cancelled while it reads the body (the headers came at once, the rest never).
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(p.show("m"), 1.0)
        else:
            expected = APITimeoutError if cut == "stall" else APIConnectionError
            with pytest.raises(expected):
                await p.show("m")
        assert (await p.show("m"))["modelfile"] == "FROM m"  # its connection is pooled
        await p.aclose()
        assert await until(lambda: client_sockets(srv.port) == []), client_sockets(srv.port)
        assert srv.wait_idle(PROMPTLY_S)
    del p
    gc.collect()  # a socket left open would be reported now, in this test, not a later one


# -- slow servers --------------------------------------------------------------------------


@wires
async def test_slow_headers_is_a_timeout(wire: Wire, rec: Recorder) -> None:
    with FaultServer(plays.slow_headers(10)) as srv:
        p = wire.provider(
            srv.url,
            # start_s bounds the wait for the headers (the public `timeout`).
            http=HTTPConfig(start_s=0.3),
            retry=RetryPolicy(max_retries=1, initial_delay_s=0.01),
        )
        t0 = time.monotonic()
        err, s = await attempt(p)
        elapsed = time.monotonic() - t0
        assert isinstance(err, APITimeoutError), repr(err)
        assert "did not answer in time" in str(err) and "read timeout" in str(err)
        assert 0.55 <= elapsed < 3.0, elapsed  # two attempts of 0.3 s, not the 10 s stall
        assert len(srv.requests) == 2 and s.response.trace.retries == 1
        assert err.partial is None and s.response.text == ""
        row = only_row(rec)
        assert (row["status"], row["error_type"]) == ("timeout", "APITimeoutError")
        # Both attempts' connections were dropped by the client, and the server noticed.
        assert srv.wait_disconnects(2, PROMPTLY_S)
        await assert_released(srv, p)


@wires
async def test_trickling_stream_completes(wire: Wire, rec: Recorder) -> None:
    """Tiny writes a few ms apart: the whole answer takes longer than the read timeout, but
    no single gap does, so the call succeeds (read_s bounds each wait, not the answer)."""
    tokens = ["a", "bé", "c😀d", " e", "f", "g", "h ", "i", "j", "k", "l", "m"]
    with FaultServer(
        plays.trickle(wire, tokens, delay_s=0.005, seed=len(wire.name), max_piece=16)
    ) as srv:
        p = wire.provider(srv.url, retry=FAST, http=HTTPConfig(read_s=0.8))
        t0 = time.monotonic()
        err, s = await attempt(p)
        assert err is None, err
        assert time.monotonic() - t0 > 0.8  # longer than read_s in total
        assert s.response.text == "".join(tokens) and s.response.status == "ok"
        row = only_row(rec)
        assert row["status"] == "ok" and row["n_chunks"] == len(tokens)
        await assert_released(srv, p, pooled_ok=True)


# -- a real llama-server killed mid-answer ---------------------------------------------------


async def test_real_llama_server_sigkilled_mid_answer(
    llama_server_bin: Path, smollm2_gguf: Path, tmp_path: Path, rec: Recorder
) -> None:
    server = LlamaServer(
        llama_server_bin,
        model=smollm2_gguf,
        alias=DEFAULT_MODEL_ALIAS,
        ctx_size=1024,
        parallel=1,
        threads=2,
        log_path=tmp_path / "killed.log",
    )
    server.start()
    try:
        assert server.pid is not None
        p = LlamaCppProvider(server.url, retry=FAST)
        s = p.stream(
            DEFAULT_MODEL_ALIAS,
            "Write a long story about a lighthouse keeper.",
            max_tokens=400,
            temperature=0,
            extra={"ignore_eos": True},
        )
        seen = ""
        n = 0

        async def consume_and_kill() -> None:
            nonlocal seen, n
            async for d in s:
                if isinstance(d, TextDelta):
                    seen += d.text
                    n += 1
                    if n == 3:
                        os.kill(server.pid or 0, signal.SIGKILL)

        with pytest.raises(APIConnectionError) as info:
            await consume_and_kill()
        err = info.value
        assert not isinstance(err, APITimeoutError)
        assert "broke mid-answer" in str(err)
        assert n >= 3 and seen
        assert err.partial is s.response and err.partial.text == seen
        row = only_row(rec)
        assert (row["status"], row["error_type"]) == ("error", "APIConnectionError")
        assert rec.text(row["call_id"]) == seen
        assert await until(lambda: client_sockets(server.port) == [])
        await p.aclose()
    finally:
        server.stop()
