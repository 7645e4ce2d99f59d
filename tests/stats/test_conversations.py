"""``%%llm --chat NAME`` conversations and named chat panels survive a kernel restart: each
kernel here is a fresh process with an IPython shell (or, for the panels, a fresh session on
the same store), and the server sees what each one sends."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import llm_nb
from llm_nb._embedded.process.server import free_port
from llm_nb._magics._chats import Conversations
from llm_nb._session import Session, use_session
from llm_nb._stats import Recorder, _conversations
from llm_nb._stats._store import Store
from llm_nb._widgets._chat import _prompt_html
from tests.faults import LLAMACPP, OPENAI, FaultServer, plays

KERNEL = r"""
import sys
from IPython.core.interactiveshell import InteractiveShell

shell = InteractiveShell.instance()
shell.run_line_magic("load_ext", "llm_nb")
model, line, prompt = sys.argv[1:4]
shell.run_cell_magic("llm", f"{model} {line}", prompt)
"""

ANSWER = "".join(plays.TOKENS)


def kernel(data_dir: Path, model: str, line: str, prompt: str) -> None:
    """One kernel's life: load the extension, run one %%llm cell, exit."""
    env = {**os.environ, "LLM_NB_DATA_DIR": str(data_dir), "LLM_NB_RECORD": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", KERNEL, model, line, prompt],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.slow
def test_a_chat_continues_after_a_restart_and_is_listed(tmp_path: Path) -> None:
    with FaultServer(plays.answer(OPENAI)) as srv:
        model = f"openai:m@{srv.url.removeprefix('http://')}"
        kernel(tmp_path, model, "-c plans", "My name is Ada.")
        kernel(tmp_path, model, "-c plans", "What is my name?")  # a new kernel
        kernel(tmp_path, model, "-c other", "Unrelated.")
        kernel(tmp_path, model, "-c plans --reset", "Start over.")
        sent = [[(m["role"], m["content"]) for m in r.json()["messages"]] for r in srv.requests]
    assert sent[1] == [
        ("user", "My name is Ada."),
        ("assistant", ANSWER),
        ("user", "What is my name?"),
    ]
    assert sent[2] == [("user", "Unrelated.")]
    assert sent[3] == [("user", "Start over.")]
    listed = llm_nb.conversations(tmp_path / "calls.sqlite")
    assert list(listed["name"]) == ["other", "plans"]  # the latest updated last
    listed = listed.set_index("name")
    assert listed.loc["plans", "messages"] == 2 and listed.loc["plans", "turns"] == 1
    assert listed.loc["other", "model"] == "m"
    assert str(listed["updated_at"].dtype).startswith("datetime64")
    # Each stored answer names the call that gave it.
    store = Store(tmp_path / "calls.sqlite")
    (_, _, call_id), *_ = [m for m in _conversations.current(store, "other") if m[0] != "user"]
    assert call_id in set(llm_nb.history(tmp_path / "calls.sqlite")["call_id"])


def test_turns_are_kept_in_the_log_and_read_back_by_a_new_session() -> None:
    name = f"t-{uuid.uuid4().hex[:8]}"
    first = Conversations()
    first.add_turn(name, "hi", "hello", "c-1")
    first.add_turn(name, "and?", "more")
    later = Conversations()  # what a restarted kernel has
    got = [(m.role, m.content) for m in later.messages(name, "next")]
    assert got == [("user", "hi"), ("assistant", "hello"), ("user", "and?"),
                   ("assistant", "more"), ("user", "next")]  # fmt: skip
    later.reset(name)
    assert [m.content for m in Conversations().messages(name, "again")] == ["again"]


def test_with_recording_off_conversations_stay_in_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LLM_NB_RECORD", "0")
    name = f"t-{uuid.uuid4().hex[:8]}"
    chats = Conversations()
    chats.add_turn(name, "hi", "hello")
    assert len(chats.messages(name, "x")) == 3
    monkeypatch.delenv("LLM_NB_RECORD")
    assert len(Conversations().messages(name, "x")) == 1  # nothing was written


@contextlib.contextmanager
def kernel_session(path: Path) -> Iterator[Session]:
    """A session recording to ``path``, made the default: what a (re)started kernel has."""
    store = Store(path)
    try:
        session = Session(recorder=Recorder(store, None), record=True, server_facts=False)
        with session, use_session(session):
            yield session
    finally:
        store.close()


def test_a_named_chat_panel_continues_after_a_restart_and_is_listed(tmp_path: Path) -> None:
    path = tmp_path / "calls.sqlite"
    with FaultServer(plays.answer(LLAMACPP)) as srv:
        model = f"llamacpp:m@{srv.url.removeprefix('http://')}"
        with kernel_session(path):
            first = llm_nb.chat_panel(model, conversation="X")
            first.send("My name is <b>Ada</b>.")
            first.send("What is my name?")
            unnamed = llm_nb.chat_panel(model)  # not stored
            unnamed.send("Unrelated.")
        with kernel_session(path):  # the kernel restarted
            later = llm_nb.chat_panel(model, conversation="X")
            shown = [box.children for box in later.history.children]
            assert [(c[0].value, c[2].text) for c in shown] == [
                (_prompt_html("My name is <b>Ada</b>."), ANSWER),
                (_prompt_html("What is my name?"), ANSWER),
            ]
            assert "<b>Ada</b>" not in shown[0][0].value  # what was typed stays text
            later.send("And now?")
            assert later.turns[0].record.status == "ok"
        sent = [[(m["role"], m["content"]) for m in r.json()["messages"]] for r in srv.requests]
    assert sent[3] == [
        ("user", "My name is <b>Ada</b>."),
        ("assistant", ANSWER),
        ("user", "What is my name?"),
        ("assistant", ANSWER),
        ("user", "And now?"),
    ]
    listed = llm_nb.conversations(path).set_index("name")
    assert list(listed.index) == ["X"]  # the unnamed panel's chat is not stored
    assert listed.loc["X", "turns"] == 3 and listed.loc["X", "model"] == "m"
    # "%%llm --chat X" continues the same conversation.
    assert [m.content for m in _conversations.load(Store(path), "X")][-1] == ANSWER


def test_a_named_panel_stores_only_completed_turns_and_new_chat_forgets(tmp_path: Path) -> None:
    path = tmp_path / "calls.sqlite"
    with FaultServer(plays.answer(LLAMACPP)) as srv:
        model = f"llamacpp:m@{srv.url.removeprefix('http://')}"
        with kernel_session(path):
            panel = llm_nb.chat_panel(model, conversation="Y")
            panel.send("Hi")
            panel.model.value = f"llamacpp:m@127.0.0.1:{free_port()}"  # nothing listens
            panel.send("Lost?")
            assert panel.turns[1].record.status == "error"
            assert [c for _, c in _pairs(path, "Y")] == ["Hi", ANSWER]  # as --chat keeps
            panel.reset_button.click()
        with kernel_session(path):
            assert llm_nb.chat_panel(model, conversation="Y").history.children == ()
    assert _pairs(path, "Y") == [] and llm_nb.conversations(path).empty
    with pytest.raises(llm_nb.InvalidOptionError, match="conversation"):
        llm_nb.chat_panel(model, conversation=" ")


def _pairs(path: Path, name: str) -> list[tuple[str, str]]:
    return [(r, c) for r, c, _ in _conversations.current(Store(path), name)]
