"""Ollama's native API (``/api/*``): NDJSON chat, model listing and management, embeddings.

Differences from the OpenAI wire that are papered over here (PROTOCOLS.md): streams are NDJSON
and end at ``done: true`` (no ``[DONE]``); errors are ``{"error": "msg"}``, also as a line inside
a 200 stream; tool-call arguments are JSON objects; durations are nanoseconds; sampling goes in
``options`` with its own names (``num_predict``); loading and unloading is ``keep_alive``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any, ClassVar

from .._config import normalize_url
from .._errors import InvalidOptionError, LLMError, ModelNotFoundError, NotFoundError
from .._options import ChatOptions
from .._types import (
    ChatResponse,
    Delta,
    Embeddings,
    Health,
    Message,
    ModelInfo,
    PullProgress,
    ReasoningDelta,
    ServerTimings,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from .._wire import errors as wire_errors
from .._wire._lines import IncrementalDecoder, decoded
from .._wire.finish import record_finish
from .._wire.ndjson import NDJSONDecoder
from .base import END, Provider

#: Chat keys that belong at the top level of an Ollama request; other extras go in options.
TOP_LEVEL_KEYS = frozenset({"keep_alive", "think", "format", "options", "template", "raw"})


class OllamaProvider(Provider):
    """An Ollama server at ``base_url`` (default http://127.0.0.1:11434, or OLLAMA_HOST)."""

    name: ClassVar[str] = "ollama"
    label: ClassVar[str] = "Ollama server"
    default_url: ClassVar[str] = "http://127.0.0.1:11434"
    env_url = ("OLLAMA_HOST",)
    env_key = ("OLLAMA_API_KEY",)
    start_hint = "is Ollama running? start it with `ollama serve` (or set OLLAMA_HOST)"
    capabilities = frozenset(
        {
            "chat",
            "stream",
            "models",
            "health",
            "load",
            "unload",
            "pull",
            "delete",
            "embed",
            "tools",
            "json",
        }
    )

    @classmethod
    def _normalize_base_url(cls, url: str) -> str:
        # OLLAMA_HOST may be "0.0.0.0", ":11434" or "host" alone; the server-side bind
        # address 0.0.0.0 means "this machine" to a client.
        url = url.strip()
        if url.startswith(":"):
            url = "127.0.0.1" + url
        url = normalize_url(url)
        scheme, rest = url.split("://", 1)
        hostport, slash, path = rest.partition("/")
        host, colon, port = hostport.rpartition(":") if "]" not in hostport[-1:] else ("", "", "")
        if not colon or not port.isdigit():
            host, port = hostport, "11434" if scheme == "http" else "443"
        if host in ("0.0.0.0", "[::]"):
            host = "127.0.0.1"
        return f"{scheme}://{host}:{port}" + (f"/{path}" if slash and path else "")

    # -- chat -------------------------------------------------------------------------------

    def _chat_path(self) -> str:
        return "/api/chat"

    def _chat_body(
        self, model: str, messages: list[Message], options: ChatOptions, stream: bool
    ) -> dict[str, Any]:
        opts: dict[str, Any] = {}
        if options.temperature is not None:
            opts["temperature"] = options.temperature
        if options.top_p is not None:
            opts["top_p"] = options.top_p
        if options.max_tokens is not None:
            opts["num_predict"] = options.max_tokens
        if options.seed is not None:
            opts["seed"] = options.seed
        if options.stop:
            opts["stop"] = list(options.stop)
        body: dict[str, Any] = {
            "model": model,
            "messages": [_wire_message(m) for m in messages],
            "stream": stream,
        }
        fmt = options.response_format
        if fmt == "json":
            body["format"] = "json"
        elif fmt is not None and fmt != "text":
            body["format"] = dict(fmt)
        if options.tools:
            body["tools"] = [dict(t) for t in options.tools]
        for key, value in options.extra.items():
            if key == "options":
                opts.update(value)
            elif key in TOP_LEVEL_KEYS:
                body[key] = value
            else:
                opts[key] = value
        if opts:
            body["options"] = opts
        return body

    def _chunk_decoder(self) -> IncrementalDecoder[Any]:
        return _NDJSONChunks()

    def _apply_chunk(self, obj: Any, record: ChatResponse) -> list[Delta]:
        if not isinstance(obj, dict):
            raise self._protocol(f"expected a JSON object per line, got {type(obj).__name__}")
        if obj.get("error"):
            raise self._stream_error(obj, record)
        if not record.model_reported:
            record.model_reported = obj.get("model") or None
        deltas: list[Delta] = []
        msg = obj.get("message") or {}
        if msg.get("thinking"):
            deltas.append(ReasoningDelta(msg["thinking"]))
        if msg.get("content"):
            deltas.append(TextDelta(msg["content"]))
        for call in msg.get("tool_calls") or ():
            fn = call.get("function") or {}
            args = fn.get("arguments", {})
            deltas.append(
                ToolCallDelta(
                    # Ollama sends each call whole: -1 asks the stream engine for the next index.
                    -1,
                    call.get("id"),
                    fn.get("name"),
                    args if isinstance(args, str) else json.dumps(args),
                )
            )
        if obj.get("done"):
            self._apply_final(obj, record)
        return deltas

    def _apply_whole(self, obj: Any, record: ChatResponse) -> list[Delta]:
        if not isinstance(obj, dict) or "message" not in obj:
            raise self._protocol("chat response has no message")
        return self._apply_chunk(obj, record)

    def _apply_final(self, obj: dict[str, Any], record: ChatResponse) -> None:
        if obj.get("done_reason"):
            record_finish(record, obj["done_reason"])
        else:
            record.finish_reason = "stop"  # servers before done_reason only ever stopped
        prompt_n = obj.get("prompt_eval_count")
        decode_n = obj.get("eval_count")
        record.usage = Usage(
            prompt_tokens=prompt_n,
            completion_tokens=decode_n,
            total_tokens=(prompt_n or 0) + (decode_n or 0) if decode_n is not None else None,
        )
        record.timings = ServerTimings(
            prompt_n=prompt_n,
            prompt_ms=_ms(obj.get("prompt_eval_duration")),
            decode_n=decode_n,
            decode_ms=_ms(obj.get("eval_duration")),
            load_ms=_ms(obj.get("load_duration")),
            total_ms=_ms(obj.get("total_duration")),
        )

    def _protocol(self, what: str) -> Exception:
        from .._errors import ProtocolError

        return ProtocolError(f"Ollama at {self.host}: {what}", provider=self.label)

    def _is_model_missing(self, exc: Any, model: str) -> bool:
        return isinstance(exc, NotFoundError) or super()._is_model_missing(exc, model)

    # -- models -----------------------------------------------------------------------------

    async def version(self) -> str:
        obj = await self._get_json("/api/version", timeout=5)
        return str(obj.get("version", ""))

    async def health(self) -> Health:
        try:
            version = await self.version()
        except LLMError as exc:
            return Health(self.name, self.base_url, "unreachable", str(exc))
        return Health(self.name, self.base_url, "ok", version=version)

    async def models(self) -> list[ModelInfo]:
        """Installed models (``/api/tags``), marked loaded when ``/api/ps`` lists them."""
        import asyncio

        requests = [
            asyncio.ensure_future(self._get_json(path, timeout=10))
            for path in ("/api/tags", "/api/ps")
        ]
        try:
            tags, ps = await asyncio.gather(*requests)
        finally:
            # gather() leaves the other request running when one fails: it would go on
            # connecting and retrying after the caller has moved on, on a loop that may be
            # torn down meanwhile. Both have ended before this returns or raises.
            for request in requests:
                request.cancel()
            await asyncio.wait(requests)
        running = {m.get("name") or m.get("model"): m for m in ps.get("models") or ()}
        out = []
        for m in tags.get("models") or ():
            name = m.get("name") or m.get("model", "")
            details = m.get("details") or {}
            live = running.get(name)
            out.append(
                ModelInfo(
                    self.name,
                    self.host,
                    name,
                    "loaded" if live else "unloaded",
                    size_bytes=m.get("size"),
                    quantization=details.get("quantization_level") or None,
                    parameter_size=details.get("parameter_size") or None,
                    family=details.get("family") or None,
                    context_length=(live or {}).get("context_length"),
                    details={**m, "ps": live} if live else m,
                )
            )
        return out

    async def show(self, model: str) -> dict[str, Any]:
        """``/api/show``: template, parameters, details, model_info, capabilities."""
        try:
            result = await self._post_json("/api/show", {"model": model})
        except NotFoundError as exc:
            raise await self._model_not_found(model, exc) from exc
        return result if isinstance(result, dict) else {}

    async def server_facts(self, model: str) -> dict[str, Any]:
        """Ollama's version, and the model's quantization, size, family and context length
        from ``/api/show``."""
        show = await self.show(model)
        details = show.get("details") or {}
        model_info = show.get("model_info") or {}
        return {
            "version": await self.version(),
            "quantization": details.get("quantization_level"),
            "parameter_size": details.get("parameter_size"),
            "family": details.get("family"),
            "n_ctx": next(
                (v for k, v in model_info.items() if k.endswith(".context_length")), None
            ),
        }

    async def load(self, model: str, *, keep_alive: str | int | None = None) -> None:
        """Load into memory: a chat request with no messages (and ``keep_alive`` if given)."""
        await self._keep_alive(model, keep_alive)

    async def unload(self, model: str) -> None:
        """Unload now: ``keep_alive: 0``."""
        await self._keep_alive(model, 0)

    async def _keep_alive(self, model: str, keep_alive: str | int | None) -> None:
        body: dict[str, Any] = {"model": model, "messages": [], "stream": False}
        if keep_alive is not None:
            body["keep_alive"] = keep_alive
        try:
            await self._post_json("/api/chat", body, timeout=300)
        except NotFoundError as exc:
            raise await self._model_not_found(model, exc) from exc

    async def pull(self, model: str) -> AsyncIterator[PullProgress]:
        """Download ``model``, yielding progress; raises if the registry refuses it."""
        response = await self._request(
            "POST", "/api/pull", json={"model": model, "stream": True}, stream=True
        )
        try:
            async for obj in decoded(response, NDJSONDecoder()):
                if "error" in obj:
                    message = self._clean(wire_errors.error_body(obj).message)
                    raise ModelNotFoundError(
                        f"Ollama at {self.host} could not pull {model!r}: {message}",
                        model=model,
                        provider=self.label,
                        url=self.base_url,
                    )
                yield PullProgress(
                    obj.get("status", ""),
                    obj.get("completed"),
                    obj.get("total"),
                    obj.get("digest"),
                )
        finally:
            await response.aclose()

    async def delete(self, model: str) -> None:
        try:
            await self._request("DELETE", "/api/delete", json={"model": model})
        except NotFoundError as exc:
            raise await self._model_not_found(model, exc) from exc

    async def embed(self, model: str, inputs: str | Sequence[str]) -> Embeddings:
        texts = [inputs] if isinstance(inputs, str) else list(inputs)
        if not texts:
            raise InvalidOptionError("embed() needs at least one input text")
        try:
            obj = await self._post_json("/api/embed", {"model": model, "input": texts})
        except NotFoundError as exc:
            raise await self._model_not_found(model, exc) from exc
        return Embeddings(
            obj.get("model") or model,
            [list(map(float, v)) for v in obj.get("embeddings") or ()],
            obj.get("prompt_eval_count"),
        )


class _NDJSONChunks:
    """NDJSON lines to objects; the line with ``done: true`` is followed by the end."""

    __slots__ = ("_lines",)

    def __init__(self) -> None:
        self._lines = NDJSONDecoder()

    def feed(self, chunk: bytes) -> list[Any]:
        return _end_after_done(self._lines.feed(chunk))

    def flush(self) -> list[Any]:
        return _end_after_done(self._lines.flush())


def _end_after_done(objs: list[Any]) -> list[Any]:
    if len(objs) == 1 and not (isinstance(objs[0], dict) and objs[0].get("done")):
        return objs  # the usual read: one line, not the last
    for i, obj in enumerate(objs):
        if isinstance(obj, dict) and obj.get("done"):
            return [*objs[: i + 1], END]
    return objs


def _wire_message(m: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.tool_calls:
        out["tool_calls"] = [
            {"function": {"name": c.name, "arguments": c.args}} for c in m.tool_calls
        ]
    if m.role == "tool" and m.name:
        out["tool_name"] = m.name
    return out


def _ms(ns: Any) -> float | None:
    return ns / 1e6 if isinstance(ns, int | float) else None
