"""What the picker and the compare panel list: every known server's models, by server.

The same servers as ``%llm_models`` (providers in the registry, those configured through the
environment or config file, and local servers found on their default ports), asked
concurrently with the same per-server timeout; the helpers are shared with that magic. A
server that does not answer becomes a group holding its one-line error instead of models.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from .._errors import LLMError
from .._magics._models import _add_configured, _list
from .._session import registry
from .._types import ModelInfo
from ..providers.base import Provider


@dataclass(frozen=True)
class Group:
    """One server: its models, or why they could not be listed."""

    provider: Provider
    models: list[ModelInfo] = field(default_factory=list)
    error: str | None = None
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
            groups.append(Group(p, error=" ".join(listing.message.split()), detail=detail))
        else:
            groups.append(Group(p, sorted(listing, key=lambda m: m.name), detail=detail))
    return Catalog(groups, problems)
