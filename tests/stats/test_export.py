"""llm_nb.export of one call, a run, an evaluation or a conversation as Markdown, HTML or
JSON Lines: prompts, answers and figures, with hostile model output kept inert."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from markdown_it import MarkdownIt

import llm_nb
from llm_nb._errors import InvalidOptionError
from llm_nb._magics._chats import Conversations
from tests.faults import OPENAI, FaultServer, plays

HOSTILE = ["Sure: ", "<script>alert(1)</script>", " <img src=x onerror=alert(2)>",
           "\n```\n# not a heading\n", "````", " [x](javascript:alert(3))"]  # fmt: skip
ANSWER = "".join(HOSTILE)
PROMPT = "Tell me <b>everything</b> ```now```"


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with FaultServer(plays.answer(OPENAI, HOSTILE)) as srv:
        yield srv


def model(server: FaultServer) -> str:
    return f"openai:m@{server.url.removeprefix('http://')}"


def a_run(server: FaultServer, n: int = 2) -> tuple[str, list[str]]:
    with llm_nb.new_run(f"exp-{uuid.uuid4().hex[:8]}") as run_id:
        ids = [llm_nb.chat(model(server), PROMPT, seed=i).call_id for i in range(n)]
    return run_id, ids


def fences(text: str) -> list[str]:
    """The contents of the fenced blocks of a Markdown document; raises if any HTML is in
    it (as a CommonMark renderer would pass it through)."""
    tokens = MarkdownIt("commonmark").parse(text)
    every = [t for tok in tokens for t in [tok, *(tok.children or [])]]
    assert not [t for t in every if t.type in ("html_block", "html_inline")], text
    return [t.content.removesuffix("\n") for t in every if t.type == "fence"]


def test_a_run_as_markdown_with_prompts_answers_and_figures(
    server: FaultServer, tmp_path: Path
) -> None:
    run_id, ids = a_run(server)
    out = llm_nb.export(tmp_path / "run.md", run=run_id)
    text = out.read_text()
    blocks = fences(text)
    assert blocks.count(PROMPT) == 2 and blocks.count(ANSWER) == 2
    assert text.count("\n## ") == 2 and all(i in text for i in ids)
    # headers named as the notebook's tables name them (punctuation escaped as Markdown text)
    assert r"| model | calls | ok | TTFT \(s\) | E2E \(s\) | output tokens |" in text
    figure = r"^ok · TTFT [\d.]+ s · E2E [\d.]+ s · \d+ output tokens?( ·|$)"
    figure_lines = re.findall(figure, text, re.M)
    assert len(figure_lines) == 2
    assert "# not a heading" not in [
        t.content for t in MarkdownIt("commonmark").parse(text) if t.type == "inline"
    ]


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_export_keeps_hostile_output_inert(server: FaultServer, tmp_path: Path) -> None:
    run_id, _ = a_run(server, 1)
    page = llm_nb.export(tmp_path / "run.html", run=run_id).read_text()
    parsed = Tags()
    parsed.feed(page)
    names = {t for t, _ in parsed.tags}
    assert "script" not in names and "img" not in names
    attrs = [(k, v) for _, a in parsed.tags for k, v in a]
    assert not [k for k, _ in attrs if k.startswith("on")]
    assert not [v for k, v in attrs if v and "javascript:" in v]
    shown = "".join(parsed.text)
    assert "<script>alert(1)</script>" in shown and PROMPT in shown  # shown as text


def test_jsonl_has_one_call_per_line_with_its_request(server: FaultServer, tmp_path: Path) -> None:
    run_id, ids = a_run(server)

    def strict(name: str) -> Any:
        raise ValueError(f"not JSON: {name}")

    lines = llm_nb.export(tmp_path / "run.jsonl", run=run_id).read_text().splitlines()
    objs = [json.loads(line, parse_constant=strict) for line in lines]
    assert [o["call_id"] for o in objs] == ids
    assert objs[0]["text"] == ANSWER and objs[0]["request"]["messages"][-1]["content"] == PROMPT
    assert objs[1]["request"]["options"] == {"seed": 1}
    assert objs[0]["cost_usd"] is None  # NaN becomes null


def test_one_call_and_a_conversation(server: FaultServer, tmp_path: Path) -> None:
    _, ids = a_run(server)
    one = llm_nb.export(tmp_path / "one.md", call=ids[1]).read_text()
    assert ids[1] in one and ids[0] not in one and one.count("\n## ") == 1
    name = f"conv-{uuid.uuid4().hex[:8]}"
    chats = Conversations()
    chats.add_turn(name, "first question", "first answer", ids[0])
    chats.add_turn(name, "second question", ANSWER, ids[1])
    text = llm_nb.export(tmp_path / "conv.md", conversation=name).read_text()
    assert fences(text) == ["first question", "first answer", "second question", ANSWER]
    lines = llm_nb.export(tmp_path / "conv.jsonl", conversation=name).read_text().splitlines()
    objs = [json.loads(line) for line in lines]
    assert [o["role"] for o in objs] == ["user", "assistant", "user", "assistant"]
    assert objs[1]["call"]["call_id"] == ids[0]


def test_an_evaluation(server: FaultServer, tmp_path: Path) -> None:
    result = llm_nb.evaluate(["q1", "q2"], [model(server)], warmup=0, progress=False,
                             scorers="valid_json", run=f"ev-{uuid.uuid4().hex[:8]}")  # fmt: skip
    text = llm_nb.export(tmp_path / "eval.md", result).read_text()
    assert text.startswith("# Evaluation " + result.run.replace("-", "\\-"))
    assert text.count("\n## ") == 2 and "scores: valid\\_json 0" in text
    assert "| score valid\\_json |" in text  # the per-model table
    table = pd.read_csv(llm_nb.export(tmp_path / "eval.csv", result))
    assert list(table["answer"]) == [ANSWER, ANSWER] and "score_valid_json" in table.columns


@pytest.mark.parametrize(
    ("args", "options", "words"),
    [
        (("x.xlsx",), {}, ".md, .html or .jsonl"),
        (("x.md",), {"run": "a", "call": "b"}, "one of frame, call, run"),
        (("x.md",), {"run": 3}, "run must be a string"),
        (("x.csv",), {"conversation": "c"}, "exports to .md"),
        (("x.md",), {"run": "no-such-run"}, "nothing to export: no run 'no-such-run'"),
        (("x.md", "not a frame"), {}, "DataFrame of calls"),
    ],
)
def test_bad_exports_are_one_line_errors(
    tmp_path: Path, args: tuple[Any, ...], options: dict[str, Any], words: str
) -> None:
    path, *rest = args
    with pytest.raises(InvalidOptionError) as err:
        llm_nb.export(tmp_path / path, *rest, **options)
    assert words in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / path).exists()
