"""A scripted llama-server for the evaluation tests: ``httpx.MockTransport`` providers that
answer chat requests with SSE and count them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx

from llm_nb._registry import Registry
from llm_nb._wire.retry import RetryPolicy
from llm_nb.providers import LlamaCppProvider


class MockServer:
    """Answers chat requests with SSE; counts them and how many are in flight at once.

    ``answer(prompt)`` gives the text (raise to answer 500); ``delay_s`` holds each request;
    a prompt in ``hold`` waits until ``release`` is set (or the request is cancelled).
    ``arrivals``, which several servers may share, gets (model, prompt) as requests arrive.
    """

    def __init__(
        self,
        answer: Callable[[str], str] = lambda p: f"answer to {p}",
        delay_s: float = 0.0,
        hold: frozenset[str] = frozenset(),
        arrivals: list[tuple[str, str]] | None = None,
    ) -> None:
        self.answer = answer
        self.delay_s = delay_s
        self.hold = hold
        self.arrivals = arrivals if arrivals is not None else []
        self.release = asyncio.Event()
        self.bodies: list[dict[str, Any]] = []
        self.inflight = 0
        self.max_inflight = 0
        self.per_model: dict[str, int] = {}
        self.max_models_at_once = 0
        self.cancelled = 0

    @property
    def requests(self) -> int:
        return len(self.bodies)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if not request.url.path.endswith("/chat/completions"):
            return httpx.Response(404, json={"error": {"message": "not here"}})
        body = json.loads(request.content)
        self.bodies.append(body)
        prompt = body["messages"][-1]["content"]
        self.arrivals.append((body["model"], prompt))
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        model = body["model"]
        self.per_model[model] = self.per_model.get(model, 0) + 1
        busy = sum(1 for n in self.per_model.values() if n)
        self.max_models_at_once = max(self.max_models_at_once, busy)
        try:
            if prompt in self.hold:
                await self.release.wait()
            await asyncio.sleep(self.delay_s)
            try:
                text = self.answer(prompt)
            except Exception as exc:
                return httpx.Response(500, json={"error": {"code": 500, "message": str(exc)}})
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.inflight -= 1
            self.per_model[model] -= 1
        words = text.split(" ")
        chunks = [w if i == 0 else " " + w for i, w in enumerate(words)]
        events = [
            {"model": body["model"], "choices": [{"index": 0, "delta": {"content": c}}]}
            for c in chunks
        ]
        events.append(
            {
                "model": body["model"],
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 5, "completion_tokens": len(chunks)},
            }
        )
        sse = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
        return httpx.Response(200, text=sse, headers={"content-type": "text/event-stream"})


def serve(reg: Registry, server: MockServer, host: str) -> str:
    """Register a llama.cpp provider at ``host`` answered by ``server``; its model id prefix."""
    reg.add(
        LlamaCppProvider(
            host,
            transport=httpx.MockTransport(server.handle),
            retry=RetryPolicy(max_retries=0),
        )
    )
    return f"llamacpp:{{}}@{host}"
