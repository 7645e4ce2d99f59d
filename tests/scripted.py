"""Providers over ``httpx.MockTransport`` that answer from a script of responses."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from llm_nb._wire.retry import RetryPolicy

#: Retries with waits short enough not to slow a test down.
FAST = RetryPolicy(max_retries=2, initial_delay_s=0.001, max_delay_s=0.002)


def provider(cls: type[Any], handler: Callable[[httpx.Request], httpx.Response], **kw: Any) -> Any:
    """A ``cls`` provider whose requests ``handler`` answers, retrying with :data:`FAST`."""
    return cls("127.0.0.1:9", transport=httpx.MockTransport(handler), retry=FAST, **kw)


def replies(
    *responses: httpx.Response,
) -> tuple[Callable[[httpx.Request], httpx.Response], list[float]]:
    """A handler answering with ``responses`` in turn, and the times it was called."""
    it: Iterator[httpx.Response] = iter(responses)
    times: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        times.append(time.monotonic())
        return next(it)

    return handler, times
