"""Fault injection: every fault on every wire, over real loopback sockets.

For each fault the test checks four things: the typed error (or the successful retry), the
partial answer kept (``error.partial.text`` and the stats row's text), the stats row's status
(error / timeout / cancelled / ok), and that no connection is left open (the fault server's
count of the sockets it holds, and psutil's list of this process's sockets to its port).

The wires: SSE as OpenAI sends it, SSE as llama-server sends it, NDJSON as Ollama sends it
(tests/faults/wires.py). A real llama-server is also SIGKILLed mid-answer.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import socket
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

import llm_nb
from llm_nb._embedded.model import DEFAULT_MODEL_ALIAS
from llm_nb._embedded.process.server import LlamaServer, free_port
from llm_nb._errors import (
    APIConnectionError,
    APITimeoutError,
    ProtocolError,
    ServerError,
)
from llm_nb._session import Session, use_session
from llm_nb._stats import Recorder
from llm_nb._types import TextDelta
from llm_nb._wire._lines import MAX_LINE_BYTES
from llm_nb._wire.http import HTTPConfig
from llm_nb._wire.ndjson import NDJSONDecoder
from llm_nb._wire.retry import RetryPolicy
from llm_nb._wire.sse import SSEDecoder
from llm_nb.providers import LlamaCppProvider
from tests.faults import (
    LLAMACPP,
    OLLAMA,
    OPENAI,
    WIRES,
    Conn,
    FaultServer,
    Request,
    Wire,
    client_sockets,
    plays,
    server_sockets,
    until,
)
from tests.faults.checks import assert_released, attempt, only_row

pytestmark = pytest.mark.timeout(90)

FAST = RetryPolicy(max_retries=0)
#: How soon the server must see a stopped call hang up: at once on an idle machine, within
#: this on a loaded one; the plays it cuts short would go on for 15 s or more.
PROMPTLY_S = 5.0
PARTIAL = "".join(plays.TOKENS[:3])  # what every "n=3 then fault" play sends first
FULL = "".join(plays.TOKENS)


@pytest.fixture
def rec(session: Session) -> Recorder:
    """The only call observer during the test: the in-memory recorder of a session of the
    test's own."""
    return session.recorder


wires = pytest.mark.parametrize("wire", WIRES, ids=lambda w: w.name)


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


# -- bytes that are hard to decode ----------------------------------------------------------

SPLIT_TOKENS = ["é", "😀", "中文", " ✓ ok", "👩\u200d💻", "🇫🇷", "ß"]


def byte_split_frames(wire: Wire, tokens: list[str]) -> list[bytes]:
    """Every token frame cut at every byte of its (multi-byte) text."""
    out = [wire.first()] if wire.first() else []
    for t in tokens:
        frame = wire.token(t)
        raw = t.encode()
        start = frame.index(raw)
        out.append(frame[:start])
        out += [raw[i : i + 1] for i in range(len(raw))]
        out.append(frame[start + len(raw) :])
    out.append(wire.finish(len(tokens)))
    return out


@wires
async def test_multibyte_characters_split_across_reads(wire: Wire, rec: Recorder) -> None:
    frames = byte_split_frames(wire, SPLIT_TOKENS)
    with FaultServer(plays.raw_frames(wire, frames, delay_s=0.003)) as srv:
        p = wire.provider(srv.url, retry=FAST)
        err, s = await attempt(p)
        assert err is None, err
        assert s.response.text == "".join(SPLIT_TOKENS)
        assert "\ufffd" not in s.response.text
        row = only_row(rec)
        assert row["status"] == "ok" and rec.text(row["call_id"]) == "".join(SPLIT_TOKENS)
        await assert_released(srv, p, pooled_ok=True)


@wires
async def test_invalid_utf8(wire: Wire, rec: Recorder) -> None:
    """SSE decodes bytes with replacement (the answer goes on, with U+FFFD); an NDJSON line
    with invalid UTF-8 is a ProtocolError that keeps what came before. Neither crashes."""
    frames = [
        wire.first(),
        wire.token("ok "),
        wire.raw_token(b"ab\xffcd"),  # a byte that is never valid UTF-8
        wire.raw_token(b"\xe4\xb8 x"),  # a 3-byte character cut after 2 bytes
        wire.token(" end"),
        wire.finish(4),
    ]
    with FaultServer(plays.raw_frames(wire, [f for f in frames if f])) as srv:
        p = wire.provider(srv.url, retry=FAST)
        err, s = await attempt(p)
        row = only_row(rec)
        if wire.name == "ollama":
            assert isinstance(err, ProtocolError) and "invalid UTF-8" in str(err)
            assert err.partial is not None and err.partial.text == "ok "
            assert (row["status"], row["error_type"]) == ("error", "ProtocolError")
        else:
            assert err is None, err
            assert s.response.text == "ok ab\ufffdcd\ufffd x end"
            assert row["status"] == "ok"
        assert rec.text(row["call_id"]) == s.response.text
        await assert_released(srv, p, pooled_ok=err is None)


