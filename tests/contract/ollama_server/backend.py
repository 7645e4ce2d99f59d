"""The real model behind the contract server: a llama-server reached over its OpenAI-compatible
API. Ollama requests become ``/v1/chat/completions`` and ``/v1/embeddings`` requests; the SSE
answer becomes the contract server's events, its ``timings`` Ollama's nanosecond metrics."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import httpx

from .catalogue import DEFAULT_MODELS, ModelSpec
from .requests import INT_OPTIONS, RUNTIME_OPTIONS
from .wire import JSON, APIError, Delta, Done, Events, Failure, tool_call

_FINISH_TO_DONE_REASON = {"stop": "stop", "length": "length", "tool_calls": "stop"}


class Backend:
    """A llama-server at ``url``; ``transport`` lets tests script one (httpx.MockTransport)
    to exercise this path without the binary."""

    def __init__(self, url: str, transport: httpx.BaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(timeout=httpx.Timeout(300.0, connect=5.0), transport=transport)
        self._embeddings: bool | None = None  # unknown until the first /api/embed

    def close(self) -> None:
        self._http.close()

    def _path(self, path: str) -> str:
        return f"{self.url}{path}"

    def probe(self, describe_model: bool) -> tuple[int | None, ModelSpec | None]:
        """Fail loudly if the server is down; else its per-slot context, and with
        ``describe_model`` its real model described as the fake catalogue's chat model (size,
        parameters and context its own)."""
        try:
            health = self._http.get(self._path("/health"))
        except httpx.HTTPError as exc:
            raise RuntimeError(f"no llama-server answers at {self.url}: {exc}") from exc
        if health.status_code != 200:
            raise RuntimeError(f"llama-server at {self.url} is not ready: {health.text}")
        props = self._http.get(self._path("/props")).json()
        n_ctx = props.get("default_generation_settings", {}).get("n_ctx")
        if not describe_model:
            return n_ctx, None
        listed = self._http.get(self._path("/v1/models")).json().get("data") or [{}]
        meta = listed[0].get("meta")
        spec = DEFAULT_MODELS["smollm2:135m"]
        if meta:
            spec = replace(
                spec,
                parameter_count=int(meta.get("n_params", spec.parameter_count)),
                size=int(meta.get("size", spec.size)),
                context_length=int(meta.get("n_ctx_train", spec.context_length)),
                embedding_length=int(meta.get("n_embd", spec.embedding_length)),
                quantization_level=str(meta.get("ftype", spec.quantization_level)),
            )
        return n_ctx, spec

    def embeddings(self, model: str, inputs: list[str]) -> tuple[list[list[float]], int] | None:
        """Vectors and the prompt token count from /v1/embeddings; None when the server was
        started without --embeddings (it answers 501), remembered from then on."""
        if self._embeddings is False:
            return None
        try:
            payload = {"model": model, "input": inputs}
            r = self._http.post(self._path("/v1/embeddings"), json=payload)
        except httpx.HTTPError as exc:
            raise APIError(500, str(exc)) from exc
        if r.status_code == 200:
            self._embeddings = True
            data = r.json()
            rows = sorted(data["data"], key=lambda d: d["index"])
            tokens = int(data.get("usage", {}).get("prompt_tokens", 0))
            return [list(row["embedding"]) for row in rows], tokens
        if r.status_code not in (404, 501):
            raise APIError(500, backend_error_message(r))
        self._embeddings = False
        return None

    def chat(self, payload: JSON, seq: int) -> Events:
        """Stream llama-server's SSE and turn it into deltas; its ``timings`` become the metrics."""
        calls: dict[int, dict[str, str]] = {}
        finish: str | None = None
        timings: JSON = {}
        usage: JSON = {}
        try:
            with self._http.stream("POST", self._path("/v1/chat/completions"), json=payload) as r:
                if r.status_code >= 400:
                    r.read()
                    yield Failure(backend_error_message(r))
                    return
                for line in r.iter_lines():
                    if not line.startswith("data:"):
                        continue  # blank separators and ":" keep-alive comments
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    chunk = json.loads(data)
                    if "error" in chunk:  # llama-server's in-stream error: no [DONE] follows
                        yield Failure(_error_message(chunk["error"]))
                        return
                    timings = chunk.get("timings") or timings
                    usage = chunk.get("usage") or usage
                    for choice in chunk.get("choices") or []:
                        delta = choice.get("delta") or {}
                        text = delta.get("content") or ""
                        reasoning = delta.get("reasoning_content") or ""
                        if text or reasoning:
                            yield Delta(content=text, thinking=reasoning)
                        for part in delta.get("tool_calls") or []:
                            call = calls.setdefault(
                                int(part.get("index", 0)), {"name": "", "arguments": ""}
                            )
                            function = part.get("function") or {}
                            call["name"] += function.get("name") or ""
                            call["arguments"] += function.get("arguments") or ""
                        finish = choice.get("finish_reason") or finish
        except (httpx.HTTPError, json.JSONDecodeError) as exc:
            yield Failure(f"llama-server stream failed: {exc}")
            return
        if finish is None:
            yield Failure("llama-server stream ended without a finish_reason")
            return
        if calls:
            tool_calls: list[JSON] = []
            for index in sorted(calls):
                call = calls[index]
                try:
                    # Ollama's tool arguments are an object; llama-server sends a JSON string.
                    arguments = json.loads(call["arguments"] or "{}")
                except json.JSONDecodeError:
                    arguments = None
                if not isinstance(arguments, dict):
                    yield Failure(f"error parsing tool call: raw='{call['arguments']}'")
                    return
                tool_calls.append(tool_call(seq, index, call["name"], arguments))
            yield Delta(tool_calls=tool_calls)
        yield Done(
            reason=_FINISH_TO_DONE_REASON.get(finish, "stop"),
            # Ollama counts every prompt token; llama-server splits them into cached and evaluated.
            prompt_tokens=int(timings.get("prompt_n", 0)) + int(timings.get("cache_n", 0))
            or int(usage.get("prompt_tokens", 0)),
            prompt_ns=round(float(timings.get("prompt_ms", 0.0)) * 1e6),
            eval_tokens=int(timings.get("predicted_n", 0))
            or int(usage.get("completion_tokens", 0)),
            eval_ns=round(float(timings.get("predicted_ms", 0.0)) * 1e6),
        )


