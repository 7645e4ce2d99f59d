"""The Session: isolated state, the default session behind the API, server facts fetched by
the providers and handed to the recorder, and a loop thread that stops with its session."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

import llm_nb
from llm_nb._session import Session, default_session, registry, run_sync, use_session
from llm_nb._stats import Recorder
from llm_nb._types import ChatResponse
from llm_nb._wire.retry import RetryPolicy
from llm_nb.providers import LlamaCppProvider, OllamaProvider, OpenAIProvider

HOST = "127.0.0.1:9"
MODEL_ID = f"llamacpp:m@{HOST}"

PROPS = {
    "build_info": "b4321-abcdef0",
    "model_path": "/models/m.gguf",
    "model_ftype": "Q4_1",
    "default_generation_settings": {"n_ctx": 1024},
    "total_slots": 4,
}


class InMemoryLlamaServer:
    """A llama-server answered in memory: chat answers (or a 500 for the prompt "fail") and
    /props; it counts what was asked."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        if request.url.path == "/props":
            return httpx.Response(200, json=PROPS)
        body = json.loads(request.content)
        if body["messages"][-1]["content"] == "fail":
            return httpx.Response(500, json={"error": {"message": "boom"}})
        return httpx.Response(
            200,
            json={
                "model": body["model"],
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": "hi"},
                     "finish_reason": "stop"}
                ],
            },
        )  # fmt: skip

    def provider(self) -> LlamaCppProvider:
        return LlamaCppProvider(
            HOST, transport=httpx.MockTransport(self), retry=RetryPolicy(max_retries=0)
        )


def quiet() -> Session:
    return Session(recorder=Recorder(None, None), server_facts=False)


