"""Providers: one async class per wire. See :mod:`llm_nb.providers.base` for the interface.

Each provider module is imported when its class is first asked for, so that using one wire
(or only the base class) does not import the others.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["LlamaCppProvider", "OllamaProvider", "OpenAIProvider", "Provider"]

_MODULES = {
    "LlamaCppProvider": ".llamacpp",
    "OllamaProvider": ".ollama",
    "OpenAIProvider": ".openai",
    "Provider": ".base",
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_MODULES])


if TYPE_CHECKING:
    from .base import Provider
    from .llamacpp import LlamaCppProvider
    from .ollama import OllamaProvider
    from .openai import OpenAIProvider