@pytest.fixture
def small_max_line(monkeypatch: pytest.MonkeyPatch) -> int:
    """Decoders with a 256 KiB line limit. The providers construct ``SSEDecoder()`` and
    ``NDJSONDecoder()`` without arguments, and the default is bound when the functions are
    defined, so patching ``_lines.MAX_LINE_BYTES`` would change nothing: patch the defaults."""
    limit = 256 * 1024
    monkeypatch.setattr(SSEDecoder.__init__, "__defaults__", (limit,))
    monkeypatch.setattr(NDJSONDecoder.__init__, "__defaults__", (limit,))
    return limit


@wires
async def test_huge_line_is_protocol_error(wire: Wire, rec: Recorder, small_max_line: int) -> None:
    with FaultServer(plays.huge_line(wire, 3, 4 * small_max_line)) as srv:
        p = wire.provider(srv.url, retry=FAST)
        err, _ = await attempt(p)
        assert isinstance(err, ProtocolError), repr(err)
        assert f"exceeded {small_max_line} bytes" in str(err)
        assert err.partial is not None and err.partial.text == PARTIAL
        row = only_row(rec)
        assert (row["status"], row["error_type"]) == ("error", "ProtocolError")
        assert rec.text(row["call_id"]) == PARTIAL
        assert srv.wait_disconnects(1, 3)  # the server was still sending: it saw us go
        await assert_released(srv, p)


def test_providers_decoders_default_to_the_real_limit() -> None:
    """What the fixture above patches: the limit providers get when they construct their
    decoders without arguments (16 MiB). Not exercised over the wire at full size: the
    splitter re-joins its buffer on every read, so a 16 MiB line costs seconds of CPU."""
    assert SSEDecoder.__init__.__defaults__ == (MAX_LINE_BYTES,)
    assert NDJSONDecoder.__init__.__defaults__ == (MAX_LINE_BYTES,)
    assert MAX_LINE_BYTES == 16 * 1024 * 1024


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


# -- cancellation and interrupts ------------------------------------------------------------

SLOW = [f"t{i} " for i in range(300)]  # 300 tokens, 50 ms apart: 15 s if nobody stops it


@wires
async def test_cancelled_task_closes_connection(wire: Wire, rec: Recorder) -> None:
    with FaultServer(plays.answer(wire, SLOW, delay_s=0.05)) as srv:
        p = wire.provider(srv.url, retry=FAST)
        s = p.stream("m", "hi")
        got = asyncio.Event()

        async def consume() -> None:
            async for d in s:
                if isinstance(d, TextDelta) and len(s.response.text) > 6:
                    got.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(got.wait(), 5)
        t0 = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await until(lambda: len(srv.disconnects) == 1, PROMPTLY_S)
        assert srv.disconnects[0] - t0 < PROMPTLY_S
        assert s.response.status == "cancelled"
        assert s.response.text and SLOW[0] + SLOW[1] in s.response.text
        row = only_row(rec)
        assert row["status"] == "cancelled" and rec.text(row["call_id"]) == s.response.text
        await assert_released(srv, p)


@wires
def test_keyboard_interrupt_in_sync_stream_closes_connection(
    wire: Wire, rec: Recorder, ctrl_c: None
) -> None:
    """Ctrl-C (a real SIGINT to the main thread) while it iterates ``llm_nb.stream(...)``."""
    assert threading.current_thread() is threading.main_thread()
    with FaultServer(plays.answer(wire, SLOW, delay_s=0.05)) as srv:
        first = threading.Event()
        sent_at: list[float] = []

        def interrupt() -> None:
            if first.wait(10):
                time.sleep(0.1)  # the main thread is now blocked waiting for a token
                sent_at.append(time.monotonic())
                signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

        model = f"{wire.name}:m@127.0.0.1:{srv.port}"
        s = llm_nb.stream(model, "hi")
        killer = threading.Thread(target=interrupt, daemon=True)
        n = 0

        def consume() -> None:
            nonlocal n
            with s:
                for _ in s:
                    n += 1
                    first.set()

        killer.start()
        with pytest.raises(KeyboardInterrupt):
            consume()
        killer.join(5)
        assert sent_at and n >= 1
        assert srv.wait_disconnects(1, PROMPTLY_S)
        assert srv.disconnects[0] - sent_at[0] < PROMPTLY_S
        assert s.response.status == "cancelled"
        assert s.response.text.startswith(SLOW[0])
        row = only_row(rec)
        assert row["status"] == "cancelled" and rec.text(row["call_id"]) == s.response.text
        assert srv.wait_idle(PROMPTLY_S) and client_sockets(srv.port) == []


