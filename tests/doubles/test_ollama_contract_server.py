"""The Ollama contract server (tests/contract) with its deterministic fake backend, driven by
``ollama.AsyncClient`` itself, every reply validated with the ``ollama`` package's types: chat,
streaming, options, tools, thinking, load and unload, listing, pulls, embeddings, faults, and
how drift from the real types is reported. Over a llama-server: test_ollama_contract_backend.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import ollama
import pytest

from tests.contract import OllamaContractServer, contract_problems
from tests.contract.ollama_server import store as contract_store
from tests.doubles.ollama_calls import TIME_TOOL, WEATHER_TOOL, drain, eventually, user

pytestmark = pytest.mark.doubles  # these tests check the doubles against the real clients


@pytest.fixture
def server() -> Iterator[OllamaContractServer]:
    with OllamaContractServer(None) as srv:
        yield srv
    assert srv.violations == []


@pytest.fixture
async def client(server: OllamaContractServer) -> AsyncIterator[ollama.AsyncClient]:
    async with ollama.AsyncClient(host=server.url, timeout=30) as c:
        yield c


async def test_chat_streams_ndjson(client: ollama.AsyncClient) -> None:
    parts = [p async for p in await client.chat("smollm2:135m", user("Hi there"), stream=True)]
    text = "".join(p.message.content or "" for p in parts)
    assert text == "Hello! This is a deterministic reply to: Hi there"
    assert all(not p.done for p in parts[:-1])
    final = parts[-1]
    assert final.done and final.done_reason == "stop" and final.message.content == ""
    assert final.eval_count == len(parts) - 1
    assert final.prompt_eval_count and final.total_duration and final.eval_duration
    assert final.total_duration >= final.eval_duration


async def test_chat_stream_wire_format(server: OllamaContractServer) -> None:
    body = {"model": "smollm2", "messages": user("x")}
    async with httpx.AsyncClient(base_url=server.url) as http:
        missing = await http.post("/api/chat", json=body)  # no tag means :latest: not installed
        assert missing.status_code == 404
        assert missing.json() == {"error": "model 'smollm2' not found"}
        async with http.stream("POST", "/api/chat", json={**body, "model": "smollm2:135m"}) as r:
            assert r.status_code == 200
            assert r.headers["content-type"] == "application/x-ndjson"
            assert r.headers["transfer-encoding"] == "chunked"
            lines = [line async for line in r.aiter_lines()]
    assert all(json.loads(line)["model"] == "smollm2:135m" for line in lines)
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", json.loads(lines[0])["created_at"]
    )


async def test_chat_non_streaming(client: ollama.AsyncClient) -> None:
    response = await client.chat("smollm2:135m", user("Hi"), stream=False)
    assert response.done and response.done_reason == "stop"
    assert response.message.content == "Hello! This is a deterministic reply to: Hi"


async def test_chat_options_num_predict_and_stop(
    client: ollama.AsyncClient, server: OllamaContractServer
) -> None:
    cut = await client.chat("smollm2:135m", user("a b c d e f"), options={"num_predict": 3})
    assert cut.done_reason == "length" and cut.eval_count == 3
    assert cut.message.content == "Hello! This is"
    stopped = await client.chat("smollm2:135m", user("x"), options={"stop": ["reply"]})
    assert stopped.done_reason == "stop"
    assert stopped.message.content == "Hello! This is a deterministic "
    assert server.requests[-1].body["options"] == {"stop": ["reply"]}


async def test_chat_bad_option_type(client: ollama.AsyncClient) -> None:
    with pytest.raises(ollama.ResponseError) as caught:
        await client.chat("smollm2:135m", user("x"), options={"top_k": "many"})
    assert caught.value.status_code == 500
    assert caught.value.error == 'option "top_k" must be of type integer'


async def test_chat_format(client: ollama.AsyncClient) -> None:
    as_json = await client.chat("smollm2:135m", user("hello"), format="json")
    assert json.loads(as_json.message.content or "") == {"reply": "hello"}
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    shaped = await client.chat("smollm2:135m", user("Paris"), format=schema)
    assert json.loads(shaped.message.content or "") == {"city": "Paris"}


async def test_chat_thinking(client: ollama.AsyncClient) -> None:
    parts = [p async for p in await client.chat("qwen3:0.6b", user("hi"), stream=True)]
    assert "".join(p.message.thinking or "" for p in parts) == "Let me think about that."
    assert parts[-1].message.thinking is None
    off = await client.chat("qwen3:0.6b", user("hi"), think=False)
    assert off.message.thinking is None
    with pytest.raises(ollama.ResponseError) as caught:
        await client.chat("smollm2:135m", user("hi"), think=True)
    assert caught.value.status_code == 400
    assert caught.value.error == '"smollm2:135m" does not support thinking'


async def test_chat_capability_errors(client: ollama.AsyncClient) -> None:
    with pytest.raises(ollama.ResponseError, match="does not support chat"):
        await client.chat("all-minilm:22m", user("hi"))
    with pytest.raises(ollama.ResponseError) as caught:
        await client.chat("nope:1b", user("hi"))
    assert (caught.value.status_code, caught.value.error) == (404, "model 'nope:1b' not found")


async def test_chat_tool_call_round_trip(
    client: ollama.AsyncClient, server: OllamaContractServer
) -> None:
    ask = user("Use get_weather and get_time for Paris")
    first = await client.chat("smollm2:135m", ask, tools=[WEATHER_TOOL, TIME_TOOL])
    calls = first.message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_weather", "get_time"]
    assert calls[0].function.arguments == {"city": "Paris", "unit": "celsius"}
    assert calls[1].function.arguments == {"timezone": "Paris"}
    assert first.done_reason == "stop"
    history: list[Any] = [
        *ask,
        first.message,
        {"role": "tool", "content": "18 degrees", "tool_name": "get_weather"},
    ]
    second = await client.chat("smollm2:135m", history, tools=[WEATHER_TOOL, TIME_TOOL])
    assert second.message.content == "The get_weather tool returned: 18 degrees"
    sent = server.requests[-1].body
    assert sent["messages"][-1] == {
        "role": "tool",
        "content": "18 degrees",
        "tool_name": "get_weather",
    }
    assert isinstance(sent["messages"][1]["tool_calls"][0]["function"]["arguments"], dict)


async def test_chat_tools_on_model_without_tools(client: ollama.AsyncClient) -> None:
    await client.pull("tinyllama")
    with pytest.raises(ollama.ResponseError) as caught:
        await client.chat("tinyllama", user("hi"), tools=[WEATHER_TOOL])
    assert caught.value.status_code == 400
    assert caught.value.error.endswith("tinyllama:latest does not support tools")


async def test_keep_alive_load_unload_and_ps(
    client: ollama.AsyncClient, server: OllamaContractServer
) -> None:
    assert (await client.ps()).models == []
    loaded = await client.chat("smollm2:135m", [], keep_alive="10m")
    assert loaded.done_reason == "load" and loaded.message.content == ""
    (entry,) = (await client.ps()).models
    assert entry.model == entry.name == "smollm2:135m"
    assert entry.expires_at is not None and entry.context_length == 4096
    remaining = entry.expires_at - datetime.now(UTC)
    assert timedelta(minutes=9) < remaining <= timedelta(minutes=10)
    assert entry.size_vram == entry.size
    unloaded = await client.chat("smollm2:135m", [], keep_alive=0)
    assert unloaded.done_reason == "unload"
    assert (await client.ps()).models == []
    await client.chat("smollm2:135m", user("hi"), keep_alive=0)
    assert server.loaded_models == [], "keep_alive 0 unloads once the request is done"
    await client.chat("qwen3:0.6b", user("hi"), keep_alive=-1, options={"num_ctx": 8192})
    (forever,) = (await client.ps()).models
    assert forever.expires_at is not None and forever.expires_at.year > 2200
    assert forever.context_length == 8192
    with pytest.raises(ollama.ResponseError, match="invalid duration"):
        await client.chat("qwen3:0.6b", [], keep_alive="soon")


async def test_list_show_delete(client: ollama.AsyncClient, server: OllamaContractServer) -> None:
    names = [m.model for m in (await client.list()).models]
    assert names == ["qwen3:0.6b", "smollm2:135m", "all-minilm:22m"], "newest first"
    shown = await client.show("smollm2:135m")
    assert shown.capabilities == ["completion", "tools"]
    assert shown.details and shown.details.parameter_size == "134.52M"
    assert shown.modelinfo and shown.modelinfo["llama.context_length"] == 8192
    assert shown.modelfile and shown.modelfile.startswith('# Modelfile generated by "ollama show"')
    with pytest.raises(ollama.ResponseError) as missing:
        await client.show("smollm2")
    assert missing.value.status_code == 404
    assert (await client.delete("all-minilm:22m")).status == "success"
    assert server.requests[-1].method == "DELETE"
    with pytest.raises(ollama.ResponseError) as again:
        await client.delete("all-minilm:22m")
    assert (again.value.status_code, again.value.error) == (404, "model 'all-minilm:22m' not found")


async def test_delete_answers_empty_200(server: OllamaContractServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        r = await http.request("DELETE", "/api/delete", json={"model": "smollm2:135m"})
    assert r.status_code == 200 and r.content == b""


async def test_pull_streams_progress_then_lists(client: ollama.AsyncClient) -> None:
    progress = [p async for p in await client.pull("tinyllama", stream=True)]
    statuses = [p.status for p in progress]
    assert statuses[0] == "pulling manifest"
    assert statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    layers = [p for p in progress if p.digest]
    assert layers and all(p.total for p in layers)
    weights = [p for p in layers if p.digest == layers[0].digest]
    assert weights[0].completed is None, "completed is omitted while it is 0"
    assert [p.completed for p in weights[1:]] == sorted(p.completed or 0 for p in weights[1:])
    assert weights[-1].completed == weights[-1].total
    assert "tinyllama:latest" in [m.model for m in (await client.list()).models]
    assert (await client.pull("tinyllama", stream=False)).status == "success"


async def test_pull_missing_model(client: ollama.AsyncClient, server: OllamaContractServer) -> None:
    seen: list[Any] = []
    with pytest.raises(ollama.ResponseError) as in_stream:
        await drain(await client.pull("nope:1b", stream=True), seen)
    assert [p.status for p in seen] == ["pulling manifest"]
    assert in_stream.value.error == "pull model manifest: file does not exist"
    with pytest.raises(ollama.ResponseError) as whole:
        await client.pull("nope:1b", stream=False)
    assert whole.value.status_code == 500
    async with httpx.AsyncClient(base_url=server.url) as http:
        r = await http.post("/api/pull", json={"model": "nope:1b"})
    assert r.status_code == 200, "the error arrives inside an HTTP 200 stream"
    assert r.text.splitlines()[-1] == '{"error":"pull model manifest: file does not exist"}'


async def test_embed(client: ollama.AsyncClient) -> None:
    one = await client.embed("all-minilm:22m", "hello world")
    assert len(one.embeddings) == 1 and len(one.embeddings[0]) == 384
    assert abs(sum(v * v for v in one.embeddings[0]) - 1) < 1e-9, "Ollama L2-normalizes"
    assert one.prompt_eval_count == 2 and one.total_duration and one.load_duration
    many = await client.embed("all-minilm:22m", ["hello world", "bye"])
    assert many.embeddings[0] == one.embeddings[0], "deterministic"
    small = await client.embed("all-minilm:22m", "hello", dimensions=8)
    assert len(small.embeddings[0]) == 8
    empty = await client.embed("all-minilm:22m", "")
    assert empty.embeddings == [] and empty.total_duration is None
    with pytest.raises(ollama.ResponseError, match="model 'nope' not found"):
        await client.embed("nope", "x")


async def test_version_root_and_unknown_routes(server: OllamaContractServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        assert (await http.get("/api/version")).json() == {"version": "0.12.10"}
        root = await http.get("/")
        assert root.text == "Ollama is running"
        unknown = await http.get("/api/generate-nothing")
        assert (unknown.status_code, unknown.text) == (404, "404 page not found")
        assert (await http.get("/api/chat")).status_code == 405
        no_body = await http.post("/api/chat")
        assert (no_body.status_code, no_body.json()) == (400, {"error": "missing request body"})


async def test_requests_are_logged(
    client: ollama.AsyncClient, server: OllamaContractServer
) -> None:
    await client.chat("smollm2:135m", user("hi"), options={"temperature": 0}, keep_alive="1m")
    (request,) = server.requests
    assert (request.method, request.path) == ("POST", "/api/chat")
    assert request.body["options"] == {"temperature": 0}
    assert request.body["keep_alive"] == "1m"
    assert request.headers["user-agent"].startswith("ollama-python/")


async def test_fault_mid_stream_error_line(
    client: ollama.AsyncClient, server: OllamaContractServer
) -> None:
    server.faults.stream_error_after = 2
    seen: list[Any] = []
    with pytest.raises(ollama.ResponseError) as caught:
        await drain(await client.chat("smollm2:135m", user("hi"), stream=True), seen)
    assert len(seen) == 2
    assert caught.value.status_code == -1, "an error line, after an HTTP 200"
    server.faults.stream_error_after = 0
    with pytest.raises(ollama.ResponseError) as before_any:
        await drain(await client.chat("smollm2:135m", user("hi"), stream=True))
    assert before_any.value.status_code == 500, "nothing sent yet: a real status and JSON body"


async def test_client_disconnect_stops_the_stream(server: OllamaContractServer) -> None:
    server.faults.chunk_delay_s = 0.02
    long_prompt = " ".join(["word"] * 200)
    async with ollama.AsyncClient(host=server.url, timeout=30) as client:
        stream = await client.chat("smollm2:135m", user(long_prompt), stream=True)
        async for part in stream:
            if not part.done:
                break
        await stream.aclose()
    assert await eventually(lambda: server.disconnects == 1)
    # The model stays listed; a new request still works after the abandoned one.
    async with ollama.AsyncClient(host=server.url, timeout=30) as client:
        server.faults.chunk_delay_s = 0
        assert (await client.chat("smollm2:135m", user("again"))).done


async def test_violations_are_caught(
    server: OllamaContractServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(contract_store, "go_time", lambda _moment: "last tuesday")
    async with httpx.AsyncClient(base_url=server.url) as http:
        r = await http.get("/api/tags")
    assert r.status_code == 500
    assert r.json() == {"error": "contract violation; see server.violations"}
    assert len(server.violations) == 1 and "ListResponse" in server.violations[0]
    server.violations.clear()  # this test made the violation on purpose


def test_contract_problems_reports_drift() -> None:
    good = {"model": "m", "created_at": "2025-01-01T00:00:00Z", "message": {"role": "assistant"}}
    assert contract_problems(json.dumps(good), ollama.ChatResponse) == []
    typo = {**good, "done": True, "eval_cnt": 3}
    assert contract_problems(json.dumps(typo), ollama.ChatResponse) == ["drops eval_cnt"]
    float_ns = {**good, "done": True, "eval_duration": 1.5}
    assert contract_problems(json.dumps(float_ns), ollama.ChatResponse) != []
    string_count = {**good, "eval_count": "3"}
    assert contract_problems(json.dumps(string_count), ollama.ChatResponse) != []
    nested = {"models": [{"model": "m", "name": "m", "detials": {}}]}
    assert contract_problems(json.dumps(nested), ollama.ListResponse) == ["drops models[].detials"]
