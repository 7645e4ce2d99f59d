"""An HTTP server that keeps Ollama's wire contract, for tests.

No Ollama binary can be installed on these machines, so llm_nb's Ollama provider is tested against
this server. Two things keep it from drifting away from the real one:

* Every JSON body and NDJSON line is validated, strictly and on the exact bytes about to be sent,
  with the official ``ollama`` package's pydantic types (``ChatResponse``, ``ListResponse`` ...).
  A failure, or a field the type would silently drop, is recorded in ``violations`` and answered
  with HTTP 500 (or an ``{"error"}`` line mid-stream), so drift breaks tests instead of hiding.
* Text, token counts and durations come from a real llama-server (``backend_url``), reached over
  its OpenAI-compatible API. A small deterministic generator stands in only when no backend is
  given, so unit tests run without the binary.

Behaviour follows ollama/ollama ``server/routes.go`` (ChatHandler, PullHandler, DeleteHandler,
EmbedHandler, ``streamResponse``, ``waitForStream``) as summarised in shared/PROTOCOLS.md.
The server listens on 127.0.0.1 only, on a free port, in a background thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import select
import socket
import sys
import threading
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

import httpx
import ollama
from pydantic import BaseModel, ConfigDict, ValidationError

JSON = dict[str, Any]

_DEFAULT_KEEP_ALIVE = timedelta(minutes=5)  # OLLAMA_KEEP_ALIVE's default
# Ollama maps a negative keep_alive to time.Duration(math.MaxInt64): about 292 years.
_FOREVER = timedelta(microseconds=(2**63 - 1) // 1000)
_DEFAULT_NUM_CTX = 4096  # Ollama's default context on machines with under 23 GiB of VRAM

_CHATML_TEMPLATE = (
    "{{- if .Messages }}{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n"
    "{{ end }}<|im_start|>assistant\n{{ else }}{{ .Prompt }}{{ end }}"
)
_QWEN3_TEMPLATE = (
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n"
    "{{- if and $.IsThinkSet (not $.Think) }} /no_think{{ end }}\n{{ .Content }}<|im_end|>\n"
    "{{ end }}<|im_start|>assistant\n"
)


@dataclass(frozen=True)
class ModelSpec:
    """One model as /api/tags, /api/ps and /api/show describe it.

    ``backend_model`` is the ``model`` sent to llama-server: None sends the Ollama name, which a
    single-model llama-server ignores and a router-mode one uses to pick the model.
    """

    family: str = "llama"
    parameter_count: int = 134_515_008
    quantization_level: str = "F16"
    size: int = 270_898_784
    context_length: int = 8192
    embedding_length: int = 576
    capabilities: tuple[str, ...] = ("completion", "tools")
    template: str = _CHATML_TEMPLATE
    stop: tuple[str, ...] = ("<|im_start|>", "<|im_end|>")
    license: str = ""
    modified_at: datetime = datetime(2025, 1, 15, 9, 30, 12, 345678, tzinfo=UTC)
    backend_model: str | None = None


DEFAULT_MODELS: Mapping[str, ModelSpec] = {
    "smollm2:135m": ModelSpec(license="Apache License\nVersion 2.0, January 2004"),
    "qwen3:0.6b": ModelSpec(
        family="qwen3",
        parameter_count=751_632_384,
        quantization_level="Q4_K_M",
        size=522_653_767,
        context_length=40960,
        embedding_length=1024,
        capabilities=("completion", "tools", "thinking"),
        template=_QWEN3_TEMPLATE,
        modified_at=datetime(2025, 5, 2, 17, 4, 1, 5, tzinfo=UTC),
    ),
    "all-minilm:22m": ModelSpec(
        family="bert",
        parameter_count=22_565_760,
        size=45_960_996,
        context_length=512,
        embedding_length=384,
        capabilities=("embedding",),
        template="",
        stop=(),
        modified_at=datetime(2024, 11, 30, 8, 0, 0, tzinfo=UTC),
    ),
}
"""Local models of the fake mode: a chat model, a thinking model and an embedding model."""

DEFAULT_REGISTRY: Mapping[str, ModelSpec] = {
    **DEFAULT_MODELS,
    "tinyllama:latest": ModelSpec(
        parameter_count=1_100_048_384,
        quantization_level="Q4_0",
        size=637_700_138,
        context_length=2048,
        embedding_length=2048,
        capabilities=("completion",),
        stop=("</s>",),
    ),
}
"""What /api/pull can fetch; any other name fails the way a missing manifest does."""


@dataclass
class Faults:
    """Failures to inject; all off by default. Tests change fields on ``server.faults``."""

    chunk_delay_s: float = 0.0
    """Sleep before each streamed line: a slow model or a slow network."""
    stream_error_after: int | None = None
    """After this many lines of a chat or pull stream, send an ``{"error"}`` line and end it
    (HTTP 200, as Ollama does when a runner dies mid-stream)."""


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the client sent it."""

    method: str
    path: str
    body: Any
    headers: Mapping[str, str]


class ErrorBody(BaseModel):
    """gin.H{"error": msg}: ollama-python has no type for it, so the shape is pinned here."""

    model_config = ConfigDict(extra="forbid", strict=True)
    error: str


