"""llama.cpp's llama-server: OpenAI-compatible chat plus its own endpoints.

Single-model mode serves the model given with ``-m`` (the request's ``model`` is ignored and
the answer names the alias). Router mode (started with ``--models-dir``/``--models-preset``
and no ``-m``) lists many models with a load status, loads and unloads them (LRU eviction at
``--models-max``) and routes each request by its ``model`` field. ``GET /props`` answers
``{"role": "router"}`` in router mode, which is how the two are told apart.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any, ClassVar

from .._errors import (
    APIStatusError,
    LLMError,
    ModelNotFoundError,
    ServerError,
    UnsupportedError,
)
from .._types import Embeddings, Health, ModelInfo
from .openai import OpenAIProvider

#: Router status values (``status.value``) passed through as ModelInfo.status.
ROUTER_STATUSES = frozenset(
    {"downloading", "downloaded", "unloaded", "loading", "loaded", "sleeping"}
)


class LlamaCppProvider(OpenAIProvider):
    """A llama-server at ``base_url`` (default http://127.0.0.1:8080, or LLAMA_CPP_URL)."""

    name: ClassVar[str] = "llamacpp"
    label: ClassVar[str] = "llama-server"
    default_url: ClassVar[str] = "http://127.0.0.1:8080"
    env_url = ("LLAMA_CPP_URL", "LLAMA_SERVER_URL")
    env_key = ("LLAMA_API_KEY",)
    start_hint = (
        "start one with `llama-server -m model.gguf --port 8080`, or use the model id "
        "'local' to let llm_nb start its bundled server"
    )
    capabilities = frozenset(
        {"chat", "stream", "models", "health", "load", "unload", "embed", "tools", "json"}
    )

    @classmethod
    def _normalize_base_url(cls, url: str) -> str:
        from .._config import normalize_url

        url = normalize_url(url)
        # Users paste the OpenAI-style URL; llama-server's own endpoints live at the root.
        return url.removesuffix("/v1")

    api_prefix: ClassVar[str] = "/v1"

    @property
    def is_openai(self) -> bool:
        return False

    # -- server state -----------------------------------------------------------------------

    async def health(self) -> Health:
        """``ok`` when ready, ``loading`` while the model loads (503), ``unreachable``."""
        client = self._client()
        try:
            response = await client.get("/health", timeout=5)
        except Exception as exc:
            return Health(self.name, self.base_url, "unreachable", str(self._connect_failure(exc)))
        if response.status_code == 503:
            return Health(self.name, self.base_url, "loading", "model is loading")
        if response.status_code != 200:
            return Health(self.name, self.base_url, "error", f"HTTP {response.status_code}")
        try:
            props = await self.props()
        except LLMError:
            props = {}
        return Health(
            self.name,
            self.base_url,
            "ok",
            str(props.get("model_alias") or props.get("model_path") or ""),
            version=props.get("build_info"),
            router=props.get("role") == "router",
        )

    async def props(self, model: str | None = None) -> dict[str, Any]:
        """``GET /props``: build, context size, slots, model path (per model in router mode)."""
        params = {"model": model} if model else None
        result = await self._get_json("/props", params=params, timeout=10)
        return result if isinstance(result, dict) else {}

    async def server_facts(self, model: str) -> dict[str, Any]:
        """The build, model file, quantization, context size and slots from ``/props``."""
        props = await self.props()
        settings = props.get("default_generation_settings") or {}
        return {
            "build": props.get("build_info"),
            "model_path": props.get("model_path"),
            "quantization": props.get("model_ftype"),
            "n_ctx": settings.get("n_ctx"),
            "total_slots": props.get("total_slots"),
        }

    async def is_router(self) -> bool:
        return (await self.props()).get("role") == "router"

    # -- models -----------------------------------------------------------------------------

    async def models(self) -> list[ModelInfo]:
        obj = await self._get_json(f"{self.api_prefix}/models", timeout=10)
        router = any(isinstance(m, dict) and "status" in m for m in obj.get("data") or ())
        return [self._model_info(m, router) for m in obj.get("data") or () if isinstance(m, dict)]

    def _model_info(self, m: dict[str, Any], router: bool) -> ModelInfo:
        meta = m.get("meta") or {}
        if router:
            st = m.get("status") or {}
            status = st.get("value", "unloaded")
            if st.get("failed"):
                status = "failed"
            elif status not in ROUTER_STATUSES:
                status = "available"
        else:
            status = "loaded"  # a single-model server holds its one model in memory
        return ModelInfo(
            self.name,
            self.host,
            m.get("id", ""),
            status,
            size_bytes=meta.get("size"),
            quantization=meta.get("ftype"),
            parameter_size=_params(meta.get("n_params")),
            context_length=meta.get("n_ctx") or meta.get("n_ctx_train"),
            details=m,
        )

    async def _router_model(self, model: str) -> ModelInfo:
        infos = await self.models()
        for info in infos:
            if info.name == model or model in (info.details.get("aliases") or ()):
                return info
        raise ModelNotFoundError(
            f"model {model!r} not found on {self.name}@{self.host}; available: "
            f"{', '.join(i.name for i in infos) or 'none'}",
            model=model,
            available=[i.name for i in infos],
            provider=self.label,
            url=self.base_url,
        )

    async def _require_router(self, what: str) -> None:
        if not await self.is_router():
            raise UnsupportedError(
                f"llama-server at {self.host} runs a single model, so it cannot {what}; "
                "start it in router mode (--models-dir DIR, no -m) to manage models",
                provider=self.label,
                url=self.base_url,
            )

    async def load(self, model: str, *, wait: bool = True, timeout: float = 300) -> None:
        """Load ``model`` in router mode; with ``wait`` return once it is loaded."""
        await self._require_router("load models")
        info = await self._router_model(model)
        if info.status in ("loaded", "loading"):
            if wait:
                await self._wait_status(model, "loaded", timeout)
            return
        try:
            await self._post_json("/models/load", {"model": info.name})
        except APIStatusError as exc:
            # "already running" races with a concurrent load: fine, we wait below.
            if exc.status_code != 400:
                raise
        if wait:
            await self._wait_status(model, "loaded", timeout)

    async def unload(self, model: str, *, wait: bool = True, timeout: float = 60) -> None:
        """Stop the process serving ``model`` in router mode (no-op if it is not loaded)."""
        await self._require_router("unload models")
        info = await self._router_model(model)
        if info.status in ("unloaded", "failed", "available"):
            return
        try:
            await self._post_json("/models/unload", {"model": info.name})
        except APIStatusError as exc:
            if exc.status_code != 400:  # "not running": someone else unloaded it
                raise
        if wait:
            await self._wait_status(model, "unloaded", timeout)

    async def _wait_status(self, model: str, want: str, timeout: float) -> ModelInfo:
        deadline = time.monotonic() + timeout
        delay = 0.05
        while True:
            info = await self._router_model(model)
            if info.status == want:
                return info
            if info.status == "failed" and want == "loaded":
                st = info.details.get("status") or {}
                raise ServerError(
                    f"llama-server at {self.host} failed to load {model!r} "
                    f"(exit code {st.get('exit_code')}); see the server log",
                    status_code=500,
                    provider=self.label,
                    url=self.base_url,
                )
            if time.monotonic() > deadline:
                raise ServerError(
                    f"{model!r} on {self.host} is still {info.status!r} after {timeout:.0f} s "
                    f"(wanted {want!r})",
                    status_code=504,
                    provider=self.label,
                    url=self.base_url,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    # -- embeddings -------------------------------------------------------------------------

    async def embed(self, model: str, inputs: str | Sequence[str]) -> Embeddings:
        try:
            return await super().embed(model, inputs)
        except APIStatusError as exc:
            if exc.status_code == 501:
                raise UnsupportedError(
                    f"llama-server at {self.host} was started without embeddings; restart it "
                    "with --embeddings",
                    provider=self.label,
                    url=self.base_url,
                ) from exc
            raise


def _params(n: Any) -> str | None:
    if not isinstance(n, int | float) or n <= 0:
        return None
    return f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.0f}M"