async def until(test: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not test():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


# -- isolation ----------------------------------------------------------------------------------


def test_a_session_records_its_own_calls_only() -> None:
    server = InMemoryLlamaServer()
    default_rows = len(default_session().recorder.rows())
    with quiet() as a, quiet() as b:
        a.registry.add(server.provider())
        b.registry.add(server.provider())
        with use_session(a):
            assert llm_nb.chat(MODEL_ID, "hi").text == "hi"
            assert registry() is a.registry
        with use_session(b):
            llm_nb.chat(MODEL_ID, "hi")
            llm_nb.chat(MODEL_ID, "hi")
        assert len(a.recorder.rows()) == 1 and len(b.recorder.rows()) == 2
        assert {r["run_id"] for r in a.recorder.rows()} == {a.run_id} != {b.run_id}
        assert len(a.stats()) == 1 and len(b.summary()) == 1
    # Neither touched the default session, which is the default again.
    assert registry() is default_session().registry
    assert len(default_session().recorder.rows()) == default_rows


async def test_a_provider_outside_any_session_reports_to_the_default_one() -> None:
    server = InMemoryLlamaServer()
    p = server.provider()
    try:
        with quiet() as s, use_session(s):
            r = await p.chat("m", "hi")
            (row,) = s.recorder.rows()
            assert row["call_id"] == r.call_id and row["status"] == "ok"
    finally:
        await p.aclose()


def test_recording_off_records_nothing_and_fetches_nothing() -> None:
    server = InMemoryLlamaServer()
    with Session(recorder=Recorder(None, None), record=False) as s, use_session(s):
        s.registry.add(server.provider())
        r = llm_nb.chat(MODEL_ID, "hi")
        assert r.status == "ok" and r.call_id == ""
        assert s.recorder.rows() == [] and s.recorder.server_facts == {}
    assert server.paths == ["/v1/chat/completions"]


def test_closing_a_session_stops_its_loop_thread() -> None:
    def loop_threads() -> int:
        return sum(t.name == "llm_nb-loop" for t in threading.enumerate())

    before = loop_threads()
    s = quiet()
    assert not s.loop.started  # nothing runs until it is used
    assert s.loop.run_sync(asyncio.sleep(0, "done")) == "done"
    assert s.loop.started and loop_threads() == before + 1
    s.close()
    assert not s.loop.started and loop_threads() == before


def test_the_sync_api_refuses_its_own_loop() -> None:
    with quiet() as s:

        async def inner() -> None:
            coro = asyncio.sleep(0)
            with pytest.raises(RuntimeError, match="use the async API"):
                s.loop.run_sync(coro)

        s.loop.run_sync(inner())


# -- server facts -------------------------------------------------------------------------------


async def test_server_facts_come_from_the_provider_once_and_go_to_the_recorder() -> None:
    """After a successful call the session asks the server's provider (here: /props) once
    per run, provider, host and model, on its own loop, and the recorder keeps the answer."""
    server = InMemoryLlamaServer()
    rec = Recorder(None, None)
    with Session(recorder=rec) as s, use_session(s):
        p = s.registry.add(server.provider())
        try:
            r = await llm_nb.achat(MODEL_ID, "hi")
            key = (r.run_id, "llamacpp", HOST, "m")
            assert await until(lambda: "fetched_at" in rec.server_facts.get(key, {}))
            facts = rec.server_facts[key]
            assert facts["build"] == "b4321-abcdef0" and facts["quantization"] == "Q4_1"
            assert facts["n_ctx"] == 1024 and facts["total_slots"] == 4
            assert "error" not in facts
            await llm_nb.achat(MODEL_ID, "again")
            with pytest.raises(llm_nb.ServerError):
                await llm_nb.achat("llamacpp:other@" + HOST, "fail")
            await asyncio.sleep(0.1)
            # One fetch for the two good calls, none for the failed one.
            assert server.paths.count("/props") == 1
            assert list(rec.server_facts) == [key]
            (summary,) = s.summary(model="m").to_dict("records")
            assert summary["quantization"] == "Q4_1" and summary["n_ctx"] == 1024
        finally:
            await p.aclose()


async def test_a_fact_the_server_refuses_is_an_error_in_the_facts_not_in_the_call() -> None:
    def refuse_props(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/props":
            return httpx.Response(404, json={"error": {"message": "no props here"}})
        return InMemoryLlamaServer()(request)

    rec = Recorder(None, None)
    with Session(recorder=rec) as s, use_session(s):
        p = s.registry.add(LlamaCppProvider(HOST, transport=httpx.MockTransport(refuse_props)))
        try:
            r = await llm_nb.achat(MODEL_ID, "hi")
            assert r.status == "ok"
            key = (r.run_id, "llamacpp", HOST, "m")
            assert await until(lambda: "fetched_at" in rec.server_facts.get(key, {}))
            assert "no props here" in rec.server_facts[key]["error"]
        finally:
            await p.aclose()


async def test_each_provider_says_what_its_server_reports() -> None:
    def ollama(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/version":
            return httpx.Response(200, json={"version": "0.12.3"})
        assert request.url.path == "/api/show"
        return httpx.Response(
            200,
            json={
                "details": {"quantization_level": "Q4_K_M", "parameter_size": "1.2B",
                            "family": "llama"},
                "model_info": {"general.architecture": "llama", "llama.context_length": 131072},
            },
        )  # fmt: skip

    def nothing(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"the OpenAI wire has no facts to ask for: {request.url}")

    async with (
        OllamaProvider(HOST, transport=httpx.MockTransport(ollama)) as o,
        LlamaCppProvider(HOST, transport=httpx.MockTransport(InMemoryLlamaServer())) as ll,
        OpenAIProvider(HOST, api_key="sk-x", transport=httpx.MockTransport(nothing)) as oa,
    ):
        assert await o.server_facts("llama3.2:1b") == {
            "version": "0.12.3",
            "quantization": "Q4_K_M",
            "parameter_size": "1.2B",
            "family": "llama",
            "n_ctx": 131072,
        }
        assert await ll.server_facts("m") == {
            "build": "b4321-abcdef0",
            "model_path": "/models/m.gguf",
            "quantization": "Q4_1",
            "n_ctx": 1024,
            "total_slots": 4,
        }
        assert await oa.server_facts("gpt-4o-mini") == {}


def test_the_recorder_consumes_only_what_it_is_handed() -> None:
    """Rows and facts in, nothing out: recording imports neither the registry nor a
    provider, and a record handed to it makes a row without any server."""
    code = (
        "import sys\n"
        "from llm_nb._stats import Recorder\n"
        "from llm_nb._types import ChatResponse\n"
        "r = Recorder(None, None)\n"
        "rec = ChatResponse('llamacpp', 'nowhere:1', 'm', text='x')\n"
        "r.call_started(rec); rec.status = 'ok'; r.call_finished(rec)\n"
        "key = r.claim_server_facts(rec)\n"
        "assert key is not None and r.claim_server_facts(rec) is None\n"
        "r.add_server_facts(key, {'build': 'b1'})\n"
        "assert len(r.rows()) == 1 and r.server_facts[key] == {'build': 'b1'}\n"
        "bad = [m for m in sys.modules if m.startswith(('llm_nb._registry', "
        "'llm_nb.providers', 'llm_nb._session', 'httpx'))]\n"
        "assert not bad, bad\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_failed_calls_claim_no_facts() -> None:
    r = Recorder(None, None)
    record = ChatResponse("llamacpp", HOST, "m", run_id="run")
    record.status = "error"
    assert r.claim_server_facts(record) is None and r.server_facts == {}


# -- the default session ------------------------------------------------------------------------


def test_the_default_session_is_made_on_first_use_not_at_import() -> None:
    code = (
        "import sys, llm_nb\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('llm_nb.'))\n"
        "assert loaded == ['llm_nb._observers'], loaded\n"
        "from llm_nb import _session\n"
        "assert _session._default is None\n"
        "assert llm_nb.registry() is _session.default_session().registry\n"
        "assert not any(t.name == 'llm_nb-loop' for t in __import__('threading').enumerate())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_the_registry_imports_a_provider_module_when_first_used() -> None:
    code = (
        "import sys\n"
        "from llm_nb._registry import Registry\n"
        "providers = lambda: sorted(m for m in sys.modules if m.startswith('llm_nb.providers.'))\n"
        "assert providers() == [], providers()\n"
        "Registry().get('ollama', '127.0.0.1:11434')\n"
        "assert providers() == ['llm_nb.providers.base', 'llm_nb.providers.ollama'], providers()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_run_sync_runs_on_the_default_sessions_loop() -> None:
    with quiet() as s, use_session(s):

        async def where() -> Any:
            return asyncio.get_running_loop()

        assert run_sync(where()) is s.loop.get_loop()
