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
import dataclasses
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
from .transport import RenewingTransport

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


#: The longest wait for a server to start answering. Loading a model and reading a long
#: prompt both happen before the first byte on llama-server and Ollama, and on a CPU that
#: takes minutes (thousands of prompt tokens at tens of tokens per second), so this is the
#: generous one; %%llm shows how long it has been waiting meanwhile.
DEFAULT_TIMEOUT_S = 600.0
#: The longest silence once an answer streams. A working server sends a token every few
#: hundred milliseconds even on a CPU; a minute without one means it is stuck.
DEFAULT_READ_TIMEOUT_S = 60.0
DEFAULT_CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class HTTPConfig:
    """Timeouts and pool limits, in seconds.

    ``start_s`` bounds the wait for the response to begin (the headers: llama-server and
    Ollama send them with the first token, after loading the model and reading the prompt);
    ``read_s`` bounds each wait for more of the body after that, not the whole answer, so
    long generations are fine while a stalled server still fails within a minute. ``None``
    for ``start_s`` means the same as ``read_s``.
    """

    connect_s: float = DEFAULT_CONNECT_TIMEOUT_S
    read_s: float = DEFAULT_READ_TIMEOUT_S
    write_s: float = 30.0
    pool_s: float = 30.0
    max_connections: int = 256
    start_s: float | None = DEFAULT_TIMEOUT_S

    def timeout(self) -> httpx.Timeout:
        return httpx.Timeout(
            connect=self.connect_s, read=self.read_s, write=self.write_s, pool=self.pool_s
        )

    def with_limits(
        self,
        timeout: float | None = None,
        read_timeout: float | None = None,
        connect_timeout: float | None = None,
    ) -> HTTPConfig:
        """A copy with the public settings applied (None keeps the current value)."""
        return dataclasses.replace(
            self,
            start_s=self.start_s if timeout is None else timeout,
            read_s=self.read_s if read_timeout is None else read_timeout,
            connect_s=self.connect_s if connect_timeout is None else connect_timeout,
        )

    @property
    def first_read_s(self) -> float:
        return self.read_s if self.start_s is None else self.start_s

    def phases(self) -> tuple[dict[str, float], dict[str, float]]:
        """httpx ``timeout`` extensions: one for sending and waiting for the response to
        start, one for reading its body (only the read limit differs)."""
        start = {
            "connect": self.connect_s,
            "read": self.first_read_s,
            "write": self.write_s,
            "pool": self.pool_s,
        }
        return start, {**start, "read": self.read_s}


def make_client(
    base_url: str,
    headers: dict[str, str],
    config: HTTPConfig,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    if transport is None:
        limits = httpx.Limits(
            max_connections=config.max_connections,
            max_keepalive_connections=min(64, config.max_connections),
        )
        transport = RenewingTransport(
            lambda: httpx.AsyncHTTPTransport(
                retries=0,
                limits=limits,
                # Nagle's algorithm can hold small request writes back by tens of
                # milliseconds, which would show up as fake time-to-first-token.
                socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
            )
        )
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
        return APITimeoutError(timeout_message(exc, provider, url), provider=provider, url=url)
    return APIConnectionError(
        f"no {provider} answers at {url} ({type(exc).__name__}); {hint}",
        provider=provider,
        url=url,
    )


#: httpx's timeout kinds: (the public setting that bounds it, what ran out, what to do).
_TIMEOUTS: dict[type[httpx.TimeoutException], tuple[str, str, str]] = {
    httpx.ConnectTimeout: (
        "connect", "connect_timeout", "no connection could be made; is the host reachable?"
    ),
    httpx.ReadTimeout: (
        "read", "timeout", "no response began (the read timeout before the answer starts); "
        "it may be loading a model or reading a long prompt"
    ),
    httpx.WriteTimeout: ("write", "", "the request could not be sent"),
    httpx.PoolTimeout: ("pool", "", "every connection to it stayed busy"),
}  # fmt: skip
_HOW_TO_RAISE = "per call, on the provider, or %config LLMMagics.{0} in a notebook"


def timeout_limit(exc: httpx.TimeoutException, kind: str) -> float | None:
    """The limit, in seconds, that ``exc`` ran out of (from its request's settings)."""
    try:
        limits = exc.request.extensions.get("timeout") or {}
    except RuntimeError:  # raised without a request
        return None
    value = limits.get(kind)
    return float(value) if isinstance(value, int | float) else None


def timeout_message(exc: httpx.TimeoutException, provider: str, url: str) -> str:
    """One line saying which limit ran out, its value, and how to raise it."""
    kind, setting, what = _TIMEOUTS.get(type(exc), ("read", "timeout", "no response"))
    limit = timeout_limit(exc, kind)
    waited = f"{limit:g} s" if limit is not None else "too long"
    text = f"{provider} at {url} did not answer in time: {what}, for {waited}"
    if setting:
        text += f" ({setting}); raise it with {setting}=... {_HOW_TO_RAISE.format(setting)}"
    return text


def stall_message(exc: httpx.TimeoutException, provider: str, url: str, chars: int) -> str:
    """A stream that went silent mid-answer: the read_timeout ran out."""
    limit = timeout_limit(exc, "read")
    waited = f"{limit:g} s" if limit is not None else "longer than the read timeout"
    return (
        f"no data from {provider} at {url} for {waited} (read_timeout, the read timeout while "
        f"an answer streams) after {chars} characters; the partial answer is kept; raise it "
        f"with read_timeout=... {_HOW_TO_RAISE.format('read_timeout')}"
    )
