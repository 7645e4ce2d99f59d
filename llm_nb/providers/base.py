"""The Provider interface: one async class per wire, written once.

A provider owns one server (base URL + key). Subclasses implement the wire mapping
(request bodies, chunk parsing, model listing...); this base owns what is common: config
resolution, one httpx client per event loop, retries, error mapping, the ``chat`` and
``stream`` entry points and the "model not found, here is what exists" error.

Operations a server does not have raise :class:`UnsupportedError`; ``capabilities`` says
up front which ones a provider has.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Self, Unpack

import httpx

from .. import _validate
from .._config import Secret, host_of, normalize_url, resolve, resolve_secret
from .._errors import (
    APIStatusError,
    LLMError,
    ModelNotFoundError,
    ProtocolError,
    UnsupportedError,
)
from .._options import ChatKwargs, ChatOptions, takes_chat_options
from .._stream import ChatStream
from .._types import (
    CallRequest,
    ChatResponse,
    Delta,
    Embeddings,
    Health,
    Message,
    ModelInfo,
    PullProgress,
    build_messages,
)
from .._wire import errors as wire_errors
from .._wire._lines import IncrementalDecoder
from .._wire.connection import connect_error
from .._wire.http import HTTPConfig, make_client
from .._wire.ndjson import parse_json
from .._wire.redact import clean_message
from .._wire.retry import RetryPolicy, retry_after_s, send

if TYPE_CHECKING:
    from .._observers import CallObservers

Prompt = str | Message | Mapping[str, Any] | Sequence[Message | Mapping[str, Any] | str]

#: Sentinel a dialect's decoder yields when the wire's end marker arrives.
END = object()

#: Paths whose joined URL a provider keeps (a handful in practice: chat, models, load...);
#: paths that name a model each would otherwise grow the cache without bound.
_MAX_CACHED_URLS = 64


class Provider:
    """Base of every provider. Construct with a base URL and key, or let them resolve from
    the environment and the user config file (see ``env_url`` / ``env_key``).

    Timeouts, in seconds (each call may override them with the same keywords):
    ``timeout`` bounds the wait for the server to start answering, which includes loading
    the model and reading the prompt (default 600); ``read_timeout`` the longest silence
    once an answer streams (default 60); ``connect_timeout`` the wait for a connection
    (default 5).
    """

    name: ClassVar[str]
    label: ClassVar[str]
    default_url: ClassVar[str]
    env_url: ClassVar[tuple[str, ...]] = ()
    env_key: ClassVar[tuple[str, ...]] = ()
    #: How to start this server, appended to "no server answers at ..." errors.
    start_hint: ClassVar[str] = ""
    capabilities: ClassVar[frozenset[str]] = frozenset({"chat", "stream", "models"})

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | Secret | None = None,
        http: HTTPConfig | None = None,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        read_timeout: float | None = None,
        connect_timeout: float | None = None,
    ) -> None:
        limits = (
            _validate.seconds("timeout", timeout),
            _validate.seconds("read_timeout", read_timeout),
            _validate.seconds("connect_timeout", connect_timeout),
        )
        url = resolve(base_url, self.env_url, self.name, "base_url", self.default_url)
        self.base_url = self._normalize_base_url(str(url))
        self.host = host_of(self.base_url)
        self._api_key = resolve_secret(api_key, self.env_key, self.name)
        self.http = (http or HTTPConfig()).with_limits(*limits)
        self.retry = retry or RetryPolicy()
        self._transport = transport
        self._headers = dict(headers or {})
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient]
        self._clients = weakref.WeakKeyDictionary()
        self._urls: dict[str, httpx.URL] = {}
        #: Who hears of this provider's calls: its session's observers (set when a session's
        #: registry takes it in); None reports to the default session's.
        self.observers: CallObservers | None = None

    def __repr__(self) -> str:
        key = "set" if self._api_key else "none"
        return f"{type(self).__name__}(base_url={self.base_url!r}, api_key={key})"

    @classmethod
    def _normalize_base_url(cls, url: str) -> str:
        return normalize_url(url)

    @property
    def has_api_key(self) -> bool:
        return self._api_key is not None

    # -- HTTP plumbing ----------------------------------------------------------------------

    def _auth_headers(self) -> dict[str, str]:
        if self._api_key is None:
            return {}
        return {"Authorization": f"Bearer {self._api_key.reveal()}"}

    def _client(self) -> httpx.AsyncClient:
        # httpx connection pools are bound to the loop that opened them; the private sync
        # loop and the kernel's loop (for `await` in cells) each get their own client.
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None or client.is_closed:
            headers = {"User-Agent": "llm_nb", **self._headers, **self._auth_headers()}
            client = make_client(self.base_url, headers, self.http, self._transport)
            self._clients[loop] = client
        return client

    def _url(self, client: httpx.AsyncClient, path: str) -> httpx.URL | str:
        """``path`` joined to the base URL as httpx joins it, kept per path: from a relative
        path httpx parses both URLs again on every request (about 40 µs of each call's way
        to its first token)."""
        url = self._urls.get(path)
        if url is None:
            if not path.startswith("/") or len(self._urls) >= _MAX_CACHED_URLS:
                return path
            base = client.base_url
            url = base.copy_with(raw_path=base.raw_path + httpx.URL(path).raw_path.lstrip(b"/"))
            self._urls[path] = url
        return url

    async def aclose(self) -> None:
        """Close this loop's connections."""
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _connect_failure(self, exc: Exception) -> LLMError:
        return connect_error(exc, provider=self.label, url=self.base_url, hint=self.start_hint)

    def _clean(self, message: str) -> str:
        """A server's error text made safe to show: one line, no key in it."""
        return clean_message(message, self._api_key.reveal() if self._api_key else None)

    def _redact(self, exc: LLMError) -> LLMError:
        """Clean an error raised while decoding: its message quotes what the server sent,
        which may echo our key in a form no pattern recognises."""
        cleaned = self._clean(exc.message)
        exc.message = cleaned
        exc.args = (cleaned,)
        return exc

    def _parse(self, body: bytes, what: str) -> Any:
        try:
            return parse_json(body, what)
        except LLMError as exc:
            raise self._redact(exc) from None  # the cause would quote the raw body again

    def _map_error(self, response: httpx.Response, body: bytes) -> LLMError:
        error = wire_errors.parse_error_body(body)
        message = self._clean(error.message)
        status = response.status_code
        return wire_errors.status_error(
            status,
            f"{self.label} at {self.host} answered {status}: {message or response.reason_phrase}",
            provider=self.label,
            url=self.base_url,
            error=error,
            request_id=response.headers.get("x-request-id"),
            retry_after=retry_after_s(response.headers),
        )

    def _stream_error(self, obj: Any, record: ChatResponse) -> APIStatusError:
        """The exception for an error the server sent inside a stream, keeping the partial
        answer. Its status comes from the body or from what the error is."""
        error = wire_errors.error_body(obj)
        exc = wire_errors.status_error(
            None,
            f"{self.label} at {self.host} sent an error mid-stream: {self._clean(error.message)}",
            provider=self.label,
            url=self.base_url,
            error=error,
        )
        exc.partial = record
        return exc

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        stream: bool = False,
        record: ChatResponse | None = None,
        timeout: float | None = None,
        limits: HTTPConfig | None = None,
    ) -> httpx.Response:
        """Send with retries and error mapping. ``timeout`` (one limit for everything) is
        for short administrative requests; otherwise ``limits`` (default: the provider's)
        apply, the read limit changing once the response has begun."""
        client = self._client()
        request = client.build_request(method, self._url(client, path), json=json, params=params)
        body_limits = None
        if timeout is not None:
            request.extensions["timeout"] = httpx.Timeout(timeout).as_dict()
        else:
            request.extensions["timeout"], body_limits = (limits or self.http).phases()

        def on_retry(attempt: int, delay: float, reason: str) -> None:
            if record is not None:
                record.trace.retries = attempt

        response = await send(
            client,
            request,
            policy=self.retry,
            map_error=self._map_error,
            describe_connect_failure=self._connect_failure,
            on_retry=on_retry,
            stream=stream,
        )
        if body_limits is not None:
            # The answer has begun: from here each wait for more of its body is bounded by
            # the read timeout. httpx takes the request's timeout extension when the body
            # is read, which has not started yet.
            request.extensions["timeout"] = body_limits
        return response

    async def _get_json(self, path: str, *, timeout: float | None = None, **kw: Any) -> Any:
        response = await self._request("GET", path, timeout=timeout, **kw)
        return self._parse(response.content, f"{self.label} {path} response")

    async def _post_json(self, path: str, body: Any, **kw: Any) -> Any:
        response = await self._request("POST", path, json=body, **kw)
        if not response.content:
            return None
        return self._parse(response.content, f"{self.label} {path} response")

    # -- chat -------------------------------------------------------------------------------

    @takes_chat_options
    def stream(self, model: str, prompt: Prompt, **options: Unpack[ChatKwargs]) -> ChatStream:
        """Stream an answer: an async iterator of deltas whose ``.response`` is the record.

        ``options`` are those of :class:`ChatKwargs` (temperature, max_tokens, stop, system,
        response_format, tools, extra, timeout, read_timeout, ...); a wrong one raises
        :class:`InvalidOptionError` here, before anything is sent."""
        return self._make_stream(model, prompt, options, stream=True)

    @takes_chat_options
    async def chat(self, model: str, prompt: Prompt, **options: Unpack[ChatKwargs]) -> ChatResponse:
        """The whole answer in one response (a non-streaming request on the wire); options
        as for :meth:`stream`."""
        return await self._make_stream(model, prompt, options, stream=False).collect()

    def _make_stream(
        self,
        model: str,
        prompt: Prompt,
        options: Mapping[str, Any] | ChatOptions,
        *,
        stream: bool,
    ) -> ChatStream:
        opts = options if isinstance(options, ChatOptions) else ChatOptions.from_kwargs(**options)
        messages = build_messages(prompt, opts.system)
        model = _validate.text("the model name", model)
        limits = None
        if (opts.timeout, opts.read_timeout, opts.connect_timeout) != (None, None, None):
            limits = self.http.with_limits(opts.timeout, opts.read_timeout, opts.connect_timeout)
        request = CallRequest(tuple(messages), opts)
        record = ChatResponse(self.name, self.host, model, stream=stream, request=request)
        body = self._chat_body(model, messages, opts, stream)

        async def send(record: ChatResponse) -> httpx.Response:
            self._check_ready()
            try:
                return await self._request(
                    "POST", self._chat_path(), json=body, stream=True, record=record, limits=limits
                )
            except APIStatusError as exc:
                if isinstance(exc, ModelNotFoundError) or self._is_model_missing(exc, model):
                    raise await self._model_not_found(model, exc) from exc
                raise

        dialect = _StreamDialect(self) if stream else _WholeBodyDialect(self)
        return ChatStream(record, send, dialect, observers=self.observers)

    def _check_ready(self) -> None:
        """Raise ConfigError before sending when something required is missing."""

    def _chat_path(self) -> str:
        raise NotImplementedError

    def _chat_body(
        self, model: str, messages: list[Message], options: ChatOptions, stream: bool
    ) -> dict[str, Any]:
        raise NotImplementedError

    def _chunk_decoder(self) -> IncrementalDecoder[Any]:
        """A decoder of one streaming body: chunk objects, then END at the wire's end marker.
        Its errors quote what the server sent; the stream engine redacts them (``_redact``)."""
        raise NotImplementedError

    def _apply_chunk(self, obj: Any, record: ChatResponse) -> list[Delta]:
        raise NotImplementedError

    def _apply_whole(self, obj: Any, record: ChatResponse) -> list[Delta]:
        raise NotImplementedError

    def _shape_error(self, exc: Exception) -> ProtocolError:
        """A chunk that is JSON but not shaped as the wire says (a field of the wrong type):
        the server's data, so a ProtocolError rather than the exception reading it raised."""
        return ProtocolError(
            f"{self.label} at {self.host} sent a chunk of an unexpected shape "
            f"({type(exc).__name__}); the partial answer is kept",
            provider=self.label,
            url=self.base_url,
        )

    # -- unknown models ---------------------------------------------------------------------

    def _is_model_missing(self, exc: APIStatusError, model: str) -> bool:
        """Whether a failed chat request means the model is unknown, beyond what the error's
        class already says (see :mod:`llm_nb._wire.errors`)."""
        return False

    async def _model_not_found(self, model: str, cause: APIStatusError) -> ModelNotFoundError:
        try:
            names = [m.name for m in await asyncio.wait_for(self.models(), 5)]
        except (LLMError, TimeoutError):
            names = []
        listing = ", ".join(names[:20]) if names else "none listed"
        return ModelNotFoundError(
            f"model {model!r} not found on {self.name}@{self.host}; available: {listing}",
            model=model,
            available=names,
            status_code=cause.status_code,
            provider=self.label,
            url=self.base_url,
            error_type=cause.error_type,
            request_id=cause.request_id,
        )

    # -- model management -------------------------------------------------------------------

    async def models(self) -> list[ModelInfo]:
        raise self._unsupported("list models")

    async def health(self) -> Health:
        raise self._unsupported("report health")

    async def load(self, model: str) -> None:
        raise self._unsupported("load models")

    async def unload(self, model: str) -> None:
        raise self._unsupported("unload models")

    def pull(self, model: str) -> AsyncIterator[PullProgress]:
        raise self._unsupported("pull models")

    async def delete(self, model: str) -> None:
        raise self._unsupported("delete models")

    async def embed(self, model: str, inputs: str | Sequence[str]) -> Embeddings:
        raise self._unsupported("compute embeddings")

    async def server_facts(self, model: str) -> dict[str, Any]:
        """What the server says about itself and ``model``, for the stats summary: keys such
        as ``build``, ``version``, ``quantization``, ``n_ctx`` (see the summary's columns).
        Asked once per run, model and server after a call succeeds; a wire with no such
        endpoint has nothing to say."""
        return {}

    def _unsupported(self, what: str) -> UnsupportedError:
        return UnsupportedError(
            f"{self.label} cannot {what}; supported here: {', '.join(sorted(self.capabilities))}",
            provider=self.label,
            url=self.base_url,
        )


class _StreamDialect:
    """Adapts a provider's streaming hooks to the stream engine."""

    __slots__ = ("_p",)

    def __init__(self, provider: Provider) -> None:
        self._p = provider

    def decoder(self) -> IncrementalDecoder[Any]:
        return self._p._chunk_decoder()

    def apply_chunk(self, obj: Any, record: ChatResponse) -> list[Delta] | None:
        if obj is END:
            return None
        try:
            return self._p._apply_chunk(obj, record)
        except (AttributeError, TypeError, KeyError, IndexError) as exc:
            raise self._p._shape_error(exc) from None

    def redact(self, exc: LLMError) -> LLMError:
        return self._p._redact(exc)


class _WholeBodyDialect(_StreamDialect):
    """A non-streaming answer is one chunk: the whole body, then the end."""

    __slots__ = ()

    def decoder(self) -> IncrementalDecoder[Any]:
        return _WholeBody(self._p)

    def apply_chunk(self, obj: Any, record: ChatResponse) -> list[Delta] | None:
        if obj is END:
            return None
        try:
            return self._p._apply_whole(obj, record)
        except (AttributeError, TypeError, KeyError, IndexError) as exc:
            raise self._p._shape_error(exc) from None


class _WholeBody:
    """Collects a body and parses it once it is complete."""

    __slots__ = ("_p", "_parts")

    def __init__(self, provider: Provider) -> None:
        self._p = provider
        self._parts: list[bytes] = []

    def feed(self, chunk: bytes) -> list[Any]:
        self._parts.append(chunk)
        return []

    def flush(self) -> list[Any]:
        body = b"".join(self._parts)
        return [self._p._parse(body, f"{self._p.label} chat response"), END]