class _VersionBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    version: str


# Fields real Ollama sends (api/types.go) that ollama-python's types do not model. Any other key
# the validated object lacks is a violation: a typo or a rename would otherwise vanish silently.
_UNMODELLED: Mapping[type[BaseModel], frozenset[str]] = {
    ollama.ChatResponse: frozenset(
        {"message.tool_calls[].id", "message.tool_calls[].function.index"}
    ),
    ollama.ListResponse: frozenset({"models[].name"}),
    ollama.ShowResponse: frozenset({"tensors"}),
}


def contract_problems(data: bytes | str, schema: type[BaseModel]) -> list[str]:
    """Why the JSON text ``data`` is not a valid ``schema`` on the wire; empty when it is.

    Validation is strict (no "12" for 12, no 1.5 for an integer) and also reports keys the
    validated object would silently drop, unless real Ollama is known to send them.
    """
    try:
        model = schema.model_validate_json(data, strict=True)
    except ValidationError as exc:
        return [str(exc)]
    allowed = _UNMODELLED.get(schema, frozenset())
    sent = json.loads(data)
    return [f"drops {path}" for path in _dropped_keys(sent, model, "") if path not in allowed]


class _APIError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class _Delta:
    content: str = ""
    thinking: str = ""
    tool_calls: list[JSON] = field(default_factory=list)


@dataclass
class _Done:
    reason: str
    prompt_tokens: int = 0
    prompt_ns: int = 0
    eval_tokens: int = 0
    eval_ns: int = 0


@dataclass
class _Failure:
    message: str
    status: int = 500


_Event = _Delta | _Done | _Failure
# Generators, not plain iterators: closing one closes the upstream request it is reading.
_Events = Generator[_Event, None, None]
_Lines = Generator[JSON | _Failure, None, None]


@dataclass
class _Reply:
    status: int
    body: JSON | None = None
    schema: type[BaseModel] | None = None
    text: str | None = None


@dataclass
class _StreamReply:
    lines: _Lines
    schema: type[BaseModel]


@dataclass
class _Loaded:
    expires_at: datetime
    context_length: int


# Ollama options -> llama-server request fields. Load-time options (num_ctx, num_gpu, num_thread,
# use_mmap ...) are not forwarded: llama-server fixed them at start, where Ollama would reload.
_RUNTIME_OPTIONS = {
    "num_predict": "n_predict",
    "num_keep": "n_keep",
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "typical_p": "typical_p",
    "seed": "seed",
    "stop": "stop",
    "repeat_penalty": "repeat_penalty",
    "repeat_last_n": "repeat_last_n",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
    "mirostat": "mirostat",
    "mirostat_tau": "mirostat_tau",
    "mirostat_eta": "mirostat_eta",
}
_INT_OPTIONS = frozenset(
    {
        "num_predict",
        "num_keep",
        "top_k",
        "seed",
        "repeat_last_n",
        "mirostat",
        "num_ctx",
        "num_batch",
        "num_gpu",
        "main_gpu",
        "num_thread",
    }
)
_BOOL_OPTIONS = frozenset({"use_mmap", "use_mlock", "numa", "low_vram", "vocab_only", "f16_kv"})
_FINISH_TO_DONE_REASON = {"stop": "stop", "length": "length", "tool_calls": "stop"}
_VIOLATION = "contract violation; see server.violations"
_INJECTED_ERROR = "an error was encountered while running the model: injected fault"
_GO_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


