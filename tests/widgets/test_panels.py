"""The panels (model picker, chat, compare) driven from Python against the real llama-server.

Clicks are ``button.click()``, which runs the same handlers a browser click runs. Async tests
play the kernel: their event loop is the running loop a widget callback finds, so the work
runs as a task on it and the test stays free to click Stop meanwhile. Sync tests have no
running loop and exercise the fallback (work on llm_nb's loop, widgets updated from the
caller's thread). One test drives a real ipykernel over its sockets, as a browser would.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import queue
import re
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from IPython.core.interactiveshell import InteractiveShell

import llm_nb
from llm_nb._embedded.process.server import free_port
from llm_nb._safe_html import escape, markdown_html, note_html
from llm_nb._session import Session, registry, run_sync
from llm_nb._widgets import ChatPanel, ComparePanel, ModelPicker, _defaults, _picker
from llm_nb._widgets._compare import _plot_widget
from llm_nb._wire.retry import RetryPolicy
from llm_nb.providers.llamacpp import LlamaCppProvider
from tests.contract import OllamaContractServer
from tests.faults import LLAMACPP, Conn, FaultServer, Request, plays
from tests.kernels import iopub_until_idle, started_kernel

LONG = {"ignore_eos": True}  # llama-server: keep generating up to max_tokens


def host_of(url: str) -> str:
    return url.split("://")[1]


@pytest.fixture
def model(llama_server: Any) -> str:
    return f"llamacpp:smollm2@{host_of(llama_server.url)}"


@pytest.fixture(autouse=True)
def fresh_default() -> Iterator[None]:
    """Each test starts and ends with no chosen default model."""
    yield
    _defaults._chosen = None
    sh = InteractiveShell.instance() if InteractiveShell.initialized() else None
    if sh is not None:
        sh.config.LLMMagics.pop("default_model", None)
        magics = sh.magics_manager.registry.get("LLMMagics")
        if magics is not None:
            magics.default_model = ""


@pytest.fixture
async def kernel_loop() -> AsyncIterator[asyncio.AbstractEventLoop]:
    """This test's loop plays the kernel's; its connections are closed afterwards."""
    yield asyncio.get_running_loop()
    for p in registry().providers():
        await p.aclose()


def forget(host: str) -> None:
    """Drop a test server's providers from the registry, so later listings do not try it."""
    reg = registry()
    with reg._lock:
        for key in [k for k, p in reg._providers.items() if p.host == host]:
            del reg._providers[key]


@pytest.fixture
def dead_host() -> Iterator[str]:
    """A registered llama-server host where nothing listens (no retries: fails at once)."""
    host = f"127.0.0.1:{free_port()}"
    registry().add(LlamaCppProvider(f"http://{host}", retry=RetryPolicy(max_retries=0)))
    yield host
    forget(host)


async def streaming(record: Any, chars: int, within_s: float = 30.0) -> None:
    """Until ``record()`` (a panel's current call) holds ``chars`` characters of answer."""
    deadline = time.monotonic() + within_s
    while len(record().text) < chars:
        assert time.monotonic() < deadline, "no tokens arrived"
        await asyncio.sleep(0.02)


async def slots_idle(url: str, within_s: float = 10.0) -> bool:
    deadline = time.monotonic() + within_s
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            slots = (await client.get(f"{url}/slots")).json()
            if not any(s["is_processing"] for s in slots):
                return True
            await asyncio.sleep(0.05)
    return False


class Changes:
    """Counts a trait's changes and the threads they came from."""

    def __init__(self, widget: Any, name: str) -> None:
        self.count = 0
        self.threads: set[int] = set()
        widget.observe(self._seen, name)

    def _seen(self, change: Any) -> None:
        self.count += 1
        self.threads.add(threading.get_ident())


class AnswerChanges(Changes):
    """Counts the changes of every answer a chat panel adds from now on (each turn gets a new
    ``AnswerView``, made inside ``send``), and the threads they came from."""

    def __init__(self, panel: ChatPanel) -> None:
        self.count = 0
        self.threads = set()
        panel.history.observe(self._added, "children")

    def _added(self, change: Any) -> None:
        for box in change["new"][len(change["old"]) :]:
            box.children[2].observe(self._seen, "value")  # prompt, label, answer, figures


# -- chat -------------------------------------------------------------------------------------


