"""The three wire shapes a fault server can speak, and the provider that reads each.

* ``OPENAI``: SSE as api.openai.com sends it (first delta ``content: ""``, a trailing
  ``choices: []`` usage chunk, ``data: [DONE]``).
* ``LLAMACPP``: SSE as llama-server sends it (first delta ``content: null``, ``timings`` on the
  last chunk, usage chunk, ``[DONE]``; errors as ``data: {"error": {...}}`` and no ``[DONE]``).
* ``OLLAMA``: NDJSON as Ollama's ``/api/chat`` sends it (ends at ``done: true``; errors as an
  ``{"error": "..."}`` line inside a 200 stream).

Facts from /work/shared/PROTOCOLS.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from llm_nb.providers import LlamaCppProvider, OllamaProvider, OpenAIProvider
from llm_nb.providers.base import Provider


def _sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, ensure_ascii=False).encode() + b"\n\n"


def _nd(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode() + b"\n"


@dataclass(frozen=True)
class Wire:
    name: str  #: provider name: openai | llamacpp | ollama
    content_type: str
    model: str = "m"

    # -- frames -------------------------------------------------------------------------------

    def first(self) -> bytes:
        """The role-only first chunk (no token)."""
        if self.name == "ollama":
            return b""  # Ollama's first line already carries content
        content = "" if self.name == "openai" else None
        return _sse(self._chunk({"role": "assistant", "content": content}))

    def token(self, text: str) -> bytes:
        if self.name == "ollama":
            return _nd(
                {
                    "model": self.model,
                    "created_at": "2026-11-01T00:00:00Z",
                    "message": {"role": "assistant", "content": text},
                    "done": False,
                }
            )
        return _sse(self._chunk({"content": text}))

    def finish(self, n_tokens: int) -> bytes:
        """Finish chunk(s), usage and the end marker: everything after the last token."""
        if self.name == "ollama":
            return _nd(
                {
                    "model": self.model,
                    "created_at": "2026-11-01T00:00:01Z",
                    "message": {"role": "assistant", "content": ""},
                    "done": True,
                    "done_reason": "stop",
                    "total_duration": 5_000_000,
                    "load_duration": 1_000_000,
                    "prompt_eval_count": 3,
                    "prompt_eval_duration": 1_000_000,
                    "eval_count": n_tokens,
                    "eval_duration": 3_000_000,
                }
            )
        last = self._chunk({}, finish="stop")
        if self.name == "llamacpp":
            last["timings"] = {
                "prompt_n": 3,
                "prompt_ms": 1.0,
                "predicted_n": n_tokens,
                "predicted_ms": 3.0,
                "cache_n": 0,
            }
        usage = {
            "id": "c1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": self.model,
            "choices": [],
            "usage": {
                "prompt_tokens": 3,
                "completion_tokens": n_tokens,
                "total_tokens": 3 + n_tokens,
            },
        }
        return _sse(last) + _sse(usage) + b"data: [DONE]\n\n"

    def stream(self, tokens: list[str]) -> bytes:
        """A whole, well-formed answer."""
        return self.first() + b"".join(self.token(t) for t in tokens) + self.finish(len(tokens))

    def whole(self, text: str) -> bytes:
        """A non-streamed answer (``"stream": false``)."""
        if self.name == "ollama":
            obj: dict[str, Any] = {
                "model": self.model,
                "created_at": "2026-11-01T00:00:00Z",
                "message": {"role": "assistant", "content": text},
                "done": True,
                "done_reason": "stop",
                "eval_count": 1,
            }
        else:
            obj = {
                "id": "c1",
                "object": "chat.completion",
                "created": 1,
                "model": self.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
            }
        return json.dumps(obj, ensure_ascii=False).encode()

    def error(self, message: str, code: int = 500) -> bytes:
        """An error event / line in the middle of a 200 stream."""
        if self.name == "ollama":
            return _nd({"error": message})
        return _sse({"error": {"code": code, "message": message, "type": "server_error"}})

    def malformed(self) -> bytes:
        """A frame whose JSON is cut short."""
        if self.name == "ollama":
            return b'{"model":"m","message":{"role":"assistant","content":"x\n'
        return b'data: {"choices":[{"index":0,"delta":{"content":"x"\n\n'

    def raw_token(self, raw_text: bytes) -> bytes:
        """A token frame whose content bytes are put in verbatim (may be invalid UTF-8)."""
        marker = "\x00MARK\x00"
        frame = self.token(marker)
        return frame.replace(json.dumps(marker).encode()[1:-1], raw_text)

    def error_body(self, status: int, message: str, error_type: str = "server_error") -> bytes:
        """A non-2xx response body in this server's error shape."""
        if self.name == "ollama":
            return json.dumps({"error": message}).encode()
        if self.name == "openai":
            return json.dumps(
                {"error": {"message": message, "type": error_type, "param": None, "code": None}}
            ).encode()
        return json.dumps(
            {"error": {"code": status, "message": message, "type": error_type}}
        ).encode()

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "c1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    # -- the client side ----------------------------------------------------------------------

    def provider(self, url: str, **kw: Any) -> Provider:
        if self.name == "openai":
            return OpenAIProvider(f"{url}/v1", **kw)
        if self.name == "llamacpp":
            return LlamaCppProvider(url, **kw)
        return OllamaProvider(url, **kw)

    @property
    def path(self) -> str:
        return "/api/chat" if self.name == "ollama" else "/v1/chat/completions"


OPENAI = Wire("openai", "text/event-stream")
LLAMACPP = Wire("llamacpp", "text/event-stream")
OLLAMA = Wire("ollama", "application/x-ndjson")
WIRES = (OPENAI, LLAMACPP, OLLAMA)