class OllamaContractServer:
    """An Ollama-compatible server on 127.0.0.1 whose every reply is checked by ollama's types.

    >>> with OllamaContractServer(None) as server:
    ...     client = ollama.Client(host=server.url)

    ``requests`` logs what clients sent; ``violations`` lists replies that broke the contract
    (tests should assert it stays empty); ``faults`` injects failures; ``disconnects`` counts
    streams the client abandoned (their upstream request is closed at once).
    """

    def __init__(
        self,
        backend_url: str | None,
        *,
        models: Mapping[str, ModelSpec] | None = None,
        registry: Mapping[str, ModelSpec] | None = None,
        version: str = "0.12.10",
        backend_transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.backend_url = backend_url.rstrip("/") if backend_url else None
        self.version = version
        self.requests: list[RecordedRequest] = []
        self.violations: list[str] = []
        self.faults = Faults()
        self.disconnects = 0
        self._explicit_models = models is not None
        self._models: dict[str, ModelSpec] = {
            _normalize(k): v for k, v in (DEFAULT_MODELS if models is None else models).items()
        }
        self._registry: dict[str, ModelSpec] = {
            _normalize(k): v
            for k, v in (DEFAULT_REGISTRY if registry is None else registry).items()
        }
        self._loaded: dict[str, _Loaded] = {}
        self._lock = threading.Lock()
        self._backend_n_ctx: int | None = None
        self._backend_embeddings: bool | None = None  # unknown until the first /api/embed
        self._seq = 0
        # backend_transport lets tests script a llama-server (httpx.MockTransport) to exercise
        # the real-backend code path without the binary.
        self._http = httpx.Client(
            timeout=httpx.Timeout(300.0, connect=5.0), transport=backend_transport
        )
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._routes: dict[str, dict[str, Callable[[Any], _Reply | _StreamReply]]] = {
            "/": {"GET": self._root, "HEAD": self._root},
            "/api/version": {"GET": self._version, "HEAD": self._version},
            "/api/tags": {"GET": self._tags, "HEAD": self._tags},
            "/api/ps": {"GET": self._ps},
            "/api/show": {"POST": self._show},
            "/api/chat": {"POST": self._chat},
            "/api/embed": {"POST": self._embed},
            "/api/pull": {"POST": self._pull},
            "/api/delete": {"DELETE": self._delete},
        }

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("server not started; call start() first")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> OllamaContractServer:
        if self.backend_url:
            self._probe_backend()
        self._httpd = _HTTPServer(("127.0.0.1", 0), _Handler, self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="ollama-contract-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._http.close()

    def __enter__(self) -> OllamaContractServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def loaded_models(self) -> list[str]:
        """Names /api/ps would list now."""
        with self._lock:
            self._expire()
            return sorted(self._loaded)

    def _probe_backend(self) -> None:
        """Fail loudly if the backend is down, and describe its real model in fake-free mode."""
        try:
            health = self._http.get(self._backend("/health"))
        except httpx.HTTPError as exc:
            raise RuntimeError(f"no llama-server answers at {self.backend_url}: {exc}") from exc
        if health.status_code != 200:
            raise RuntimeError(f"llama-server at {self.backend_url} is not ready: {health.text}")
        props = self._http.get(self._backend("/props")).json()
        self._backend_n_ctx = props.get("default_generation_settings", {}).get("n_ctx")
        if self._explicit_models:
            return
        # The real model replaces the fake catalogue: size, parameters and context are its own.
        listed = self._http.get(self._backend("/v1/models")).json().get("data") or [{}]
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
        self._models = {"smollm2:135m": spec}

    def _backend(self, path: str) -> str:
        return f"{self.backend_url}{path}"

    # -- validation ------------------------------------------------------------------------

    def encode(self, where: str, obj: JSON, schema: type[BaseModel]) -> bytes | None:
        """Serialize ``obj`` and check those exact bytes against ``schema``; None on violation."""
        data = _dumps(obj)
        problems = contract_problems(data, schema)
        if problems:
            self.violations.append(f"{where}: {schema.__name__}: {'; '.join(problems)}: {obj}")
            return None
        return data

    # -- routes ----------------------------------------------------------------------------

    def route(self, method: str, path: str, body: Any) -> _Reply | _StreamReply:
        methods = self._routes.get(path)
        if methods is None:
            return _Reply(404, text="404 page not found")  # gin's NoRoute answer, plain text
        handler = methods.get(method)
        if handler is None:
            return _Reply(405, text="405 method not allowed")
        if method in ("POST", "DELETE") and body is None:
            raise _APIError(400, "missing request body")
        return handler(body)

    def _root(self, _body: Any) -> _Reply:
        return _Reply(200, text="Ollama is running")

    def _version(self, _body: Any) -> _Reply:
        return _Reply(200, {"version": self.version}, _VersionBody)

    def _tags(self, _body: Any) -> _Reply:
        with self._lock:
            models = sorted(self._models.items(), key=lambda kv: kv[1].modified_at, reverse=True)
        return _Reply(
            200,
            {
                "models": [
                    {
                        "name": name,
                        "model": name,
                        "modified_at": _go_time(spec.modified_at),
                        "size": spec.size,
                        "digest": _manifest_digest(name),
                        "details": _details(spec),
                    }
                    for name, spec in models
                ]
            },
            ollama.ListResponse,
        )

    def _ps(self, _body: Any) -> _Reply:
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
                    "digest": _manifest_digest(name),
                    "details": _details(spec),
                    "expires_at": _go_time(loaded.expires_at),
                    "size_vram": spec.size,
                    "context_length": loaded.context_length,
                }
            )
        return _Reply(200, {"models": models}, ollama.ProcessResponse)

    def _show(self, body: Any) -> _Reply:
        req = _require_object(body)
        raw = str(req.get("model") or req.get("name") or "")
        if not raw:
            raise _APIError(400, "model is required")
        name, spec = self._lookup(raw)
        if spec is None:
            raise _APIError(404, f"model '{raw}' not found")
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
            "modelfile": _modelfile(name, spec),
            "details": _details(spec),
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
            "modified_at": _go_time(spec.modified_at),
        }
        if spec.license:
            out["license"] = spec.license
        if spec.stop:
            out["parameters"] = "\n".join(f'{"stop":<30} "{s}"' for s in spec.stop)
        if spec.template:
            out["template"] = spec.template
        return _Reply(200, out, ollama.ShowResponse)

    def _delete(self, body: Any) -> _Reply:
        req = _require_object(body)
        raw = str(req.get("model") or req.get("name") or "")
        if not raw:
            raise _APIError(400, f"name {json.dumps(raw)} is invalid")
        name = _normalize(raw)
        with self._lock:
            # Like Ollama, deleting does not unload a running copy: ps keeps it until it expires.
            if self._models.pop(name, None) is None:
                raise _APIError(404, f"model '{raw}' not found")
        return _Reply(200)

    def _pull(self, body: Any) -> _Reply | _StreamReply:
        req = _require_object(body)
        raw = str(req.get("model") or req.get("name") or "")
        if not raw:
            raise _APIError(400, "invalid model name")
        name = _normalize(raw)
        lines = self._pull_lines(name)
        if req.get("stream", True) is False:
            return _wait_for_stream(lines)
        return _StreamReply(lines, ollama.ProgressResponse)

    def _pull_lines(self, name: str) -> _Lines:
        yield {"status": "pulling manifest"}
        spec = self._registry.get(name)
        if spec is None:
            # Real Ollama: the manifest fetch 404s after "pulling manifest" was already sent.
            yield _Failure("pull model manifest: file does not exist")
            return
        for digest, total in _layers(name, spec):
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

    def _embed(self, body: Any) -> _Reply:
        started = time.perf_counter_ns()
        req = _require_object(body)
        raw = str(req.get("model") or "")
        value = req.get("input")
        if isinstance(value, str):
            inputs = [value] if value else []
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            inputs = list(value)
        elif value is None:
            inputs = []
        else:
            raise _APIError(400, "invalid input type")
        name, spec = self._lookup(raw)
        if spec is None:
            raise _APIError(404, f"model '{raw}' not found")
        keep_alive = _parse_keep_alive(req.get("keep_alive"))
        self._load(name, spec, req.get("options"), keep_alive)
        loaded = time.perf_counter_ns()
        try:
            if not inputs:
                return _Reply(200, {"model": raw, "embeddings": []}, ollama.EmbedResponse)
            vectors, tokens = self._embeddings(name, spec, inputs)
        finally:
            self._release(name, keep_alive)
        dims = req.get("dimensions")
        if isinstance(dims, int) and 0 < dims < len(vectors[0]):
            vectors = [_normalized(v[:dims]) for v in vectors]
        return _Reply(
            200,
            _without_zeros(
                {
                    "model": raw,
                    "embeddings": vectors,
                    "total_duration": time.perf_counter_ns() - started,
                    "load_duration": loaded - started,
                    "prompt_eval_count": tokens,
                },
                keep=("model", "embeddings"),
            ),
            ollama.EmbedResponse,
        )

    def _embeddings(
        self, name: str, spec: ModelSpec, inputs: list[str]
    ) -> tuple[list[list[float]], int]:
        """Real vectors from llama-server's /v1/embeddings when it was started with --embeddings;
        otherwise (it answers 501) deterministic hashed vectors with a word-count token figure."""
        if self.backend_url and self._backend_embeddings is not False:
            payload = {"model": spec.backend_model or name, "input": inputs}
            try:
                r = self._http.post(self._backend("/v1/embeddings"), json=payload)
            except httpx.HTTPError as exc:
                raise _APIError(500, str(exc)) from exc
            if r.status_code == 200:
                self._backend_embeddings = True
                data = r.json()
                rows = sorted(data["data"], key=lambda d: d["index"])
                tokens = int(data.get("usage", {}).get("prompt_tokens", 0))
                return [_normalized(list(row["embedding"])) for row in rows], tokens
            if r.status_code not in (404, 501):
                raise _APIError(500, _backend_error_message(r))
            self._backend_embeddings = False
        vectors = [_hashed_vector(f"{name}\0{text}", spec.embedding_length) for text in inputs]
        return vectors, sum(max(1, len(text.split())) for text in inputs)

    def _chat(self, body: Any) -> _Reply | _StreamReply:
        started = time.perf_counter_ns()
        req = _require_object(body)
        raw = str(req.get("model") or "")
        if not raw:
            raise _APIError(400, "model is required")
        name, spec = self._lookup(raw)
        if spec is None:
            raise _APIError(404, f"model '{raw}' not found")
        keep_alive = _parse_keep_alive(req.get("keep_alive"))
        messages = req.get("messages") or []
        if not isinstance(messages, list):
            raise _APIError(400, "messages must be a list")
        if not messages and keep_alive == timedelta(0):
            with self._lock:
                self._loaded.pop(name, None)
            return _Reply(200, _chat_object(raw, done_reason="unload"), ollama.ChatResponse)
        think = _parse_think(req.get("think"))
        if "thinking" in spec.capabilities:
            think = True if think is None else think  # Ollama turns thinking on when unset
        elif think:
            raise _APIError(400, f'"{raw}" does not support thinking')
        if "completion" not in spec.capabilities:
            raise _APIError(400, f'"{raw}" does not support chat')
        tools = req.get("tools") or []
        if tools and "tools" not in spec.capabilities:
            raise _APIError(400, f"registry.ollama.ai/library/{name} does not support tools")
        options = _check_options(req.get("options"))
        response_format = _response_format(req.get("format"))
        self._load(name, spec, options, keep_alive)
        load_ns = time.perf_counter_ns() - started
        if not messages:
            self._release(name, keep_alive)
            return _Reply(200, _chat_object(raw, done_reason="load"), ollama.ChatResponse)
        with self._lock:
            self._seq += 1
            seq = self._seq
        if self.backend_url:
            payload = _backend_payload(
                spec.backend_model or name,
                messages,
                tools,
                options,
                response_format,
                think,
                "thinking" in spec.capabilities,
            )
            events = self._backend_chat(payload, seq)
        else:
            events = _fake_chat(messages, tools, options, req.get("format"), bool(think), seq)
        lines = self._chat_lines(raw, name, events, started, load_ns, keep_alive)
        if req.get("stream", True) is False:
            return _collect_chat(lines)
        return _StreamReply(lines, ollama.ChatResponse)

    def _chat_lines(
        self,
        raw: str,
        name: str,
        events: _Events,
        started: int,
        load_ns: int,
        keep_alive: timedelta,
    ) -> _Lines:
        try:
            with contextlib.closing(events):
                for event in events:
                    if isinstance(event, _Failure):
                        yield event
                        return
                    if isinstance(event, _Delta):
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
                yield _Failure("backend ended without a final chunk")
        finally:
            self._release(name, keep_alive)

    def _backend_chat(self, payload: JSON, seq: int) -> _Events:
        """Stream llama-server's SSE and turn it into deltas; its ``timings`` become the metrics."""
        calls: dict[int, dict[str, str]] = {}
        finish: str | None = None
        timings: JSON = {}
        usage: JSON = {}
        try:
            with self._http.stream(
                "POST", self._backend("/v1/chat/completions"), json=payload
            ) as r:
                if r.status_code >= 400:
                    r.read()
                    yield _Failure(_backend_error_message(r))
                    return
                for line in r.iter_lines():
                    if not line.startswith("data:"):
                        continue  # blank separators and ":" keep-alive comments
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    chunk = json.loads(data)
                    if "error" in chunk:  # llama-server's in-stream error: no [DONE] follows
                        yield _Failure(_error_message(chunk["error"]))
                        return
                    timings = chunk.get("timings") or timings
                    usage = chunk.get("usage") or usage
                    for choice in chunk.get("choices") or []:
                        delta = choice.get("delta") or {}
                        text = delta.get("content") or ""
                        reasoning = delta.get("reasoning_content") or ""
                        if text or reasoning:
                            yield _Delta(content=text, thinking=reasoning)
                        for part in delta.get("tool_calls") or []:
                            call = calls.setdefault(
                                int(part.get("index", 0)), {"name": "", "arguments": ""}
                            )
                            function = part.get("function") or {}
                            call["name"] += function.get("name") or ""
                            call["arguments"] += function.get("arguments") or ""
                        finish = choice.get("finish_reason") or finish
        except (httpx.HTTPError, json.JSONDecodeError) as exc:
            yield _Failure(f"llama-server stream failed: {exc}")
            return
        if finish is None:
            yield _Failure("llama-server stream ended without a finish_reason")
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
                    yield _Failure(f"error parsing tool call: raw='{call['arguments']}'")
                    return
                tool_calls.append(_tool_call(seq, index, call["name"], arguments))
            yield _Delta(tool_calls=tool_calls)
        yield _Done(
            reason=_FINISH_TO_DONE_REASON.get(finish, "stop"),
            # Ollama counts every prompt token; llama-server splits them into cached and evaluated.
            prompt_tokens=int(timings.get("prompt_n", 0)) + int(timings.get("cache_n", 0))
            or int(usage.get("prompt_tokens", 0)),
            prompt_ns=round(float(timings.get("prompt_ms", 0.0)) * 1e6),
            eval_tokens=int(timings.get("predicted_n", 0))
            or int(usage.get("completion_tokens", 0)),
            eval_ns=round(float(timings.get("predicted_ms", 0.0)) * 1e6),
        )

    # -- model state -----------------------------------------------------------------------

    def _lookup(self, raw: str) -> tuple[str, ModelSpec | None]:
        name = _normalize(raw)
        with self._lock:
            return name, self._models.get(name)

    def _load(self, name: str, spec: ModelSpec, options: Any, keep_alive: timedelta) -> None:
        """Mark a model running; ``_release`` sets its expiry again when the request ends."""
        requested = options.get("num_ctx") if isinstance(options, dict) else None
        # With a backend the real context is llama-server's, whatever the request asked for.
        ctx = self._backend_n_ctx or (int(requested) if requested else _DEFAULT_NUM_CTX)
        # keep_alive 0 still keeps the model listed while its request runs.
        expires_at = datetime.now(UTC) + (keep_alive or _DEFAULT_KEEP_ALIVE)
        with self._lock:
            self._loaded[name] = _Loaded(expires_at, min(ctx, spec.context_length))

    def _release(self, name: str, keep_alive: timedelta) -> None:
        with self._lock:
            if keep_alive == timedelta(0):
                self._loaded.pop(name, None)
            elif name in self._loaded:
                self._loaded[name].expires_at = datetime.now(UTC) + keep_alive

    def _expire(self) -> None:
        now = datetime.now(UTC)
        for name in [n for n, m in self._loaded.items() if m.expires_at <= now]:
            del self._loaded[name]


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # a stream the client never finishes must not block stop()

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        contract: OllamaContractServer,
    ) -> None:
        self.contract = contract
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up is normal; anything else is a bug that must fail tests."""
        error = sys.exc_info()[1]
        if not isinstance(error, ConnectionError):
            self.contract.violations.append(f"unhandled error in handler: {error!r}")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked streaming, as Go's net/http
    server_version = "ollama-contract"
    sys_version = ""

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request stderr lines; tests read ``contract.requests`` instead."""

    @property
    def contract(self) -> OllamaContractServer:
        return cast(_HTTPServer, self.server).contract

    def _dispatch(self) -> None:
        path = self.path.split("?", 1)[0]
        raw = self._read_body()
        error = None
        try:
            body: Any = json.loads(raw) if raw.strip() else None
        except json.JSONDecodeError as exc:
            body, error = raw.decode(errors="replace"), f"invalid JSON body: {exc}"
        headers = dict(self.headers.items())
        self.contract.requests.append(RecordedRequest(self.command, path, body, headers))
        try:
            if error:
                raise _APIError(400, error)
            reply = self.contract.route(self.command, path, body)
        except _APIError as exc:
            self._send_error(exc.status, exc.message)
            return
        except Exception as exc:  # a bug in this server must fail tests, not hang a client
            self.contract.violations.append(f"{self.command} {path}: server error: {exc!r}")
            self._send_error(500, f"contract server error: {exc!r}")
            return
        if isinstance(reply, _StreamReply):
            self._stream(reply)
        elif reply.text is not None:
            self._send(reply.status, reply.text.encode(), "text/plain; charset=utf-8")
        elif reply.body is None:
            self._send(reply.status, b"", None)
        else:
            self._send_object(reply.status, reply.body, reply.schema)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline().strip():
                pass  # trailers
            return b"".join(parts)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, data: bytes, content_type: str | None) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _send_object(self, status: int, obj: JSON, schema: type[BaseModel] | None) -> None:
        data = self.contract.encode(f"{self.command} {self.path}", obj, schema or ErrorBody)
        if data is None:
            self._send_error(500, _VIOLATION)
            return
        self._send(status, data, "application/json; charset=utf-8")

    def _send_error(self, status: int, message: str) -> None:
        self._send(status, self._error_bytes(message), "application/json; charset=utf-8")

    def _error_bytes(self, message: str) -> bytes:
        data = self.contract.encode(f"{self.command} {self.path}", {"error": message}, ErrorBody)
        return data or json.dumps({"error": _VIOLATION}).encode()

    def _stream(self, reply: _StreamReply) -> None:
        """Write NDJSON as gin's c.Stream does in streamResponse: headers leave with the first
        line, so an error that comes before any line still gets its own status and JSON body."""
        where = f"{self.command} {self.path}"
        started = False
        with contextlib.closing(reply.lines) as lines:
            try:
                for sent, item in enumerate(self._guarded(lines, where)):
                    faults = self.contract.faults
                    if faults.stream_error_after is not None and sent >= faults.stream_error_after:
                        item = _Failure(_INJECTED_ERROR)
                    data = None
                    if not isinstance(item, _Failure):
                        data = self.contract.encode(where, item, reply.schema)
                    if data is None:
                        failure = item if isinstance(item, _Failure) else _Failure(_VIOLATION)
                        if not started:
                            self._send_error(failure.status, failure.message)
                            return
                        self._write_chunk(self._error_bytes(failure.message) + b"\n")
                        break
                    if faults.chunk_delay_s:
                        time.sleep(faults.chunk_delay_s)
                    if started and self._peer_closed():
                        self._abandon()
                        return
                    if not started:
                        self.send_response(200)
                        self.send_header("Content-Type", "application/x-ndjson")
                        self.send_header("Transfer-Encoding", "chunked")
                        self.end_headers()
                        started = True
                    self._write_chunk(data + b"\n")
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                self._abandon()

    def _guarded(self, lines: _Lines, where: str) -> _Lines:
        """Turn a bug while producing lines into a violation and an error line."""
        try:
            yield from lines
        except Exception as exc:
            self.contract.violations.append(f"{where}: server error: {exc!r}")
            yield _Failure(f"contract server error: {exc!r}")

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _peer_closed(self) -> bool:
        """A closed peer reads as EOF; writes alone can keep succeeding into kernel buffers."""
        sock = self.connection
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _abandon(self) -> None:
        # Returning closes the line generator, and with it the upstream llama-server request.
        self.close_connection = True
        with self.contract._lock:
            self.contract.disconnects += 1


