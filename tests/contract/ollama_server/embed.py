"""/api/embed: vectors from the backend's /v1/embeddings, or hashed ones without it, always
L2-normalized as Ollama's are."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import ollama

from .backend import Backend
from .catalogue import ModelSpec
from .requests import parse_keep_alive, require_object
from .store import ModelStore
from .wire import APIError, Reply


def embed(body: Any, store: ModelStore, backend: Backend | None) -> Reply:
    started = time.perf_counter_ns()
    req = require_object(body)
    raw = str(req.get("model") or "")
    value = req.get("input")
    if isinstance(value, str):
        inputs = [value] if value else []
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        inputs = list(value)
    elif value is None:
        inputs = []
    else:
        raise APIError(400, "invalid input type")
    name, spec = store.lookup(raw)
    if spec is None:
        raise APIError(404, f"model '{raw}' not found")
    keep_alive = parse_keep_alive(req.get("keep_alive"))
    store.load(name, spec, req.get("options"), keep_alive)
    loaded = time.perf_counter_ns()
    try:
        if not inputs:
            return Reply(200, {"model": raw, "embeddings": []}, ollama.EmbedResponse)
        vectors, tokens = _embeddings(backend, name, spec, inputs)
    finally:
        store.release(name, keep_alive)
    dims = req.get("dimensions")
    if isinstance(dims, int) and 0 < dims < len(vectors[0]):
        vectors = [_normalized(v[:dims]) for v in vectors]
    reply = {
        "model": raw,
        "embeddings": vectors,
        "total_duration": time.perf_counter_ns() - started,
        "load_duration": loaded - started,
        "prompt_eval_count": tokens,
    }
    # Go's omitempty drops zero durations and counts.
    reply = {k: v for k, v in reply.items() if k in ("model", "embeddings") or v}
    return Reply(200, reply, ollama.EmbedResponse)


def _embeddings(
    backend: Backend | None, name: str, spec: ModelSpec, inputs: list[str]
) -> tuple[list[list[float]], int]:
    """Real vectors from llama-server's /v1/embeddings when it was started with --embeddings;
    otherwise deterministic hashed vectors with a word-count token figure."""
    if backend is not None:
        real = backend.embeddings(spec.backend_model or name, inputs)
        if real is not None:
            vectors, tokens = real
            return [_normalized(v) for v in vectors], tokens
    vectors = [_hashed_vector(f"{name}\0{text}", spec.embedding_length) for text in inputs]
    return vectors, sum(max(1, len(text.split())) for text in inputs)


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
