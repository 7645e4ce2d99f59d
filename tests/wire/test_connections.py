"""A call's connection lives as long as the call: cancelled, interrupted with Ctrl-C, abandoned,
closed from another thread or stopped from a panel, the server sees the socket close at once;
nothing of llm_nb's is left running on the caller's loop; calls one after another reuse one
connection. Over real loopback sockets (the fault server), on every wire.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from typing import Any

import pytest

import llm_nb
from llm_nb._errors import (
    ServerError,
)
from llm_nb._session import Session, use_session
from llm_nb._stats import Recorder
from llm_nb._types import TextDelta
from tests.faults import (
    LLAMACPP,
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
    FULL,
    PROMPTLY_S,
    assert_released,
    only_row,
    wires,
)

pytestmark = pytest.mark.timeout(90)


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
