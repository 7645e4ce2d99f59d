"""A server that did not answer: a refused or broken connection, or a timeout that ran out,
as a typed error whose one line names the limit, its value and how to raise it."""

from __future__ import annotations

import httpx

from .._errors import APIConnectionError, APITimeoutError


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
