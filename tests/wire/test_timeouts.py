"""Timeouts are public settings, and a timeout error says which limit ran out and its value.

Three limits, each settable per call, per provider and (the first two) for ``%%llm``:
``timeout`` for the wait until the server starts answering (model loading and prompt
processing happen there, so it is long by default), ``read_timeout`` for the longest
silence once the answer streams (short by default: a stalled server fails within a minute),
``connect_timeout`` for the connection. Checked on the loopback fault server, so the
silences are real socket silences.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx
import pytest
from IPython.core.interactiveshell import InteractiveShell

import llm_nb
from llm_nb import APITimeoutError, LlamaCppProvider
from llm_nb._present._calls import Call
from llm_nb._present._display import RichView
from llm_nb._present._render import waiting_bundle
from llm_nb._present._runner import run_calls
from llm_nb._session import Session
from llm_nb._stats import Recorder
from llm_nb._wire.http import (
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_READ_TIMEOUT_S,
    DEFAULT_TIMEOUT_S,
)
from llm_nb._wire.retry import RetryPolicy
from tests.faults import LLAMACPP, OPENAI, Conn, FaultServer, Request, plays

pytestmark = pytest.mark.timeout(90)

NO_RETRY = RetryPolicy(max_retries=0)


@pytest.fixture(autouse=True)
def rec(session: Session) -> Recorder:
    """Record in memory, in a session of the test's own that sends no requests for server
    facts."""
    return session.recorder


FULL = "".join(plays.TOKENS)


def slow_start(delay_s: float) -> Any:
    """Silent for ``delay_s`` before the headers (a model loading, a long prompt being read),
    then the whole answer at once, as llama-server sends it."""
    answer = plays.answer(LLAMACPP)

    async def play(req: Request, conn: Conn) -> None:
        await conn.hold(delay_s)
        await answer(req, conn)

    return play


def provider(url: str, **kw: Any) -> LlamaCppProvider:
    return LlamaCppProvider(url, retry=NO_RETRY, **kw)


def test_defaults_suit_a_notebook() -> None:
    p = LlamaCppProvider("127.0.0.1:9")
    assert (p.http.first_read_s, p.http.read_s, p.http.connect_s) == (
        DEFAULT_TIMEOUT_S,
        DEFAULT_READ_TIMEOUT_S,
        DEFAULT_CONNECT_TIMEOUT_S,
    )
    # A stalled stream fails within a minute; the first answer may take minutes to start.
    assert DEFAULT_READ_TIMEOUT_S <= 60 < DEFAULT_TIMEOUT_S
    q = LlamaCppProvider("127.0.0.1:9", timeout=30, read_timeout=5, connect_timeout=1)
    assert (q.http.first_read_s, q.http.read_s, q.http.connect_s) == (30.0, 5.0, 1.0)


async def test_a_slow_start_is_allowed_by_timeout_not_cut_by_read_timeout() -> None:
    with FaultServer(slow_start(0.8)) as srv:
        p = provider(srv.url, timeout=5, read_timeout=0.3)
        t0 = time.monotonic()
        r = await p.stream("m", "hi").collect()
        assert r.text == FULL and r.status == "ok"
        assert time.monotonic() - t0 >= 0.8  # longer than read_timeout, and still fine
        await p.aclose()
        assert srv.wait_idle()


@pytest.mark.parametrize("where", ["call", "provider"])
async def test_a_stall_mid_answer_is_read_timeout_with_its_value(where: str) -> None:
    with FaultServer(plays.then_fault(LLAMACPP, 3, "stall")) as srv:
        limits = {"timeout": 30, "read_timeout": 0.4}
        p = provider(srv.url, **(limits if where == "provider" else {}))
        s = p.stream("m", "hi", **(limits if where == "call" else {}))
        t0 = time.monotonic()
        with pytest.raises(APITimeoutError) as info:
            await s.collect()
        elapsed = time.monotonic() - t0
        assert 0.4 <= elapsed < 5, elapsed
        text = str(info.value)
        assert "\n" not in text and "for 0.4 s (read_timeout" in text, text
        assert "raise it with read_timeout=" in text and srv.url.split("://")[1] in text
        assert info.value.partial is not None and info.value.partial.text == "".join(
            plays.TOKENS[:3]
        )
        assert s.response.status == "timeout"
        await p.aclose()
        assert srv.wait_idle()


@pytest.mark.parametrize("where", ["call", "provider"])
async def test_a_silent_server_is_timeout_with_its_value(where: str) -> None:
    with FaultServer(plays.slow_headers(10)) as srv:
        limits = {"timeout": 0.5, "read_timeout": 30}
        p = provider(srv.url, **(limits if where == "provider" else {}))
        t0 = time.monotonic()
        with pytest.raises(APITimeoutError) as info:
            await p.chat("m", "hi", **(limits if where == "call" else {}))
        assert 0.5 <= time.monotonic() - t0 < 5
        text = str(info.value)
        assert "\n" not in text and "for 0.5 s (timeout)" in text, text
        assert "raise it with timeout=" in text
        await p.aclose()
        assert srv.wait_idle(12)


def test_the_call_setting_beats_the_provider_setting() -> None:
    with FaultServer(slow_start(0.6)) as srv:
        p = provider(srv.url, timeout=0.2)
        s = llm_nb.sync(p)
        with pytest.raises(APITimeoutError, match=r"for 0\.2 s \(timeout\)"):
            s.chat("m", "hi")
        assert s.chat("m", "hi", timeout=5).text == FULL
        s.close()
        assert srv.wait_idle()


def test_top_level_functions_take_the_timeouts() -> None:
    with FaultServer(plays.then_fault(OPENAI, 3, "stall")) as srv:
        model = f"openai:m@{srv.url.split('://')[1]}"
        t0 = time.monotonic()
        with pytest.raises(APITimeoutError, match=r"for 0\.3 s \(read_timeout"):
            llm_nb.stream(model, "hi", read_timeout=0.3).collect()
        assert time.monotonic() - t0 < 5
        assert srv.wait_idle()


def test_a_connect_timeout_names_connect_timeout() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout("timed out", request=request)

    p = LlamaCppProvider(
        "127.0.0.1:9", transport=httpx.MockTransport(refuse), retry=NO_RETRY, connect_timeout=1.5
    )
    with pytest.raises(APITimeoutError) as info:
        llm_nb.sync(p).chat("m", "hi")
    assert "for 1.5 s (connect_timeout)" in str(info.value)
    assert "raise it with connect_timeout=" in str(info.value)


def test_waiting_bundle_says_how_long_after_a_moment() -> None:
    assert waiting_bundle(0.5) == {"text/plain": "waiting for the first token…"}
    assert waiting_bundle(5.2) == {"text/plain": "waiting for the first token… 5 s"}


class Recording:
    """A display handle that keeps every bundle shown."""

    def __init__(self) -> None:
        self.shown: list[dict[str, Any]] = []

    def __call__(self, bundle: dict[str, Any], **kw: Any) -> Recording:
        self.shown.append(bundle)
        return self

    def update(self, bundle: dict[str, Any], **kw: Any) -> None:
        self.shown.append(bundle)


def test_the_live_output_shows_the_wait_before_the_first_token() -> None:
    with FaultServer(slow_start(3.2)) as srv:
        p = provider(srv.url)
        display = Recording()
        calls = [Call("slow", p.stream("m", "hi"))]
        assert run_calls(calls, RichView("text", display=display), 0.05) is False
        plains = [b.get("text/plain", "") for b in display.shown]
        waits = [t for t in plains if t.startswith("waiting for the first token…")]
        assert "waiting for the first token… 2 s" in waits
        assert "waiting for the first token… 3 s" in waits
        assert plains[-1] == FULL and calls[0].error is None
        llm_nb.sync(p).close()
        assert srv.wait_idle()


def test_llm_magics_timeout_traits(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    with FaultServer(plays.then_fault(LLAMACPP, 3, "stall")) as srv:
        host = srv.url.split("://")[1]
        shell.run_line_magic("config", "LLMMagics.read_timeout = 0.3")
        try:
            t0 = time.monotonic()
            result = shell.run_cell(f"%%llm llamacpp:m@{host}\nHi")
            assert time.monotonic() - t0 < 10
        finally:
            shell.run_line_magic("config", "LLMMagics.read_timeout = None")
        lines = [ln for ln in capsys.readouterr().out.splitlines() if "read_timeout" in ln]
        assert result.error_in_exec is not None
        assert len(lines) == 1 and "for 0.3 s (read_timeout" in lines[0], lines
        assert srv.wait_idle()
    # %config reports a refused value in the log and keeps the old one.
    shell.run_line_magic("config", "LLMMagics.timeout = 120")
    magics = shell.magics_manager.registry["LLMMagics"]
    with caplog.at_level(logging.ERROR):
        shell.run_line_magic("config", "LLMMagics.timeout = -1")
    assert "LLMMagics.timeout must be a positive number of seconds" in caplog.text
    assert magics.timeout == 120
    shell.run_line_magic("config", "LLMMagics.timeout = None")
