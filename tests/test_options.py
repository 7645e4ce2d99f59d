"""Bad input is an InvalidOptionError, one line naming the option, before anything happens.

Every public way into a chat call is swept with wrong values for every parameter it takes:
the prompt (and the messages, roles, contents and tool calls inside it), each option, and
the model id. Each must raise :class:`InvalidOptionError` (an LLMError and a ValueError)
whose message is one line naming what was wrong, while a transport that counts requests
sees none and no llama-server is started: ``local`` points at a llama-server "binary" that
records being run.
"""

from __future__ import annotations

import asyncio
import math
import os
import stat
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from IPython.core.interactiveshell import InteractiveShell

import llm_nb
from llm_nb import ChatOptions, InvalidOptionError, LLMError, Message, OpenAIProvider
from llm_nb._wire.retry import RetryPolicy

HOST = "127.0.0.1:9"
MODEL_ID = f"openai:m@{HOST}"


class Counting:
    """A MockTransport handler that answers nothing useful and counts what reached it."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(500, json={"error": {"message": "no request should get here"}})


@pytest.fixture(scope="module")
def sent() -> Counting:
    return Counting()


@pytest.fixture(scope="module")
def mock(sent: Counting) -> OpenAIProvider:
    """The provider behind MODEL_ID: every request it would make lands in ``sent``."""
    p = OpenAIProvider(HOST, transport=httpx.MockTransport(sent), retry=RetryPolicy(max_retries=0))
    llm_nb.registry().add(p)
    return p


@pytest.fixture(scope="module")
def no_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``local`` as on a fresh machine, except that its llama-server binary is a script that
    records being run (and fails). Yields the record's path."""
    root = tmp_path_factory.mktemp("no-server")
    record = root / "ran"
    script = root / "llama-server"
    script.write_text(f"#!/bin/sh\necho \"$@\" >> '{record}'\nexit 3\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    model = root / "model.gguf"
    model.write_bytes(b"GGUF")
    names = ("LLAMA_SERVER_BIN", "LLM_NB_SERVER", "LLM_NB_MODEL", "LLM_NB_LOCAL_URL")
    saved = {k: os.environ.get(k) for k in names}
    os.environ["LLAMA_SERVER_BIN"] = os.environ["LLM_NB_SERVER"] = str(script)
    os.environ["LLM_NB_MODEL"] = str(model)
    os.environ.pop("LLM_NB_LOCAL_URL", None)
    try:
        yield record
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def children() -> set[int]:
    return {c.pid for c in psutil.Process().children(recursive=True)}


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert text and "\n" not in text, repr(text)
    return text


# -- wrong values, per parameter ----------------------------------------------------------


class Ambiguous:
    """Like a numpy array: comparing it or asking for its truth raises."""

    __hash__ = object.__hash__

    def __eq__(self, other: object) -> bool:
        raise ValueError("the truth value of this is ambiguous")

    __ne__ = __eq__

    def __bool__(self) -> bool:
        raise ValueError("the truth value of this is ambiguous")


junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.binary(max_size=4),
    st.text(max_size=6),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.sets(st.integers(), max_size=2),
    st.builds(object),
)


def out_of(low: float, high: float, *, low_open: bool = False) -> st.SearchStrategy[Any]:
    """Numbers outside the range, and things that are not numbers at all."""
    numbers = st.floats(allow_nan=True).filter(
        lambda x: not (low < x <= high if low_open else low <= x <= high)
    )
    return st.one_of(
        numbers,
        st.booleans(),
        st.text(max_size=5),
        st.lists(st.floats(0, 1), min_size=1, max_size=2),
        st.just(float("inf")),
    )


not_whole = st.one_of(
    st.floats(allow_nan=True),
    st.booleans(),
    st.text(max_size=5),
    st.just(Fraction(1, 2)),
    st.lists(st.integers(), min_size=1, max_size=2),
)