async def test_chat_streams_on_the_kernel_loop_throttled_and_multi_turn(
    kernel_loop: Any, model: str
) -> None:
    panel = llm_nb.chat_panel(model, max_tokens=40, temperature=0, extra=LONG, throttle_s=0.1)
    assert isinstance(panel, ChatPanel) and "llm-nb-chat" in panel._dom_classes
    panel.prompt.value = "Write a story about a dragon."
    started = time.monotonic()
    panel.send_button.click()
    # The click only started a task on this loop: the "kernel" is free at once.
    assert panel.worker.task is not None and not panel.worker.task.done()
    assert panel.send_button.disabled and not panel.stop_button.disabled
    assert panel.prompt.value == ""
    changes = Changes(panel.answer, "value")
    await panel.wait()
    duration = time.monotonic() - started

    first = panel.turns[0].record
    assert first.status == "ok" and first.usage.completion_tokens == 40
    assert panel.answer.text == first.text
    assert panel.answer.value == markdown_html(first.text)
    figures = panel.turns[0].figures.value
    assert "tokens/s" in figures and "40 tokens" in figures
    # ≤ 10 live redraws a second plus the final one, all from this (the kernel's) thread.
    assert 2 <= changes.count <= 10 * duration + 2, (changes.count, duration)
    assert changes.threads == {threading.get_ident()}
    assert not panel.send_button.disabled and panel.stop_button.disabled
    assert [m.role for m in panel.messages] == ["user", "assistant"]
    assert markdown_html(first.text) in panel.saved.bundle["text/html"]
    assert ">Write a story about a dragon.</div>" in panel.saved.bundle["text/html"]

    panel.send("And then?")
    await panel.wait()
    second = panel.turns[1].record
    assert second.status == "ok" and len(panel.history.children) == 2
    # The first exchange went along as history.
    assert second.usage.prompt_tokens is not None and first.usage.prompt_tokens is not None
    assert second.usage.prompt_tokens > first.usage.prompt_tokens + 40
    assert [m.role for m in panel.messages] == ["user", "assistant"] * 2
    assert panel.saved.bundle["text/html"].count(f"<code>{escape(model)}</code>:") == 2

    panel.reset_button.click()
    assert panel.messages == [] and panel.history.children == ()


async def test_stop_mid_answer_keeps_the_partial_text_and_frees_the_slot(
    kernel_loop: Any, model: str, llama_server: Any
) -> None:
    panel = llm_nb.chat_panel(model, max_tokens=3000, extra=LONG)
    panel.send("Write a very long story about a dragon.")
    await streaming(lambda: panel.turns[0].record, 40)
    # The loop is free while the answer streams, so Stop gets through.
    panel.stop_button.click()
    await panel.wait()

    record = panel.turns[0].record
    n = len(record.trace.token_times_ns)
    assert record.status == "cancelled" and 0 < n < 3000
    assert panel.answer.text == record.text + "\n[stopped]"
    assert panel.answer.value.endswith(note_html("stopped"))
    assert panel.error.text == "" and not panel.send_button.disabled
    assert await slots_idle(llama_server.url), "llama-server is still generating"
    # What was on screen stays in the conversation.
    assert panel.messages[-1].content == record.text
    assert note_html("stopped") in panel.saved.bundle["text/html"]

    # Stopped before the task's first step (no code of it ran): still a clean end.
    panel.send("Hi")
    panel.stop()
    await panel.wait()
    assert panel.turns[-1].record.status == "cancelled" and panel.turns[-1].call.interrupted
    assert panel.answer.text == "\n[stopped]" and not panel.send_button.disabled
    assert panel.stop_button.disabled and len(panel.messages) == 2


def test_without_a_running_loop_the_work_runs_on_llm_nb_loop(model: str) -> None:
    panel = llm_nb.chat_panel(model, max_tokens=16, extra=LONG, throttle_s=0.05)
    panel.prompt.value = "Count to twenty."
    changes = AnswerChanges(panel)
    panel.send_button.click()  # blocks: there is no loop to run a task on
    record = panel.turns[0].record
    assert record.status == "ok" and record.usage.completion_tokens == 16
    assert panel.answer.text == record.text and panel.worker.task is None
    # The answer was drawn (live frames and the final one), every time from this thread:
    # never from llm_nb's loop thread, where the work ran.
    assert changes.count >= 1 and changes.threads == {threading.get_ident()}
    first = changes.count
    panel.send("Again.")
    assert panel.turns[1].record.status == "ok"
    assert changes.count > first and changes.threads == {threading.get_ident()}


