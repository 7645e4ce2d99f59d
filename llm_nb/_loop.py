"""The private event-loop thread behind the synchronous API.

Jupyter kernels already run an asyncio loop in the main thread, so ``asyncio.run`` cannot be
used inside a cell and patching the loop (nest_asyncio) is fragile. Instead each llm_nb
session owns a daemon thread with its own loop (:class:`LoopThread`); sync callers submit
coroutines to it and wait. Ctrl-C or a kernel interrupt in the waiting thread cancels the
coroutine on the loop thread and waits briefly for it to close its connection, so nothing
keeps streaming in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import queue
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import Future, InvalidStateError
from typing import Any, TypeVar

T = TypeVar("T")

#: How long an interrupted caller waits for the coroutine's cleanup (closing the HTTP
#: response) before giving control back anyway.
CANCEL_GRACE_S = 2.0


class LoopThread:
    """One daemon thread running an asyncio loop, started on first use; a session owns one.

    ``run_sync`` and ``iterate`` give sync callers the loop's coroutines and async
    iterators; ``submit`` schedules a coroutine without waiting; ``close`` stops the thread
    after cancelling what still runs on it.
    """

    def __init__(self, name: str = "llm_nb-loop") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"LoopThread({self._name!r}, {'running' if self.started else 'idle'})"

    def get_loop(self) -> asyncio.AbstractEventLoop:
        """The loop, its thread started on first use."""
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                thread = threading.Thread(target=run, name=self._name, daemon=True)
                thread.start()
                ready.wait()
                self._loop, self._thread = loop, thread
            return self._loop

    @property
    def started(self) -> bool:
        """Whether the thread runs (it starts on first use)."""
        loop = self._loop
        return loop is not None and not loop.is_closed()

    def in_loop_thread(self) -> bool:
        """Whether the caller runs on this loop."""
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    def run_sync(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on this loop and wait for its result from any thread."""
        if self.in_loop_thread():
            coro.close()
            raise RuntimeError("llm_nb's sync API was called from its own loop; use the async API")
        job = self.submit(coro)
        try:
            result: T = job.future.result(timeout)
            return result
        except BaseException:
            # KeyboardInterrupt (Ctrl-C, kernel interrupt) or timeout: stop the work on the
            # loop thread too, and give it a moment to close its sockets.
            job.cancel_and_wait()
            raise

    def submit(self, coro: Coroutine[Any, Any, Any]) -> Job:
        """Schedule ``coro`` on this loop in a copy of the caller's context, so context
        variables (the stats run id, the warm-up flag) follow the call to the loop thread."""
        loop = self.get_loop()
        ctx = contextvars.copy_context()
        job = Job()

        def start() -> None:
            if job.future.cancelled():
                coro.close()
                job.finished.set()
                return
            task = loop.create_task(coro, context=ctx)

            def done(t: asyncio.Task[Any]) -> None:
                # The caller may have cancelled the Future meanwhile, from its own thread.
                with contextlib.suppress(InvalidStateError):
                    if t.cancelled():
                        job.future.cancel()
                    elif (exc := t.exception()) is not None:
                        job.future.set_exception(exc)
                    else:
                        job.future.set_result(t.result())
                job.finished.set()

            task.add_done_callback(done)
            job.future.add_done_callback(
                lambda f: loop.call_soon_threadsafe(task.cancel) if f.cancelled() else None
            )

        loop.call_soon_threadsafe(start)
        return job

    def iterate(self, aiter_factory: Callable[[], AsyncIterator[Any]]) -> SyncIterator:
        """Iterate, from sync code, the async iterator ``aiter_factory()`` run on this loop."""
        return SyncIterator(aiter_factory, self)

    def close(self, timeout: float = CANCEL_GRACE_S) -> None:
        """Cancel what still runs on the loop, then stop its thread. A later use starts a
        new one."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or loop.is_closed() or thread is None:
            return
        if thread is threading.current_thread():
            raise RuntimeError("an llm_nb loop cannot be closed from its own thread")

        async def cancel_all() -> None:
            me = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not me]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await loop.shutdown_asyncgens()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(cancel_all(), loop).result(timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        if not thread.is_alive():
            loop.close()


class Job:
    """A coroutine running on the llm_nb loop: its result, and when it really finished."""

    __slots__ = ("finished", "future")

    def __init__(self) -> None:
        self.future: Future[Any] = Future()
        #: Set once the task has run its ``finally`` blocks, whatever the outcome.
        self.finished = threading.Event()

    def cancel_and_wait(self, grace_s: float = CANCEL_GRACE_S) -> None:
        self.future.cancel()
        self.finished.wait(grace_s)


_DONE = object()


class SyncIterator:
    """Iterate an async iterator from sync code.

    A pump task on the loop thread pushes items into a thread-safe queue, so the consumer
    pays one queue hand-off per item rather than one cross-thread round trip. ``close()``
    may be called from any thread: it cancels the pump (which closes the source) and wakes a
    consumer blocked waiting. Iteration itself is a generator, so a loop left early, or an
    interrupt while waiting, closes it too.
    """

    def __init__(
        self, aiter_factory: Callable[[], AsyncIterator[Any]], loop_thread: LoopThread
    ) -> None:
        self._q: queue.Queue[Any] = queue.Queue()
        self._closed = False
        self._job = loop_thread.submit(self._pump(aiter_factory))
        self._items = self._consume()

    def __iter__(self) -> Iterator[Any]:
        return self._items

    def __next__(self) -> Any:
        return next(self._items)

    async def _pump(self, aiter_factory: Callable[[], AsyncIterator[Any]]) -> None:
        source = aiter_factory()
        try:
            async for item in source:
                self._q.put(item)
        except BaseException as exc:
            self._q.put(_Raised(exc))
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            aclose = getattr(source, "aclose", None)
            if aclose is not None:
                await aclose()
            self._q.put(_DONE)

    def _consume(self) -> Iterator[Any]:
        try:
            while True:
                item = self._q.get()
                if item is _DONE or self._closed:
                    return
                if isinstance(item, _Raised):
                    raise item.exc
                yield item
        finally:
            self.close()

    def close(self) -> None:
        """Stop the source and release a waiting consumer; safe from any thread."""
        self._closed = True
        if not self._job.finished.is_set():
            self._job.cancel_and_wait()
        self._q.put(_DONE)


class _Raised:
    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc
