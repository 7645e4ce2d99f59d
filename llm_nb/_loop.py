"""The private event-loop thread behind the synchronous API.

Jupyter kernels already run an asyncio loop in the main thread, so ``asyncio.run`` cannot be
used inside a cell and patching the loop (nest_asyncio) is fragile. Instead llm_nb owns one
daemon thread with its own loop; sync callers submit coroutines to it and wait. Ctrl-C or a
kernel interrupt in the waiting thread cancels the coroutine on the loop thread and waits
briefly for it to close its connection, so nothing keeps streaming in the background.
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

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None

#: How long an interrupted caller waits for the coroutine's cleanup (closing the HTTP
#: response) before giving control back anyway.
CANCEL_GRACE_S = 2.0


def get_loop() -> asyncio.AbstractEventLoop:
    """The llm_nb loop, started on first use."""
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            threading.Thread(target=run, name="llm_nb-loop", daemon=True).start()
            ready.wait()
            _loop = loop
        return _loop


def in_loop_thread() -> bool:
    try:
        return asyncio.get_running_loop() is _loop
    except RuntimeError:
        return False


def run_sync(coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Run ``coro`` on the llm_nb loop and wait for its result from any thread."""
    if in_loop_thread():
        coro.close()
        raise RuntimeError("llm_nb's sync API was called from its own loop; use the async API")
    job = submit(coro)
    try:
        result: T = job.future.result(timeout)
        return result
    except BaseException:
        # KeyboardInterrupt (Ctrl-C, kernel interrupt) or timeout: stop the work on the
        # loop thread too, and give it a moment to close its sockets.
        job.cancel_and_wait()
        raise


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


def submit(coro: Coroutine[Any, Any, Any]) -> Job:
    """Schedule ``coro`` on the llm_nb loop in a copy of the caller's context, so context
    variables (the stats run id, the warm-up flag) follow the call to the loop thread."""
    loop = get_loop()
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


_DONE = object()


class SyncIterator:
    """Iterate an async iterator from sync code.

    A pump task on the loop thread pushes items into a thread-safe queue, so the consumer
    pays one queue hand-off per item rather than one cross-thread round trip. ``close()``
    may be called from any thread: it cancels the pump (which closes the source) and wakes a
    consumer blocked waiting. Iteration itself is a generator, so a loop left early, or an
    interrupt while waiting, closes it too.
    """

    def __init__(self, aiter_factory: Callable[[], AsyncIterator[Any]]) -> None:
        self._q: queue.Queue[Any] = queue.Queue()
        self._closed = False
        self._job = submit(self._pump(aiter_factory))
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


def iterate_sync(aiter_factory: Callable[[], AsyncIterator[Any]]) -> SyncIterator:
    return SyncIterator(aiter_factory)


class _Raised:
    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc
