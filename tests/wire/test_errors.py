"""Errors classified by what the server says: its ``code`` / ``type`` first, in every body
shape servers use, the wording only when they say nothing specific, the HTTP status last."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from llm_nb import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ContextLengthError,
    ModelNotFoundError,
    NotFoundError,
    PermissionDeniedError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
    ServiceUnavailableError,
)
from llm_nb._wire.errors import classify, error_body, parse_error_body, status_error
from llm_nb._wire.retry import RetryPolicy
from llm_nb.providers import LlamaCppProvider, OllamaProvider, OpenAIProvider


def body(obj: Any) -> bytes:
    return json.dumps(obj).encode()


@pytest.mark.parametrize(
    ("status", "raw", "cls"),
    [
        # identifiers decide, whatever the status
        (400, {"error": {"message": "x", "code": "model_not_found"}}, ModelNotFoundError),
        (404, {"error": {"message": "x", "code": "model_not_found"}}, ModelNotFoundError),
        (400, {"error": {"message": "x", "code": "context_length_exceeded"}}, ContextLengthError),
        (400, {"error": {"message": "x", "code": "CONTEXT_LENGTH_EXCEEDED"}}, ContextLengthError),
        (400, {"error": {"code": 400, "message": "x", "type": "exceed_context_size_error"}},
         ContextLengthError),
        (500, {"error": {"code": 500, "message": "x", "type": "exceed_context_size_error"}},
         ContextLengthError),
        (429, {"error": {"message": "x", "type": "insufficient_quota", "code": None}},
         QuotaExceededError),
        (429, {"error": {"message": "context is fine", "code": "rate_limit_exceeded"}},
         RateLimitError),
        (404, {"error": {"code": "DeploymentNotFound", "message": "x"}}, ModelNotFoundError),
        (400, {"object": "error", "message": "x", "type": "invalid_model", "code": "1500"},
         ModelNotFoundError),
        # identifiers say what kind when the status does not (the catch-all 500)
        (500, {"error": {"message": "x", "type": "unavailable_error", "code": 503}},
         ServiceUnavailableError),
        (500, {"error": {"message": "x", "type": "authentication_error"}}, AuthenticationError),
        (429, {"object": "error", "message": "Rate limit exceeded", "type": "rate_limited",
               "code": "1300"}, RateLimitError),
        # ... and when only a generic class stands for the status
        (529, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
         ServiceUnavailableError),
        (413, {"error": {"message": "Request too large for model `llama-3.3-70b-versatile` in "
                         "organization `org_x` service tier `on_demand` on tokens per minute "
                         "(TPM): Limit 12000, Requested 25000, please reduce your message size "
                         "and try again.", "type": "tokens", "code": "rate_limit_exceeded"}},
         RateLimitError),
        (502, {"error": {"message": "upstream", "type": "service_unavailable"}},
         ServiceUnavailableError),
        (418, {"error": {"message": "x", "type": "invalid_request_error"}}, APIStatusError),
        # the status when nothing specific is said
        (401, {"error": {"message": "bad key", "type": "invalid_request_error"}},
         AuthenticationError),
        (403, {"type": "error", "error": {"type": "permission_error", "message": "no"}},
         PermissionDeniedError),
        (404, {"type": "error", "error": {"type": "not_found_error", "message": "no such path"}},
         NotFoundError),
        (400, {"error": {"message": "temperature must be <= 2", "type": "invalid_request_error"}},
         BadRequestError),
        (402, {"error": {"message": "Insufficient credits", "code": 402}}, QuotaExceededError),
        (422, {"detail": [{"loc": ["body", "model"], "msg": "field required"}]},
         BadRequestError),
        (503, {"error": {"message": "Loading model", "type": "unavailable_error", "code": 503}},
         ServiceUnavailableError),
        # wording, when identifiers say nothing specific
        (400, {"error": {"message": "Your input exceeds the context window of this model."}},
         ContextLengthError),
        (400, {"error": {"message": "This model's maximum context length is 4097 tokens."}},
         ContextLengthError),
        (400, {"error": "the request exceeds the available context size, try increasing it"},
         ContextLengthError),
        (400, {"error": "model 'x' not found"}, ModelNotFoundError),
        (404, {"error": {"message": "The model `x.y-1.5` does not exist."}}, ModelNotFoundError),
        (429, {"error": {"message": "You exceeded your current quota, please check"}},
         QuotaExceededError),
    ],
)  # fmt: skip
def test_classification(status: int, raw: Any, cls: type[APIStatusError]) -> None:
    assert classify(status, parse_error_body(body(raw))) is cls


@pytest.mark.parametrize(
    "message",
    [
        "Invalid model parameter 'temperature': must be <= 2",
        "This model does not support tools",
        "model field must be a string",
    ],
)
def test_wording_about_a_model_that_exists_is_a_bad_request(message: str) -> None:
    assert classify(400, parse_error_body(body({"error": {"message": message}}))) is BadRequestError


def test_wording_never_overrides_a_server_status_for_5xx() -> None:
    # A server failing is a server failure, whatever its message mentions.
    err = parse_error_body(body({"error": "model 'x' not found in cache; context lost"}))
    assert classify(502, err) is ServerError


@pytest.mark.parametrize(
    ("raw", "message", "status"),
    [
        (b"", "", None),
        (b"<html><body>Bad Gateway</body></html>", "<html><body>Bad Gateway</body></html>", None),
        (body({"statusCode": 401, "message": "Access denied"}), "Access denied", 401),
        (body([{"error": {"code": 400, "message": "bad", "status": "INVALID_ARGUMENT"}}]), "bad",
         400),
        (body({"error": "busy", "status": 503}), "busy", 503),
        (body({"detail": "Not Found"}), "Not Found", None),
        (body({"object": "error", "message": {"detail": [{"msg": "too hot"}]}}), '{"detail"',
         None),
    ],
)  # fmt: skip
def test_body_shapes(raw: bytes, message: str, status: int | None) -> None:
    err = parse_error_body(raw)
    assert err.message.startswith(message) and err.status == status


@pytest.mark.parametrize(
    ("obj", "cls", "status"),
    [
        ({"error": {"code": 500, "message": "boom", "type": "server_error"}}, ServerError, 500),
        ({"error": {"message": "slow", "type": "rate_limit_exceeded"}}, RateLimitError, 429),
        ({"error": "busy", "status": 503}, ServiceUnavailableError, 503),
        ({"error": "an error was encountered while running the model"}, ServerError, 500),
        ({"error": {"message": "This model's maximum context length is 8192 tokens"}},
         ContextLengthError, 400),
        ({"error": {"message": "x", "code": "model_not_found"}}, ModelNotFoundError, 404),
        ({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
         ServiceUnavailableError, 503),
    ],
)  # fmt: skip
def test_errors_inside_a_stream_get_a_status(
    obj: dict[str, Any], cls: type[APIStatusError], status: int
) -> None:
    exc = status_error(None, "m", provider="p", url="u", error=error_body(obj))
    assert type(exc) is cls and exc.status_code == status


# -- through a provider -----------------------------------------------------------------------


def counting(status: int, payload: Any, **headers: str) -> tuple[list[str], Any]:
    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"data": [{"id": "gpt-a"}, {"id": "gpt-b"}]})
        return httpx.Response(status, content=body(payload), headers=headers)

    return seen, httpx.MockTransport(handle)


async def test_a_400_model_not_found_lists_the_models_the_server_has() -> None:
    _, transport = counting(
        400, {"error": {"message": "The requested model 'gpt-z' does not exist.",
                        "type": "invalid_request_error", "param": "model",
                        "code": "model_not_found"}},
    )  # fmt: skip
    p = OpenAIProvider("http://127.0.0.1:9/v1", transport=transport, retry=RetryPolicy(0))
    with pytest.raises(ModelNotFoundError, match=r"'gpt-z' not found.*: gpt-a, gpt-b") as e:
        await p.chat("gpt-z", "hi")
    assert e.value.status_code == 400 and e.value.available == ["gpt-a", "gpt-b"]
    assert e.value.error_type == "model_not_found"


async def test_llama_server_context_error_in_the_stream_keeps_the_partial_answer() -> None:
    frames = (
        b'data: {"choices":[{"index":0,"delta":{"content":"par"}}],"model":"m"}\n\n'
        b'data: {"error":{"code":400,"message":"request (731 tokens) exceeds the available '
        b'context size (512 tokens), try increasing it","type":"exceed_context_size_error"}}\n\n'
    )
    transport = httpx.MockTransport(lambda r: httpx.Response(200, content=frames))
    p = LlamaCppProvider("http://127.0.0.1:9", transport=transport, retry=RetryPolicy(0))
    with pytest.raises(ContextLengthError, match="mid-stream") as info:
        await p.stream("m", "hi").collect()
    assert info.value.status_code == 400 and info.value.error_type == "exceed_context_size_error"
    assert info.value.partial is not None and info.value.partial.text == "par"


async def test_ollama_unknown_model_lists_installed_models() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/tags":
            return httpx.Response(200, json={"models": [{"name": "qwen3:0.6b"}]})
        if request.url.path == "/api/ps":
            return httpx.Response(200, json={"models": []})
        return httpx.Response(404, json={"error": "model 'llama9' not found"})

    p = OllamaProvider(
        "http://127.0.0.1:11434", transport=httpx.MockTransport(handle), retry=RetryPolicy(0)
    )
    with pytest.raises(ModelNotFoundError, match=r"available: qwen3:0\.6b"):
        await p.chat("llama9", "hi")


async def test_embeddings_for_an_unknown_model_list_the_models_too() -> None:
    _, transport = counting(404, {"error": {"message": "x", "code": "model_not_found"}})
    p = OpenAIProvider("http://127.0.0.1:9/v1", transport=transport, retry=RetryPolicy(0))
    with pytest.raises(ModelNotFoundError, match="'emb-z' not found") as info:
        await p.embed("emb-z", "hello")
    assert info.value.available == ["gpt-a", "gpt-b"]
