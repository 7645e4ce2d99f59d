"""Providers over ``httpx.MockTransport`` that answer from a script of responses."""

from __future__ import annotations

import asyncio
import json
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


class Closing(httpx.AsyncByteStream):
    """A response body that records whether the client closed it."""

    def __init__(self, parts: list[bytes], delay: float = 0.0) -> None:
        self.parts = parts
        self.delay = delay
        self.closed = False

    async def __aiter__(self) -> Any:
        for p in self.parts:
            if self.delay:
                await asyncio.sleep(self.delay)
            yield p

    async def aclose(self) -> None:
        self.closed = True


def sse(*objs: Any, done: bool = True) -> list[bytes]:
    out = [f"data: {json.dumps(o)}\n\n".encode() for o in objs]
    return [*out, b"data: [DONE]\n\n"] if done else out


def chunk(content: str | None = None, finish: str | None = None, **delta: Any) -> dict[str, Any]:
    d: dict[str, Any] = dict(delta)
    if content is not None:
        d["content"] = content
    return {"model": "m", "choices": [{"index": 0, "delta": d, "finish_reason": finish}]}


def ndjson(*objs: Any) -> list[bytes]:
    return [json.dumps(o).encode() + b"\n" for o in objs]