@pytest.mark.usefixtures("session")
def test_without_a_running_loop_widgets_change_on_the_callers_thread() -> None:
    """The same fallback against a fault server (no llama-server): the answer streams on
    llm_nb's loop thread, and every change to the widgets is made on the caller's thread."""
    tokens = [f"w{i} " for i in range(20)]
    with FaultServer(plays.answer(LLAMACPP, tokens, delay_s=0.02)) as srv:
        host = host_of(srv.url)
        try:
            panel = llm_nb.chat_panel(f"llamacpp:m@{host}", throttle_s=0.05)
            changes = AnswerChanges(panel)
            panel.send("Count.")  # blocks until the answer is complete
            record = panel.turns[0].record
            assert record.status == "ok" and record.text == "".join(tokens)
            assert panel.answer.text == record.text and panel.worker.task is None
            assert changes.count >= 2 and changes.threads == {threading.get_ident()}
        finally:
            for p in registry().providers():
                if p.host == host:
                    run_sync(p.aclose())
            forget(host)


def test_errors_show_inline_on_one_line_and_the_panel_keeps_working(
    model: str, dead_host: str
) -> None:
    panel = llm_nb.chat_panel(f"llamacpp:smollm2@{dead_host}", max_tokens=5)
    panel.send("Hi")
    error = panel.error.text
    assert f"no llama-server answers at http://{dead_host}" in error and "\n" not in error
    assert panel.error.widget.layout.display is None and not panel.send_button.disabled
    assert panel.turns[0].record.status == "error" and panel.messages == []
    assert panel.prompt.value == "Hi"  # what was typed comes back, to send again

    panel.model.value = "nonsense"
    panel.send("Hi")
    assert "must start with a provider" in panel.error.text and len(panel.turns) == 1
    assert panel.prompt.value == "Hi"  # kept, to send again

    panel.model.value = model
    panel.send_button.click()
    assert panel.turns[1].record.status == "ok" and panel.error.text == ""
    assert panel.error.widget.layout.display == "none"

    with pytest.raises(llm_nb.InvalidOptionError, match="temperature"):
        llm_nb.chat_panel(model, temperature=9)


# -- compare ----------------------------------------------------------------------------------


async def test_compare_panel_streams_every_column_then_stats_and_plot(
    kernel_loop: Any, llama_server: Any
) -> None:
    host = host_of(llama_server.url)
    models = [f"llamacpp:smollm2@{host}", f"openai:smollm2@{host}"]
    panel = llm_nb.compare_panel(models, max_tokens=20, extra=LONG, throttle_s=0.1)
    assert isinstance(panel, ComparePanel)
    await panel.wait()  # the model listing, in the background
    keys = {o[1] if isinstance(o, tuple) else o for o in panel.models.options}
    assert set(models) <= keys and panel.models.value == tuple(models)
    panel.prompt.value = "Say hello."
    panel.run_button.click()
    assert not panel.stop_button.disabled
    await panel.wait()

    assert len(panel.columns.children) == 2
    assert all("llm-nb-compare-col" in c._dom_classes for c in panel.columns.children)
    for call, answer, footer in zip(panel.calls, panel._answers, panel._footers, strict=True):
        assert call.record.status == "ok" and call.record.usage.completion_tokens == 20
        assert answer.text == call.record.text != ""
        assert "tokens/s" in footer.value
    first, second = (c.record.trace for c in panel.calls)
    assert first.t_send_ns is not None and second.t_send_ns is not None
    assert first.t_end_ns is not None and second.t_end_ns is not None
    assert max(first.t_send_ns, second.t_send_ns) < min(first.t_end_ns, second.t_end_ns)

    assert panel.run_id is not None
    frame = llm_nb.stats(panel.run_id)
    assert sorted(frame["provider"]) == ["llamacpp", "openai"]
    assert "TTFT (s)" in panel.table.value and "tokens/s" in panel.table.value
    # One row per column, in the columns' order, labelled as the columns are.
    labels = re.findall(r"<tr><td[^>]*>([^<]*)</td>", panel.table.value)
    assert labels == [escape(c.label) for c in panel.calls] == [escape(m) for m in models]
    (plot,) = panel.plot.children
    assert "llm-nb-compare-plot-image" in plot._dom_classes
    assert plot.value[:8] == b"\x89PNG\r\n\x1a\n"
    saved = panel.saved.bundle
    assert all(c.record.text.split()[0] in saved["text/plain"] for c in panel.calls)
    assert "TTFT (s)" in saved["text/html"] and saved["text/html"].count(" tokens/s · ") == 2
    assert not panel.run_button.disabled and panel.stop_button.disabled


