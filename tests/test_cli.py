"""``python -m llm_nb``: its help, the status line while the local server starts, and the
figures line, after an interrupt too. Fault servers stand in for models (no real server)."""

from __future__ import annotations

import io
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from llm_nb import __main__ as cli
from llm_nb._registry import LOCAL_URL_ENV
from llm_nb._session import Session
from llm_nb._types import ChatResponse
from tests.faults import client_sockets, plays
from tests.faults.server import FaultServer
from tests.faults.wires import LLAMACPP, OPENAI


def test_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    commands = out.split("commands:", 1)[1]
    assert [name for name, _ in cli.COMMANDS] == ["notebook"]
    for name, _ in cli.COMMANDS:
        assert re.search(rf"^  {name} ", commands, re.M), out
    assert "notebook" in out.split("\n\n", 1)[0]  # in the usage lines too
    # Each one listed is dispatched: its own parser answers its --help.
    with pytest.raises(SystemExit):
        cli.main(["notebook", "--help"])
    assert "usage: python -m llm_nb notebook" in capsys.readouterr().out


def test_interrupted_answer_still_prints_its_figures(
    ctrl_c: None, capsys: pytest.CaptureFixture[str]
) -> None:
    tokens = [f"t{i} " for i in range(40)]
    with FaultServer(plays.answer(OPENAI, tokens, delay_s=0.1)) as srv:
        host = srv.url.split("://", 1)[1]
        # Ctrl-C once a few tokens are out: SIGINT to this process, as a terminal sends it.
        timer = threading.Timer(0.8, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        try:
            assert cli.main(["-m", f"openai:m@{host}", "hi"]) == 130
        finally:
            timer.cancel()
    out, err = capsys.readouterr()
    got = out.split()
    assert 0 < len(got) < len(tokens) and got == [t.strip() for t in tokens[: len(got)]]
    lines = err.strip().splitlines()
    assert lines[-2] == "[interrupted]"
    figures = lines[-1]
    assert figures.startswith(f"[openai:m@{host} · TTFT ") and " tokens/s · " in figures
    # The server sent no usage for a cut answer: the count is of the chunks that came.
    assert f" · {len(got)} chunks · interrupted]" in figures, figures


class InterruptedTerminal(io.StringIO):
    """stdout on which Ctrl-C lands while the third token is being written, once the whole
    answer so far (``ready()``) has reached the record, ahead of the screen."""

    def __init__(self, ready: Callable[[], bool]) -> None:
        super().__init__()
        self.ready = ready
        self.tokens = 0

    def write(self, text: str) -> int:
        if text.strip():
            self.tokens += 1
            if self.tokens == 3:
                deadline = time.monotonic() + 10
                while not self.ready():
                    assert time.monotonic() < deadline, "the answer never reached the record"
                    time.sleep(0.01)
                raise KeyboardInterrupt
        return super().write(text)


def test_interrupt_while_printing_shows_what_had_arrived(
    session: Session, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Tokens that arrived before the interrupt but were not printed yet are printed after
    it: the screen holds the answer that the figures line counts and the record keeps."""
    tokens = [f"t{i} " for i in range(10)]
    records: list[ChatResponse] = []
    session.observers.add(Watch(records))
    term = InterruptedTerminal(lambda: bool(records) and records[0].text == "".join(tokens))
    monkeypatch.setattr(sys, "stdout", term)
    with FaultServer(plays.then_fault(OPENAI, len(tokens), "stall", tokens)) as srv:
        host = srv.url.split("://", 1)[1]
        assert cli.main(["-m", f"openai:m@{host}", "hi"]) == 130
    assert term.getvalue().split() == [t.strip() for t in tokens]
    assert records[0].status == "cancelled"
    figures = capsys.readouterr().err.strip().splitlines()[-1]
    assert figures.endswith(f" · {len(tokens)} chunks · interrupted]"), figures


class Watch:
    """A call observer that keeps each call's record."""

    def __init__(self, records: list[ChatResponse]) -> None:
        self.records = records

    def call_started(self, record: ChatResponse) -> None:
        self.records.append(record)

    def call_finished(self, record: ChatResponse) -> None:
        pass


@pytest.fixture
def local_server(session: Session) -> Iterator[str]:
    """``local`` answered by a fault server that takes over a second to "start", in the
    test's own session."""
    old_env = os.environ.pop(LOCAL_URL_ENV, None)
    with FaultServer(plays.answer(LLAMACPP, ["fine"])) as srv:
        started: list[float] = []

        def factory() -> str:
            if not started:
                time.sleep(1.2)
                started.append(time.monotonic())
            return srv.url

        session.registry.local_server_factory = factory
        try:
            yield srv.url
        finally:
            if old_env is not None:
                os.environ[LOCAL_URL_ENV] = old_env


def test_local_server_start_is_shown(
    local_server: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LLM_NB_SERVER", "prebuilt")
    assert cli.main(["hi"]) == 0
    out, err = capsys.readouterr()
    assert out == "fine\n"
    lines = err.splitlines()
    # Not a terminal (pytest's capture): a line before, and the time taken after, no redraws.
    assert lines[0] == "llm_nb: starting the local server… (prebuilt llama.cpp)"
    # The time taken: the factory's 1.2 s at least (a loaded machine may add any amount).
    took = re.fullmatch(r"llm_nb: local server ready \((\d+\.\d) s\)", lines[1])
    assert took and float(took[1]) >= 1.2, lines
    assert "\r" not in err and "\x1b" not in err
    assert lines[2].startswith("[llamacpp:")


def test_no_status_for_a_remote_model(capsys: pytest.CaptureFixture[str]) -> None:
    with FaultServer(plays.answer(OPENAI, ["ok"])) as srv:
        assert cli.main(["-m", f"openai:m@{srv.url.split('://', 1)[1]}", "hi"]) == 0
    assert "starting" not in capsys.readouterr().err


@pytest.mark.parametrize("interrupt", [False, True], ids=["answered", "interrupted"])
def test_the_command_closes_its_connections(
    interrupt: bool,
    session: Session,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """main() may run inside a longer process (a test, a script): the connection it opened
    is closed when it returns, not left pooled in the session's registry."""
    tokens = [f"t{i} " for i in range(4)]
    if interrupt:
        monkeypatch.setattr(sys, "stdout", InterruptedTerminal(lambda: True))
    play = plays.then_fault(OPENAI, 4, "stall", tokens) if interrupt else plays.answer(OPENAI)
    with FaultServer(play) as srv:
        host = srv.url.split("://", 1)[1]
        assert cli.main(["-m", f"openai:m@{host}", "hi"]) == (130 if interrupt else 0)
        assert srv.wait_requests(1)
        deadline = time.monotonic() + 5
        while client_sockets(srv.port):
            assert time.monotonic() < deadline, client_sockets(srv.port)
            time.sleep(0.01)


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_status_on_a_terminal_counts_seconds_and_clears() -> None:
    term = FakeTerminal()
    with cli.Status("starting the local server…", "local server ready", term) as status:
        status.line("model: fetching\x1b]0;title\x07 50%")  # the work's own progress
        time.sleep(1.6)
    text = term.getvalue()
    assert text.startswith("\r\x1b[Kllm_nb: starting the local server…")
    assert "\r\x1b[Kmodel: fetching 50%\n" in text  # its own line, escape sequences gone
    # The elapsed seconds, redrawn (1 or 2 after 1.6 s, as the ticks fall on a loaded machine).
    assert re.search(r"\r\x1b\[Kllm_nb: starting the local server… [1-9]\d* s", text), repr(text)
    # Cleared when done, then one line with the time taken: the 1.6 s waited, at least.
    took = re.search(r"\r\x1b\[Kllm_nb: local server ready \((\d+\.\d) s\)\n$", text)
    assert took and float(took[1]) >= 1.6, repr(text)


def test_status_on_a_terminal_keeps_its_line_when_the_wait_fails() -> None:
    term = FakeTerminal()
    with pytest.raises(KeyboardInterrupt), cli.Status("starting…", "ready", term):
        raise KeyboardInterrupt
    assert term.getvalue() == "\r\x1b[Kllm_nb: starting…\n"


def test_interrupt_while_the_local_server_starts(
    session: Session, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def factory() -> str:
        raise KeyboardInterrupt

    monkeypatch.delenv(LOCAL_URL_ENV, raising=False)
    session.registry.local_server_factory = factory
    assert cli.main(["hi"]) == 130
    out, err = capsys.readouterr()
    assert out == ""
    # No answer began, so no figures and no blank line; no "ready" line either.
    assert err.splitlines()[1:] == ["[interrupted]"], err