# -- helpers -------------------------------------------------------------------------------


def _normalize(raw: str) -> str:
    """Ollama's model name rules that matter here: default host/namespace, default tag, any case."""
    name = raw.strip().lower()
    for prefix in ("registry.ollama.ai/library/", "registry.ollama.ai/"):
        name = name.removeprefix(prefix)
    if ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"
    return name


def _require_object(body: Any) -> JSON:
    if not isinstance(body, dict):
        raise _APIError(400, "request body must be a JSON object")
    return body


def _parse_keep_alive(value: Any) -> timedelta:
    """api.Duration: a number is seconds, a string is a Go duration, negative means forever."""
    if value is None:
        return _DEFAULT_KEEP_ALIVE
    if isinstance(value, bool):
        raise _APIError(400, f"unsupported type: {type(value).__name__}")
    if isinstance(value, int | float):
        return _FOREVER if value < 0 else timedelta(seconds=int(value))
    if isinstance(value, str):
        seconds = _parse_go_duration(value)
        return _FOREVER if seconds < 0 else timedelta(seconds=seconds)
    raise _APIError(400, f"unsupported type: {type(value).__name__}")


def _parse_go_duration(text: str) -> float:
    if text in ("0", "+0", "-0"):
        return 0.0
    match = re.fullmatch(r"([+-]?)((?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h))+", text)
    if not match:
        raise _APIError(400, f'time: invalid duration "{text}"')
    total = sum(
        float(number) * _GO_DURATION_UNITS[unit]
        for number, unit in re.findall(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)", text)
    )
    return -total if match.group(1) == "-" else total


