"""One httpx configuration for every provider, retries, and connection failures as exceptions.

Which exception an error reply is decided in :mod:`.errors`.

Retry policy follows openai-python so users see the same behaviour as the official client:
retry on connect errors, timeouts, 408, 409, 429 and >= 500 (except 501); honour ``x-should-retry``,
``retry-after-ms`` and ``Retry-After`` (seconds or HTTP date, used when 0 < wait <= 120 s);
otherwise wait ``min(0.5 * 2**n, 8)`` seconds times a jitter of 0.75-1.0. A request is only
ever retried before any response body was handed out, so tokens are never delivered twice.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import re
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from .._errors import (
    APIConnectionError,
    APITimeoutError,
    LLMError,
    QuotaExceededError,
)
from .pool import use_lean_pool

# 501 Not Implemented is permanent (llama-server without --embeddings answers it), so unlike
# openai-python we do not retry it.
RETRY_STATUSES = frozenset({408, 409, 429}) | (frozenset(range(500, 600)) - {501})
MAX_RETRY_AFTER_S = 120.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
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


@dataclass(frozen=True, slots=True)
class HTTPConfig:
    """Timeouts and pool limits. ``read_s`` bounds the wait for each chunk, not the whole
    answer, so long generations are fine while a stalled server still fails."""

    connect_s: float = 5.0
    read_s: float = 300.0
    write_s: float = 30.0
    pool_s: float = 30.0
    max_connections: int = 256

    def timeout(self) -> httpx.Timeout:
        return httpx.Timeout(
            connect=self.connect_s, read=self.read_s, write=self.write_s, pool=self.pool_s
        )


def make_client(
    base_url: str,
    headers: dict[str, str],
    config: HTTPConfig,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    if transport is None:
        # Nagle's algorithm can hold small request writes back by tens of milliseconds,
        # which would show up as fake time-to-first-token.
        transport = httpx.AsyncHTTPTransport(
            retries=0,
            limits=httpx.Limits(
                max_connections=config.max_connections,
                max_keepalive_connections=min(64, config.max_connections),
            ),
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )
        use_lean_pool(transport)
    return httpx.AsyncClient(
        base_url=base_url,
        headers=headers,
        timeout=config.timeout(),
        transport=transport,
        trust_env=False,
    )


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
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            error: LLMError = describe_connect_failure(exc)
        else:
            if response.is_success:
                if not stream:
                    await response.aread()
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


# Servers echo keys back in errors (OpenAI: "Incorrect API key provided: sk-abc*****1234"),
# masked or not; either way part of a secret.
_KEYLIKE = re.compile(r"\b(?:sk|pk|rk|key|tok|token|bearer)[-_][A-Za-z0-9_\-*.]{6,}", re.I)


def clean_message(message: str, secret: str | None = None) -> str:
    """One line, with the configured key and anything shaped like a key removed."""
    if secret:
        message = message.replace(secret, "[redacted]")
    return " ".join(redact_keylike(message).split())


def redact_keylike(text: str) -> str:
    """``text`` with anything shaped like an API key replaced by ``[redacted]``."""
    return _KEYLIKE.sub("[redacted]", text)


def connect_error(exc: Exception, *, provider: str, url: str, hint: str) -> APIConnectionError:
    if isinstance(exc, httpx.TimeoutException):
        kind = type(exc).__name__.replace("Timeout", " timeout").lower()
        return APITimeoutError(
            f"{provider} at {url} did not answer in time ({kind}); it may be overloaded or "
            "still loading: retry, or raise the timeout",
            provider=provider,
            url=url,
        )
    return APIConnectionError(
        f"no {provider} answers at {url} ({type(exc).__name__}); {hint}",
        provider=provider,
        url=url,
    )
