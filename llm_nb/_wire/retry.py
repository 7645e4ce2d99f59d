"""Retries: which replies are worth another try, how long to wait, and the sending loop.

The policy follows openai-python so users see the same behaviour as the official client:
retry on connect errors, timeouts, 408, 409, 429 and >= 500 (except 501); honour ``x-should-retry``,
``retry-after-ms`` and ``Retry-After`` (seconds or HTTP date, used when 0 < wait <= 120 s);
otherwise wait ``min(0.5 * 2**n, 8)`` seconds times a jitter of 0.75-1.0. A request is only
ever retried before any response body was handed out, so tokens are never delivered twice.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from .._errors import LLMError, QuotaExceededError

# 501 Not Implemented is permanent (llama-server without --embeddings answers it), so unlike
# openai-python we do not retry it.
RETRY_STATUSES = frozenset({408, 409, 429}) | (frozenset(range(500, 600)) - {501})
MAX_RETRY_AFTER_S = 120.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often a failed request is sent again, and how long to wait in between.

    Up to ``max_retries`` more tries; before retry ``n`` (from 0) the wait is the server's hint
    when it gives one within 120 s, else ``min(initial_delay_s * 2**n, max_delay_s)`` times a
    jitter of 0.75-1.0. ``RetryPolicy(0)`` never retries.
    """

    max_retries: int = 2
    initial_delay_s: float = 0.5
    max_delay_s: float = 8.0

    def delay(self, attempt: int, response: httpx.Response | None) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        hinted = retry_after_s(response.headers) if response is not None else None
        if hinted is not None and 0 < hinted <= MAX_RETRY_AFTER_S:
            return hinted
        base: float = min(self.initial_delay_s * 2.0**attempt, self.max_delay_s)
        return base * (1 - 0.25 * random.random())


def retry_after_s(headers: httpx.Headers) -> float | None:
    """The server's requested wait: ``retry-after-ms``, else ``Retry-After`` (s or date)."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return float(ms) / 1000
        except ValueError:
            pass  # fall back to Retry-After, as openai-python does
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        parsed = email.utils.parsedate_tz(value)
        if parsed is None:
            return None
        return float(email.utils.mktime_tz(parsed) - time.time())


def should_retry(response: httpx.Response) -> bool:
    override = response.headers.get("x-should-retry")
    if override == "true":
        return True
    if override == "false":
        return False
    return response.status_code in RETRY_STATUSES


ErrorMapper = Callable[[httpx.Response, bytes], LLMError]


async def send(
    client: httpx.AsyncClient,
    request: httpx.Request,
    *,
    policy: RetryPolicy,
    map_error: ErrorMapper,
    describe_connect_failure: Callable[[Exception], LLMError],
    on_retry: Callable[[int, float, str], Awaitable[None] | None] | None = None,
    stream: bool = True,
) -> httpx.Response:
    """Send with retries; return a response with a 2xx status, its body not yet read when
    ``stream`` is true. Errors come out as LLMError subclasses."""
    attempt = 0
    while True:
        response: httpx.Response | None = None
        try:
            response = await client.send(request, stream=True)
            if response.is_success and not stream:
                await _read_whole(response)
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            error: LLMError = describe_connect_failure(exc)
        else:
            if response.is_success:
                return response
            try:
                body = await response.aread()
            except httpx.HTTPError:
                body = b""
            finally:
                await response.aclose()
            error = map_error(response, body)
            # An account out of quota answers 429 like a rate limit, but no wait will help.
            if not should_retry(response) or isinstance(error, QuotaExceededError):
                raise error
        if attempt >= policy.max_retries:
            raise error
        delay = policy.delay(attempt, response)
        attempt += 1
        if on_retry is not None:
            maybe = on_retry(attempt, delay, str(error))
            if maybe is not None:
                await maybe
        await asyncio.sleep(delay)


async def _read_whole(response: httpx.Response) -> None:
    """Read the body; a read cut short (dropped, timed out, cancelled) still closes the
    response. httpx closes it only once the body is read to its end, and an unclosed one
    keeps its connection pool from ever closing, with that pool's idle sockets."""
    try:
        await response.aread()
    except BaseException:
        await response.aclose()
        raise