def _parse_think(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if value in ("high", "medium", "low"):
        return True
    allowed = '"high", "medium", "low", true, or false'
    raise _APIError(400, f"invalid think value: {json.dumps(value)} (must be {allowed})")


def _check_options(options: Any) -> JSON:
    """api.Options.FromMap: unknown keys are ignored (with a warning), wrong types fail."""
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise _APIError(400, "options must be an object")
    for key, value in options.items():
        if value is None:
            continue
        if key in _INT_OPTIONS and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise _APIError(500, f'option "{key}" must be of type integer')
        if key in _BOOL_OPTIONS and not isinstance(value, bool):
            raise _APIError(500, f'option "{key}" must be of type boolean')
        if key == "stop" and not (
            isinstance(value, list) and all(isinstance(s, str) for s in value)
        ):
            raise _APIError(500, f'option "{key}" must be of an array of strings')
        if (
            key in _RUNTIME_OPTIONS
            and key not in _INT_OPTIONS
            and key != "stop"
            and (isinstance(value, bool) or not isinstance(value, int | float))
        ):
            raise _APIError(500, f'option "{key}" must be of type float32')
    return options


def _response_format(fmt: Any) -> JSON | None:
    """Ollama's ``format`` ("json" or a JSON schema) as llama-server's response_format."""
    if fmt in (None, ""):
        return None
    if fmt == "json":
        return {"type": "json_object"}
    if isinstance(fmt, dict):
        return {"type": "json_schema", "json_schema": {"schema": fmt}}
    raise _APIError(400, 'invalid format: expected "json" or a valid JSON schema')


def _backend_payload(
    backend_model: str,
    messages: list[Any],
    tools: list[Any],
    options: JSON,
    response_format: JSON | None,
    think: bool | None,
    can_think: bool,
) -> JSON:
    payload: JSON = {
        "model": backend_model,
        "messages": _to_openai_messages(messages),
        "stream": True,
    }
    for key, value in options.items():
        if key in _RUNTIME_OPTIONS and value is not None:
            payload[_RUNTIME_OPTIONS[key]] = int(value) if key in _INT_OPTIONS else value
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
            raise _APIError(400, "each message must be an object")
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


def _fake_chat(
    messages: list[Any],
    tools: list[Any],
    options: JSON,
    fmt: Any,
    think: bool,
    seq: int,
) -> _Events:
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
            yield _Delta(thinking=piece)
    if tools and last.get("role") == "user":
        named = [t for t in tools if _tool_name(t) and _tool_name(t) in prompt]
        chosen = named or tools[:1]
        word = (re.findall(r"[A-Za-z0-9_-]+", prompt) or ["example"])[-1]
        calls = [
            _tool_call(seq, index, _tool_name(tool), _fake_arguments(tool, word))
            for index, tool in enumerate(chosen)
        ]
        generated += 12 * len(calls)
        yield _Delta(tool_calls=calls)
        yield _Done(
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
                yield _Delta(content=piece)
            break
        produced += piece
        generated += 1
        yield _Delta(content=piece)
    yield _Done(reason, prompt_tokens, prompt_ns, generated, time.perf_counter_ns() - gen_started)


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


def _tool_call(seq: int, index: int, name: str, arguments: JSON) -> JSON:
    # Ollama ids are "call_" + 8 of [a-z0-9]; derived from the request here to stay repeatable.
    call_id = "call_" + hashlib.sha256(f"{seq}:{index}".encode()).hexdigest()[:8]
    return {"id": call_id, "function": {"index": index, "name": name, "arguments": arguments}}


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
    obj: JSON = {"model": model, "created_at": _go_time(datetime.now(UTC)), "message": message}
    if done_reason is not None:
        obj["done_reason"] = done_reason
    obj["done"] = done_reason is not None
    # Go's omitempty drops zero durations and counts.
    obj.update({k: v for k, v in (metrics or {}).items() if v})
    return obj


def _collect_chat(lines: _Lines) -> _Reply:
    """stream:false as ChatHandler does it: concatenate pieces into the final object."""
    content, thinking, calls = [], [], []
    last: JSON | None = None
    with contextlib.closing(lines):
        for item in lines:
            if isinstance(item, _Failure):
                raise _APIError(item.status, item.message)
            message = item["message"]
            content.append(message.get("content", ""))
            thinking.append(message.get("thinking", ""))
            calls += message.get("tool_calls", [])
            last = item
    if last is None:
        raise _APIError(500, "unexpected response")
    last["message"]["content"] = "".join(content)
    if any(thinking):
        last["message"]["thinking"] = "".join(thinking)
    if calls:
        last["message"]["tool_calls"] = calls
    return _Reply(200, last, ollama.ChatResponse)


def _wait_for_stream(lines: _Lines) -> _Reply:
    """waitForStream: the last progress object, or the error with status 500."""
    latest: JSON = {}
    with contextlib.closing(lines):
        for item in lines:
            if isinstance(item, _Failure):
                raise _APIError(item.status, item.message)
            latest = item
    return _Reply(200, latest, ollama.ProgressResponse)


def _dumps(obj: JSON) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def _backend_error_message(response: httpx.Response) -> str:
    try:
        error = response.json().get("error")
    except (json.JSONDecodeError, AttributeError):
        error = None
    return _error_message(error) if error else response.text or f"HTTP {response.status_code}"


def _error_message(error: Any) -> str:
    """llama-server errors are {"code", "message", "type"} objects."""
    return str(error.get("message") or error) if isinstance(error, dict) else str(error)


def _dropped_keys(sent: Any, model: BaseModel, prefix: str) -> list[str]:
    """Keys of ``sent`` that ``model`` (validated from it) has no field for, as dotted paths."""
    fields = type(model).model_fields
    by_key = {info.alias or name: name for name, info in fields.items()}
    dropped = []
    for key, value in sent.items():
        name = by_key.get(key, key if key in fields else None)
        if name is None:
            dropped.append(prefix + key)
            continue
        dropped += _dropped_in(value, getattr(model, name), prefix + key)
    return dropped


def _dropped_in(value: Any, validated: Any, path: str) -> list[str]:
    if isinstance(validated, BaseModel) and isinstance(value, dict):
        return _dropped_keys(value, validated, path + ".")
    if isinstance(value, list) and isinstance(validated, list | tuple):
        return [
            p
            for v, m in zip(value, validated, strict=False)
            for p in _dropped_in(v, m, path + "[]")
        ]
    return []


def _go_time(moment: datetime) -> str:
    """time.Time's JSON form in UTC: RFC 3339, trailing fractional zeros trimmed, then Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0").rstrip(".") + "Z"


def _details(spec: ModelSpec) -> JSON:
    return {
        "parent_model": "",
        "format": "gguf",
        "family": spec.family,
        "families": [spec.family],
        "parameter_size": _human_number(spec.parameter_count),
        "quantization_level": spec.quantization_level,
    }


def _human_number(n: int) -> str:
    """format.HumanNumber, which Ollama uses for parameter_size ("134.52M", "8.0B")."""
    for unit, scale, fmt in (("B", 1e9, "{:.1f}"), ("M", 1e6, "{:.2f}"), ("K", 1e3, "{:.0f}")):
        if n >= scale:
            value = n / scale
            return (f"{value:.0f}" if value == int(value) else fmt.format(value)) + unit
    return str(n)


def _manifest_digest(name: str) -> str:
    return hashlib.sha256(f"manifest:{name}".encode()).hexdigest()


def _layers(name: str, spec: ModelSpec) -> list[tuple[str, int]]:
    """Blobs of a model as a pull lists them: weights, template, license, params, config."""
    small = [
        ("template", len(spec.template)),
        ("license", len(spec.license)),
        ("params", 30 * len(spec.stop)),
        ("config", 488),
    ]
    small = [(kind, size) for kind, size in small if size]
    layers = [("model", spec.size - sum(size for _, size in small)), *small]
    return [
        ("sha256:" + hashlib.sha256(f"{name}/{kind}".encode()).hexdigest(), size)
        for kind, size in layers
    ]


def _modelfile(name: str, spec: ModelSpec) -> str:
    blob = _layers(name, spec)[0][0].replace(":", "-")
    lines = [
        '# Modelfile generated by "ollama show"',
        "# To build a new Modelfile based on this, replace FROM with:",
        f"# FROM {name}",
        "",
        f"FROM /root/.ollama/models/blobs/{blob}",
    ]
    if spec.template:
        lines.append(f'TEMPLATE """{spec.template}"""')
    lines += [f"PARAMETER stop {s}" for s in spec.stop]
    if spec.license:
        lines.append(f'LICENSE """{spec.license}"""')
    return "\n".join(lines) + "\n"


def _without_zeros(obj: JSON, keep: tuple[str, ...]) -> JSON:
    return {k: v for k, v in obj.items() if k in keep or v}


def _hashed_vector(seed: str, dims: int) -> list[float]:
    values: list[float] = []
    counter = 0
    while len(values) < dims:
        digest = hashlib.sha256(f"{seed}\0{counter}".encode()).digest()
        values += [(b - 127.5) / 127.5 for b in digest]
        counter += 1
    return _normalized(values[:dims])


def _normalized(vector: list[float]) -> list[float]:
    """Ollama L2-normalizes every embedding (server/routes.go normalize)."""
    norm = max(sum(v * v for v in vector) ** 0.5, 1e-12)
    return [v / norm for v in vector]
