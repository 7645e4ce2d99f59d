"""Checks of everything a caller can pass to a chat call, in one place.

Each check takes the user's value and returns it in the one form the providers map to their
wires, or raises :class:`InvalidOptionError` with one line naming the option and the form it
accepts. They run before a model id is resolved (which may start the bundled server) and
before anything is sent, so a typo never costs a server start or a request, and no provider
meets a value it would fail on halfway through building a body.

Strings must be encodable as UTF-8 (a lone surrogate is not) and nested values must be plain
JSON (no NaN or infinity: httpx refuses them), because that is what goes on the wire.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping
from numbers import Integral, Real
from typing import Any, TypeGuard

from ._errors import InvalidOptionError

#: JSON Schema's type names, for the ``type`` of a response_format schema.
_SCHEMA_TYPES = frozenset({"object", "array", "string", "number", "integer", "boolean", "null"})
TOOL_CHOICES = ("auto", "none", "required")
#: Request fields llm_nb sets itself; ``extra`` changing them would break the call's engine.
RESERVED_EXTRA = frozenset({"model", "messages", "stream"})


def got(value: object) -> str:
    """How an error shows a bad value: short scalars as they are, anything else by its type
    (a long string may be a key pasted into the wrong place)."""
    if value is None or isinstance(value, bool | int | float):
        return repr(value)
    if isinstance(value, str) and len(value) <= 24:
        return repr(value)
    return f"a {type(value).__name__}"


def is_one(value: object, options: Collection[str]) -> TypeGuard[str]:
    """``value in options``, for values of any type: an array or an odd object compared with
    ``==`` may raise or answer something that is not a bool."""
    return isinstance(value, str) and value in options


def fail(name: str, accepted: str, value: object) -> InvalidOptionError:
    return InvalidOptionError(f"{name} must be {accepted}, got {got(value)}")


def text(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise fail(name, "a string", value)
    utf8(name, value)
    return value


def utf8(name: str, value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidOptionError(
            f"{name} holds a character that is not valid Unicode text (position {exc.start}, "
            "a lone surrogate); decode the text properly before sending it"
        ) from None


def optional_text(name: str, value: object) -> str | None:
    return None if value is None else text(name, value)


def number(
    name: str, value: object, *, low: float, high: float, low_open: bool = False
) -> float | None:
    """A real number in [low, high] (or (low, high] with ``low_open``); bools are not numbers."""
    if value is None:
        return None
    if low_open:
        accepted = f"above {low:g} and at most {high:g} (a number)"
    else:
        accepted = f"between {low:g} and {high:g} (a number)"
    if isinstance(value, bool) or not isinstance(value, Real):
        raise fail(name, accepted, value)
    x = float(value)
    if not math.isfinite(x) or x > high or x < low or (low_open and x == low):
        raise fail(name, accepted, value)
    return x


def whole(name: str, value: object, *, minimum: int | None = None) -> int | None:
    if value is None:
        return None
    if minimum is None:
        accepted = "a whole number"
    else:
        accepted = "a positive whole number" if minimum == 1 else f"a whole number >= {minimum}"
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise fail(name, accepted, value)
    n = int(value)
    if minimum is not None and n < minimum:
        raise fail(name, accepted, value)
    return n


def seconds(name: str, value: object) -> float | None:
    """A timeout: a positive, finite number of seconds, or None for the default."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, Real):
        raise fail(name, "a positive number of seconds (or None for the default)", value)
    x = float(value)
    if not (math.isfinite(x) and x > 0):
        raise fail(name, "a positive number of seconds (or None for the default)", value)
    return x


def plain_json(name: str, value: object) -> None:
    """``value`` must serialize exactly as httpx will send it."""
    try:
        json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
        reason = "not a number or infinity" if "Out of range float" in str(exc) else exc
        raise InvalidOptionError(
            f"{name} must hold plain JSON values (str, number, bool, None, list, dict with "
            f"string keys): {reason}"
        ) from None


def stop(value: object) -> tuple[str, ...]:
    accepted = "a string or a list of non-empty strings"
    if value is None or (isinstance(value, tuple) and not value):
        return ()
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, list | tuple):
        raise fail("stop", accepted, value)
    for item in value:
        if not isinstance(item, str) or not item:
            raise fail("stop", accepted, item)
        utf8("stop", item)
    return tuple(value)


