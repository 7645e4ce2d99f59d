"""The exception tree. Every message is one line that says what happened and what to do.

    LLMError
    ├── InvalidOptionError         bad input from the caller; nothing was sent (also a ValueError)
    ├── ConfigError                something needed is not configured (an API key, a host)
    ├── UnsupportedError           this provider cannot do that (e.g. unload on OpenAI)
    ├── APIConnectionError         no server answered at the URL
    │   └── APITimeoutError        the server did not answer in time
    ├── APIStatusError             the server answered with an error status
    │   ├── BadRequestError        400 / 422
    │   │   └── ContextLengthError the prompt does not fit the model's context
    │   ├── AuthenticationError    401
    │   ├── PermissionDeniedError  403
    │   ├── NotFoundError          404
    │   │   └── ModelNotFoundError the model does not exist there (lists those that do)
    │   ├── ConflictError          409
    │   ├── RateLimitError         429
    │   │   └── QuotaExceededError the account is out of quota or credit (402, or 429
    │   │                          with insufficient_quota): retrying will not help
    │   └── ServerError            >= 500
    │       └── ServiceUnavailableError  503, e.g. llama-server still loading its model
    ├── ProtocolError              the server sent something that is not the protocol
    ├── BuildError                 building the bundled llama-server failed (in _embedded)
    └── LlamaServerError           the bundled llama-server did not start (in _embedded)

The class follows what the server says (its error ``code`` / ``type``, then its wording)
before the HTTP status: a 400 whose code is ``model_not_found`` is a ModelNotFoundError.
A stream that fails after tokens arrived raises one of these with ``partial`` set to the
record of what was received, so nothing the user already saw is lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._record import ChatResponse


class LLMError(Exception):
    """Base of every llm_nb error."""

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        url: str | None = None,
        partial: ChatResponse | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.url = url
        self.partial = partial


class InvalidOptionError(LLMError, ValueError):
    """The caller passed something llm_nb cannot send; nothing went over the wire."""


class ConfigError(LLMError):
    """A required setting (API key, host) is missing or malformed."""


class UnsupportedError(LLMError):
    """The provider has no such operation; the message says which providers do."""


class APIConnectionError(LLMError):
    """No server answered: refused, unreachable, or the connection dropped."""


class APITimeoutError(APIConnectionError):
    """The server took longer than the configured timeout."""


class APIStatusError(LLMError):
    """The server answered with an HTTP error status (or an error event inside a stream)."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        provider: str | None = None,
        url: str | None = None,
        partial: ChatResponse | None = None,
        error_type: str | None = None,
        request_id: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message, provider=provider, url=url, partial=partial)
        self.status_code = status_code
        self.error_type = error_type
        self.request_id = request_id
        self.retry_after_s = retry_after_s


class BadRequestError(APIStatusError):
    """400 / 422: the server rejected the request as malformed or unsupported."""


class ContextLengthError(BadRequestError):
    """The prompt plus max tokens does not fit the model's context window."""


class AuthenticationError(APIStatusError):
    """401: the API key is missing or wrong."""


class PermissionDeniedError(APIStatusError):
    """403: the key is valid but may not do this."""


class NotFoundError(APIStatusError):
    """404: the path or resource does not exist."""


class ModelNotFoundError(NotFoundError):
    """The model is unknown to this server; ``available`` lists the models it does have."""

    def __init__(
        self,
        message: str,
        *,
        model: str,
        available: Sequence[str] = (),
        status_code: int = 404,
        provider: str | None = None,
        url: str | None = None,
        error_type: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(
            message,
            status_code=status_code,
            provider=provider,
            url=url,
            error_type=error_type,
            request_id=request_id,
        )
        self.model = model
        self.available = list(available)


class ConflictError(APIStatusError):
    """409: the request conflicts with the server's state."""


class RateLimitError(APIStatusError):
    """429: too many requests or tokens; ``retry_after_s`` says when to try again if known."""


class QuotaExceededError(RateLimitError):
    """The account has no quota or credit left (``insufficient_quota``, 402): waiting and
    retrying will not help; the billing settings will."""


class ServerError(APIStatusError):
    """>= 500: the server failed."""


class ServiceUnavailableError(ServerError):
    """503: the server is up but not ready (loading a model, or its queue is full)."""


class ProtocolError(LLMError):
    """The bytes received are not the expected protocol (bad JSON, wrong framing)."""


def status_error_class(status: int) -> type[APIStatusError]:
    """The error class for an HTTP status, as OpenAI's SDK maps them."""
    if status in (400, 422):
        return BadRequestError
    return {
        401: AuthenticationError,
        403: PermissionDeniedError,
        404: NotFoundError,
        402: QuotaExceededError,
        409: ConflictError,
        429: RateLimitError,
        503: ServiceUnavailableError,
    }.get(status, ServerError if status >= 500 else APIStatusError)
