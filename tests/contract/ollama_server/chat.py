"""/api/chat: checks a request as Ollama's ChatHandler does, runs it on the backend or the
fake model, and turns the model's events into chat lines (streamed, or collected into one
object for ``"stream": false``)."""

from __future__ import annotations

import contextlib
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import ollama

from .backend import Backend, backend_payload
from .fake import fake_chat
from .requests import check_options, parse_keep_alive, parse_think, require_object, response_format
from .store import ModelStore
from .wire import JSON, APIError, Delta, Events, Failure, Lines, Reply, StreamReply, go_time


class Chat:
    """The /api/chat route over ``store``'s models, answered by ``backend`` (or the fake model
    when None). Each request that reaches a model gets the next sequence number, from which its
    tool call ids derive."""

    def __init__(self, store: ModelStore, backend: Backend | None) -> None:
        self.store = store
        self.backend = backend
        self._lock = threading.Lock()
        self._seq = 0

    def __call__(self, body: Any) -> Reply | StreamReply:
        started = time.perf_counter_ns()
        req = require_object(body)
        raw = str(req.get("model") or "")
        if not raw:
            raise APIError(400, "model is required")
        name, spec = self.store.lookup(raw)
        if spec is None:
            raise APIError(404, f"model '{raw}' not found")
        keep_alive = parse_keep_alive(req.get("keep_alive"))
        messages = req.get("messages") or []
        if not isinstance(messages, list):
            raise APIError(400, "messages must be a list")
        if not messages and keep_alive == timedelta(0):
            self.store.unload(name)
            return Reply(200, _chat_object(raw, done_reason="unload"), ollama.ChatResponse)
        think = parse_think(req.get("think"))
        if "thinking" in spec.capabilities:
            think = True if think is None else think  # Ollama turns thinking on when unset
        elif think:
            raise APIError(400, f'"{raw}" does not support thinking')
        if "completion" not in spec.capabilities:
            raise APIError(400, f'"{raw}" does not support chat')
        tools = req.get("tools") or []
        if tools and "tools" not in spec.capabilities:
            raise APIError(400, f"registry.ollama.ai/library/{name} does not support tools")
        options = check_options(req.get("options"))
        wanted_format = response_format(req.get("format"))
        self.store.load(name, spec, options, keep_alive)
        load_ns = time.perf_counter_ns() - started
        if not messages:
            self.store.release(name, keep_alive)
            return Reply(200, _chat_object(raw, done_reason="load"), ollama.ChatResponse)
        with self._lock:
            self._seq += 1
            seq = self._seq
        if self.backend is not None:
            payload = backend_payload(
                spec.backend_model or name,
                messages,
                tools,
                options,
                wanted_format,
                think,
                "thinking" in spec.capabilities,
            )
            events = self.backend.chat(payload, seq)
        else:
            events = fake_chat(messages, tools, options, req.get("format"), bool(think), seq)
        lines = self._chat_lines(raw, name, events, started, load_ns, keep_alive)
        if req.get("stream", True) is False:
            return _collect_chat(lines)
        return StreamReply(lines, ollama.ChatResponse)

    def _chat_lines(
        self,
        raw: str,
        name: str,
        events: Events,
        started: int,
        load_ns: int,
        keep_alive: timedelta,
    ) -> Lines:
        try:
            with contextlib.closing(events):
                for event in events:
                    if isinstance(event, Failure):
                        yield event
                        return
                    if isinstance(event, Delta):
                        yield _chat_object(raw, event.content, event.thinking, event.tool_calls)
                        continue
                    yield _chat_object(
                        raw,
                        done_reason=event.reason,
                        metrics={
                            "total_duration": time.perf_counter_ns() - started,
                            "load_duration": load_ns,
                            "prompt_eval_count": event.prompt_tokens,
                            "prompt_eval_duration": event.prompt_ns,
                            "eval_count": event.eval_tokens,
                            "eval_duration": event.eval_ns,
                        },
                    )
                    return
                yield Failure("backend ended without a final chunk")
        finally:
            self.store.release(name, keep_alive)


def _chat_object(
    model: str,
    content: str = "",
    thinking: str = "",
    tool_calls: list[JSON] | None = None,
    *,
    done_reason: str | None = None,
    metrics: JSON | None = None,
) -> JSON:
    message: JSON = {"role": "assistant", "content": content}
    if thinking:
        message["thinking"] = thinking
    if tool_calls:
        message["tool_calls"] = tool_calls
    obj: JSON = {"model": model, "created_at": go_time(datetime.now(UTC)), "message": message}
    if done_reason is not None:
        obj["done_reason"] = done_reason
    obj["done"] = done_reason is not None
    # Go's omitempty drops zero durations and counts.
    obj.update({k: v for k, v in (metrics or {}).items() if v})
    return obj


def _collect_chat(lines: Lines) -> Reply:
    """stream:false as ChatHandler does it: concatenate pieces into the final object."""
    content, thinking, calls = [], [], []
    last: JSON | None = None
    with contextlib.closing(lines):
        for item in lines:
            if isinstance(item, Failure):
                raise APIError(item.status, item.message)
            message = item["message"]
            content.append(message.get("content", ""))
            thinking.append(message.get("thinking", ""))
            calls += message.get("tool_calls", [])
            last = item
    if last is None:
        raise APIError(500, "unexpected response")
    last["message"]["content"] = "".join(content)
    if any(thinking):
        last["message"]["thinking"] = "".join(thinking)
    if calls:
        last["message"]["tool_calls"] = calls
    return Reply(200, last, ollama.ChatResponse)