WRONG: dict[str, st.SearchStrategy[Any]] = {
    "temperature": out_of(0, 2),
    "top_p": out_of(0, 1, low_open=True),
    "max_tokens": st.one_of(not_whole, st.integers(max_value=0)),
    "seed": not_whole,
    "stop": st.one_of(
        st.integers(),
        st.booleans(),
        st.just(""),
        st.lists(st.one_of(st.integers(), st.none(), st.just("")), min_size=1, max_size=3),
        st.dictionaries(st.text(min_size=1, max_size=3), st.text(max_size=3), min_size=1),
        st.just("\ud800"),
    ),
    "system": junk.filter(lambda v: v is not None and not isinstance(v, str)),
    "response_format": st.one_of(
        st.integers(),
        st.booleans(),
        st.text(max_size=6).filter(lambda s: s not in ("json", "text")),
        st.just({"type": "json_schema"}),
        st.just({"type": "yaml"}),
        st.just({"type": "object", "properties": {"x": {"const": math.nan}}}),
        st.just({"type": "object", "default": object()}),
        st.lists(st.text(max_size=3), max_size=2),
    ),
    "tools": st.one_of(
        st.integers(),
        st.text(min_size=1, max_size=5),
        st.just({"type": "function", "function": {"name": "f"}}),  # one tool, not a list
        st.just([{"name": "f"}]),
        st.just([{"type": "function", "function": {"name": ""}}]),
        st.just([{"type": "function", "function": {"name": "f", "parameters": 5}}]),
        st.just([{"type": "retrieval", "function": {"name": "f"}}]),
        st.lists(junk, min_size=1, max_size=2),
    ),
    "tool_choice": st.one_of(
        st.integers(),
        st.booleans(),
        st.text(max_size=6).filter(lambda s: s not in ("auto", "none", "required")),
        st.just("required"),  # with no tools to choose from
        st.just({"type": "function", "function": {"name": "missing"}}),
        st.just({"function": "f"}),
    ),
    "extra": st.one_of(
        st.text(max_size=5),
        st.integers(),
        st.lists(st.integers(), min_size=1, max_size=2),
        st.just({1: "x"}),
        st.just({"stream": False}),
        st.just({"messages": []}),
        st.just({"model": "other"}),
        st.just({"options": 5}),
        st.just({"top_k": math.inf}),
        st.just({"logit_bias": {"1": object()}}),
        st.just({"grammar": "\udc80"}),
    ),
    "timeout": st.one_of(
        st.floats(max_value=0),
        st.integers(max_value=0),
        st.just(math.nan),
        st.just(math.inf),
        st.booleans(),
        st.text(max_size=4),
    ),
    "read_timeout": st.one_of(st.just(0.0), st.just(-5), st.just("60"), st.just(math.nan)),
    "connect_timeout": st.one_of(st.just(True), st.just(math.inf), st.just([5])),
    "bogus_option": junk,
}
WRONG = {k: st.one_of(v, st.builds(Ambiguous)) for k, v in WRONG.items()}

bad_prompt = st.one_of(
    st.none(),
    st.integers(),
    st.floats(),
    st.booleans(),
    st.binary(max_size=3),
    st.sets(st.text(max_size=2), max_size=2),
    st.just([]),
    st.just(("user", "hi")),
    st.just([("user", "hi")]),
    st.lists(st.integers(), min_size=1, max_size=3),
    st.just([{"content": "no role"}]),
    st.just([{"role": "robot", "content": "hi"}]),
    st.just({"role": "user", "content": 5}),
    st.just([{"role": "user", "content": ["not a part"]}]),
    st.just([{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]),
    st.just([{"role": "user", "content": "hi", "images": ["x"]}]),
    st.just([{"role": "assistant", "content": "", "tool_calls": 5}]),
    st.just([{"role": "assistant", "tool_calls": [{"function": {"arguments": "{}"}}]}]),
    st.just([{"role": "tool", "content": "x", "tool_call_id": 7}]),
    st.just("lone \ud83d surrogate"),
    st.just(iter(["hi"])),
    st.builds(Ambiguous),
    st.builds(lambda: [{"role": Ambiguous(), "content": "x"}]),
    st.builds(lambda: [{"role": "user", "content": "x", "tool_calls": Ambiguous()}]),
    st.builds(lambda: [{"role": "user", "content": "x", "name": Ambiguous()}]),
    st.builds(lambda: {"role": "user", "content": Ambiguous()}),
    st.builds(lambda: {"role": "user", "content": [{"type": Ambiguous(), "text": "x"}]}),
)


def call_with(entry: Callable[..., Any], model: str, prompt: Any, options: dict[str, Any]) -> Any:
    """Call an entry point, awaiting it (or its stream's first step) when it is async."""
    result = entry(model, prompt, **options)
    if asyncio.iscoroutine(result):
        return asyncio.run(result)
    return result


def _astream(model: str, prompt: Any, **options: Any) -> Any:
    return llm_nb.astream(model, prompt, **options)


ENTRIES: dict[str, Callable[..., Any]] = {
    "chat": llm_nb.chat,
    "stream": llm_nb.stream,
    "achat": llm_nb.achat,
    "astream": _astream,
}

suppress = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]


