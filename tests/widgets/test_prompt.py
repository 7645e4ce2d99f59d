"""The panels' prompt box (llm_nb/_widgets/_prompt.py): in a real kernel Shift+Enter sends,
Escape stops and the focus returns; without anywidget it is a plain textarea and the buttons
work."""

from __future__ import annotations

import sys
import time
from typing import Any

import pytest

import llm_nb
from tests.widgets.drive import KernelSession, answer_updates


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