async def test_compare_stop_and_a_failing_model(
    kernel_loop: Any, model: str, dead_host: str, llama_server: Any
) -> None:
    dead = f"llamacpp:smollm2@{dead_host}"
    panel = llm_nb.compare_panel([model, dead], max_tokens=3000, extra=LONG)
    await panel.wait()
    panel.run("Write a very long story.")
    await streaming(lambda: panel.calls[0].record, 20)
    panel.stop_button.click()
    await panel.wait()
    live, failed = panel.calls
    assert live.record.status == "cancelled" and live.interrupted and live.record.text
    assert panel._answers[0].text.endswith("[stopped]")
    assert failed.error is not None and failed.record.status == "error"
    assert panel.error.text.startswith("1 of 2 models failed;"), panel.error.text
    assert "\n" not in panel.error.text
    assert await slots_idle(llama_server.url)

    panel.models.value = (model,)
    panel.run("Hi")
    panel.stop()  # before the task's first step
    await panel.wait()
    assert [c.record.status for c in panel.calls] == ["cancelled"]
    assert panel._answers[0].text.endswith("[stopped]") and not panel.run_button.disabled


async def test_a_model_given_twice_gets_its_own_numbered_column_row_and_bar(
    kernel_loop: Any, model: str
) -> None:
    """As ``%%llm M M`` does: two columns, "M #1" and "M #2", and the table rows and plot
    bars named the same way, in the same order."""
    panel = llm_nb.compare_panel([model, model], max_tokens=4, throttle_s=0.1)
    await panel.wait()
    labels = [f"{model} #1", f"{model} #2"]
    assert list(panel.models.label) == labels  # both selected, told apart
    panel.run("Hi")
    await panel.wait()
    assert [c.label for c in panel.calls] == labels
    assert [c.record.status for c in panel.calls] == ["ok", "ok"]
    assert panel.calls[0].record.call_id != panel.calls[1].record.call_id
    titles = [col.children[0].value for col in panel.columns.children]
    assert titles == [f'<b style="overflow-wrap:anywhere">{escape(label)}</b>' for label in labels]
    rows = re.findall(r"<tr><td[^>]*>([^<]*)</td>", panel.table.value)
    assert rows == [escape(label) for label in labels]
    from llm_nb._present._tables import run_frame

    assert panel.run_id is not None
    assert list(run_frame(panel.calls, panel.run_id)["label"]) == labels  # what the plot shows


def test_compare_plot_is_skipped_without_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    import pandas as pd

    frame = pd.DataFrame(
        {"label": ["llamacpp:m@h"], "ttft_s": [0.1],
         "output_tps": [50.0]}
    )  # fmt: skip
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    note = _plot_widget(frame)
    assert "llm-nb-compare-plot-note" in note._dom_classes and "matplotlib" in note.value


# -- picker -----------------------------------------------------------------------------------


def group_of(picker: ModelPicker, host: str, name: str = "llamacpp") -> Any:
    (box,) = [
        b for b, g in zip(picker.groups.children, picker.catalog.groups, strict=True)
        if g.key == f"{name}@{host}"
    ]  # fmt: skip
    return box


def statuses(picker: ModelPicker, host: str, name: str = "llamacpp") -> dict[str, str]:
    (group,) = [g for g in picker.catalog.groups if g.key == f"{name}@{host}"]
    assert group.error is None, group.error  # an unlisted server has no statuses to compare
    return {m.name: m.status for m in group.models}


