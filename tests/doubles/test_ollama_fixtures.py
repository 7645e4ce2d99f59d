"""The Ollama wire fixtures (tests/fixtures/ollama), checked with the official client: Ollama
cannot be installed here, so every line llm_nb is tested against is validated with the
``ollama`` package's types, and ``ollama.AsyncClient`` reads each fixture.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest

from tests.contract import ErrorBody, contract_problems
from tests.doubles.ollama_calls import drain

pytestmark = pytest.mark.doubles  # these tests check the doubles against the real clients

OLLAMA = Path(__file__).parents[1] / "fixtures" / "ollama"
NDJSON_FIXTURES = sorted(p.name for p in OLLAMA.glob("*.ndjson"))


def ndjson(name: str) -> list[dict[str, Any]]:
    lines = (OLLAMA / name).read_bytes().split(b"\n")
    assert lines[-1] == b"", "NDJSON ends with a newline"
    return [json.loads(line) for line in lines[:-1]]


@pytest.mark.parametrize("name", NDJSON_FIXTURES)
def test_ollama_fixture_lines_are_valid(name: str) -> None:
    schema = ollama.ProgressResponse if name.startswith("pull") else ollama.ChatResponse
    for line in (OLLAMA / name).read_text().splitlines():
        is_error = "error" in json.loads(line)
        assert contract_problems(line, ErrorBody if is_error else schema) == [], line


@pytest.mark.parametrize("name", [n for n in NDJSON_FIXTURES if n.startswith("chat")])
def test_ollama_chat_fixture_shapes(name: str) -> None:
    lines = ndjson(name)
    if "error" in lines[-1]:
        assert all(not line["done"] for line in lines[:-1]), "the error cuts the stream short"
        return
    *parts, final = lines
    assert all(p["done"] is False and "done_reason" not in p for p in parts)
    assert final["done"] is True and final["done_reason"] in ("stop", "length")
    assert final["message"] == {"role": "assistant", "content": ""}
    for key in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration"):
        assert isinstance(final[key], int) and final[key] > 0, f"{key} is integer nanoseconds"
    assert final["total_duration"] > final["eval_duration"]
    for part in parts:
        for call in part["message"].get("tool_calls", []):
            assert isinstance(call["function"]["arguments"], dict), "Ollama sends an object"


def test_ollama_pull_fixture_shapes() -> None:
    lines = ndjson("pull_progress.ndjson")
    assert lines[0] == {"status": "pulling manifest"}
    assert [line["status"] for line in lines[-3:]] == [
        "verifying sha256 digest",
        "writing manifest",
        "success",
    ]
    for line in lines:
        if "digest" in line:
            assert re.fullmatch(r"sha256:[0-9a-f]{64}", line["digest"])
            assert line["status"] == f"pulling {line['digest'][7:19]}"
            assert line.get("completed", 0) <= line["total"]
    assert ndjson("pull_missing_model.ndjson")[-1] == {
        "error": "pull model manifest: file does not exist"
    }


async def test_ollama_client_reads_fixtures() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        model = json.loads(request.content)["model"]
        name = {
            "chat": "chat_stream.ndjson",
            "tools": "chat_tool_call.ndjson",
            "think": "chat_thinking.ndjson",
            "broken": "chat_error_midstream.ndjson",
            "pull-ok": "pull_progress.ndjson",
            "pull-missing": "pull_missing_model.ndjson",
        }[model]
        body = (OLLAMA / name).read_bytes()
        return httpx.Response(200, content=body, headers={"content-type": "application/x-ndjson"})

    transport = httpx.MockTransport(handler)
    async with ollama.AsyncClient(host="http://ollama.test", transport=transport) as client:
        parts = [p async for p in await client.chat(model="chat", messages=[], stream=True)]
        assert "".join(p.message.content or "" for p in parts).startswith("The sky looks blue")
        assert parts[-1].eval_count == 11
        tools = [p async for p in await client.chat(model="tools", messages=[], stream=True)]
        calls = tools[0].message.tool_calls or []
        assert [c.function.name for c in calls] == ["get_weather", "get_time"]
        think = [p async for p in await client.chat(model="think", messages=[], stream=True)]
        assert "".join(p.message.thinking or "" for p in think).startswith("Okay")
        progress = [p async for p in await client.pull("pull-ok", stream=True)]
        assert progress[-1].status == "success"
        with pytest.raises(ollama.ResponseError, match="unexpected EOF"):
            await drain(await client.chat(model="broken", messages=[], stream=True))
        with pytest.raises(ollama.ResponseError, match="file does not exist"):
            await drain(await client.pull("pull-missing", stream=True))