def response_format(value: object) -> str | Mapping[str, Any] | None:
    """``"json"``, ``"text"`` or a JSON schema. OpenAI's own wrappers (``{"type":
    "json_object"}``, ``{"type": "json_schema", "json_schema": {"schema": ...}}``) are
    unwrapped, since each provider wraps the schema for its wire itself."""
    accepted = "'json', 'text' or a JSON-schema dict such as {'type': 'object', ...}"
    if value is None or is_one(value, ("json", "text")):
        return value
    if not isinstance(value, Mapping):
        raise fail("response_format", accepted, value)
    kind = value.get("type")
    if is_one(kind, ("json_object",)):
        return "json"
    if is_one(kind, ("text",)) and len(value) == 1:
        return "text"
    if is_one(kind, ("json_schema",)):
        wrapped = value.get("json_schema")
        schema = wrapped.get("schema") if isinstance(wrapped, Mapping) else None
        if not isinstance(schema, Mapping):
            raise InvalidOptionError(
                "response_format {'type': 'json_schema'} needs 'json_schema': {'schema': {...}}"
            )
        value = schema
        kind = value.get("type")
    if kind is not None:
        kinds = kind if isinstance(kind, list) else [kind]
        if not kinds or not all(isinstance(k, str) and k in _SCHEMA_TYPES for k in kinds):
            raise fail(
                "response_format's schema 'type'",
                f"one of {', '.join(sorted(_SCHEMA_TYPES))} (or a list of them)",
                kind,
            )
    plain_json("response_format", value)
    return value


def tools(value: object) -> tuple[Mapping[str, Any], ...]:
    shape = "[{'type': 'function', 'function': {'name': ..., 'parameters': {...}}}, ...]"
    if value is None or (isinstance(value, tuple) and not value):
        return ()
    if isinstance(value, Mapping):
        raise InvalidOptionError(f"tools must be a list of tools, not one dict: {shape}")
    if not isinstance(value, list | tuple):
        raise fail("tools", f"a list like {shape}", value)
    for tool in value:
        fn = tool.get("function") if isinstance(tool, Mapping) else None
        if (
            not isinstance(fn, Mapping)
            or not is_one(tool.get("type", "function"), ("function",))
            or not isinstance(fn.get("name"), str)
            or not fn["name"]
            or not isinstance(fn.get("parameters", {}), Mapping)
        ):
            raise InvalidOptionError(
                f"each tool must be {{'type': 'function', 'function': {{'name': ..., "
                f"'parameters': {{...}}}}}} in tools=[...], got {got(tool)}"
            )
    plain_json("tools", list(value))
    return tuple(value)


def tool_choice(
    value: object, given: tuple[Mapping[str, Any], ...]
) -> str | Mapping[str, Any] | None:
    shape = "'auto', 'none', 'required' or {'type': 'function', 'function': {'name': ...}}"
    if value is None or is_one(value, ("none",)):
        return value
    if isinstance(value, str) and value in TOOL_CHOICES:
        name = None
    elif isinstance(value, Mapping):
        fn = value.get("function")
        name = fn.get("name") if isinstance(fn, Mapping) else None
        if not is_one(value.get("type"), ("function",)) or not isinstance(name, str):
            raise fail("tool_choice", shape, value)
    else:
        raise fail("tool_choice", shape, value)
    if not given:
        raise InvalidOptionError(f"tool_choice={got(value)} needs tools=[...] to choose from")
    names = [t["function"]["name"] for t in given]
    if name is not None and name not in names:
        raise InvalidOptionError(
            f"tool_choice names {name!r}, which is not among tools: {', '.join(names)}"
        )
    return value


def extra(value: object) -> Mapping[str, Any]:
    if value is None:
        return {}
    if isinstance(value, dict) and not value:
        return value
    if not isinstance(value, Mapping):
        raise fail("extra", "a dict of request fields, e.g. {'top_k': 40}", value)
    for key in value:
        if not isinstance(key, str):
            raise fail("extra's keys", "strings", key)
    clash = sorted(RESERVED_EXTRA.intersection(value))
    if clash:
        raise InvalidOptionError(
            f"extra may not set {', '.join(clash)}: llm_nb sets it (the model id, the prompt, "
            "stream() or chat() decide these)"
        )
    if "options" in value and not isinstance(value["options"], Mapping):
        raise fail("extra['options']", "a dict (Ollama's options)", value["options"])
    plain_json("extra", dict(value))
    return value
