"""What a server's error body says, and which exception that is.

Servers that speak the OpenAI wire disagree on the error body:

* OpenAI, Groq, Together, DeepSeek, LM Studio: ``{"error": {"message", "type", "param", "code"}}``
* llama-server: the same, with the HTTP status as an integer ``code``
* vLLM, Mistral: the fields at the top level, ``{"object": "error", "message", "type", "code"}``
* Ollama (and LM Studio for some errors): ``{"error": "message"}``
* Azure: ``{"error": {"code": "DeploymentNotFound", "message", "innererror": {"code"}}}``, or
  its gateway's ``{"statusCode": 401, "message"}``
* Anthropic-compatible: ``{"type": "error", "error": {"type": "not_found_error", "message"}}``
* Gemini's OpenAI endpoint: ``[{"error": {"code": 400, "message", "status"}}]``
* FastAPI-based servers: ``{"detail": "message"}`` or a list of validation errors

The same shapes arrive inside a stream (``data: {"error": ...}``, an SSE ``error`` event, an
NDJSON ``{"error": ...}`` line). :func:`classify` decides on the identifiers the server sent
(``code``, ``type``) first and falls back to the wording of the message only when they say
nothing specific: wording changes (OpenAI's context error went from "maximum context length"
to "exceeds the context window"), identifiers rarely do.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from .._errors import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ContextLengthError,
    LLMError,
    ModelNotFoundError,
    NotFoundError,
    PermissionDeniedError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
    ServiceUnavailableError,
    status_error_class,
)
from .ndjson import parse_json

#: Longest server message kept; bodies can be whole HTML pages.
_MAX_MESSAGE = 500


@dataclass(frozen=True, slots=True)
class ErrorBody:
    """The parts of an error body that matter: its message and every identifier in it
    (``code``, ``type``, an inner code), lower-cased, plus a status the body names itself."""

    message: str = ""
    codes: tuple[str, ...] = ()
    status: int | None = None

    @property
    def code(self) -> str | None:
        """The most specific identifier (``code`` before ``type``, a name before a number:
        llama-server's ``code`` is the HTTP status), for the exception."""
        for code in self.codes:
            if not code.isdigit():
                return code
        return self.codes[0] if self.codes else None


def parse_error_body(body: bytes) -> ErrorBody:
    """The error in a response body: JSON in any of the shapes above, or plain text."""
    if not body:
        return ErrorBody()
    try:
        obj = parse_json(body, "error body")
    except LLMError:
        return ErrorBody(_one_line(body.decode("utf-8", "replace")))
    return error_body(obj)


def error_body(obj: Any) -> ErrorBody:
    """The error in an already parsed body or stream chunk."""
    if isinstance(obj, list) and obj:
        obj = obj[0]
    if not isinstance(obj, dict):
        return ErrorBody(_one_line(str(obj)))
    err = obj.get("error")
    if isinstance(err, str):
        # Ollama puts the status beside the message inside a stream: {"error", "status"}.
        return ErrorBody(
            _one_line(err),
            _ids(obj.get("code"), obj.get("type")),
            _status(obj.get("status")) or _status(obj.get("code")),
        )
    if isinstance(err, dict):
        inner = err.get("innererror")
        inner_code = inner.get("code") if isinstance(inner, dict) else None
        return ErrorBody(
            _message(err.get("message", err.get("msg"))),
            _ids(err.get("code"), err.get("type"), inner_code, err.get("status")),
            _status(err.get("code")) or _status(obj.get("code")),
        )
    if "detail" in obj and "message" not in obj:
        return ErrorBody(_message(obj["detail"]), _ids(obj.get("code"), obj.get("type")))
    return ErrorBody(
        _message(obj.get("message", "")),
        _ids(obj.get("code"), obj.get("type")),
        _status(obj.get("code")) or _status(obj.get("statusCode")),
    )


def _ids(*values: Any) -> tuple[str, ...]:
    out: list[str] = []
    for value in values:
        if isinstance(value, str) and value and value.lower() not in out:
            out.append(value.lower())
        elif isinstance(value, int) and not isinstance(value, bool) and str(value) not in out:
            out.append(str(value))
    return tuple(out)


def _status(value: Any) -> int | None:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 400 <= value < 600:
        return value
    return None


def _message(value: Any) -> str:
    if isinstance(value, str):
        return _one_line(value)
    if isinstance(value, list):
        # FastAPI / pydantic validation errors: [{"loc": [...], "msg": "..."}, ...]
        parts = [str(v.get("msg", v)) if isinstance(v, dict) else str(v) for v in value]
        return _one_line("; ".join(parts))
    if value is None:
        return ""
    return _one_line(json.dumps(value, default=str))


def _one_line(text: str) -> str:
    return " ".join(text.split())[:_MAX_MESSAGE]


# -- classification ---------------------------------------------------------------------------

#: Identifiers that name one failure exactly, whatever the HTTP status says.
_SPECIFIC: dict[str, type[APIStatusError]] = {
    **dict.fromkeys(
        ("model_not_found", "deploymentnotfound", "invalid_model", "model_not_available"),
        ModelNotFoundError,
    ),
    **dict.fromkeys(
        (
            "context_length_exceeded",
            "exceed_context_size_error",
            "context_window_exceeded",
            "string_above_max_context",
        ),
        ContextLengthError,
    ),
    **dict.fromkeys(
        ("insufficient_quota", "billing_hard_limit_reached", "insufficient_balance"),
        QuotaExceededError,
    ),
}

#: Identifiers that say which kind of failure, used when no HTTP status says it (an error
#: inside a stream) or the status is one no class stands for.
_GENERAL: dict[str, type[APIStatusError]] = {
    **dict.fromkeys(
        (
            "rate_limit_exceeded",
            "rate_limit_error",
            "rate_limited",
            "ratelimitreached",
            "too_many_requests",
        ),
        RateLimitError,
    ),
    **dict.fromkeys(
        (
            "invalid_api_key",
            "authentication_error",
            "invalid_authentication",
            "unauthorized",
            "unauthenticated",
        ),
        AuthenticationError,
    ),
    **dict.fromkeys(
        ("permission_error", "permission_denied", "permissiondenied", "forbidden"),
        PermissionDeniedError,
    ),
    **dict.fromkeys(("not_found_error", "notfounderror", "not_found"), NotFoundError),
    **dict.fromkeys(
        ("unavailable_error", "overloaded_error", "service_unavailable", "unavailable"),
        ServiceUnavailableError,
    ),
    **dict.fromkeys(
        ("server_error", "api_error", "internal_server_error", "internal_error", "internal"),
        ServerError,
    ),
    **dict.fromkeys(
        ("invalid_request_error", "badrequesterror", "invalid_argument", "bad_request"),
        BadRequestError,
    ),
}

_CONTEXT_WORDING = re.compile(
    r"maximum context length"
    r"|exceed\w* (?:the |your |its )?(?:\w+ )?context"
    r"|context (?:window|length|size)\b[^.]{0,40}?\b(?:exceed\w*|too (?:long|large|small)|only)"
    r"|context length exceeded"
    r"|longer than the (?:\w+ )?context"
    r"|prompt is too long"
    r"|too large for model with"
    r"|reduce the length of the messages"
    r"|tokens \+ `?max_new_tokens`? must be <="
    r"|token count\b[^.]{0,40}?\bexceeds? the maximum number of tokens"
    r"|maximum prompt length is \d+",
    re.I,
)
_MODEL_WORDING = re.compile(
    r"\bmodels?\b.{0,120}?\b(?:not found|does not exist|doesn't exist|not exist)"
    r"|\b(?:unknown|invalid) model(?: name| id)?(?:\s*[:'\"`=(]| passed)"
    r"|is not a valid model"
    r"|unable to access model"
    r"|deployment for this resource does not exist",
    re.I,
)
_QUOTA_WORDING = re.compile(
    r"exceeded your current quota|insufficient (?:balance|credits|quota)", re.I
)


#: Statuses whose class the wording may refine (not 401, 403, 429: those say it all).
_WORDING_STATUSES = frozenset({None, 400, 404, 409, 413, 422})


def classify(status: int | None, error: ErrorBody) -> type[APIStatusError]:
    """The exception class for an error the server reported with HTTP ``status`` (None for
    one inside a stream) and ``error`` body."""
    for code in error.codes:
        if code in _SPECIFIC:
            return _SPECIFIC[code]
    base = status_error_class(status) if status is not None else ServerError
    if status is None or base in (ServerError, APIStatusError):
        # No status, or one only a generic class stands for: the catch-all 500 (Ollama and
        # llama-server answer every failure they did not foresee with it), Anthropic's 529
        # overloaded, Groq's 413 for a request over the tokens-per-minute limit. The
        # identifiers say more; a bad request is not inferred from them against the status.
        for code in error.codes:
            if code in _GENERAL and (status is None or _GENERAL[code] is not BadRequestError):
                return _GENERAL[code]
    message = error.message
    if status in _WORDING_STATUSES:
        if _CONTEXT_WORDING.search(message):
            return ContextLengthError
        if _MODEL_WORDING.search(message):
            return ModelNotFoundError
    if status in (None, 402, 403, 429) and _QUOTA_WORDING.search(message):
        return QuotaExceededError
    if status == 402:
        return QuotaExceededError
    return base


#: The HTTP status an error inside a stream stands for, when its body names none.
_STATUS_OF: dict[type[APIStatusError], int] = {
    ModelNotFoundError: 404,
    ContextLengthError: 400,
    BadRequestError: 400,
    QuotaExceededError: 429,
    RateLimitError: 429,
    AuthenticationError: 401,
    PermissionDeniedError: 403,
    NotFoundError: 404,
    ServiceUnavailableError: 503,
}


def status_error(
    status: int | None,
    message: str,
    *,
    provider: str,
    url: str,
    error: ErrorBody | None = None,
    request_id: str | None = None,
    retry_after: float | None = None,
) -> APIStatusError:
    """The exception for an error reply. ``status`` is None for an error inside a stream,
    whose status then comes from the body (llama-server's integer ``code``) or its class."""
    error = error or ErrorBody(message)
    cls = classify(status if status is not None else error.status, error)
    if status is None:
        status = error.status or _STATUS_OF.get(cls, 500)
    if cls is ModelNotFoundError:
        return ModelNotFoundError(
            message,
            model="",
            status_code=status,
            provider=provider,
            url=url,
            error_type=error.code,
            request_id=request_id,
        )
    return cls(
        message,
        status_code=status,
        provider=provider,
        url=url,
        error_type=error.code,
        request_id=request_id,
        retry_after_s=retry_after,
    )
