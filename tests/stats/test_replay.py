"""Each row can hold its call's request; replay() sends it again, and the new row names the
original. Prompts are kept for servers on this machine unless a setting says otherwise."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import llm_nb
from llm_nb._errors import InvalidOptionError
from llm_nb._options import ChatOptions
from llm_nb._session import Session, use_session
from llm_nb._stats import Recorder, StatsStoreWarning
from llm_nb._stats._request import columns, is_local
from llm_nb._stats._store import Store
from llm_nb._types import CallRequest, ChatResponse, Message
from tests.faults import OPENAI, FaultServer, plays

TOOL = {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}
SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}}


@pytest.fixture
def rec(tmp_path: Path) -> Iterator[Recorder]:
    """The recorder of a session of the test's own, made the default while it runs."""
    r = Recorder(Store(tmp_path / "calls.sqlite"))
    with Session(recorder=r, server_facts=False) as s, use_session(s):
        yield r
    assert r.store is not None
    r.store.close()


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with FaultServer(plays.answer(OPENAI)) as srv:
        yield srv


def model(server: FaultServer) -> str:
    return f"openai:m@{server.url.removeprefix('http://')}"


def test_replay_sends_the_same_request_and_links_the_answer(
    rec: Recorder, server: FaultServer, tmp_path: Path
) -> None:
    path = tmp_path / "calls.sqlite"
    first = llm_nb.chat(
        model(server),
        [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"},
         {"role": "user", "content": "and 3+3? <b>é😀</b>"}],
        system="be brief", seed=7, temperature=0.2, stop=["\n\n"], max_tokens=50,
        tools=[TOOL], tool_choice="auto", response_format=SCHEMA, extra={"top_k": 5},
    )  # fmt: skip
    again = llm_nb.replay(first.call_id, path=path)
    assert again.text == first.text and again.call_id != first.call_id
    sent = [r.json() for r in server.requests]
    assert len(sent) == 2 and sent[0] == sent[1]  # byte for byte the same request body
    assert sent[0]["seed"] == 7 and sent[0]["messages"][0] == {
        "role": "system",
        "content": "be brief",
    }
    hist = llm_nb.history(path).set_index("call_id")
    assert hist.loc[again.call_id, "replay_of"] == first.call_id
    assert pd.isna(hist.loc[first.call_id, "replay_of"])
    stored = json.loads(hist.loc[first.call_id, "request"])
    assert stored["options"]["seed"] == 7 and stored["options"]["tools"] == [TOOL]
    assert stored["messages"][-1]["content"] == "and 3+3? <b>é😀</b>"
    assert "api_key" not in hist.loc[first.call_id, "request"]


def test_a_streamed_call_replays_streamed(
    rec: Recorder, server: FaultServer, tmp_path: Path
) -> None:
    s = llm_nb.stream(model(server), "hello", seed=1)
    first = s.collect()
    again = llm_nb.replay(first.call_id, path=tmp_path / "calls.sqlite")
    assert again.stream and again.text == "".join(plays.TOKENS)
    assert [r.json()["stream"] for r in server.requests] == [True, True]


async def test_areplay_to_another_model(rec: Recorder, server: FaultServer, tmp_path: Path) -> None:
    from llm_nb._session import registry

    try:
        first = await llm_nb.achat(model(server), "hi")
        other = model(server).replace("openai:m@", "openai:other@")
        again = await llm_nb.areplay(first.call_id, other, path=tmp_path / "calls.sqlite")
    finally:  # connections opened on this test's loop are closed on it
        for p in registry().providers():
            await p.aclose()
    assert again.model == "other"
    assert [r.json()["model"] for r in server.requests] == ["m", "other"]


def test_replay_of_an_unknown_or_unrecorded_call_is_one_line(
    rec: Recorder, server: FaultServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "calls.sqlite"
    with pytest.raises(InvalidOptionError) as err:
        llm_nb.replay("nope", path=path)
    assert "no call 'nope'" in str(err.value) and "\n" not in str(err.value)
    monkeypatch.setenv("LLM_NB_RECORD_PROMPTS", "none")
    first = llm_nb.chat(model(server), "private")
    with pytest.raises(InvalidOptionError) as err:
        llm_nb.replay(first.call_id, path=path)
    assert "without its request" in str(err.value) and "LLM_NB_RECORD_PROMPTS" in str(err.value)
    assert len(server.requests) == 1  # nothing sent


def record(host: str) -> ChatResponse:
    r = ChatResponse("openai", host, "m", call_id="c1")
    r.request = CallRequest((Message("user", "secret plans"),), ChatOptions(seed=3))
    return r


@pytest.mark.parametrize(
    ("setting", "host", "kept"),
    [
        (None, "127.0.0.1:8080", True),
        (None, "localhost:11434", True),
        (None, "[::1]:8080", True),
        (None, "api.openai.com:443", False),
        (None, "10.0.0.5:8080", False),
        ("all", "api.openai.com:443", True),
        ("none", "127.0.0.1:8080", False),
    ],
)
def test_which_calls_keep_their_prompt(
    monkeypatch: pytest.MonkeyPatch, setting: str | None, host: str, kept: bool
) -> None:
    if setting is None:
        monkeypatch.delenv("LLM_NB_RECORD_PROMPTS", raising=False)
    else:
        monkeypatch.setenv("LLM_NB_RECORD_PROMPTS", setting)
    out: dict[str, Any] = columns(record(host))
    assert ("request" in out) is kept
    if kept:
        assert json.loads(out["request"])["messages"] == [
            {"role": "user", "content": "secret plans"}
        ]


def test_a_wrong_setting_keeps_no_prompt_and_says_so_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LLM_NB_RECORD_PROMPTS", "everything")
    from llm_nb._stats import _store

    monkeypatch.setattr(_store, "_warned", set())
    with pytest.warns(StatsStoreWarning) as caught:
        assert "request" not in columns(record("127.0.0.1:1"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "request" not in columns(record("127.0.0.1:1"))
    (message,) = [str(w.message) for w in caught.list]
    assert "LLM_NB_RECORD_PROMPTS" in message and "local, all, none" in message


def test_is_local() -> None:
    assert is_local("127.0.0.2:1") and not is_local("example.com:80")
