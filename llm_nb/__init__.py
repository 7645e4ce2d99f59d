"""llm_nb: use and compare LLMs (OpenAI, llama.cpp, Ollama) from Jupyter.

Importing the package does nothing but define names: every submodule (httpx, pandas,
ipywidgets included) is imported on first use, so ``import llm_nb`` and ``%load_ext llm_nb``
stay fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import _observers

__version__ = "0.1.0"

#: Every public name, under the module that defines it (relative to this package), which is
#: imported when the name is first used. ``__all__`` and ``dir()`` come from here; the
#: imports for type checkers at the end name the same modules and names (a test checks).
_EXPORTS: dict[str, tuple[str, ...]] = {
    "._types": (
        "CallRequest",
        "Delta",
        "Embeddings",
        "Health",
        "Message",
        "ModelInfo",
        "PullProgress",
        "ReasoningDelta",
        "Role",
        "TextDelta",
        "ToolCallDelta",
    ),
    "._record": (
        "CallTrace",
        "ChatResponse",
        "ServerTimings",
        "Status",
        "ToolCall",
        "Usage",
    ),
    "._options": (
        "ChatKwargs",
        "ChatOptions",
        "ResponseFormat",
        "ToolChoice",
    ),
    "._errors": (
        "APIConnectionError",
        "APIStatusError",
        "APITimeoutError",
        "AuthenticationError",
        "BadRequestError",
        "ConfigError",
        "ConflictError",
        "ContextLengthError",
        "InvalidOptionError",
        "LLMError",
        "ModelNotFoundError",
        "NotFoundError",
        "PermissionDeniedError",
        "ProtocolError",
        "QuotaExceededError",
        "RateLimitError",
        "ServerError",
        "ServiceUnavailableError",
        "UnsupportedError",
    ),
    "._config": ("Secret",),
    "._wire.http": ("HTTPConfig",),
    "._wire.retry": ("RetryPolicy",),
    "._modelid": ("ModelId",),
    ".providers.base": ("Prompt",),
    ".providers": (
        "LlamaCppProvider",
        "OllamaProvider",
        "OpenAIProvider",
        "Provider",
    ),
    "._stream": ("ChatStream",),
    "._api": (
        "SyncProvider",
        "SyncStream",
        "achat",
        "adiscover",
        "amodels",
        "astream",
        "chat",
        "discover",
        "models",
        "provider",
        "stream",
        "sync",
    ),
    "._registry": (
        "Found",
        "Registry",
    ),
    "._session": (
        "export",
        "registry",
        "stats",
        "summary",
    ),
    "._stats": (
        "conversations",
        "history",
        "new_run",
        "set_price",
        "warmup",
    ),
    "._replay": (
        "areplay",
        "replay",
    ),
    "._eval": (
        "EvalResult",
        "aevaluate",
        "evaluate",
        "scorers",
    ),
    "._eval._plan": ("ScorerSpec",),
    "._widgets": (
        "ChatPanel",
        "ComparePanel",
        "ModelPicker",
        "chat_panel",
        "compare_panel",
        "model_picker",
    ),
    "._magics": (
        "load_ipython_extension",
        "unload_ipython_extension",
    ),
}

_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

#: Old names still answered, with a DeprecationWarning naming the new one.
_RENAMED = {"run": "new_run"}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    if name in _RENAMED:
        import warnings

        new = _RENAMED[name]
        warnings.warn(
            f"llm_nb.{name} is now llm_nb.{new} (same arguments)", DeprecationWarning, stacklevel=2
        )
        return __getattr__(new)
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'llm_nb' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_MODULE_OF])


def _default_observers() -> _observers.CallObservers:
    from ._session import default_observers

    return default_observers()


# A provider outside any session reports its calls to the default session (made on first
# use). The providers sit below the session and cannot import it: the way up is handed down
# from here, the package's front door, imported before any of its modules. _observers is
# the one module imported with it: a few lines, the standard library only.
_observers.set_default(_default_observers)


# Type checkers don't run __getattr__: they read these imports instead (``X as X`` is how
# mypy's strict mode knows a name is re-exported).
if TYPE_CHECKING:
    from ._api import SyncProvider as SyncProvider
    from ._api import SyncStream as SyncStream
    from ._api import achat as achat
    from ._api import adiscover as adiscover
    from ._api import amodels as amodels
    from ._api import astream as astream
    from ._api import chat as chat
    from ._api import discover as discover
    from ._api import models as models
    from ._api import provider as provider
    from ._api import stream as stream
    from ._api import sync as sync
    from ._config import Secret as Secret
    from ._errors import APIConnectionError as APIConnectionError
    from ._errors import APIStatusError as APIStatusError
    from ._errors import APITimeoutError as APITimeoutError
    from ._errors import AuthenticationError as AuthenticationError
    from ._errors import BadRequestError as BadRequestError
    from ._errors import ConfigError as ConfigError
    from ._errors import ConflictError as ConflictError
    from ._errors import ContextLengthError as ContextLengthError
    from ._errors import InvalidOptionError as InvalidOptionError
    from ._errors import LLMError as LLMError
    from ._errors import ModelNotFoundError as ModelNotFoundError
    from ._errors import NotFoundError as NotFoundError
    from ._errors import PermissionDeniedError as PermissionDeniedError
    from ._errors import ProtocolError as ProtocolError
    from ._errors import QuotaExceededError as QuotaExceededError
    from ._errors import RateLimitError as RateLimitError
    from ._errors import ServerError as ServerError
    from ._errors import ServiceUnavailableError as ServiceUnavailableError
    from ._errors import UnsupportedError as UnsupportedError
    from ._eval import EvalResult as EvalResult
    from ._eval import aevaluate as aevaluate
    from ._eval import evaluate as evaluate
    from ._eval import scorers as scorers
    from ._eval._plan import ScorerSpec as ScorerSpec
    from ._magics import load_ipython_extension as load_ipython_extension
    from ._magics import unload_ipython_extension as unload_ipython_extension
    from ._modelid import ModelId as ModelId
    from ._options import ChatKwargs as ChatKwargs
    from ._options import ChatOptions as ChatOptions
    from ._options import ResponseFormat as ResponseFormat
    from ._options import ToolChoice as ToolChoice
    from ._record import CallTrace as CallTrace
    from ._record import ChatResponse as ChatResponse
    from ._record import ServerTimings as ServerTimings
    from ._record import Status as Status
    from ._record import ToolCall as ToolCall
    from ._record import Usage as Usage
    from ._registry import Found as Found
    from ._registry import Registry as Registry
    from ._replay import areplay as areplay
    from ._replay import replay as replay
    from ._session import export as export
    from ._session import registry as registry
    from ._session import stats as stats
    from ._session import summary as summary
    from ._stats import conversations as conversations
    from ._stats import history as history
    from ._stats import new_run as new_run
    from ._stats import set_price as set_price
    from ._stats import warmup as warmup
    from ._stream import ChatStream as ChatStream
    from ._types import CallRequest as CallRequest
    from ._types import Delta as Delta
    from ._types import Embeddings as Embeddings
    from ._types import Health as Health
    from ._types import Message as Message
    from ._types import ModelInfo as ModelInfo
    from ._types import PullProgress as PullProgress
    from ._types import ReasoningDelta as ReasoningDelta
    from ._types import Role as Role
    from ._types import TextDelta as TextDelta
    from ._types import ToolCallDelta as ToolCallDelta
    from ._widgets import ChatPanel as ChatPanel
    from ._widgets import ComparePanel as ComparePanel
    from ._widgets import ModelPicker as ModelPicker
    from ._widgets import chat_panel as chat_panel
    from ._widgets import compare_panel as compare_panel
    from ._widgets import model_picker as model_picker
    from ._wire.http import HTTPConfig as HTTPConfig
    from ._wire.retry import RetryPolicy as RetryPolicy
    from .providers import LlamaCppProvider as LlamaCppProvider
    from .providers import OllamaProvider as OllamaProvider
    from .providers import OpenAIProvider as OpenAIProvider
    from .providers import Provider as Provider
    from .providers.base import Prompt as Prompt
