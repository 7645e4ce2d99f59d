"""A fake OpenAI-compatible server whose models give answers of very different lengths, for
the layout tests: side-by-side columns must keep one height, their footers on one line,
whatever each answer's length.

Models (``openai:<name>@host``): ``short`` answers :data:`SHORT` (3 lines) at once; ``long``
streams :data:`LONG` (30 lines) one line every :data:`LINE_S` seconds, so a test can stop it
mid-way; ``failing`` answers HTTP 400 with :data:`ERROR_MESSAGE`. Served by
:class:`tests.faults.server.FaultServer` (``FaultServer(play)``).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

from tests.faults.server import Conn, Request

SHORT = "Short answer, line 1.\n\nLine 2.\n\nLine 3, the last.\n"
LONG = "".join(f"Long answer, line {i}: the longer column.\n\n" for i in range(1, 31))
ANSWERS = {"short": SHORT, "long": LONG}
FAILING = "failing"
ERROR_MESSAGE = "the model 'failing' cannot answer (a test's fake server)"
#: Seconds between two lines of the long answer: about 6 s in all.
LINE_S = 0.2


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> bytes:
    obj = {
        "id": "chatcmpl-lengths",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


async def play(req: Request, conn: Conn) -> None:
    """The fake server's answer to every request."""
    if req.method == "GET" and req.path.rstrip("/").endswith("/models"):
        models = [*ANSWERS, FAILING]
        await conn.respond(200, {"object": "list", "data": [{"id": m} for m in models]})
        return
    if req.method != "POST" or not req.path.endswith("/chat/completions"):
        await conn.respond(404, {"error": {"message": f"no route {req.path}"}})
        return
    body = req.json() or {}
    model = str(body.get("model") or "")
    if model not in ANSWERS:
        await conn.respond(400, {"error": {"message": ERROR_MESSAGE, "type": "invalid"}})
        return
    # One piece per paragraph (a line and the blank line after it).
    lines = re.findall(r".+?(?:\n\n|$)", ANSWERS[model], flags=re.S)
    if not body.get("stream"):
        message = {"role": "assistant", "content": ANSWERS[model]}
        usage = {"prompt_tokens": 5, "completion_tokens": len(lines), "total_tokens": 0}
        await conn.respond(
            200,
            {
                "id": "chatcmpl-lengths",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": usage,
            },
        )
        return
    await conn.head(200, {"content-type": "text/event-stream"})
    await conn.send(_chunk(model, {"role": "assistant", "content": ""}))
    for line in lines:
        await conn.send(_chunk(model, {"content": line}))
        if model == "long":
            await asyncio.sleep(LINE_S)
    await conn.send(_chunk(model, {}, "stop"))
    usage = {"prompt_tokens": 5, "completion_tokens": len(lines), "total_tokens": 0}
    obj = {"id": "chatcmpl-lengths", "object": "chat.completion.chunk", "model": model,
           "choices": [], "usage": usage}  # fmt: skip
    await conn.send(b"data: " + json.dumps(obj).encode() + b"\n\n")
    await conn.send(b"data: [DONE]\n\n")
    await conn.end()
