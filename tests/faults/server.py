"""A loopback HTTP/1.1 server that misbehaves on purpose, for fault-injection tests.

It runs its own asyncio loop on a daemon thread, so it serves async tests (on pytest's loop),
sync tests (llm_nb's private loop thread) and a main thread blocked in a queue alike. Each
request is handed to a *play*: ``async def play(req: Request, conn: Conn) -> None`` (see
exchange.py) that writes
whatever the fault needs (a status, a chunked body frame by frame, a half-finished body, a
reset...). The server watches the socket while a play runs, so it notices a client that hangs
up mid-answer, stops the play, and records when that happened.

What tests read back: ``requests`` (every request, with its arrival time), ``open_connections``
(sockets the server still holds), ``peak_connections``, ``peak_plays`` (most requests being
answered at once), ``disconnects`` (monotonic times at
which a client hung up during a play), and :meth:`wait_idle` / :meth:`wait_disconnects`.
Every wait is bounded; ``stop()`` closes every socket and the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import threading
import time
from collections.abc import Callable
from typing import Self

from .exchange import (
    MAX_HOLD_S,
    ClientGone,
    Conn,
    Play,
    Request,
    read_request,
    writer_closed,
)

# What a play takes is importable from here too, beside the server that hands it over.
__all__ = ["MAX_HOLD_S", "ClientGone", "Conn", "FaultServer", "Play", "Request"]


class FaultServer:
    """``with FaultServer(play) as srv: ... srv.url ...``"""

    def __init__(self, play: Play, *, host: str = "127.0.0.1", backlog: int = 1024) -> None:
        self.play = play
        self.host = host
        self.port = 0
        self._backlog = backlog
        self.requests: list[Request] = []
        self.disconnects: list[float] = []
        self.open_connections = 0
        self.peak_connections = 0
        self.connections_total = 0
        #: Requests being answered right now, and the most at once since it was last set to
        #: 0 (idle keep-alive connections are not counted: they answer nothing).
        self.active_plays = 0
        self.peak_plays = 0
        #: Exceptions raised by plays (a bug in a test's play should fail that test).
        self.play_errors: list[BaseException] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._cond = threading.Condition()
        self._conn_ids = itertools.count(1)
        self._stopping = False

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        loop = asyncio.new_event_loop()
        self._loop = loop
        started = threading.Event()
        failure: list[BaseException] = []

        async def boot() -> None:
            self._server = await asyncio.start_server(
                self._accepted, self.host, 0, backlog=self._backlog, reuse_address=True
            )
            self.port = self._server.sockets[0].getsockname()[1]

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(boot())
            except BaseException as exc:
                failure.append(exc)
                started.set()
                return
            started.set()
            try:
                loop.run_forever()
            finally:
                # Normally stop()'s shutdown has ended everything; if it ran out of time (a
                # loaded machine), what is left is ended here, before the loop closes: a
                # transport outliving its loop is an unclosed socket for the garbage collector
                # to find in some later test.
                pending = asyncio.all_tasks(loop)
                for t in pending:
                    t.cancel()
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(self._abort_all())
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name="fault-server", daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("fault server did not start in 10 s")
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        async def shutdown() -> None:
            self._stopping = True
            if self._server is not None:
                self._server.close()
            # A connection accepted just before the close is set up over the next loop turns;
            # _accepted() closes it then. Without these turns its socket would outlive the loop.
            for _ in range(5):
                await asyncio.sleep(0)
            for w in list(self._writers):
                w.close()
            for t in list(self._tasks):
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._abort_all()
            if self._server is not None:
                await self._server.wait_closed()

        if thread.is_alive():
            fut = asyncio.run_coroutine_threadsafe(shutdown(), loop)
            with contextlib.suppress(Exception):
                fut.result(10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
        elif not loop.is_closed():
            loop.close()
        self._loop = self._thread = None

    async def _abort_all(self) -> None:
        """End every connection still open. A close waits for the bytes still buffered to be
        sent, which never happens when the client has stopped reading: those are dropped."""
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()
        await asyncio.sleep(0)  # the aborts close their sockets on the next loop turn

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what tests read ----------------------------------------------------------------------

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until the server holds no connection at all."""
        return self._wait(lambda: self.open_connections == 0, timeout)

    def wait_disconnects(self, n: int, timeout: float = 5.0) -> bool:
        """Wait until ``n`` clients have hung up in the middle of a play."""
        return self._wait(lambda: len(self.disconnects) >= n, timeout)

    def wait_requests(self, n: int, timeout: float = 5.0) -> bool:
        return self._wait(lambda: len(self.requests) >= n, timeout)

    def _wait(self, ready: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not ready():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
            return True

    def _changed(self) -> None:
        with self._cond:
            self._cond.notify_all()

    # -- serving ------------------------------------------------------------------------------

    def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Called as each connection is made: the writer and its handler are registered at
        once, so stop() closes them even when the handler has not run a step yet."""
        if self._stopping:
            writer.close()
            return
        self._writers.add(writer)
        task = asyncio.get_running_loop().create_task(self._handle(reader, writer))
        self._tasks.add(task)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn_id = next(self._conn_ids)
        self.open_connections += 1
        self.connections_total += 1
        self.peak_connections = max(self.peak_connections, self.open_connections)
        self._changed()
        buf = bytearray()
        try:
            while not writer.is_closing():
                req = await read_request(reader, buf, conn_id)
                if req is None:
                    break
                req.index = len(self.requests)
                self.requests.append(req)
                self._changed()
                conn = Conn(self, writer, req)
                if not await self._serve(req, conn, reader, buf):
                    break
                if conn.close_after or conn.dropped or not conn.finished:
                    break
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass  # stop(): end quietly (asyncio logs handler tasks that end cancelled)
        finally:
            if not writer.is_closing():
                writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), 2)
            except (TimeoutError, asyncio.CancelledError):
                # Still sending what the client does not read: left listed, so that stop()
                # ends it (a slow reader may yet take the rest before then).
                pass
            except Exception:  # closed, by the error that ended it
                self._writers.discard(writer)
            else:
                self._writers.discard(writer)
            self._tasks.discard(task)
            self.open_connections -= 1
            self._changed()

    async def _serve(
        self, req: Request, conn: Conn, reader: asyncio.StreamReader, buf: bytearray
    ) -> bool:
        """Run the play while watching the socket; False when the connection is over."""
        play = asyncio.ensure_future(self._run_play(req, conn))
        watch = asyncio.ensure_future(reader.read(65536))
        try:
            done, _ = await asyncio.wait({play, watch}, return_when=asyncio.FIRST_COMPLETED)
            if watch in done:
                try:
                    data = watch.result()
                except (ConnectionError, OSError):
                    data = b""  # a reset (the client closed with our bytes unread)
                if not data:
                    # The client hung up while the answer was still being played.
                    if not play.done():
                        self.disconnects.append(time.monotonic())
                        self._changed()
                    play.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await play
                    return False
                buf += data  # an early next request: keep it
                await play
            else:
                watch.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    data = await watch
                    buf += data or b""
        finally:
            for t in (play, watch):
                if not t.done():
                    t.cancel()
        return not (conn.dropped or writer_closed(conn))

    async def _run_play(self, req: Request, conn: Conn) -> None:
        self.active_plays += 1
        self.peak_plays = max(self.peak_plays, self.active_plays)
        try:
            await self.play(req, conn)
        except ClientGone:
            self.disconnects.append(time.monotonic())
            self._changed()
            conn.dropped = True
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.play_errors.append(exc)
            conn.dropped = True
            conn.reset()
        finally:
            self.active_plays -= 1