def test_picker_selection_becomes_the_llm_default(
    shell: InteractiveShell, model: str, dead_host: str
) -> None:
    host = model.split("@")[1]
    llm_nb.provider(model)  # known to the registry, as after any call
    picker = llm_nb.model_picker()  # no running loop: the listing ran before this returns
    assert "llm-nb-picker" in picker._dom_classes
    title, select = group_of(picker, host).children
    assert "llm-nb-picker-models" in select._dom_classes and host in title.value
    ((label, value),) = select.options
    assert value == model and label.startswith("smollm2 — loaded · ")
    # A server that does not answer is a group with its one-line error; the rest works.
    _, error = group_of(picker, dead_host).children
    assert "llm-nb-picker-group-error" in error._dom_classes
    assert "no llama-server answers at" in error.value

    select.value = model  # what a click on the row does
    assert picker.value == model and model in picker.default_label.value
    magics = shell.magics_manager.registry["LLMMagics"]
    assert magics.default_model == model and _defaults.default_model() == model
    shell.run_cell_magic("llm", "-n 2 -o r", "Hi")
    r = shell.user_ns["r"]
    assert (r.provider, r.model, r.host) == ("llamacpp", "smollm2", host)

    # Chosen before the extension is loaded: the new magics instance starts with it.
    shell.run_line_magic("unload_ext", "llm_nb")
    try:
        select.value = None
        picker.select(model)
        assert _defaults.default_model() == model
    finally:
        shell.run_line_magic("load_ext", "llm_nb")
    assert shell.magics_manager.registry["LLMMagics"].default_model == model
    # And the chat panel uses it when given no model.
    chat = llm_nb.chat_panel(max_tokens=2)
    chat.send("Hi")
    assert chat.turns[0].record.host == host and chat.turns[0].model == model

    # Load on a single-model server: an inline error, and the picker still works.
    picker.load_button.click()
    assert "runs a single model" in picker.error.text and "\n" not in picker.error.text
    assert not picker.refresh_button.disabled
    picker.refresh_button.click()
    assert picker.error.text == "" and picker.value == model


async def test_picker_loads_and_unloads_on_a_router(kernel_loop: Any, llama_router: Any) -> None:
    host = host_of(llama_router.url)
    registry().get("llamacpp", host)
    picker = llm_nb.model_picker()
    await picker.wait()
    seen: list[str] = []
    picker.progress_label.observe(lambda c: seen.append(c["new"]), "value")

    picker.select(f"llamacpp:smollm2-b@{host}")
    picker.load_button.click()
    assert picker.load_button.disabled  # busy until the load and the relisting are done
    await picker.wait()
    assert statuses(picker, host) == {"smollm2-a": "unloaded", "smollm2-b": "loaded"}
    assert seen[-1] == f"loaded llamacpp:smollm2-b@{host}" and picker.bar.value == 1.0
    # Status lines polled while it loaded, if it took that long (a fast test above makes sure
    # they come), between the first and the last line.
    assert seen[0] == f"load llamacpp:smollm2-b@{host}…"
    assert all(re.fullmatch(r"smollm2-b: \w+ \(\d+\.\d s\)", s) for s in seen[1:-1]), seen
    assert picker.value == f"llamacpp:smollm2-b@{host}"  # kept across the relisting

    # Pull on a router: the router loads (downloading first if it must), status polled.
    picker.select(f"llamacpp:smollm2-a@{host}")
    picker.pull_button.click()
    await picker.wait()
    assert statuses(picker, host) == {"smollm2-a": "loaded", "smollm2-b": "unloaded"}
    assert seen[-1] == f"pulled llamacpp:smollm2-a@{host}"

    picker.unload_button.click()
    await picker.wait()
    assert statuses(picker, host)["smollm2-a"] == "unloaded" and picker.error.text == ""


async def test_picker_shows_the_model_status_while_it_loads(kernel_loop: Any) -> None:
    """A router load that takes a second (a fault server playing llama-server's router): the
    progress line shows the model's status, polled meanwhile, then "loaded"."""
    load_asked: list[float] = []

    async def router(req: Request, conn: Conn) -> None:
        if req.path.startswith("/props"):
            await conn.respond(200, {"role": "router", "max_instances": 1})
        elif req.path == "/v1/models":
            status = "unloaded"
            if load_asked:
                status = "loading" if time.monotonic() < load_asked[0] + 1.0 else "loaded"
            models = [{"id": "smollm2-b", "object": "model", "status": {"value": status}}]
            await conn.respond(200, {"object": "list", "data": models})
        elif req.path == "/models/load":
            load_asked.append(time.monotonic())
            await conn.respond(200, {"success": True})
        else:
            await conn.respond(404, {"error": {"code": 404, "message": "not here"}})

    with FaultServer(router) as server:
        host = host_of(server.url)
        registry().get("llamacpp", host)
        try:
            picker = llm_nb.model_picker()
            await picker.wait()
            assert statuses(picker, host) == {"smollm2-b": "unloaded"}
            seen: list[str] = []
            picker.progress_label.observe(lambda c: seen.append(c["new"]), "value")
            picker.select(f"llamacpp:smollm2-b@{host}")
            picker.load_button.click()
            await picker.wait()
            assert statuses(picker, host) == {"smollm2-b": "loaded"}
        finally:
            for p in registry().providers():
                if p.host == host:
                    await p.aclose()
            forget(host)
    assert seen[0] == f"load llamacpp:smollm2-b@{host}…"
    assert seen[-1] == f"loaded llamacpp:smollm2-b@{host}"
    polls = seen[1:-1]
    assert all(re.fullmatch(r"smollm2-b: load(ing|ed) \(\d+\.\d s\)", s) for s in polls), seen
    assert sum(": loading (" in s for s in polls) >= 2, seen  # polled every 0.2 s for 1 s


