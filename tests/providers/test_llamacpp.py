"""The llama.cpp provider over scripted responses: llama-server states that a healthy test
server never shows (loading, failed loads in a router), and its own error shapes. Against a
real llama-server: test_llamacpp_live.py."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

import llm_nb
from llm_nb import (
    ModelNotFoundError,
    UnsupportedError,
)
from llm_nb._wire.retry import RetryPolicy
from llm_nb.providers import LlamaCppProvider
from tests.scripted import provider, replies

NO_RETRY = RetryPolicy(max_retries=0)


def llama(handler: Any) -> LlamaCppProvider:
    return LlamaCppProvider("127.0.0.1:9", transport=httpx.MockTransport(handler), retry=NO_RETRY)


async def test_llama_health_while_loading() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            503,
            json={"error": {"message": "Loading model", "type": "unavailable_error", "code": 503}},
        )

    h = await llama(handler).health()
    assert (h.status, h.ok) == ("loading", False)


async def test_router_status_values_and_failed_load() -> None:
    models = {
        "data": [
            {"id": "a", "status": {"value": "loaded"}},
            {"id": "b", "status": {"value": "loading"}},
            {"id": "c", "status": {"value": "unloaded", "failed": True, "exit_code": 1}},
            {"id": "d", "status": {"value": "sleeping"}},
        ]
    }

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/props":
            return httpx.Response(200, json={"role": "router"})
        if request.url.path == "/models/load":
            return httpx.Response(200, json={"success": True})
        return httpx.Response(200, json=models)

    p = llama(handler)
    assert {m.name: m.status for m in await p.models()} == {
        "a": "loaded",
        "b": "loading",
        "c": "failed",
        "d": "sleeping",
    }
    with pytest.raises(llm_nb.ServerError, match="failed to load 'c' \\(exit code 1\\)"):
        await p.load("c", timeout=2)


async def test_router_unknown_model_400_becomes_model_not_found() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(
                200,
                json={
                    "data": [
                        {"id": "a", "status": {"value": "loaded"}},
                        {"id": "b", "status": {"value": "unloaded"}},
                    ]
                },
            )
        return httpx.Response(
            400,
            json={
                "error": {
                    "code": 400,
                    "message": "model 'zz' not found",
                    "type": "invalid_request_error",
                }
            },
        )

    with pytest.raises(
        ModelNotFoundError, match=r"'zz' not found on llamacpp@.*available: a, b"
    ) as info:
        await provider(LlamaCppProvider, handler).chat("zz", "hi")
    assert info.value.available == ["a", "b"]


async def test_llama_embeddings_disabled_says_how() -> None:
    handler, _ = replies(
        httpx.Response(
            501,
            json={
                "error": {
                    "code": 501,
                    "message": "This server does not support embeddings. Start it with "
                    "`--embeddings`",
                    "type": "not_supported_error",
                }
            },
        )
    )
    with pytest.raises(UnsupportedError, match="restart it with --embeddings"):
        await provider(LlamaCppProvider, handler).embed("m", "hello")