@wires
def test_sync_stream_abandoned_early_closes_connection(wire: Wire, rec: Recorder) -> None:
    with FaultServer(plays.answer(wire, SLOW, delay_s=0.05)) as srv:
        with llm_nb.stream(f"{wire.name}:m@127.0.0.1:{srv.port}", "hi") as s:
            for _ in s:
                break
        t0 = time.monotonic()
        assert srv.wait_disconnects(1, PROMPTLY_S) and srv.disconnects[0] - t0 < PROMPTLY_S
        assert s.response.status == "cancelled" and s.response.text == SLOW[0]
        assert only_row(rec)["status"] == "cancelled"
        assert srv.wait_idle(PROMPTLY_S) and client_sockets(srv.port) == []


def test_sync_stream_closed_from_another_thread(rec: Recorder) -> None:
    with FaultServer(plays.answer(LLAMACPP, SLOW, delay_s=0.05)) as srv:
        s = llm_nb.stream(f"llamacpp:m@127.0.0.1:{srv.port}", "hi")
        first = threading.Event()
        errors: list[BaseException] = []

        def consume() -> None:
            try:
                for _ in s:
                    first.set()
            except BaseException as exc:  # the consumer sees whatever close() causes
                errors.append(exc)

        consumer = threading.Thread(target=consume, daemon=True)
        consumer.start()
        try:
            assert first.wait(5)
            t0 = time.monotonic()
            s.close()
            assert srv.wait_disconnects(1, PROMPTLY_S) and srv.disconnects[0] - t0 < PROMPTLY_S
            consumer.join(5)
            assert not consumer.is_alive()
            # Closing ends the consumer's loop quietly: no CancelledError or other
            # exception from the loop thread surfaces in the consumer's thread.
            assert errors == []
            assert s.response.status == "cancelled"
            assert only_row(rec)["status"] == "cancelled"
        finally:
            srv.stop()  # whatever happened, the consumer ends when the server goes
            consumer.join(5)


@wires
@pytest.mark.parametrize("kind", ["chat", "compare"])
async def test_stop_in_a_panel_closes_connection(wire: Wire, rec: Recorder, kind: str) -> None:
    """The panels' Stop button, clicked while the answer streams: the work runs as a task on
    this (the kernel's) loop, the click cancels it, and the server sees the socket close."""
    from llm_nb._session import registry

    with FaultServer(plays.answer(wire, SLOW, delay_s=0.05)) as srv:
        host = f"127.0.0.1:{srv.port}"
        model = f"{wire.name}:m@{host}"
        panel: Any
        if kind == "chat":
            panel = llm_nb.chat_panel(model)
            panel.send("hi")
            record = lambda: panel.turns[0].record  # noqa: E731
        else:
            panel = llm_nb.compare_panel([model])
            await panel.wait()  # its model listing at start-up
            panel.run("hi")
            record = lambda: panel.calls[0].record  # noqa: E731
        try:
            assert await until(lambda: len(record().text) > 6, 5), "no tokens arrived"
            before = len(srv.disconnects)
            t0 = time.monotonic()
            panel.stop_button.click()
            await panel.wait()
            assert await until(lambda: len(srv.disconnects) > before, PROMPTLY_S)
            assert srv.disconnects[before] - t0 < PROMPTLY_S
            r = record()
            assert r.status == "cancelled" and r.text.startswith(SLOW[0] + SLOW[1])
            assert not any(r.text.endswith(t) for t in SLOW[-3:])  # stopped, not finished
            (row,) = [row for row in rec.rows() if row["call_id"] == r.call_id]
            assert row["status"] == "cancelled" and rec.text(row["call_id"]) == r.text
            assert srv.wait_idle(PROMPTLY_S) and client_sockets(srv.port) == []
        finally:
            for p in registry().providers():
                if p.host == host:
                    await p.aclose()