async def test_picker_pulls_with_progress_and_deletes_on_ollama(
    kernel_loop: Any, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_picker, "PROGRESS_EVERY_S", 0.0)  # draw every step, to see them all
    # A session of its own: the picker lists this test's server only, not every server
    # earlier tests registered (with them it once listed nothing on a loaded machine).
    with OllamaContractServer(None) as server:
        host = host_of(server.url)
        provider = session.registry.get("ollama", host)
        try:
            picker = llm_nb.model_picker()
            await picker.wait()
            assert "tinyllama:latest" not in statuses(picker, host, "ollama")
            picker.select(f"ollama:smollm2:135m@{host}")
            fractions: list[float] = []
            picker.bar.observe(lambda c: fractions.append(c["new"]), "value")
            picker.pull_name.value = "tinyllama"
            picker.pull_button.click()
            await picker.wait()
            assert picker.progress_label.value == f"pulled ollama:tinyllama@{host}"
            # Each layer's progress, as the stream reported it (4 steps per layer).
            assert {0.25, 0.5, 0.75} <= set(fractions) and fractions[-1] == 1.0
            assert picker.bar.bar_style == "success"
            assert "tinyllama:latest" in statuses(picker, host, "ollama")

            picker.select(f"ollama:tinyllama:latest@{host}")
            picker.delete_button.click()  # asks first
            assert picker.delete_button.description == "Really delete?"
            assert "tinyllama:latest" in statuses(picker, host, "ollama")
            picker.delete_button.click()
            await picker.wait()
            assert "tinyllama:latest" not in statuses(picker, host, "ollama")
            assert picker.value is None

            picker.select(f"ollama:smollm2:135m@{host}")
            picker.pull_name.value = "nope:1b"
            picker.pull_button.click()
            await picker.wait()
            assert "file does not exist" in picker.error.text
            assert picker.bar.bar_style == "danger" and not picker.pull_button.disabled
        finally:
            await provider.aclose()
    assert server.violations == []


# -- in a real kernel -------------------------------------------------------------------------


class KernelSession:
    """A kernel driven like a browser: cells, and widget messages on the shell channel."""

    def __init__(self, km: Any, kc: Any) -> None:
        self.km = km
        self.kc = kc

    def run(self, code: str, timeout: float = 60) -> list[dict[str, Any]]:
        msg_id = self.kc.execute(code)
        messages = self._until_idle(msg_id, timeout)
        reply = self.kc.get_shell_msg(timeout=10)
        assert reply["content"]["status"] == "ok", reply["content"]
        return messages

    def value(self, expr: str) -> Any:
        messages = self.run(f"import json as _j; print(_j.dumps({expr}))")
        out = "".join(m["content"]["text"] for m in messages if m["msg_type"] == "stream")
        return json.loads(out)

    def widget_message(self, comm_id: str, data: dict[str, Any]) -> list[dict[str, Any]]:
        """Send what a browser sends for a widget event; the IOPub messages until idle."""
        msg = self.kc.session.msg("comm_msg", {"comm_id": comm_id, "data": data})
        self.kc.shell_channel.send(msg)
        return self._until_idle(msg["header"]["msg_id"], 30)

    def _until_idle(self, msg_id: str, timeout: float) -> list[dict[str, Any]]:
        return list(iopub_until_idle(self.kc, msg_id, timeout))

    def collect(self, until: Any, timeout: float = 30) -> list[dict[str, Any]]:
        """IOPub messages from any request until ``until(messages)`` holds."""
        messages: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while not until(messages):
            try:
                messages.append(
                    self.kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
                )
            except queue.Empty:
                raise AssertionError(f"condition not met within {timeout} s") from None
        return messages


@pytest.fixture(scope="module")
def kernel(llama_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KernelSession]:
    with started_kernel(tmp_path_factory, "llm_nb widgets") as (km, kc):
        yield KernelSession(km, kc)


def click() -> dict[str, Any]:
    return {"method": "custom", "content": {"event": "click"}}


def answer_updates(comm_id: str) -> Any:
    def of(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            m for m in messages
            if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == comm_id
            and "value" in m["content"]["data"].get("state", {})
        ]  # fmt: skip

    return of


