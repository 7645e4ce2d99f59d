"""Calls for the stats tests: a finished response with a known trace (``record``) and providers
over a scripted SSE handler (``mock``). Plain functions, so a child process can import them
too (with this folder on its ``sys.path``)."""

from __future__ import annotations

import json
from typing import Any

import httpx

from llm_nb._types import CallTrace, ChatResponse, Usage
from llm_nb._wire.retry import RetryPolicy

MS = 1_000_000


def record(**kw: Any) -> ChatResponse:
    trace = CallTrace(
        t_send_ns=0,
        t_headers_ns=5 * MS,
        t_first_token_ns=100 * MS,
        t_first_answer_ns=150 * MS,
        t_done_ns=510 * MS,
        t_end_ns=520 * MS,
        token_times_ns=[100 * MS, 150 * MS, 200 * MS, 300 * MS, 500 * MS],
    )
    r = ChatResponse(
        "llamacpp",
        "127.0.0.1:8080",
        "m",
        text="hello",
        trace=trace,
        usage=Usage(10, 5, 15),
        finish_reason="stop",
    )
    for k, v in kw.items():
        setattr(r, k, v)
    return r


def sse_handler(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content)
    if not body.get("stream"):
        return httpx.Response(
            200,
            json={
                "model": "gpt-4o-mini",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "whole"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 1000, "completion_tokens": 2000, "total_tokens": 3000},
            },
        )
    chunks = [
        {"model": "m", "choices": [{"index": 0, "delta": {"content": c}, "finish_reason": None}]}
        for c in "abc"
    ]
    text = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks)
    text += 'data: {"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
    return httpx.Response(200, text=text + "data: [DONE]\n\n")


def mock(cls: type[Any], handler: Any = sse_handler, host: str = "127.0.0.1:9") -> Any:
    return cls(
        host, transport=httpx.MockTransport(handler), api_key="k", retry=RetryPolicy(max_retries=0)
    )
