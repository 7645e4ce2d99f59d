"""The contract server's model store: which models are installed, which are loaded and until
when, and the routes that manage them (/api/tags, /api/ps, /api/show, /api/delete, /api/pull).

Loading follows Ollama's ``keep_alive``: a request marks its model loaded while it runs, and
its end sets the expiry again (0 unloads it at once).
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import ollama

from .catalogue import (
    DEFAULT_MODELS,
    DEFAULT_REGISTRY,
    ModelSpec,
    details,
    layers,
    manifest_digest,
    modelfile,
    normalize,
)
from .requests import DEFAULT_KEEP_ALIVE, require_object
from .wire import JSON, APIError, Failure, Lines, Reply, StreamReply, go_time

_DEFAULT_NUM_CTX = 4096  # Ollama's default context on machines with under 23 GiB of VRAM


@dataclass
class _Loaded:
    expires_at: datetime
    context_length: int


class ModelStore:
    """Installed models (``models``), what /api/pull can fetch (``registry``) and loaded ones.

    ``backend_n_ctx``, once a real llama-server is behind the server, is the context every
    loaded model reports, whatever a request asked for.
    """

    def __init__(
        self, models: Mapping[str, ModelSpec] | None, registry: Mapping[str, ModelSpec] | None
    ) -> None:
        self.explicit = models is not None
        self._models: dict[str, ModelSpec] = {
            normalize(k): v for k, v in (DEFAULT_MODELS if models is None else models).items()
        }
        self._registry: dict[str, ModelSpec] = {
            normalize(k): v for k, v in (DEFAULT_REGISTRY if registry is None else registry).items()
        }
        self._loaded: dict[str, _Loaded] = {}
        self._lock = threading.Lock()
        self.backend_n_ctx: int | None = None

    def replace_models(self, models: Mapping[str, ModelSpec]) -> None:
        with self._lock:
            self._models = dict(models)

    # -- loading -----------------------------------------------------------------------------

    @property
    def loaded_models(self) -> list[str]:
        """Names /api/ps would list now."""
        with self._lock:
            self._expire()
            return sorted(self._loaded)

    def lookup(self, raw: str) -> tuple[str, ModelSpec | None]:
        name = normalize(raw)
        with self._lock:
            return name, self._models.get(name)

    def load(self, name: str, spec: ModelSpec, options: Any, keep_alive: timedelta) -> None:
        """Mark a model running; ``release`` sets its expiry again when the request ends."""
        requested = options.get("num_ctx") if isinstance(options, dict) else None
        # With a backend the real context is llama-server's, whatever the request asked for.
        ctx = self.backend_n_ctx or (int(requested) if requested else _DEFAULT_NUM_CTX)
        # keep_alive 0 still keeps the model listed while its request runs.
        expires_at = datetime.now(UTC) + (keep_alive or DEFAULT_KEEP_ALIVE)
        with self._lock:
            self._loaded[name] = _Loaded(expires_at, min(ctx, spec.context_length))

    def release(self, name: str, keep_alive: timedelta) -> None:
        with self._lock:
            if keep_alive == timedelta(0):
                self._loaded.pop(name, None)
            elif name in self._loaded:
                self._loaded[name].expires_at = datetime.now(UTC) + keep_alive

    def unload(self, name: str) -> None:
        with self._lock:
            self._loaded.pop(name, None)

    def _expire(self) -> None:
        now = datetime.now(UTC)
        for name in [n for n, m in self._loaded.items() if m.expires_at <= now]:
            del self._loaded[name]

    # -- routes ------------------------------------------------------------------------------

    def tags(self, _body: Any) -> Reply:
        with self._lock:
            models = sorted(self._models.items(), key=lambda kv: kv[1].modified_at, reverse=True)
        return Reply(
            200,
            {
                "models": [
                    {
                        "name": name,
                        "model": name,
                        "modified_at": go_time(spec.modified_at),
                        "size": spec.size,
                        "digest": manifest_digest(name),
                        "details": details(spec),
                    }
                    for name, spec in models
                ]
            },
            ollama.ListResponse,
        )

    def ps(self, _body: Any) -> Reply:
        with self._lock:
            self._expire()
            entries = sorted(self._loaded.items(), key=lambda kv: kv[1].expires_at, reverse=True)
            specs = {
                name: self._models.get(name) or self._registry.get(name) for name, _ in entries
            }
        models = []
        for name, loaded in entries:
            spec = specs[name] or ModelSpec()
            models.append(
                {
                    "name": name,
                    "model": name,
                    "size": spec.size,
                    "digest": manifest_digest(name),
                    "details": details(spec),
                    "expires_at": go_time(loaded.expires_at),
                    "size_vram": spec.size,
                    "context_length": loaded.context_length,
                }
            )
        return Reply(200, {"models": models}, ollama.ProcessResponse)

    def show(self, body: Any) -> Reply:
        req = require_object(body)
        raw = str(req.get("model") or req.get("name") or "")
        if not raw:
            raise APIError(400, "model is required")
        name, spec = self.lookup(raw)
        if spec is None:
            raise APIError(404, f"model '{raw}' not found")
        info: JSON = {
            "general.architecture": spec.family,
            "general.basename": name.split(":")[0],
            "general.file_type": 1 if spec.quantization_level == "F16" else 2,
            "general.parameter_count": spec.parameter_count,
            "general.quantization_version": 2,
            f"{spec.family}.block_count": 30,
            f"{spec.family}.context_length": spec.context_length,
            f"{spec.family}.embedding_length": spec.embedding_length,
            "tokenizer.ggml.model": "gpt2",
            # Ollama empties arrays longer than 5 elements unless verbose is set.
            "tokenizer.ggml.tokens": [],
            "tokenizer.ggml.token_type": [],
        }
        out: JSON = {
            "modelfile": modelfile(name, spec),
            "details": details(spec),
            "model_info": info,
            "tensors": [
                {
                    "name": "token_embd.weight",
                    "type": spec.quantization_level,
                    "shape": [spec.embedding_length, 49152],
                },
                {"name": "output_norm.weight", "type": "F32", "shape": [spec.embedding_length]},
            ],
            "capabilities": list(spec.capabilities),
            "modified_at": go_time(spec.modified_at),
        }
        if spec.license:
            out["license"] = spec.license
        if spec.stop:
            out["parameters"] = "\n".join(f'{"stop":<30} "{s}"' for s in spec.stop)
        if spec.template:
            out["template"] = spec.template
        return Reply(200, out, ollama.ShowResponse)

    def delete(self, body: Any) -> Reply:
        req = require_object(body)
        raw = str(req.get("model") or req.get("name") or "")
        if not raw:
            raise APIError(400, f"name {json.dumps(raw)} is invalid")
        name = normalize(raw)
        with self._lock:
            # Like Ollama, deleting does not unload a running copy: ps keeps it until it expires.
            if self._models.pop(name, None) is None:
                raise APIError(404, f"model '{raw}' not found")
        return Reply(200)

    def pull(self, body: Any) -> Reply | StreamReply:
        req = require_object(body)
        raw = str(req.get("model") or req.get("name") or "")
        if not raw:
            raise APIError(400, "invalid model name")
        name = normalize(raw)
        lines = self._pull_lines(name)
        if req.get("stream", True) is False:
            return _wait_for_stream(lines)
        return StreamReply(lines, ollama.ProgressResponse)

    def _pull_lines(self, name: str) -> Lines:
        yield {"status": "pulling manifest"}
        spec = self._registry.get(name)
        if spec is None:
            # Real Ollama: the manifest fetch 404s after "pulling manifest" was already sent.
            yield Failure("pull model manifest: file does not exist")
            return
        for digest, total in layers(name, spec):
            status = f"pulling {digest[7:19]}"
            yield {"status": status, "digest": digest, "total": total}
            for step in (1, 2, 3, 4):
                yield {
                    "status": status,
                    "digest": digest,
                    "total": total,
                    "completed": total * step // 4,
                }
        yield {"status": "verifying sha256 digest"}
        yield {"status": "writing manifest"}
        with self._lock:
            self._models[name] = replace(spec, modified_at=datetime.now(UTC))
        yield {"status": "success"}


def _wait_for_stream(lines: Lines) -> Reply:
    """waitForStream: the last progress object, or the error with status 500."""
    latest: JSON = {}
    with contextlib.closing(lines):
        for item in lines:
            if isinstance(item, Failure):
                raise APIError(item.status, item.message)
            latest = item
    return Reply(200, latest, ollama.ProgressResponse)