def test_in_a_kernel_stop_gets_through_and_the_answer_is_saved_as_a_normal_output(
    kernel: KernelSession, model: str, llama_server: Any
) -> None:
    shown = kernel.run(
        f"import llm_nb\np = llm_nb.chat_panel({model!r}, max_tokens=3000, "
        "extra={'ignore_eos': True})\np"
    )
    displays = [m for m in shown if m["msg_type"] == "display_data"]
    # The widget, then the ordinary output that will hold the finished answers.
    assert "application/vnd.jupyter.widget-view+json" in displays[0]["content"]["data"]
    saved_id = displays[1]["content"]["transient"]["display_id"]
    empty = displays[1]["content"]["data"]
    assert empty["text/plain"] == "" and re.fullmatch(
        r'<div class="llm-nb-saved llm-nb-saved-[0-9a-f]{32}"></div>', empty["text/html"]
    )
    # Panels that list models at once do it in the background: the cell does not wait.
    assert kernel.value("llm_nb.model_picker().worker.task is not None") is True
    ids = kernel.value(
        "{'send': p.send_button.model_id, 'stop': p.stop_button.model_id, "
        "'prompt': p.prompt.model_id}"
    )
    kernel.widget_message(
        ids["prompt"],
        {"method": "update", "state": {"value": "Write a very long story."}, "buffer_paths": []},
    )
    # The click's handler returns at once (the kernel goes idle) while the answer streams.
    kernel.widget_message(ids["send"], click())
    answer_id = kernel.value("p.answer.model_id")
    live = kernel.collect(lambda ms: len(answer_updates(answer_id)(ms)) >= 3)
    kernel.widget_message(ids["stop"], click())
    after = kernel.collect(
        lambda ms: any(
            m["msg_type"] == "update_display_data"
            and m["content"]["transient"]["display_id"] == saved_id
            for m in ms
        )
    )
    r = kernel.value(
        "{'status': p.turns[0].record.status, 'text': p.turns[0].record.text, "
        "'n': len(p.turns[0].record.trace.token_times_ns)}"
    )
    assert r["status"] == "cancelled" and 0 < r["n"] < 3000
    (saved,) = [m for m in after if m["msg_type"] == "update_display_data"]
    assert markdown_html(r["text"]) in saved["content"]["data"]["text/html"]
    assert note_html("stopped") in saved["content"]["data"]["text/html"]
    # Live redraws were throttled: at least ~0.1 s apart (the first shows the "waiting"
    # mark at the click, the last is the final one, sent at once).
    stamps = [m["header"]["date"].timestamp() for m in answer_updates(answer_id)(live + after)]
    gaps = [b - a for a, b in itertools.pairwise(stamps[1:-1])]
    assert min(gaps, default=1.0) >= 0.09, gaps
    final = answer_updates(answer_id)(after)[-1]["content"]["data"]["state"]["value"]
    assert final.startswith(markdown_html(r["text"])) and final.endswith(note_html("stopped"))
    assert kernel.value("p.answer.text") == r["text"] + "\n[stopped]"
    # Not generating 3000 tokens (minutes): stopped. The bound allows for a loaded machine.
    deadline = time.monotonic() + 10
    while any(s["is_processing"] for s in httpx.get(f"{llama_server.url}/slots").json()):
        assert time.monotonic() < deadline, "llama-server is still generating"
        time.sleep(0.05)


def test_every_css_class_is_documented() -> None:
    import re

    from llm_nb import _widgets as widgets

    doc = widgets.__doc__ or ""
    package = Path(widgets.__file__).parent
    used = {
        name
        for source in package.glob("*.py")
        for name in re.findall(r'"(llm-nb-[a-z-]+)"', source.read_text())
    }
    assert len(used) > 40
    for name in sorted(used):
        prefixes = [f"llm-nb-{p}-" for p in ("picker", "chat", "compare")]
        prefix = next((p for p in prefixes if name.startswith(p)), None)
        short = f"``-{name.removeprefix(prefix)}``" if prefix else f"``{name}``"
        assert f"``{name}``" in doc or short in doc, name
    assert {"chat_panel", "compare_panel", "model_picker"} <= set(llm_nb.__all__)


