"""Retries (llm_nb/_wire/retry.py): which replies are tried again, how long each wait is, and
what a caller sees when the retries run out.

Three levels: the rules on their own; a provider over a scripted ``httpx.MockTransport``; and
every wire over real loopback sockets (the fault server), where the waits are measured and no
connection may be left open.
"""

from __future__ import annotations

import email.utils
import time

import httpx
import pytest

import llm_nb
from llm_nb._errors import (
    ContextLengthError,
    QuotaExceededError,
    RateLimitError,
    ServiceUnavailableError,
)
from llm_nb._session import Session
from llm_nb._wire.retry import RetryPolicy, retry_after_s, should_retry
from llm_nb.providers import LlamaCppProvider, OpenAIProvider
from tests.faults import OPENAI, WIRES, Conn, FaultServer, Request, Wire, plays
from tests.faults.checks import assert_released, attempt, only_row
from tests.scripted import provider, replies

pytestmark = pytest.mark.timeout(90)

FULL = "".join(plays.TOKENS)

wires = pytest.mark.parametrize("wire", WIRES, ids=lambda w: w.name)


# -- the rules -----------------------------------------------------------------------------


def test_the_server_hint_in_either_header() -> None:
    assert retry_after_s(httpx.Headers({"retry-after-ms": "250"})) == 0.25
    assert retry_after_s(httpx.Headers({"retry-after": "3"})) == 3.0
    # retry-after-ms wins; a bad one falls back to Retry-After, as openai-python does.
    assert retry_after_s(httpx.Headers({"retry-after-ms": "40", "retry-after": "3"})) == 0.04
    assert retry_after_s(httpx.Headers({"retry-after-ms": "soon", "retry-after": "3"})) == 3.0
    assert retry_after_s(httpx.Headers({"retry-after": "soon"})) is None
    assert retry_after_s(httpx.Headers()) is None
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    hinted = retry_after_s(httpx.Headers({"retry-after": when}))
    assert hinted is not None and 28 <= hinted <= 30


@pytest.mark.parametrize(
    ("status", "headers", "retried"),
    [
        (408, {}, True),
        (409, {}, True),
        (429, {}, True),
        (500, {}, True),
        (503, {}, True),
        (599, {}, True),
        (501, {}, False),  # llama-server without --embeddings: permanent
        (400, {}, False),
        (401, {}, False),
        (404, {}, False),
        (500, {"x-should-retry": "false"}, False),
        (400, {"x-should-retry": "true"}, True),
    ],
)
def test_which_replies_are_retried(status: int, headers: dict[str, str], retried: bool) -> None:
    assert should_retry(httpx.Response(status, headers=headers)) is retried


def test_backoff_doubles_up_to_its_cap_with_jitter() -> None:
    policy = RetryPolicy(initial_delay_s=0.5, max_delay_s=8.0)
    for attempt_no, base in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (7, 8.0)]:
        waits = [policy.delay(attempt_no, None) for _ in range(200)]
        assert all(0.75 * base <= w <= base for w in waits), (attempt_no, min(waits), max(waits))
        assert max(waits) - min(waits) > 0.1 * base  # jittered, not one fixed wait


def test_a_hint_is_used_only_between_0_and_120_s() -> None:
    policy = RetryPolicy(initial_delay_s=0.5)

    def hinted(value: str) -> httpx.Response:
        return httpx.Response(429, headers={"retry-after": value})

    assert policy.delay(0, hinted("7")) == 7.0
    assert policy.delay(0, hinted("120")) == 120.0
    for outside in ("121", "0", "-5"):
        assert 0.375 <= policy.delay(0, hinted(outside)) <= 0.5  # the backoff instead


# -- a provider over a scripted transport ------------------------------------------------------


