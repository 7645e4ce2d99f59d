"""The check every reply passes before it is sent: strict validation with the official
``ollama`` package's types, plus the keys those types would silently drop."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import ollama
from pydantic import BaseModel, ConfigDict, ValidationError


class ErrorBody(BaseModel):
    """gin.H{"error": msg}: ollama-python has no type for it, so the shape is pinned here."""

    model_config = ConfigDict(extra="forbid", strict=True)
    error: str


class VersionBody(BaseModel):
    """/api/version's reply, which ollama-python returns as a plain dict."""

    model_config = ConfigDict(extra="forbid", strict=True)
    version: str


# Fields real Ollama sends (api/types.go) that ollama-python's types do not model. Any other key
# the validated object lacks is a violation: a typo or a rename would otherwise vanish silently.
_UNMODELLED: Mapping[type[BaseModel], frozenset[str]] = {
    ollama.ChatResponse: frozenset(
        {"message.tool_calls[].id", "message.tool_calls[].function.index"}
    ),
    ollama.ListResponse: frozenset({"models[].name"}),
    ollama.ShowResponse: frozenset({"tensors"}),
}


def contract_problems(data: bytes | str, schema: type[BaseModel]) -> list[str]:
    """Why the JSON text ``data`` is not a valid ``schema`` on the wire; empty when it is.

    Validation is strict (no "12" for 12, no 1.5 for an integer) and also reports keys the
    validated object would silently drop, unless real Ollama is known to send them.
    """
    try:
        model = schema.model_validate_json(data, strict=True)
    except ValidationError as exc:
        return [str(exc)]
    allowed = _UNMODELLED.get(schema, frozenset())
    sent = json.loads(data)
    return [f"drops {path}" for path in _dropped_keys(sent, model, "") if path not in allowed]


def _dropped_keys(sent: Any, model: BaseModel, prefix: str) -> list[str]:
    """Keys of ``sent`` that ``model`` (validated from it) has no field for, as dotted paths."""
    fields = type(model).model_fields
    by_key = {info.alias or name: name for name, info in fields.items()}
    dropped = []
    for key, value in sent.items():
        name = by_key.get(key, key if key in fields else None)
        if name is None:
            dropped.append(prefix + key)
            continue
        dropped += _dropped_in(value, getattr(model, name), prefix + key)
    return dropped


def _dropped_in(value: Any, validated: Any, path: str) -> list[str]:
    if isinstance(validated, BaseModel) and isinstance(value, dict):
        return _dropped_keys(value, validated, path + ".")
    if isinstance(value, list) and isinstance(validated, list | tuple):
        return [
            p
            for v, m in zip(value, validated, strict=False)
            for p in _dropped_in(v, m, path + "[]")
        ]
    return []
