"""The provider registry: model ids to provider instances, user aliases, and discovery.

Each session has one. One provider instance per (provider, host), created on first use and
reused so connection pools are shared; each provider module is imported when its first
instance is made. Providers the registry holds report their calls to its session.

``local`` starts llm_nb's bundled llama-server when nothing else is configured; with
``LLM_NB_LOCAL_URL`` set it is the llama-server at that URL instead (``python -m llm_nb
notebook`` sets it, so its kernels share the server it started). Discovery probes the usual
local ports concurrently with a short timeout: 8080 (llama-server), 11434 (Ollama), 1234
(LM Studio), 8000 (vLLM).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from ._errors import InvalidOptionError
from ._modelid import ModelId, parse_model_id

if TYPE_CHECKING:
    from .providers.base import Provider

#: A running llama-server for the model id ``local`` to use instead of starting one.
LOCAL_URL_ENV = "LLM_NB_LOCAL_URL"

#: (port, provider guess) probed by discover(); 8080 is confirmed as llama-server via /props.
DEFAULT_PORTS: tuple[tuple[int, str], ...] = (
    (8080, "llamacpp"),
    (11434, "ollama"),
    (1234, "openai"),
    (8000, "openai"),
)


def provider_class(name: str) -> type[Provider]:
    # Imported here so that importing llm_nb does not import every provider.
    if name == "openai":
        from .providers.openai import OpenAIProvider

        return OpenAIProvider
    if name == "llamacpp":
        from .providers.llamacpp import LlamaCppProvider

        return LlamaCppProvider
    if name == "ollama":
        from .providers.ollama import OllamaProvider

        return OllamaProvider
    raise InvalidOptionError(f"unknown provider {name!r}; use openai, llamacpp or ollama")


@dataclass(frozen=True, slots=True)
class Found:
    """A server found by discovery."""

    provider: Provider
    detail: str


class Registry:
    """``adopt`` is called with each provider the registry takes in, made or added: a
    session uses it to have their calls reported to it."""

    def __init__(self, *, adopt: Callable[[Provider], None] | None = None) -> None:
        self.aliases: dict[str, str] = {}
        self._providers: dict[tuple[str, str | None], Provider] = {}
        self._lock = threading.Lock()
        self._adopt = adopt
        #: Starts the bundled server for "local"; replaceable in tests.
        self.local_server_factory: Callable[[], str] | None = None

    def add(self, provider: Provider, *, default: bool = False) -> Provider:
        """Register a configured provider instance (e.g. with an explicit key or transport);
        its calls are reported to this registry's session from now on."""
        if self._adopt is not None:
            self._adopt(provider)
        with self._lock:
            self._providers[(provider.name, provider.host)] = provider
            if default:
                self._providers[(provider.name, None)] = provider
        return provider

    def get(self, name: str, host: str | None = None) -> Provider:
        """The provider for ``name`` at ``host`` (None: the configured/environment default)."""
        with self._lock:
            key = (name, host)
            found = self._providers.get(key)
            if found is None:
                cls = provider_class(name)
                candidate = cls(host) if host else cls()
                if self._adopt is not None:
                    self._adopt(candidate)
                # One instance per server: the default and an explicit @host may be the same.
                found = self._providers.setdefault((name, candidate.host), candidate)
                self._providers[key] = found
            return found

    def resolve(self, model_id: str) -> tuple[Provider, str]:
        """(provider, model name) for a model id such as ``ollama:llama3.2:1b@box:11434``."""
        mid = parse_model_id(model_id, self.aliases)
        if mid.provider == "local":
            return self._local(), mid.model
        return self.get(mid.provider, mid.host), mid.model

    def parse(self, model_id: str) -> ModelId:
        return parse_model_id(model_id, self.aliases)

    def _local(self) -> Provider:
        factory = self.local_server_factory
        if factory is None:
            from ._embedded import default_server

            def factory() -> str:
                return os.environ.get(LOCAL_URL_ENV) or default_server().url

        url = factory()
        from ._config import host_of, normalize_url

        return self.get("llamacpp", host_of(normalize_url(url)))

    def providers(self) -> list[Provider]:
        with self._lock:
            seen: dict[int, Provider] = {}
            for p in self._providers.values():
                seen.setdefault(id(p), p)
            return list(seen.values())

    async def discover(
        self,
        host: str = "127.0.0.1",
        ports: tuple[tuple[int, str], ...] = DEFAULT_PORTS,
        timeout: float = 0.5,
    ) -> list[Found]:
        """Probe local default ports concurrently; register and return what answers."""
        async with httpx.AsyncClient(timeout=timeout, trust_env=False) as client:
            results = await asyncio.gather(
                *(_probe(client, host, port, guess) for port, guess in ports)
            )
        found = []
        for result in results:
            if result is not None:
                name, url, detail = result
                provider = self.get(name, url.split("://", 1)[1])
                found.append(Found(provider, detail))
        return found


async def _probe(
    client: httpx.AsyncClient, host: str, port: int, guess: str
) -> tuple[str, str, str] | None:
    base = f"http://{host}:{port}"
    try:
        if guess == "ollama":
            r = await client.get(f"{base}/api/version")
            if r.status_code == 200 and "version" in r.json():
                return "ollama", base, f"Ollama {r.json()['version']}"
            return None
        if guess == "llamacpp":
            r = await client.get(f"{base}/props")
            if r.status_code == 200:
                props = r.json()
                if "default_generation_settings" in props or props.get("role") == "router":
                    mode = "router" if props.get("role") == "router" else "single-model"
                    return "llamacpp", base, f"llama-server ({mode})"
            if r.status_code == 503:
                return "llamacpp", base, "llama-server (loading)"
        r = await client.get(f"{base}/v1/models")
        if r.status_code == 200 and isinstance(r.json().get("data"), list):
            return "openai", f"{base}", "OpenAI-compatible server"
    except (httpx.HTTPError, ValueError):
        return None
    return None
