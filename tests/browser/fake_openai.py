"""The wire of the browser tests' fake OpenAI-compatible servers, written once: the model
list, an HTTP 400 for a failing model, whole answers, and streamed ones (a first empty
delta, one chunk per piece, the finish, a usage chunk, ``[DONE]``). What each model says is
the test's (:class:`Reply`); :func:`serving` makes the :class:`tests.faults.server.FaultServer`
play.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tests.faults.server import Conn, Play, Request

PROMPT_TOKENS = 5


@dataclass(frozen=True)
class Reply:
    """One model's answer: streamed a piece per chunk, ``reasoning`` first as
    ``reasoning_content``, ``delay_s`` after each answer piece; ``model`` is the name the
    server reports."""

    model: str
    content: Sequence[str]
    reasoning: Sequence[str] = ()
    delay_s: float = 0.0


def serving(
    listed: Sequence[str],
    reply_for: Callable[[str], Reply | None],
    *,
    error_message: str,
    chat_id: str,
) -> Play:
    """The play: ``/v1/models`` lists ``listed``; a chat for a model ``reply_for`` has no
    reply for (None) gets HTTP 400 with ``error_message``."""

    def chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> bytes:
        obj = {
            "id": chat_id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return b"data: " + json.dumps(obj).encode() + b"\n\n"

    async def play(req: Request, conn: Conn) -> None:
        if req.method == "GET" and req.path.rstrip("/").endswith("/models"):
            await conn.respond(200, {"object": "list", "data": [{"id": m} for m in listed]})
            return
        if req.method != "POST" or not req.path.endswith("/chat/completions"):
            await conn.respond(404, {"error": {"message": f"no route {req.path}"}})
            return
        body = req.json() or {}
        reply = reply_for(str(body.get("model") or ""))
        if reply is None:
            await conn.respond(400, {"error": {"message": error_message, "type": "invalid"}})
            return
        n = len(reply.content)
        usage = {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": n,
                 "total_tokens": PROMPT_TOKENS + n}  # fmt: skip
        if not body.get("stream"):
            message = {"role": "assistant", "content": "".join(reply.content)}
            if reply.reasoning:
                message["reasoning_content"] = "".join(reply.reasoning)
            whole = {
                "id": chat_id,
                "object": "chat.completion",
                "created": int(time.time()),
                "model": reply.model,
                "usage": usage,
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            }
            await conn.respond(200, whole)
            return
        await conn.head(200, {"content-type": "text/event-stream"})
        await conn.send(chunk(reply.model, {"role": "assistant", "content": ""}))
        for piece in reply.reasoning:
            await conn.send(chunk(reply.model, {"reasoning_content": piece}))
        for piece in reply.content:
            await conn.send(chunk(reply.model, {"content": piece}))
            if reply.delay_s:
                await asyncio.sleep(reply.delay_s)
        await conn.send(chunk(reply.model, {}, "stop"))
        obj = {"id": chat_id, "object": "chat.completion.chunk", "model": reply.model,
               "choices": [], "usage": usage}  # fmt: skip
        await conn.send(b"data: " + json.dumps(obj).encode() + b"\n\n")
        await conn.send(b"data: [DONE]\n\n")
        await conn.end()

    return play
