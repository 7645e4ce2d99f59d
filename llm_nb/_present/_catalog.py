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
#: What the picker can ask a server to do with a model.
ACTIONS = ("load", "unload", "pull", "delete")


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
    #: The model actions (load, unload, pull, delete) this server cannot do, each with why.
    refused: dict[str, str] = field(default_factory=dict)

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
    listings, refusals = await asyncio.gather(
        asyncio.gather(*(_list(p) for p in providers)),
        asyncio.gather(*(refused_actions(p) for p in providers)),
    )
    groups = []
    for p, listing, refused in zip(providers, listings, refusals, strict=True):
        detail = _details.get(f"{p.name}@{p.host}", "")
        if isinstance(listing, LLMError):
            unreachable = isinstance(listing, APIConnectionError)
            text = " ".join(listing.message.split())
            groups.append(Group(p, error=text, unreachable=unreachable, detail=detail))
        else:
            models = sorted(listing, key=lambda m: m.name)
            groups.append(Group(p, models, detail=detail, refused=refused))
    return Catalog(groups, problems)


async def refused_actions(p: Provider) -> dict[str, str]:
    """The :data:`ACTIONS` ``p``'s server cannot do, each with a one-line reason.

    The provider's ``capabilities`` say what its kind of server can do at all; a llama-server
    additionally manages models only in router mode, which its ``/props`` tells. On a router,
    Pull asks the router to load the model (downloading it first if it must), so Pull counts
    as supported wherever Load is.
    """
    from ..providers.llamacpp import LlamaCppProvider

    caps = p.capabilities
    can = {
        "load": "load" in caps,
        "unload": "unload" in caps,
        "pull": "pull" in caps or "load" in caps,
        "delete": "delete" in caps,
    }
    refused = {a: f"{p.label} at {p.host} cannot {a} models" for a in ACTIONS if not can[a]}
    if isinstance(p, LlamaCppProvider) and any(can[a] for a in ("load", "unload", "pull")):
        try:
            router = await asyncio.wait_for(p.is_router(), LIST_TIMEOUT_S)
        except (LLMError, TimeoutError):
            router = True  # unknown: offer the action and let its own error say why not
        if not router:
            why = (
                f"llama-server at {p.host} runs a single model; start it in router mode "
                "(--models-dir DIR, no -m) to load, unload or pull models"
            )
            refused.update({a: why for a in ("load", "unload", "pull")})
    return refused


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