@pytest.mark.parametrize("entry", list(ENTRIES))
@pytest.mark.parametrize("model", [MODEL_ID, "local"])
@settings(max_examples=60, deadline=None, suppress_health_check=suppress)
@given(data=st.data())
def test_every_wrong_option_is_refused_before_anything_happens(
    entry: str, model: str, data: st.DataObject, mock: OpenAIProvider, sent: Counting,
    no_server: Path,
) -> None:  # fmt: skip
    name = data.draw(st.sampled_from(sorted(WRONG)), label="option")
    value = data.draw(WRONG[name], label="value")
    before = children()
    with pytest.raises(InvalidOptionError) as info:
        call_with(ENTRIES[entry], model, "Hi", {name: value})
    text = one_line(info.value)
    wanted = "unknown option" if name == "bogus_option" else name.split("_option")[0]
    assert wanted in text or name in text, text
    assert isinstance(info.value, LLMError) and isinstance(info.value, ValueError)
    assert sent.requests == [] and not no_server.exists() and children() <= before


@pytest.mark.parametrize("entry", list(ENTRIES))
@pytest.mark.parametrize("model", [MODEL_ID, "local"])
@settings(max_examples=40, deadline=None, suppress_health_check=suppress)
@given(prompt=bad_prompt)
def test_every_wrong_prompt_is_refused_before_anything_happens(
    entry: str, model: str, prompt: Any, mock: OpenAIProvider, sent: Counting, no_server: Path
) -> None:
    with pytest.raises(InvalidOptionError) as info:
        call_with(ENTRIES[entry], model, prompt, {})
    text = one_line(info.value)
    assert any(w in text for w in ("prompt", "message", "content", "tool call", "role")), text
    assert sent.requests == [] and not no_server.exists()


def test_the_guard_sees_a_server_start(no_server: Path) -> None:
    """The recording binary is what ``local`` would run: a valid call does run it (unless
    an earlier test in this process already started the bundled server, which ``local``
    then reuses, starting nothing)."""
    try:
        llm_nb.chat("local", "Hi", timeout=5, max_tokens=1)
    except LLMError:
        assert no_server.exists()
        no_server.unlink()


@pytest.mark.parametrize("model", [5, None, b"local", ["local"]])
def test_a_model_id_that_is_not_a_string(model: Any, sent: Counting, no_server: Path) -> None:
    for entry in ENTRIES.values():
        with pytest.raises(InvalidOptionError, match="model id must be a string"):
            call_with(entry, model, "Hi", {})
    assert sent.requests == [] and not no_server.exists()


def test_the_issue_cases_name_the_option_and_the_form(mock: OpenAIProvider, sent: Counting) -> None:
    cases: list[tuple[Any, dict[str, Any], str]] = [
        (None, {}, "the prompt must be a string, a message dict"),
        (42, {}, "the prompt must be"),
        ([("user", "hi")], {}, "each message must be"),
        ([1, 2], {}, "each message must be"),
        ("hi", {"temperature": "hot"}, "temperature must be between 0 and 2 (a number), got 'hot'"),
        ("hi", {"stop": 123}, "stop must be a string or a list of non-empty strings, got 123"),
        ("hi", {"top_p": "x"}, "top_p must be above 0 and at most 1"),
        ("hi", {"response_format": 5}, "response_format must be 'json', 'text' or a JSON-schema"),
        ("hi", {"extra": "x"}, "extra must be a dict of request fields"),
        ("hi", {"temperature": True}, "temperature must be between 0 and 2 (a number), got True"),
        ("hi", {"max_tokens": 10.0}, "max_tokens must be a positive whole number"),
        ("hi", {"system": 5}, "system must be a string"),
    ]
    for prompt, options, says in cases:
        with pytest.raises(InvalidOptionError) as info:
            llm_nb.chat(MODEL_ID, prompt, **options)
        assert says in one_line(info.value), (prompt, options, str(info.value))
    assert sent.requests == []


