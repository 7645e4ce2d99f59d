"""The chat panel (llm_nb/_widgets/_chat.py) driven from Python against the real llama-server:
streaming on the kernel's loop, Stop, the fallback without a running loop, errors inline, Stop
in a real kernel with the answer saved as a normal output, and a named conversation shared
with ``%%llm --chat``.

Clicks are ``button.click()``, which runs the same handlers a browser click runs. Async tests
play the kernel: their event loop is the running loop a widget callback finds, so the work
runs as a task on it and the test stays free to click Stop meanwhile. Sync tests have no
running loop and exercise the fallback (work on llm_nb's loop, widgets updated from the
caller's thread). One test drives a real ipykernel over its sockets, as a browser would."""

from __future__ import annotations

import itertools
import re
import threading
import time
from typing import Any

import httpx
import pytest
from IPython.core.interactiveshell import InteractiveShell

import llm_nb
from llm_nb._safe_html import escape, markdown_html, note_html
from llm_nb._session import Session, registry, run_sync
from llm_nb._widgets import ChatPanel
from tests.faults import LLAMACPP, FaultServer, plays
from tests.widgets.drive import (
    LONG,
    AnswerChanges,
    Changes,
    KernelSession,
    answer_updates,
    click,
    forget,
    host_of,
    slots_idle,
    streaming,
)


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
