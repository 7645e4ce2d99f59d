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
import queue
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import Future
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
    future = asyncio.run_coroutine_threadsafe(coro, get_loop())
    return _wait(future, timeout)


def _wait(future: Future[T], timeout: float | None) -> T:
    try:
        return future.result(timeout)
    except BaseException:
        # KeyboardInterrupt (Ctrl-C, kernel interrupt) or timeout: stop the work on the
        # loop thread too, and give it a moment to close its sockets.
        if not future.done():
            future.cancel()
            # The cleanup's own outcome is not the caller's error: theirs is re-raised below.
            with contextlib.suppress(BaseException):
                future.exception(CANCEL_GRACE_S)
        raise


_DONE = object()


def iterate_sync(aiter_factory: Any, maxsize: int = 0) -> Iterator[Any]:
    """Iterate an async iterator from sync code.

    A pump task on the loop thread pushes items into a thread-safe queue, so the consumer
    pays one queue hand-off per item rather than one cross-thread round trip. Closing the
    generator (or an interrupt while waiting) cancels the pump, which closes the source.
    """
    q: queue.Queue[Any] = queue.Queue(maxsize)

    async def pump() -> None:
        source: AsyncIterator[Any] = aiter_factory()
        try:
            async for item in source:
                q.put(item)
        except BaseException as exc:
            q.put(_Raised(exc))
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            aclose = getattr(source, "aclose", None)
            if aclose is not None:
                await aclose()
            q.put(_DONE)

    future = asyncio.run_coroutine_threadsafe(pump(), get_loop())
    try:
        while True:
            item = q.get()
            if item is _DONE:
                break
            if isinstance(item, _Raised):
                raise item.exc
            yield item
    finally:
        if not future.done():
            future.cancel()
            with contextlib.suppress(BaseException):
                future.exception(CANCEL_GRACE_S)


class _Raised:
    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc
