"""The top-level functions: ``chat``/``stream`` (sync) and ``achat``/``astream`` (async), by
model id, plus :func:`sync`, which gives any provider a blocking face.

The sync side is not a second class tree: :class:`SyncProvider` forwards each method of the
async provider, running coroutines on llm_nb's private loop thread (see ``_loop``), so it
works inside a running Jupyter kernel with no loop patching.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any, Unpack

from ._errors import InvalidOptionError
from ._loop import SyncIterator
from ._options import ChatKwargs, ChatOptions, takes_chat_options
from ._registry import Found
from ._session import iterate_sync, registry, run_sync
from ._stream import ChatStream
from ._types import ChatResponse, Delta, Message, ModelInfo, build_messages
from .providers.base import Prompt, Provider


def provider(model_id: str) -> tuple[Provider, str]:
    """(provider, model name) for a model id like ``llamacpp:smollm2@127.0.0.1:8080``."""
    if not isinstance(model_id, str):
        raise InvalidOptionError(
            f"the model id must be a string such as 'local' or 'ollama:qwen3:0.6b', "
            f"got a {type(model_id).__name__}"
        )
    return registry().resolve(model_id)


def _checked(prompt: Prompt, options: ChatKwargs) -> tuple[list[Message], ChatOptions]:
    """The prompt and options, checked. Done before the model id is resolved, because
    resolving ``local`` may start (or first build) the bundled server."""
    opts = ChatOptions.from_kwargs(**options)
    return build_messages(prompt, opts.system), opts


@takes_chat_options
def astream(model: str, prompt: Prompt, **options: Unpack[ChatKwargs]) -> ChatStream:
    """Stream an answer (async): ``async for delta in llm_nb.astream("ollama:qwen3", "Hi")``.

    ``options`` are those of :class:`ChatKwargs`: temperature, top_p, max_tokens, seed,
    stop, system, response_format, tools, tool_choice, extra (provider-specific request
    fields), and the timeouts ``timeout`` (wait for the answer to start), ``read_timeout``
    (longest silence while it streams) and ``connect_timeout``, in seconds. A wrong prompt
    or option raises :class:`InvalidOptionError` before any server is started or request
    sent."""
    messages, opts = _checked(prompt, options)
    p, name = provider(model)
    return p._make_stream(name, messages, opts, stream=True)


@takes_chat_options
async def achat(model: str, prompt: Prompt, **options: Unpack[ChatKwargs]) -> ChatResponse:
    """The whole answer (async); options as for :func:`astream`."""
    messages, opts = _checked(prompt, options)
    p, name = provider(model)
    return await p._make_stream(name, messages, opts, stream=False).collect()


@takes_chat_options
def chat(model: str, prompt: Prompt, **options: Unpack[ChatKwargs]) -> ChatResponse:
    """The whole answer, blocking; works in scripts and inside Jupyter cells alike. Options
    as for :func:`astream`."""
    messages, opts = _checked(prompt, options)
    return run_sync(_achat(model, messages, opts))


async def _achat(model: str, messages: list[Message], opts: ChatOptions) -> ChatResponse:
    p, name = provider(model)
    return await p._make_stream(name, messages, opts, stream=False).collect()


@takes_chat_options
def stream(model: str, prompt: Prompt, **options: Unpack[ChatKwargs]) -> SyncStream:
    """Stream an answer, blocking: ``for delta in llm_nb.stream("local", "Hi"): ...``.
    Options as for :func:`astream`."""
    # Checked and resolved now, so a bad model id or option fails here, not on first
    # iteration.
    messages, opts = _checked(prompt, options)
    p, name = provider(model)
    return SyncStream(p._make_stream(name, messages, opts, stream=True))


async def amodels(model_or_provider: str | None = None) -> list[ModelInfo]:
    """Models of one provider (``"ollama"``, ``"llamacpp@host:port"``) or of all known ones."""
    reg = registry()
    if model_or_provider is None:
        result: list[ModelInfo] = []
        for p in reg.providers():
            result.extend(await p.models())
        return result
    name, _, host = model_or_provider.partition("@")
    return await reg.get(reg.parse(f"{name}:x").provider, host or None).models()


def models(model_or_provider: str | None = None) -> list[ModelInfo]:
    """:func:`amodels`, blocking."""
    return run_sync(amodels(model_or_provider))


async def adiscover(timeout: float = 0.5) -> list[Found]:
    """Find local servers on their default ports (8080, 11434, 1234, 8000)."""
    return await registry().discover(timeout=timeout)


def discover(timeout: float = 0.5) -> list[Found]:
    """:func:`adiscover`, blocking: the servers found, each registered for model ids."""
    return run_sync(adiscover(timeout))


class SyncStream:
    """A stream consumed from sync code. Iterate it for deltas; ``response`` is the record
    (filled as it goes, so a partial answer survives an interrupt); ``close()`` stops it."""

    def __init__(self, stream: ChatStream) -> None:
        self._stream = stream
        self._iter: SyncIterator | None = None

    @property
    def response(self) -> ChatResponse:
        return self._stream.response

    @property
    def text(self) -> str:
        return self._stream.response.text

    def __iter__(self) -> Iterator[Delta]:
        if self._iter is None:
            self._iter = iterate_sync(lambda: self._stream.__aiter__())
        return iter(self._iter)

    def __next__(self) -> Delta:
        return next(iter(self))

    def __enter__(self) -> SyncStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the stream (from any thread): the connection closes, the call is recorded
        as cancelled and a consumer waiting for the next delta ends its loop."""
        if self._iter is not None:
            self._iter.close()
        else:
            run_sync(self._stream.aclose())

    def collect(self) -> ChatResponse:
        """Read the rest of the stream; the record of the whole call."""
        for _ in self:
            pass
        return self.response


class SyncProvider:
    """A blocking view of a provider: ``sync(p).models()``, ``for s in sync(p).pull(m)``."""

    def __init__(self, provider: Provider) -> None:
        self.provider = provider

    def __repr__(self) -> str:
        return f"sync({self.provider!r})"

    def __enter__(self) -> SyncProvider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections this provider opened from sync code."""
        run_sync(self.provider.aclose())

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.provider, name)
        if not callable(attr):
            return attr
        if name == "stream":
            return lambda *a, **k: SyncStream(attr(*a, **k))
        if inspect.iscoroutinefunction(attr):
            return _blocking(attr)
        if inspect.isasyncgenfunction(attr):
            return lambda *a, **k: iterate_sync(lambda: attr(*a, **k))
        return attr


def _blocking(fn: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        return run_sync(fn(*args, **kwargs))

    call.__doc__ = fn.__doc__
    return call


def sync(p: Provider) -> SyncProvider:
    """A blocking view of ``p``: the same methods, run on llm_nb's loop thread."""
    return SyncProvider(p)
