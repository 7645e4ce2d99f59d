"""llm_nb: use and compare LLMs (OpenAI, llama.cpp, Ollama) from Jupyter.

Importing the package does nothing but define names: every submodule (httpx, pandas,
ipywidgets included) is imported on first use, so ``import llm_nb`` and ``%load_ext llm_nb``
stay fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> module that defines it (relative to this package)
_LAZY = {
    "achat": "._api",
    "adiscover": "._api",
    "amodels": "._api",
    "astream": "._api",
    "chat": "._api",
    "discover": "._api",
    "models": "._api",
    "provider": "._api",
    "stream": "._api",
    "sync": "._api",
    "SyncStream": "._api",
    "registry": "._registry",
    "set_price": "._stats",
    "warmup": "._stats",
    "run": "._stats",
    "export": "._stats",
    "history": "._stats",
    "summary": "._stats",
    "stats": "._stats",
    "EvalResult": "._eval",
    "aevaluate": "._eval",
    "evaluate": "._eval",
    "scorers": "._eval",
    "ChatStream": "._stream",
    "Secret": "._config",
    "ChatOptions": "._types",
    "ChatResponse": "._types",
    "Embeddings": "._types",
    "Health": "._types",
    "Message": "._types",
    "ModelInfo": "._types",
    "PullProgress": "._types",
    "ReasoningDelta": "._types",
    "ServerTimings": "._types",
    "TextDelta": "._types",
    "ToolCall": "._types",
    "ToolCallDelta": "._types",
    "Usage": "._types",
    "LlamaCppProvider": ".providers.llamacpp",
    "OllamaProvider": ".providers.ollama",
    "OpenAIProvider": ".providers.openai",
    "Provider": ".providers.base",
    "LLMError": "._errors",
    "InvalidOptionError": "._errors",
    "ConfigError": "._errors",
    "UnsupportedError": "._errors",
    "APIConnectionError": "._errors",
    "APITimeoutError": "._errors",
    "APIStatusError": "._errors",
    "BadRequestError": "._errors",
    "ContextLengthError": "._errors",
    "AuthenticationError": "._errors",
    "PermissionDeniedError": "._errors",
    "NotFoundError": "._errors",
    "ModelNotFoundError": "._errors",
    "ConflictError": "._errors",
    "RateLimitError": "._errors",
    "ServerError": "._errors",
    "ServiceUnavailableError": "._errors",
    "ProtocolError": "._errors",
    "QuotaExceededError": "._errors",
    "chat_panel": "._widgets",
    "compare_panel": "._widgets",
    "model_picker": "._widgets",
    "load_ipython_extension": "._magics",
    "unload_ipython_extension": "._magics",
}

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ChatOptions",
    "ChatResponse",
    "ChatStream",
    "ConfigError",
    "ConflictError",
    "ContextLengthError",
    "Embeddings",
    "EvalResult",
    "Health",
    "InvalidOptionError",
    "LLMError",
    "LlamaCppProvider",
    "Message",
    "ModelInfo",
    "ModelNotFoundError",
    "NotFoundError",
    "OllamaProvider",
    "OpenAIProvider",
    "PermissionDeniedError",
    "ProtocolError",
    "Provider",
    "PullProgress",
    "QuotaExceededError",
    "RateLimitError",
    "ReasoningDelta",
    "Secret",
    "ServerError",
    "ServerTimings",
    "ServiceUnavailableError",
    "SyncStream",
    "TextDelta",
    "ToolCall",
    "ToolCallDelta",
    "UnsupportedError",
    "Usage",
    "achat",
    "adiscover",
    "aevaluate",
    "amodels",
    "astream",
    "chat",
    "chat_panel",
    "compare_panel",
    "discover",
    "evaluate",
    "export",
    "history",
    "load_ipython_extension",
    "model_picker",
    "models",
    "provider",
    "registry",
    "run",
    "scorers",
    "set_price",
    "stats",
    "stream",
    "summary",
    "sync",
    "unload_ipython_extension",
    "warmup",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'llm_nb' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


if TYPE_CHECKING:
    from ._api import (
        SyncStream,
        achat,
        adiscover,
        amodels,
        astream,
        chat,
        discover,
        models,
        provider,
        stream,
        sync,
    )
    from ._config import Secret
    from ._errors import (
        APIConnectionError,
        APIStatusError,
        APITimeoutError,
        AuthenticationError,
        BadRequestError,
        ConfigError,
        ConflictError,
        ContextLengthError,
        InvalidOptionError,
        LLMError,
        ModelNotFoundError,
        NotFoundError,
        PermissionDeniedError,
        ProtocolError,
        QuotaExceededError,
        RateLimitError,
        ServerError,
        ServiceUnavailableError,
        UnsupportedError,
    )
    from ._eval import EvalResult, aevaluate, evaluate, scorers
    from ._registry import registry
    from ._stats import export, history, run, set_price, stats, summary, warmup
    from ._stream import ChatStream
    from ._types import (
        ChatOptions,
        ChatResponse,
        Embeddings,
        Health,
        Message,
        ModelInfo,
        PullProgress,
        ReasoningDelta,
        ServerTimings,
        TextDelta,
        ToolCall,
        ToolCallDelta,
        Usage,
    )
    from ._widgets import chat_panel, compare_panel, model_picker
    from .providers import LlamaCppProvider, OllamaProvider, OpenAIProvider, Provider