# -- nothing left running on the caller's loop ----------------------------------------------
# A task llm_nb leaves on the caller's loop is cancelled wherever that loop is torn down
# (asyncio.run, pytest's runner), possibly while it opens a connection: anyio's connect then
# leaves a coroutine never awaited, whose warning fails whichever test is running at the time.


def new_tasks(before: set[asyncio.Task[Any]]) -> set[asyncio.Task[Any]]:
    """Tasks on this loop that were not there before (this test's own excluded)."""
    return asyncio.all_tasks() - before - {asyncio.current_task()}


@pytest.mark.parametrize("wire", [LLAMACPP, OLLAMA], ids=lambda w: w.name)
async def test_a_finished_call_leaves_no_task_on_the_callers_loop(wire: Wire) -> None:
    """After a call the session fetches the server's facts (/props, /api/show) for its
    recorder: on the session's own loop, so the caller's loop has nothing of llm_nb's left
    running."""
    recorder = Recorder(None, None)
    session = Session(recorder=recorder)  # server facts fetched, as by default
    before = asyncio.all_tasks()
    with session, use_session(session), FaultServer(plays.answer(wire)) as srv:
        host = f"127.0.0.1:{srv.port}"
        try:
            r = await llm_nb.achat(f"{wire.name}:m@{host}", "hi")
            assert r.status == "ok" and r.text == FULL
            for _ in range(5):
                await asyncio.sleep(0)
            assert new_tasks(before) == set()
            # The facts are still fetched (this fault server answers them with nonsense).
            key = (r.run_id, wire.name, host, "m")
            assert await until(lambda: "fetched_at" in recorder.server_facts.get(key, {}))
        finally:
            p = session.registry.get(wire.name, host)
            await p.aclose()
            await asyncio.wrap_future(session.loop.submit(p.aclose()).future)


@pytest.mark.parametrize("ps_cut", ["before_headers", "mid_body"])
async def test_an_ollama_listing_that_fails_leaves_no_request_running(
    ps_cut: str, rec: Recorder
) -> None:
    """Ollama's model list is two requests at once (/api/tags, /api/ps); when one fails,
    the other is given up before the error reaches the caller, not left running, whether it
    was still waiting for its headers or reading its body; and closing the provider then
    closes every connection, the failed request's pooled one included."""
    ps_reading = asyncio.Event()

    async def play(req: Request, conn: Conn) -> None:
        if req.path == "/api/tags":
            if ps_cut == "mid_body":
                await ps_reading.wait()
                await asyncio.sleep(0.05)  # for the client to take /api/ps's headers
            await conn.respond(500, b'{"error": "disk on fire"}', {"content-type": "x/json"})
        else:
            if ps_cut == "mid_body":
                await conn.head(200, {"content-type": "application/json"}, chunked=False,
                                content_length=100)  # fmt: skip
                await conn.send(b'{"models": ')
                ps_reading.set()
            await conn.hold()  # no (more) answer until the client leaves

    with FaultServer(play) as srv:
        p = OLLAMA.provider(srv.url, retry=FAST)
        before = asyncio.all_tasks()
        try:
            with pytest.raises(ServerError, match="disk on fire"):
                await p.models()
            assert new_tasks(before) == set()
            assert await until(lambda: len(srv.disconnects) == 1, PROMPTLY_S), (
                "/api/ps still pending"
            )
        finally:
            await p.aclose()
        assert await until(lambda: srv.open_connections == 0, PROMPTLY_S)
        assert await until(lambda: client_sockets(srv.port) == []), client_sockets(srv.port)


# -- connection reuse -----------------------------------------------------------------------


@wires
async def test_sequential_chats_reuse_one_connection(wire: Wire, rec: Recorder) -> None:
    """Non-streamed calls read their whole body, so the keep-alive pool reuses the socket."""
    with FaultServer(plays.answer(wire)) as srv:
        p = wire.provider(srv.url, retry=FAST)
        for _ in range(3):
            assert (await p.chat("m", "hi")).text == FULL
        await p.aclose()
    assert srv.connections_total == 1


@wires
async def test_sequential_streams_reuse_one_connection(wire: Wire, rec: Recorder) -> None:
    with FaultServer(plays.answer(wire)) as srv:
        p = wire.provider(srv.url, retry=FAST)
        for _ in range(3):
            assert (await p.stream("m", "hi").collect()).text == FULL
        await p.aclose()
    assert srv.connections_total == 1


# -- the fault server itself ---------------------------------------------------------------


@pytest.mark.doubles
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


@pytest.mark.doubles
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
