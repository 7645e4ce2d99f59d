"""The magics in a real in-process InteractiveShell, against the real llama-server.

A bare InteractiveShell has no kernel, so answers are printed (the terminal path); the live
rich display is exercised here through ``RichView`` with a recording ``display`` and, for
real, through a kernel in test_kernel.py.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

import llm_nb
from llm_nb._embedded.process.server import free_port
from llm_nb._magics import LLMMagics
from llm_nb._magics._args import parse_cell_args
from llm_nb._magics._errors import MagicError, StreamInterrupted
from llm_nb._magics._template import fill
from llm_nb._present._calls import Call
from llm_nb._present._display import RichView
from llm_nb._present._render import Column, answer_bundle, columns_bundle, extract_code
from llm_nb._present._runner import run_calls
from llm_nb._safe_html import markdown_html
from llm_nb._session import default_session, registry, run_sync
from llm_nb._types import ChatResponse
from tests.contract import OllamaContractServer
from tests.faults import LLAMACPP, Conn, FaultServer, Request, client_sockets, plays

LONG = {"ignore_eos": True}  # llama-server: keep generating up to max_tokens


@pytest.fixture
def model(llama_server: Any) -> str:
    return f"llamacpp:smollm2@{llama_server.url.split('://')[1]}"


def run(shell: InteractiveShell, code: str) -> Any:
    """Run a cell as the user would: errors are shown, not raised."""
    return shell.run_cell(code)


class Started:
    """Collects the records of calls as they start (an llm_nb call observer)."""

    def __init__(self) -> None:
        self.records: list[ChatResponse] = []

    def call_started(self, record: ChatResponse) -> None:
        self.records.append(record)

    def call_finished(self, record: ChatResponse) -> None:
        pass


@pytest.fixture
def started() -> Iterator[Started]:
    obs = Started()
    observers = default_session().observers
    observers.add(obs)
    yield obs
    observers.remove(obs)


# -- loading ----------------------------------------------------------------------------------


def test_load_ext_is_fast_and_imports_nothing_heavy() -> None:
    code = (
        "import sys, time, json\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "sh = InteractiveShell.instance()\n"
        "t = time.perf_counter()\n"
        "sh.run_line_magic('load_ext', 'llm_nb')\n"
        "dt = time.perf_counter() - t\n"
        "heavy = [m for m in ('pandas', 'httpx', 'ipywidgets', 'numpy') if m in sys.modules]\n"
        "print(json.dumps({'s': dt, 'heavy': heavy, 'magics': sorted(\n"
        "    sh.magics_manager.magics['cell']) + sorted(sh.magics_manager.magics['line'])}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    facts = json.loads(out.stdout.strip().splitlines()[-1])
    assert facts["heavy"] == []
    assert {"llm", "llm_models", "llm_stats"} <= set(facts["magics"])
    assert facts["s"] < 0.5, f"%load_ext llm_nb took {facts['s']:.3f} s"


def test_extension_entry_points_are_lazy_names() -> None:
    assert "load_ipython_extension" in llm_nb.__all__
    assert callable(llm_nb.load_ipython_extension)
    assert callable(llm_nb.unload_ipython_extension)


def test_unload_and_reload(shell: InteractiveShell) -> None:
    shell.run_line_magic("unload_ext", "llm_nb")
    assert "llm" not in shell.magics_manager.magics["cell"]
    assert not any(isinstance(c, LLMMagics) for c in shell.configurables)
    shell.run_line_magic("load_ext", "llm_nb")
    assert "llm" in shell.magics_manager.magics["cell"]
    assert sum(isinstance(c, LLMMagics) for c in shell.configurables) == 1


def magics(shell: InteractiveShell) -> LLMMagics:
    found = shell.magics_manager.registry["LLMMagics"]
    assert isinstance(found, LLMMagics)
    return found


def test_config_sets_traits_and_aliases(shell: InteractiveShell, model: str) -> None:
    m = magics(shell)
    saved = {name: getattr(m, name) for name in ("throttle_s", "default_format", "default_model")}
    shell.run_line_magic("config", "LLMMagics.throttle_s = 0.25")
    shell.run_line_magic("config", "LLMMagics.default_format = 'text'")
    shell.run_line_magic("config", f"LLMMagics.aliases = {{'tiny': '{model}'}}")
    try:
        assert m.throttle_s == 0.25 and m.default_format == "text"
        assert registry().aliases["tiny"] == model
        shell.run_line_magic("config", "LLMMagics.default_model = 'tiny'")
        shell.run_cell_magic("llm", "-n 3 -o r", "Hi")
        r = shell.user_ns["r"]
        assert r.status == "ok" and r.model_id == model
        shell.run_line_magic("config", "LLMMagics.aliases = {}")
        assert "tiny" not in registry().aliases
    finally:
        for name, value in saved.items():
            setattr(m, name, value)
        m.aliases = {}


# -- options, templates, rendering ------------------------------------------------------------


def test_parse_options() -> None:
    a = parse_cell_args(
        "m1 -t 0.5 -n 12 --stop x m2 --stop 'y z' -x '{\"top_k\": 3}' -f code -o out -c notes"
    )
    assert a.models == ("m1", "m2") and a.temperature == 0.5 and a.max_tokens == 12
    assert a.stop == ("x", "y z") and a.extra == {"top_k": 3} and a.format == "code"
    assert a.out == "out" and a.chat == "notes" and a.stream
    assert a.chat_options("json") == {
        "temperature": 0.5,
        "max_tokens": 12,
        "stop": ("x", "y z"),
        "extra": {"top_k": 3},
        "response_format": "json",
    }
    assert not parse_cell_args("--no-stream").stream


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("-t hot", "invalid float value"),
        ("--bogus", "unrecognized arguments: --bogus"),
        ("-x '{bad'", "not valid JSON"),
        ("-x '[1]'", "must be a JSON object"),
        ("-f pdf", "invalid choice"),
        ("-o 2x", "not a valid variable name"),
        ("-s 'unclosed", "cannot split"),
    ],
)
def test_bad_options_are_one_usage_line(line: str, says: str) -> None:
    with pytest.raises(UsageError, match=says) as err:
        parse_cell_args(line)
    assert "\n" not in str(err.value)


def test_bad_option_in_a_cell_shows_one_line(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run(shell, "%%llm -t hot\nHi")
    out, err = capsys.readouterr()
    text = out + err
    assert isinstance(result.error_in_exec, UsageError)
    assert "invalid float value" in text
    assert "Traceback" not in text and "SystemExit" not in text


def test_help_prints_usage(shell: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    shell.run_line_magic("llm", "--help")
    out = capsys.readouterr().out
    assert out.startswith("usage: %%llm") and "--max-tokens" in out and "{{" in out


def test_fill_from_namespace() -> None:
    ns = {"x": 3, "d": {"k": "v"}, "Out": {2: "two"}}
    assert fill("a {x} {x:03d} {d[k]} {Out[2]} {{lit}}", ns) == "a 3 003 v two {lit}"
    with pytest.raises(MagicError, match=r"\{nope\} in the cell is not a notebook variable"):
        fill("hi {nope}", ns)
    with pytest.raises(MagicError, match="literal braces"):
        fill("json: {'a': 1}", ns)
    with pytest.raises(MagicError, match="no variable name"):
        fill("empty {}", ns)
    with pytest.raises(MagicError, match="literal braces"):
        fill("unbalanced }", ns)


def test_render_formats() -> None:
    # Markdown is rendered (and sanitized) here: a live text/markdown output would be trusted.
    assert answer_bundle("**hi**", "markdown") == {
        "text/html": "<p><strong>hi</strong></p>\n",
        "text/plain": "**hi**",
    }
    md = answer_bundle("part", "markdown", note="interrupted")
    assert md["text/html"].endswith("<p><strong>[interrupted]</strong></p>")
    assert md["text/plain"] == "part\n[interrupted]"
    assert extract_code("Here:\n```python\nx = 1\n```\nbye") == ("python", "x = 1")
    assert extract_code("```py\nx = 1\nstill streaming") == ("py", "x = 1\nstill streaming")
    code = answer_bundle("```python\nprint('<b>```')\n```", "code")
    assert code["text/html"].startswith("<pre><code>") and "&lt;b&gt;" in code["text/html"]
    assert "<b>" not in code["text/html"]
    assert code["text/plain"] == "print('<b>```')"
    assert answer_bundle('```json\n{"a": [1]}\n```', "json")["application/json"] == {"a": [1]}
    assert answer_bundle('{"a": ', "json") == {"text/plain": '{"a": '}
    assert answer_bundle("<b>x</b>", "html")["text/html"] == "<b>x</b>"
    assert answer_bundle("x", "text") == {"text/plain": "x"}
    cols = columns_bundle(
        [Column("m1", "<a>", "ttft 1 s"), Column("m2", "b", "f", "error")], "text"
    )
    assert "&lt;a&gt;" in cols["text/html"] and cols["text/html"].count("flex:1") == 2
    assert cols["text/plain"].startswith("── m1 ──\n<a>\n(ttft 1 s)")


# -- errors -----------------------------------------------------------------------------------


def test_unknown_provider_is_one_line(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run(shell, "%%llm nope\nHi")
    out = capsys.readouterr().out
    assert isinstance(result.error_in_exec, MagicError)
    assert out.strip().splitlines() == [
        "\x1b[31mllm_nb: model id 'nope' must start with a provider: openai:, llamacpp:, "
        "ollama: or local (e.g. ollama:llama3.2:1b@127.0.0.1:11434)\x1b[0m"
    ]


def test_server_not_running_says_how_to_start(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run(shell, f"%%llm llamacpp:x@127.0.0.1:{free_port()}\nHi")
    lines = capsys.readouterr().out.strip().splitlines()
    assert isinstance(result.error_in_exec, MagicError)
    assert len(lines) == 1 and "no llama-server answers" in lines[0]
    assert "start one with" in lines[0]


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ("-n -5", "max_tokens must be a positive whole number"),
        ("-t 7", "temperature must be between 0 and 2"),
    ],
)
def test_bad_values_are_one_line_before_anything_is_sent(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str], options: str, says: str
) -> None:
    # The port has no server: a value error must come first, without a request.
    result = run(shell, f"%%llm llamacpp:x@127.0.0.1:{free_port()} {options}\nHi")
    lines = capsys.readouterr().out.strip().splitlines()
    assert result.error_in_exec is not None
    assert len(lines) == 1 and says in lines[0], lines


def test_empty_cell_and_chat_with_two_models_are_usage_errors(shell: InteractiveShell) -> None:
    with pytest.raises(UsageError, match="no prompt"):
        shell.run_cell_magic("llm", "", "  \n")
    with pytest.raises(UsageError, match="one model"):
        shell.run_cell_magic("llm", "-c x a b", "Hi")


# -- against the real server ------------------------------------------------------------------


def test_streams_the_answer_and_fills_names(
    shell: InteractiveShell, model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    shell.user_ns["animal"] = "cat"
    shell.run_cell_magic("llm", f"{model} -n 16 -t 0 -o r", "Name a {animal} in {{one}} word.")
    r = shell.user_ns["r"]
    out = capsys.readouterr().out
    assert r.status == "ok" and r.text.strip() and out == r.text + "\n"
    # The server saw the filled prompt: same prompt size as sending it directly.
    direct = llm_nb.chat(model, "Name a cat in {one} word.", max_tokens=1)
    assert r.usage.prompt_tokens == direct.usage.prompt_tokens
    assert r.stream and len(r.trace.token_times_ns) >= 1


def test_no_stream(shell: InteractiveShell, model: str) -> None:
    shell.run_cell_magic("llm", f"{model} -n 8 --no-stream -o r", "Hi")
    r = shell.user_ns["r"]
    assert r.status == "ok" and not r.stream and r.text


def test_side_by_side_runs_concurrently(
    shell: InteractiveShell, model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    shell.run_cell_magic(
        "llm", f"{model} {model} {model} -n 40 -o rs -x '{json.dumps(LONG)}'", "Hi"
    )
    rs = shell.user_ns["rs"]
    out = capsys.readouterr().out
    assert [r.status for r in rs] == ["ok"] * 3
    # Concurrent: every call was sent before any other finished.
    assert max(r.trace.t_send_ns for r in rs) < min(r.trace.t_end_ns for r in rs)
    # So the three took about the slowest one's time, not the sum.
    span = max(r.trace.t_end_ns for r in rs) - min(r.trace.t_send_ns for r in rs)
    e2e = [r.trace.t_end_ns - r.trace.t_send_ns for r in rs]
    assert span < 0.75 * sum(e2e), (span, e2e)
    # The same model three times: three numbered columns, each with its figures.
    for n in (1, 2, 3):
        assert out.count(f"── {model} #{n} ──") == 1
    assert out.count(" tokens/s · ") == 3
    for r in rs:
        assert r.text in out
    # The stats table follows, one row per call of this run, labelled as its column.
    lines = out.splitlines()
    table = lines[next(i for i, line in enumerate(lines) if "TTFT (s)" in line) :]
    assert "tokens/s" in table[0] and table[0].startswith("model ")
    assert [line.split()[0:2] for line in table[1:]] == [[model, f"#{n}"] for n in (1, 2, 3)]
    assert len({r.run_id for r in rs}) == 1 and rs[0].run_id in set(llm_nb.stats()["run_id"])


def test_named_conversation_keeps_history(shell: InteractiveShell, model: str) -> None:
    shell.run_cell_magic("llm", f"{model} -c t1 --reset -n 8 -o a", "My name is Ada.")
    shell.run_cell_magic("llm", f"{model} -c t1 -n 8 -o b", "What is my name?")
    fresh = llm_nb.chat(model, "What is my name?", max_tokens=1)
    a, b = shell.user_ns["a"], shell.user_ns["b"]
    assert b.usage.prompt_tokens > fresh.usage.prompt_tokens + a.usage.completion_tokens
    shell.run_line_magic("llm", "-c t1 --reset")
    shell.run_cell_magic("llm", f"{model} -c t1 -n 1 -o c", "What is my name?")
    assert shell.user_ns["c"].usage.prompt_tokens == fresh.usage.prompt_tokens


def test_rich_view_is_throttled_and_ends_with_the_answer(model: str) -> None:
    frames: list[tuple[float, dict[str, Any]]] = []

    class Handle:
        def update(self, bundle: dict[str, Any], raw: bool) -> None:
            frames.append((time.perf_counter(), bundle))

    def display(bundle: dict[str, Any], raw: bool, display_id: bool) -> Handle:
        assert raw and display_id
        return Handle()

    p, name = llm_nb.provider(model)
    # Greedy: a sampled token may be half a UTF-8 character, which the server sends with the
    # next one, and the count below would be one short.
    call = Call(
        model,
        p.stream(name, "Count to a thousand.", max_tokens=200, temperature=0, extra=LONG),
    )
    view = RichView("markdown", display=display)
    t0 = time.perf_counter()
    assert run_calls([call], view, throttle_s=0.3) is False
    wall = time.perf_counter() - t0
    record = call.record
    assert record.status == "ok" and len(record.trace.token_times_ns) == 200
    assert len(frames) == view.updates <= wall / 0.3 + 2
    # The final frame may follow the last live one at once; live frames are spaced.
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(frames[:-1])]
    assert all(g >= 0.29 for g in gaps), gaps
    # And they do happen while tokens stream: at least a quarter of what the throttle allows
    # (or of the tokens, when they come slower than that); the display also skips frames that
    # would cost over a quarter of the time, which a loaded machine's slow renders trigger.
    times = record.trace.token_times_ns
    allowed = min((times[-1] - times[0]) / 1e9 / 0.3, len(times) - 1)
    assert len(frames) - 1 >= allowed / 4, (len(frames), allowed)
    last = frames[-1][1]
    assert last["text/plain"] == record.text
    answer, footer = last["text/html"].split('<div class="llm-nb-footer"')
    assert answer == markdown_html(record.text) and "cut at 200 tokens (-n)" in footer


class Frames:
    """A recording ``display`` for RichView: every frame it was sent, with its time."""

    def __init__(self) -> None:
        self.frames: list[tuple[float, dict[str, Any]]] = []

    def display(self, bundle: dict[str, Any], raw: bool, display_id: bool) -> Frames:
        assert raw and display_id
        return self

    def update(self, bundle: dict[str, Any], raw: bool) -> None:
        self.frames.append((time.perf_counter(), bundle))


#: A stream of 100 tokens, one every 25 ms: about 2.5 s on the wire.
TICKS = [f"t{i} " for i in range(100)]


@pytest.mark.usefixtures("session")
def test_live_display_redraws_at_most_and_at_least_once_per_throttle() -> None:
    """What a notebook cell shows while a multi-second answer streams (fault server, no
    llama-server): live redraws spaced by throttle_s (not one per token), yet they do
    happen all along, and the last frame holds the whole answer."""
    throttle = 0.25
    with FaultServer(plays.answer(LLAMACPP, TICKS, delay_s=0.025)) as srv:
        p = LLAMACPP.provider(srv.url)
        try:
            call = Call("llamacpp:m", p.stream("m", "Count."))
            out = Frames()
            view = RichView("markdown", display=out.display)
            t0 = time.perf_counter()
            assert run_calls([call], view, throttle_s=throttle) is False
            wall = time.perf_counter() - t0
        finally:
            run_sync(p.aclose())
    record = call.record
    assert record.status == "ok" and record.text == "".join(TICKS)
    trace = record.trace
    streamed = (trace.token_times_ns[-1] - trace.token_times_ns[0]) / 1e9
    assert streamed > 4 * throttle, streamed  # long enough to need live redraws
    live, final = out.frames[:-1], out.frames[-1]
    assert len(out.frames) == view.updates
    # At most one live redraw per throttle_s (plus the final frame)...
    assert len(live) <= wall / throttle + 1, (len(live), wall)
    # The pump asks for frames throttle_s apart; each is drawn when this thread takes it up,
    # a little late on a loaded machine, so one gap can shrink by what the previous one grew.
    # Without the throttle the gaps would be the tokens' 25 ms.
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(live)]
    assert min(gaps) >= throttle / 2 and statistics.median(gaps) >= throttle * 0.95, gaps
    # ...and at least a quarter of what the throttle allows over the stream (tokens come
    # faster than that here; slow renders on a loaded machine skip some): the answer grows.
    allowed = min(streamed / throttle, len(trace.token_times_ns) - 1)
    assert len(live) >= allowed / 4, (len(live), allowed)
    assert all(b["text/plain"] for _, b in live)  # text, not the waiting marker
    assert final[1]["text/plain"] == record.text


def test_a_frame_drawn_during_a_pause_is_throttled_too() -> None:
    """A pause in the answer (longer than the silence check) asks for a frame with no new
    token; the drawing thread, busy or slow, draws it late, holding the tokens that came in
    the meantime. The frame asked for by those tokens must still wait ``throttle_s``."""
    throttle = 0.3
    draw_s = 0.2  # each frame is taken up this late (a busy kernel thread)
    # Bursts of tokens after pauses longer than the silence check, of lengths that put a
    # burst's start at every phase of the silent frame's late draw.
    pauses = [0.3, 0.4, 0.5, 0.6, 0.7]
    tokens = [f"t{i} " for i in range(8 * len(pauses))]

    async def play(req: Request, conn: Conn) -> None:
        await conn.head(200, plays.stream_head(LLAMACPP))
        for i, t in enumerate(tokens):
            if i % 8 == 0:
                await asyncio.sleep(pauses[i // 8])
            await conn.send(LLAMACPP.token(t))
            await asyncio.sleep(0.04)
        await conn.send(LLAMACPP.finish(len(tokens)))
        await conn.end()

    shown: list[tuple[float, str]] = []

    class SlowView:
        def start(self, calls: object) -> None:
            pass

        def update(self, calls: list[Call], *, final: bool) -> None:
            time.sleep(draw_s)
            text = calls[0].record.text
            if final or not shown or text != shown[-1][1]:  # an unchanged frame is skipped
                shown.append((time.perf_counter(), text))

    with FaultServer(play) as srv:
        p = LLAMACPP.provider(srv.url)
        try:
            call = Call("llamacpp:m", p.stream("m", "Count."))
            assert run_calls([call], SlowView(), throttle_s=throttle) is False
        finally:
            run_sync(p.aclose())
    assert call.record.text == "".join(tokens)
    live = shown[:-1]
    assert len(live) >= 3, live  # the answer grew on screen
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(live)]
    # a frame is recorded at the end of its draw, the next one starts throttle_s after that
    assert min(gaps) >= throttle + draw_s * 0.9, gaps


@pytest.mark.usefixtures("session")
def test_interrupt_keeps_the_partial_answer_on_screen(ctrl_c: None) -> None:
    """Ctrl-C (or the kernel's interrupt) mid-answer: the cell's last frame still shows what
    had arrived, marked interrupted, and the connection is closed (fault server)."""
    main = threading.get_ident()
    with FaultServer(plays.answer(LLAMACPP, TICKS, delay_s=0.05)) as srv:
        p = LLAMACPP.provider(srv.url)
        try:
            call = Call("llamacpp:m", p.stream("m", "Count."))

            def interrupt_when_streaming() -> None:
                deadline = time.monotonic() + 10
                while len(call.record.trace.token_times_ns) < 5:
                    if time.monotonic() > deadline:
                        return
                    time.sleep(0.01)
                signal.pthread_kill(main, signal.SIGINT)

            threading.Thread(target=interrupt_when_streaming, daemon=True).start()
            out = Frames()
            assert run_calls([call], RichView("markdown", display=out.display), 0.1) is True
            # Within the 5 s play: a connection left open would let it end, not hang up.
            assert srv.wait_disconnects(1, 4), "the connection was left open"
        finally:
            run_sync(p.aclose())
        assert srv.wait_idle(5) and client_sockets(srv.port) == []
    record = call.record
    assert record.status == "cancelled" and call.interrupted
    assert 5 <= len(record.trace.token_times_ns) < len(TICKS)
    assert record.text == "".join(TICKS[: len(record.trace.token_times_ns)])
    final = out.frames[-1][1]["text/plain"]
    assert final == record.text + "\n[interrupted]"


def test_interrupt_keeps_partial_and_records_cancelled(
    shell: InteractiveShell,
    model: str,
    llama_server: Any,
    started: Started,
    capsys: pytest.CaptureFixture[str],
    ctrl_c: None,
) -> None:
    main = threading.get_ident()

    def interrupt_when_streaming() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if started.records and len(started.records[-1].trace.token_times_ns) >= 5:
                signal.pthread_kill(main, signal.SIGINT)
                return
            time.sleep(0.01)

    threading.Thread(target=interrupt_when_streaming, daemon=True).start()
    t0 = time.perf_counter()
    result = run(shell, f"%%llm {model} -n 2000 -o r -x '{json.dumps(LONG)}'\nTell a long story.")
    stopped_in = time.perf_counter() - t0
    out = capsys.readouterr().out
    r = shell.user_ns["r"]
    assert isinstance(result.error_in_exec, StreamInterrupted)
    assert r.status == "cancelled" and r.text and r is started.records[-1]
    n = len(r.trace.token_times_ns)
    assert 5 <= n < 2000 and stopped_in < 20
    assert out == f"{r.text}\n[interrupted]\n\x1b[31mllm_nb: interrupted after {n} tokens\x1b[0m\n"
    # The connection was closed: the server stops generating.
    slots = httpx.get(f"{llama_server.url}/slots").json()
    deadline = time.monotonic() + 3
    while any(s["is_processing"] for s in slots) and time.monotonic() < deadline:
        time.sleep(0.1)
        slots = httpx.get(f"{llama_server.url}/slots").json()
    assert not any(s["is_processing"] for s in slots)
    # And the shell goes on.
    shell.run_cell_magic("llm", f"{model} -n 2 -o r2", "Hi")
    assert shell.user_ns["r2"].status == "ok"


# -- %llm_models / %llm_stats -----------------------------------------------------------------


def test_models_table_lists_the_server(shell: InteractiveShell, model: str) -> None:
    llm_nb.provider(model)  # in the registry, as after any call
    frame = shell.run_line_magic("llm_models", "")
    assert list(frame.columns) == [
        "provider", "host", "model", "status", "size", "quantization", "context",
    ]  # fmt: skip
    host = model.split("@")[1]
    row = frame[(frame["host"] == host)].iloc[0]
    assert row["provider"] == "llamacpp" and row["model"] == "smollm2"
    assert row["status"] == "loaded" and row["quantization"] and row["size"].endswith("MB")
    assert row["context"] > 0


def test_models_load_unload_on_a_router(
    shell: InteractiveShell, llama_router: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    host = llama_router.url.split("://")[1]
    shell.run_line_magic("llm_models", f"load llamacpp:smollm2-a@{host}")
    frame = shell.run_line_magic("llm_models", "")
    mine = frame[frame["host"] == host].set_index("model")["status"]
    assert mine["smollm2-a"] == "loaded" and mine["smollm2-b"] == "unloaded"
    shell.run_line_magic("llm_models", f"unload llamacpp:smollm2-a@{host}")
    out = capsys.readouterr().out
    assert f"llm_nb: loaded llamacpp:smollm2-a@{host}" in out
    assert f"llm_nb: unloaded llamacpp:smollm2-a@{host}" in out
    result = run(shell, f"%%llm llamacpp:nope@{host} -n 2\nHi")
    line = capsys.readouterr().out.strip()
    assert isinstance(result.error_in_exec, MagicError) and "\n" not in line
    assert "model 'nope' not found" in line and "smollm2-a" in line and "smollm2-b" in line


def test_models_pull_and_delete_on_ollama(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    with OllamaContractServer(None) as server:
        host = server.url.split("://")[1]
        registry().get("ollama", host)
        shell.run_line_magic("llm_models", f"pull ollama:tinyllama@{host}")
        lines = capsys.readouterr().out.splitlines()
        assert lines[0] == f"ollama:tinyllama@{host}: pulling manifest"
        assert any(line.endswith("100%") for line in lines)
        assert lines[-1] == f"llm_nb: pulled ollama:tinyllama@{host}"
        frame = shell.run_line_magic("llm_models", "refresh")
        assert "tinyllama:latest" in set(frame[frame["host"] == host]["model"])
        shell.run_line_magic("llm_models", f"delete ollama:tinyllama:latest@{host}")
        frame = shell.run_line_magic("llm_models", "")
        assert "tinyllama:latest" not in set(frame[frame["host"] == host]["model"])
        result = run(shell, f"%llm_models pull ollama:nope:1b@{host}")
        assert isinstance(result.error_in_exec, MagicError)
        assert "file does not exist" in capsys.readouterr().out
        with pytest.raises(UsageError, match="usage"):
            shell.run_line_magic("llm_models", "fly away")
    assert server.violations == []


def test_llm_stats(shell: InteractiveShell, model: str) -> None:
    shell.run_cell_magic("llm", f"{model} -n 2 -o r", "Hi")
    shown = shell.run_line_magic("llm_stats", "")
    frame = shell.run_line_magic("llm_stats", "--all")
    assert shell.user_ns["r"].call_id in set(frame["call_id"])
    # Either way the value is the complete frame; only the display differs.
    pd.testing.assert_frame_equal(pd.DataFrame(shown), pd.DataFrame(frame))
    assert re.findall(r"<th\b[^>]*>(.*?)</th>", shown._repr_html_())[:3] == [
        "started (UTC)", "model", "status",
    ]  # fmt: skip
    assert len(re.findall(r"<th\b", frame._repr_html_())) == len(frame.columns)
    summary = shell.run_line_magic("llm_stats", "--summary --all")
    shown_summary = shell.run_line_magic("llm_stats", "--summary")
    pd.testing.assert_frame_equal(pd.DataFrame(shown_summary), pd.DataFrame(summary))
    assert "TTFT p50 (s)" in repr(shown_summary) and "ttft_s_p50" not in repr(shown_summary)
    assert {"ttft_s_p50", "ttft_s_p95", "e2e_s_mean", "n_ok"} <= set(summary.columns)
    # The session's run holds every test's calls; this call's group is its model at its host.
    r = shell.user_ns["r"]
    mine = summary[
        (summary["run_id"] == r.run_id)
        & (summary["provider"] == r.provider)
        & (summary["host"] == r.host)
        & (summary["model"] == r.model)
    ]
    assert len(mine) == 1, mine
    assert mine["n_ok"].iloc[0] >= 1 and mine["ttft_s_p50"].notna().all()
    with pytest.raises(UsageError):
        shell.run_line_magic("llm_stats", "-x")


@pytest.mark.parametrize("flag", ["--help", "-h", "run-1 --help"])
def test_llm_stats_help_explains_each_option(
    shell: InteractiveShell, flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert shell.run_line_magic("llm_stats", flag) is None  # help, not a frame
    out = capsys.readouterr().out
    assert out.startswith("usage: %llm_stats [RUN_ID] [--summary] [--all]\n")
    for word in ("RUN_ID", "--summary", "--all", "n_cancelled", "METRICS.md", "llm_nb.summary()"):
        assert word in out
    assert len(out.splitlines()) > 10  # a help text, not a bare usage line