def backend_payload(
    backend_model: str,
    messages: list[Any],
    tools: list[Any],
    options: JSON,
    response_format: JSON | None,
    think: bool | None,
    can_think: bool,
) -> JSON:
    """The streaming /v1/chat/completions request for an Ollama chat request."""
    payload: JSON = {
        "model": backend_model,
        "messages": _to_openai_messages(messages),
        "stream": True,
    }
    for key, value in options.items():
        if key in RUNTIME_OPTIONS and value is not None:
            payload[RUNTIME_OPTIONS[key]] = int(value) if key in INT_OPTIONS else value
    if response_format:
        payload["response_format"] = response_format
    if tools:
        payload["tools"] = [{"type": "function", **t} if "type" not in t else t for t in tools]
    if can_think:
        payload["chat_template_kwargs"] = {"enable_thinking": bool(think)}
    return payload


def _to_openai_messages(messages: list[Any]) -> list[JSON]:
    """Ollama chat messages -> OpenAI ones: object arguments become JSON strings, and a
    ``{"role": "tool", "tool_name"}`` reply is tied to its call's id, which llama-server's
    templates use."""
    out: list[JSON] = []
    open_calls: dict[str, list[str]] = {}
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise APIError(400, "each message must be an object")
        role = str(message.get("role", "")).lower()  # Ollama lower-cases roles
        content = message.get("content") or ""
        if role == "assistant" and message.get("tool_calls"):
            calls = []
            for j, call in enumerate(message["tool_calls"]):
                function = call.get("function") or {}
                call_id = call.get("id") or f"call_{i}_{j}"
                open_calls.setdefault(function.get("name", ""), []).append(call_id)
                calls.append(
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {
                            "name": function.get("name", ""),
                            "arguments": json.dumps(function.get("arguments") or {}),
                        },
                    }
                )
            out.append({"role": "assistant", "content": content, "tool_calls": calls})
        elif role == "tool":
            name = message.get("tool_name") or ""
            converted: JSON = {"role": "tool", "content": content}
            if name:
                converted["name"] = name
            pending = open_calls.get(name) or []
            call_id = message.get("tool_call_id") or (pending.pop(0) if pending else None)
            if call_id:
                converted["tool_call_id"] = call_id
            out.append(converted)
        elif message.get("images"):
            parts: list[JSON] = [{"type": "text", "text": content}]
            parts += [
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{image}"}}
                for image in message["images"]
            ]
            out.append({"role": role, "content": parts})
        else:
            converted = {"role": role, "content": content}
            if role == "assistant" and message.get("thinking"):
                converted["reasoning_content"] = message["thinking"]
            out.append(converted)
    return out


def backend_error_message(response: httpx.Response) -> str:
    try:
        error = response.json().get("error")
    except (json.JSONDecodeError, AttributeError):
        error = None
    return _error_message(error) if error else response.text or f"HTTP {response.status_code}"


def _error_message(error: Any) -> str:
    """llama-server errors are {"code", "message", "type"} objects."""
    return str(error.get("message") or error) if isinstance(error, dict) else str(error)