def test_in_a_kernel_shift_enter_sends_escape_stops_and_focus_returns(
    kernel: KernelSession, model: str, llama_server: Any
) -> None:
    """The prompt box's keys arrive as the custom messages its frontend sends: Shift+Enter
    sends what was typed, Escape stops, and the kernel asks the box to take the focus back."""
    kernel.run(
        f"import llm_nb\nk = llm_nb.chat_panel({model!r}, max_tokens=3000, "
        "extra={'ignore_eos': True})\nk"
    )
    prompt = kernel.value("k.prompt.model_id")
    typed = {"method": "update", "state": {"value": "Tell a long story."}, "buffer_paths": []}
    kernel.widget_message(prompt, typed)
    sent = kernel.widget_message(prompt, {"method": "custom", "content": {"event": "submit"}})
    focus = [
        m for m in sent
        if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == prompt
        and m["content"]["data"] == {"method": "custom", "content": {"event": "focus"}}
    ]  # fmt: skip
    assert len(focus) == 1, sent
    assert kernel.value("[len(k.turns), k.turns[0].prompt, k.prompt.value]") == [
        1, "Tell a long story.", ""
    ]  # fmt: skip
    answer = kernel.value("k.answer.model_id")
    kernel.collect(lambda ms: len(answer_updates(answer)(ms)) >= 2)
    kernel.widget_message(prompt, {"method": "custom", "content": {"event": "stop"}})
    deadline = time.monotonic() + 30
    while kernel.value("k.worker.busy"):
        assert time.monotonic() < deadline, "Escape did not stop the answer"
        time.sleep(0.1)
    r = kernel.value("[k.turns[0].record.status, len(k.turns)]")
    assert r == ["cancelled", 1]
    # Shift+Enter on an empty box sends nothing and says why.
    kernel.widget_message(prompt, {"method": "custom", "content": {"event": "submit"}})
    assert kernel.value("[len(k.turns), k.error.text]") == [1, "write a prompt first"]


def test_without_anywidget_the_prompt_is_a_plain_textarea_and_the_buttons_work(
    monkeypatch: pytest.MonkeyPatch, model: str
) -> None:
    """anywidget is optional (the ``keys`` extra): without it the buttons still work."""
    import ipywidgets

    from llm_nb._widgets import _prompt

    with monkeypatch.context() as patched:
        patched.setitem(sys.modules, "anywidget", None)  # import anywidget: ImportError
        _prompt._prompt_class.cache_clear()
        assert not _prompt.keyboard_available()
        panel = llm_nb.chat_panel(model, max_tokens=4)
        assert type(panel.prompt) is ipywidgets.Textarea
        assert "llm-nb-chat-prompt" in panel.prompt._dom_classes
        panel.prompt.value = "Hi"
        panel.send_button.click()
        assert panel.turns[0].record.status == "ok" and panel.prompt.value == ""
        compare = llm_nb.compare_panel([model], max_tokens=4)
        assert type(compare.prompt) is ipywidgets.Textarea
    _prompt._prompt_class.cache_clear()
    import ipywidgets

    # The test extra installs anywidget; it is used with ipywidgets 8 only.
    assert _prompt.keyboard_available() == (int(ipywidgets.__version__.split(".")[0]) >= 8)


def test_a_named_panel_and_llm_chat_continue_one_conversation(shell: InteractiveShell) -> None:
    """``chat_panel(model, conversation="S")`` and ``%%llm --chat S`` in one kernel are one
    conversation: a turn asked in either is history for the next, in both. Recording is off,
    so only the kernel's memory can carry it."""
    from llm_nb._session import use_session

    with FaultServer(plays.answer(LLAMACPP)) as srv:
        model = f"llamacpp:m@{host_of(srv.url)}"
        session = Session(record=False, server_facts=False)
        with session, use_session(session):
            panel = llm_nb.chat_panel(model, conversation="S")
            panel.send("A")
            shell.run_cell_magic("llm", f"{model} --chat S", "B")
            panel.send("C")
            shell.run_cell_magic("llm", f"{model} --chat S", "D")
            later = llm_nb.chat_panel(model, conversation="S")
            panel.reset()  # New chat: forgotten for the cells too
            shell.run_cell_magic("llm", f"{model} --chat S", "E")
        asked = [r for r in srv.requests if r.path.endswith("/chat/completions")]
        sent = [[m["content"] for m in r.json()["messages"]] for r in asked]
    answer = "".join(plays.TOKENS)
    assert sent == [
        ["A"],
        ["A", answer, "B"],
        ["A", answer, "B", answer, "C"],
        ["A", answer, "B", answer, "C", answer, "D"],
        ["E"],
    ]
    assert len(later.history.children) == 4  # every turn so far, wherever it was asked
    assert [m.content for m in panel.messages] == []
