"""Every known server's models, by server: what ``%llm_models``, the picker and the compare
panel list.

"Known" means: providers already in use (the registry), providers configured through the
environment or the user config file, and local servers found by discovery on their default
ports. Servers are asked concurrently, each with a short timeout; one that does not answer
becomes a group holding its one-line error instead of models, not an error for the whole
listing.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._errors import APIConnectionError, ConfigError, LLMError

if TYPE_CHECKING:
    from .._registry import Registry
    from .._types import ModelInfo
    from ..providers.base import Provider

#: Per-server limit for listing its models; discovery itself probes with 0.5 s.
LIST_TIMEOUT_S = 5.0
_PROVIDERS = ("llamacpp", "ollama", "openai")


@dataclass(frozen=True)
class Group:
    """One server: its models, or why they could not be listed."""

    provider: Provider
    models: list[ModelInfo] = field(default_factory=list)
    error: str | None = None
    #: The server did not answer at all (as opposed to answering with an error).
    unreachable: bool = False
    #: What discovery said about the server ("llama-server (router)"), if it found it.
    detail: str = ""

    @property
    def key(self) -> str:
        return f"{self.provider.name}@{self.provider.host}"


@dataclass(frozen=True)
class Catalog:
    groups: list[Group]
    #: Configuration problems found on the way (e.g. a malformed OPENAI_BASE_URL).
    problems: list[str]

    def model_ids(self) -> list[str]:
        return [m.id for g in self.groups for m in g.models]

    def find(self, model_id: str) -> tuple[Group, ModelInfo] | None:
        for group in self.groups:
            for info in group.models:
                if info.id == model_id:
                    return group, info
        return None


#: Found.detail by server, remembered across listings (discovery runs only on refresh).
_details: dict[str, str] = {}


async def catalog(discover: bool) -> Catalog:
    """Every known server's models; ``discover`` probes the local default ports first."""
    from .._session import registry

    reg = registry()
    if discover:
        for found in await reg.discover():
            _details[f"{found.provider.name}@{found.provider.host}"] = found.detail
    problems = _add_configured(reg)
    providers = sorted(reg.providers(), key=lambda p: (p.name, p.host))
    listings = await asyncio.gather(*(_list(p) for p in providers))
    groups = []
    for p, listing in zip(providers, listings, strict=True):
        detail = _details.get(f"{p.name}@{p.host}", "")
        if isinstance(listing, LLMError):
            unreachable = isinstance(listing, APIConnectionError)
            text = " ".join(listing.message.split())
            groups.append(Group(p, error=text, unreachable=unreachable, detail=detail))
        else:
            groups.append(Group(p, sorted(listing, key=lambda m: m.name), detail=detail))
    return Catalog(groups, problems)


def _add_configured(reg: Registry) -> list[str]:
    """Put providers set up in the environment or config file into the registry."""
    from .._config import file_setting
    from .._registry import provider_class

    problems = []
    for name in _PROVIDERS:
        cls = provider_class(name)
        env_set = any(os.environ.get(var) for var in (*cls.env_url, *cls.env_key))
        if env_set or file_setting(name, "base_url") or file_setting(name, "api_key"):
            try:
                reg.get(name)
            except ConfigError as exc:
                problems.append(str(exc))
    return problems


async def _list(p: Provider) -> list[ModelInfo] | LLMError:
    try:
        return await asyncio.wait_for(p.models(), LIST_TIMEOUT_S)
    except TimeoutError:
        return APIConnectionError(
            f"{p.label} at {p.host} did not list its models within {LIST_TIMEOUT_S:.0f} s",
            provider=p.label,
            url=p.base_url,
        )
    except LLMError as exc:
        return exc


def model_row(info: ModelInfo) -> dict[str, Any]:
    """One model as a row of ``%llm_models``' table."""
    return {
        "provider": info.provider,
        "host": info.host,
        "model": info.name,
        "status": info.status,
        "size": size_text(info.size_bytes),
        "quantization": info.quantization,
        "context": info.context_length,
    }


def size_text(n: int | None) -> str | None:
    """Bytes in the largest unit that keeps a number of at least 1 ("4.1 GB")."""
    if n is None:
        return None
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"