def test_a_long_string_in_the_wrong_place_is_not_echoed() -> None:
    secret = "sk-" + "x" * 40
    with pytest.raises(InvalidOptionError) as info:
        ChatOptions(temperature=secret)  # type: ignore[arg-type]
    assert secret not in str(info.value) and "a str" in str(info.value)


def test_accepted_forms_are_normalized_for_the_wire() -> None:
    import numpy as np

    opts = ChatOptions.from_kwargs(
        temperature=np.float32(0.5),
        top_p=1,
        max_tokens=np.int64(8),
        seed=-1,
        stop=["a", "b"],
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {}}},
        tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
        tool_choice={"type": "function", "function": {"name": "f"}},
        extra=None,
        timeout=5,
    )
    assert type(opts.temperature) is float and type(opts.max_tokens) is int
    assert opts.stop == ("a", "b") and opts.response_format == {} and opts.extra == {}
    assert opts.timeout == 5.0 and opts.read_timeout is None
    assert ChatOptions(response_format={"type": "json_object"}).response_format == "json"
    assert ChatOptions(stop="x").stop == ("x",)
    # A message dumped from an SDK object carries None for what it lacks; text parts join.
    msg = Message.coerce(
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
         "refusal": None, "audio": None}
    )  # fmt: skip
    assert msg == Message("user", "ab")
    fn = {"name": "f", "arguments": {"a": 1}}
    call = Message.coerce({"role": "assistant", "tool_calls": [{"id": "1", "function": fn}]})
    assert call.tool_calls[0].arguments == '{"a": 1}' and call.content == ""


def test_provider_methods_and_sync_refuse_before_sending(
    mock: OpenAIProvider, sent: Counting
) -> None:
    with pytest.raises(InvalidOptionError, match="temperature"):
        mock.stream("m", "hi", temperature="hot")
    with pytest.raises(InvalidOptionError, match="the model name must be a string"):
        mock.stream(5, "hi")  # type: ignore[arg-type]
    with pytest.raises(InvalidOptionError, match="stop"):
        asyncio.run(mock.chat("m", "hi", stop=123))
    s = llm_nb.sync(mock)
    with pytest.raises(InvalidOptionError, match="the prompt"):
        s.chat("m", None)
    with pytest.raises(InvalidOptionError, match="extra"):
        s.stream("m", "hi", extra="x")
    with pytest.raises(InvalidOptionError, match="read_timeout"):
        OpenAIProvider(HOST, read_timeout=0)
    assert sent.requests == []


def test_panels_and_evaluate_refuse_before_anything(
    mock: OpenAIProvider, sent: Counting, no_server: Path
) -> None:
    with pytest.raises(InvalidOptionError, match="temperature"):
        llm_nb.chat_panel("local", temperature="hot")
    with pytest.raises(InvalidOptionError, match="response_format"):
        llm_nb.compare_panel(["local", MODEL_ID], response_format=5)
    with pytest.raises(InvalidOptionError, match="top_p"):
        llm_nb.evaluate(["hi"], ["local"], top_p="x", progress=False)
    with pytest.raises(InvalidOptionError, match="each message"):
        llm_nb.evaluate([[("user", "hi")]], ["local"], progress=False)
    assert sent.requests == [] and not no_server.exists()


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("-x '{\"stream\": false}'", "extra may not set stream"),
        ("-x '{\"options\": 5}'", "extra['options'] must be a dict"),
        ("-t 5", "temperature must be between 0 and 2"),
        ("--stop ''", "stop must be a string or a list of non-empty strings"),
    ],
)
def test_llm_cell_refuses_before_starting_local(
    shell: InteractiveShell,
    capsys: pytest.CaptureFixture[str],
    no_server: Path,
    line: str,
    says: str,
) -> None:
    before = children()
    result = shell.run_cell(f"%%llm local {line}\nHi")
    lines = capsys.readouterr().out.strip().splitlines()
    assert result.error_in_exec is not None
    assert len(lines) == 1 and says in lines[0], lines
    assert not no_server.exists() and children() <= before