async def test_retry_after_ms_and_retry_after_are_honoured() -> None:
    ok = httpx.Response(
        200,
        json={
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "yes"},
                    "finish_reason": "stop",
                }
            ],
        },
    )
    handler, times = replies(
        httpx.Response(429, headers={"retry-after-ms": "150"}, json={"error": {"message": "slow"}}),
        httpx.Response(
            503,
            headers={"retry-after": "0.2"},
            json={"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}},
        ),
        ok,
    )
    p = provider(LlamaCppProvider, handler)
    r = await p.chat("m", "hi")
    assert r.text == "yes" and r.trace.retries == 2
    assert times[1] - times[0] >= 0.14 and times[2] - times[1] >= 0.19


async def test_retries_exhausted_raise_typed_error() -> None:
    handler, times = replies(*[httpx.Response(429, json={"error": {"message": "quota"}})] * 3)
    p = provider(OpenAIProvider, handler, api_key="k")
    with pytest.raises(RateLimitError, match="quota"):
        await p.chat("m", "hi")
    assert len(times) == 3  # first try + 2 retries


async def test_no_retry_on_400_and_context_error_type() -> None:
    handler, times = replies(
        httpx.Response(
            400,
            json={
                "error": {
                    "code": 400,
                    "message": "request (5000 tokens) exceeds the available context size",
                    "type": "exceed_context_size_error",
                    "n_prompt_tokens": 5000,
                    "n_ctx": 2048,
                }
            },
        )
    )
    p = provider(LlamaCppProvider, handler)
    with pytest.raises(ContextLengthError):
        await p.chat("m", "hi")
    assert len(times) == 1


async def test_x_should_retry_false_wins() -> None:
    handler, times = replies(httpx.Response(500, headers={"x-should-retry": "false"}))
    with pytest.raises(llm_nb.ServerError):
        await provider(OpenAIProvider, handler).chat("m", "hi")
    assert len(times) == 1


async def test_service_unavailable_is_typed_after_retries() -> None:
    handler, times = replies(
        *[
            httpx.Response(
                503,
                json={
                    "error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}
                },
            )
        ]
        * 3
    )
    with pytest.raises(ServiceUnavailableError, match="Loading model"):
        await provider(LlamaCppProvider, handler).chat("m", "hi")
    assert len(times) == 3


async def test_out_of_quota_is_not_retried_but_a_rate_limit_is() -> None:
    quota = {"error": {"message": "You exceeded your current quota", "type": "insufficient_quota",
                       "code": "insufficient_quota"}}  # fmt: skip
    handler, times = replies(*[httpx.Response(429, json=quota)] * 3)
    with pytest.raises(QuotaExceededError):
        await provider(OpenAIProvider, handler).chat("m", "hi")
    assert len(times) == 1

    limit = {"error": {"message": "Rate limit reached", "code": "rate_limit_exceeded"}}
    handler, times = replies(*[httpx.Response(429, json=limit)] * 3)
    with pytest.raises(RateLimitError) as info:
        await provider(OpenAIProvider, handler).chat("m", "hi")
    assert type(info.value) is RateLimitError and len(times) == 3


# -- every wire, over real sockets ---------------------------------------------------------


def rate_limited(wire: Wire) -> bytes:
    if wire.name == "ollama":
        return wire.error_body(429, "too many requests")
    return wire.error_body(429, "Rate limit reached for requests", "requests")


@wires
@pytest.mark.parametrize(
    ("header", "value", "wait_s"),
    [("retry-after", "1", 1.0), ("retry-after-ms", "250", 0.25)],
    ids=["retry-after", "retry-after-ms"],
)
async def test_429_retry_after_is_honoured_then_success(
    wire: Wire, header: str, value: str, wait_s: float, session: Session
) -> None:
    rec = session.recorder
    # Without the hint the first backoff would be 2.25-3 s: a wait near the hint proves it
    # was used.
    policy = RetryPolicy(max_retries=2, initial_delay_s=3.0)
    play = plays.statuses_then(wire, [(429, {header: value}, rate_limited(wire))])
    with FaultServer(play) as srv:
        p = wire.provider(srv.url, retry=policy)
        err, s = await attempt(p)
        assert err is None, err
        assert s.response.text == FULL and s.response.status == "ok"
        assert s.response.trace.retries == 1
        first, second = srv.requests
        waited = second.at - first.at
        assert wait_s - 0.02 <= waited < wait_s + 0.9, waited
        row = only_row(rec)
        assert row["status"] == "ok" and rec.text(row["call_id"]) == FULL
        # The 429 body was read, so its connection could be reused for the retry.
        await assert_released(srv, p, pooled_ok=True)


@pytest.mark.usefixtures("session")
async def test_429_retry_after_http_date() -> None:

    async def play(req: Request, conn: Conn) -> None:
        if req.index == 0:
            # An HTTP date has whole seconds: "now + 2 s" means a wait of 1-2 s from now.
            when = email.utils.formatdate(time.time() + 2, usegmt=True)
            await conn.respond(429, rate_limited(OPENAI), {"retry-after": when})
        else:
            await plays.answer(OPENAI)(req, conn)

    with FaultServer(play) as srv:
        p = OPENAI.provider(srv.url, retry=RetryPolicy(max_retries=1, initial_delay_s=4.0))
        err, s = await attempt(p)
        assert err is None and s.response.text == FULL
        waited = srv.requests[1].at - srv.requests[0].at
        assert 0.9 <= waited < 2.9, waited
        await assert_released(srv, p, pooled_ok=True)


@wires
async def test_429_retries_exhausted(wire: Wire, session: Session) -> None:
    rec = session.recorder
    hint = (429, {"retry-after-ms": "20"}, rate_limited(wire))
    with FaultServer(plays.statuses_then(wire, [hint] * 5)) as srv:
        p = wire.provider(srv.url, retry=RetryPolicy(max_retries=2))
        err, s = await attempt(p)
        assert isinstance(err, RateLimitError) and err.status_code == 429
        assert err.retry_after_s == pytest.approx(0.02)
        assert len(srv.requests) == 3 and s.response.trace.retries == 2
        assert err.partial is None and s.response.text == ""
        row = only_row(rec)
        assert (row["status"], row["error_type"]) == ("error", "RateLimitError")
        await assert_released(srv, p, pooled_ok=True)


def loading(wire: Wire) -> tuple[int, dict[str, str], bytes]:
    if wire.name == "ollama":
        body = wire.error_body(503, "server busy, please try again.  maximum pending requests")
    else:
        body = wire.error_body(503, "Loading model", "unavailable_error")
    return (503, {}, body)


@wires
async def test_503_loading_model_then_ready(wire: Wire, session: Session) -> None:
    rec = session.recorder
    with FaultServer(plays.statuses_then(wire, [loading(wire)] * 2)) as srv:
        p = wire.provider(srv.url, retry=RetryPolicy(max_retries=2, initial_delay_s=0.05))
        err, s = await attempt(p)
        assert err is None, err
        assert s.response.text == FULL and s.response.trace.retries == 2
        assert len(srv.requests) == 3
        row = only_row(rec)
        assert row["status"] == "ok" and row["completion_tokens"] == len(plays.TOKENS)
        await assert_released(srv, p, pooled_ok=True)


@wires
async def test_503_loading_forever_is_service_unavailable(wire: Wire, session: Session) -> None:
    rec = session.recorder
    with FaultServer(plays.statuses_then(wire, [loading(wire)] * 9)) as srv:
        p = wire.provider(srv.url, retry=RetryPolicy(max_retries=2, initial_delay_s=0.01))
        err, s = await attempt(p)
        assert isinstance(err, ServiceUnavailableError) and err.status_code == 503
        assert ("Loading model" if wire.name != "ollama" else "server busy") in str(err)
        assert len(srv.requests) == 3 and s.response.status == "error"
        row = only_row(rec)
        assert (row["status"], row["error_type"]) == ("error", "ServiceUnavailableError")
        await assert_released(srv, p, pooled_ok=True)
