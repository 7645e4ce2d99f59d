"""A deterministic stand-in for the model, for tests without a llama-server: the same request
gives the same text, tool calls and counts, timed with real clocks."""

from __future__ import annotations

import json
import re
import time
from typing import Any

from .wire import JSON, Delta, Done, Events, tool_call


def fake_chat(
    messages: list[Any],
    tools: list[Any],
    options: JSON,
    fmt: Any,
    think: bool,
    seq: int,
) -> Events:
    """A deterministic stand-in for the model: same request, same text, tool calls and counts.

    It answers tool calls for every tool named in the last user message (else the first tool),
    fills arguments from the tool's schema (strings get the prompt's last word), honours
    num_predict and stop, and times itself with real clocks.
    """
    started = time.perf_counter_ns()
    last = messages[-1] if isinstance(messages[-1], dict) else {}
    prompt = str(last.get("content") or "")
    prompt_tokens = sum(
        len(str(m.get("content") or "").split()) + 4 for m in messages if isinstance(m, dict)
    )
    prompt_ns = time.perf_counter_ns() - started + 1
    generated = 0
    gen_started = time.perf_counter_ns()
    if think:
        for piece in ("Let", " me", " think", " about", " that", "."):
            generated += 1
            yield Delta(thinking=piece)
    if tools and last.get("role") == "user":
        named = [t for t in tools if _tool_name(t) and _tool_name(t) in prompt]
        chosen = named or tools[:1]
        word = (re.findall(r"[A-Za-z0-9_-]+", prompt) or ["example"])[-1]
        calls = [
            tool_call(seq, index, _tool_name(tool), _fake_arguments(tool, word))
            for index, tool in enumerate(chosen)
        ]
        generated += 12 * len(calls)
        yield Delta(tool_calls=calls)
        yield Done(
            "stop", prompt_tokens, prompt_ns, generated, time.perf_counter_ns() - gen_started
        )
        return
    if last.get("role") == "tool":
        text = f"The {last.get('tool_name') or 'tool'} tool returned: {prompt}"
    elif fmt == "json":
        text = json.dumps({"reply": prompt})
    elif isinstance(fmt, dict):
        text = json.dumps(_fake_value(fmt, prompt))
    else:
        text = f"Hello! This is a deterministic reply to: {prompt}"
    limit = options.get("num_predict")
    stops = [s for s in options.get("stop") or [] if s]
    reason = "stop"
    produced = ""
    for piece in re.findall(r"\s*\S+", text):
        if isinstance(limit, int | float) and limit >= 0 and generated >= limit:
            reason = "length"
            break
        hit = next((s for s in stops if s in produced + piece), None)
        if hit is not None:
            piece = (produced + piece).split(hit, 1)[0][len(produced) :]
            if piece:
                yield Delta(content=piece)
            break
        produced += piece
        generated += 1
        yield Delta(content=piece)
    yield Done(reason, prompt_tokens, prompt_ns, generated, time.perf_counter_ns() - gen_started)


def _tool_name(tool: Any) -> str:
    return str(((tool or {}).get("function") or {}).get("name") or "")


def _fake_arguments(tool: Any, word: str) -> JSON:
    parameters = ((tool or {}).get("function") or {}).get("parameters") or {}
    properties = parameters.get("properties") or {}
    required = parameters.get("required") or list(properties)
    return {key: _fake_value(properties.get(key) or {}, word) for key in required}


def _fake_value(schema: Any, word: str) -> Any:
    kind = schema.get("type") if isinstance(schema, dict) else None
    if isinstance(schema, dict) and schema.get("enum"):
        return schema["enum"][0]
    if kind == "object":
        properties = schema.get("properties") or {}
        return {key: _fake_value(sub, word) for key, sub in properties.items()}
    return {"integer": 1, "number": 1.5, "boolean": True, "array": [], "null": None}.get(
        str(kind), word
    )
