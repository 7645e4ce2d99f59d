"""Scorers for :func:`llm_nb.evaluate`: ``(answer, expected[, row]) -> float | bool | None``.

A score is a number; True and False count as 1 and 0, and None means "not scored" (NaN in
the frame, left out of means), e.g. an exact match on a prompt that has no expected answer.
Any Python callable with that signature is a scorer; ``row`` is the cell's frame row as a
dict (prompt, expected, model_id, repeat, the prompt frame's other columns, docs/METRICS.md
figures). Use the plain functions as they are (``scorers.exact``) and the factories with
their argument (``scorers.matches(r"\\b42\\b")``, ``scorers.json_schema({...})``).

Names follow promptfoo's assertions: ``contains`` is case-sensitive, ``icontains`` is not.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

from .._errors import InvalidOptionError

__all__ = [
    "Scorer",
    "contains",
    "exact",
    "icontains",
    "json_schema",
    "matches",
    "regex",
    "valid_json",
]

Scorer: TypeAlias = Callable[..., float | bool | None]


def exact(answer: str, expected: Any) -> bool | None:
    """The answer equals the expected text, ignoring leading and trailing whitespace."""
    if expected is None:
        return None
    return answer.strip() == str(expected).strip()


def contains(answer: str, expected: Any) -> bool | None:
    """The expected text occurs in the answer (case-sensitive)."""
    if expected is None:
        return None
    return str(expected) in answer


def icontains(answer: str, expected: Any) -> bool | None:
    """The expected text occurs in the answer, ignoring case."""
    if expected is None:
        return None
    return str(expected).casefold() in answer.casefold()


def regex(answer: str, expected: Any) -> bool | None:
    """The expected value, read as a regular expression, matches somewhere in the answer."""
    if expected is None:
        return None
    return re.search(str(expected), answer) is not None


def matches(pattern: str | re.Pattern[str], flags: int = 0) -> Scorer:
    """A scorer true when ``pattern`` matches somewhere in the answer (expected is ignored)."""
    compiled = re.compile(pattern, flags) if isinstance(pattern, str) else pattern

    def matches(answer: str, expected: Any) -> bool:
        return compiled.search(answer) is not None

    return matches


def valid_json(answer: str, expected: Any = None) -> bool:
    """The answer is JSON (one surrounding Markdown code fence is allowed)."""
    try:
        parse_json_answer(answer)
    except ValueError:
        return False
    return True


def json_schema(schema: Mapping[str, Any] | None = None) -> Scorer:
    """A scorer true when the answer is JSON valid against ``schema``; with no schema, each
    row's expected value is the schema. Uses the ``jsonschema`` package when installed, else
    a small validator that knows type, enum, required, properties, additionalProperties and
    items."""
    if schema is not None:
        _check_schema(schema)

    def json_schema(answer: str, expected: Any) -> bool | None:
        wanted = schema if schema is not None else expected
        if wanted is None:
            return None
        try:
            value = parse_json_answer(answer)
        except ValueError:
            return False
        return schema_errors(value, wanted) == []

    return json_schema


# -- helpers --------------------------------------------------------------------------------

_FENCE = re.compile(r"^```[\w+-]*[ \t]*\n(.*?)\n?```$", re.DOTALL)


def parse_json_answer(answer: str) -> Any:
    """The answer parsed as JSON, after stripping whitespace and one Markdown code fence
    (small models wrap JSON in ```json fences even when told not to). Raises ValueError."""
    text = answer.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    return json.loads(text)


def _jsonschema() -> Any | None:
    try:
        return importlib.import_module("jsonschema")
    except ImportError:
        return None


def _check_schema(schema: Mapping[str, Any]) -> None:
    if not isinstance(schema, Mapping):
        raise InvalidOptionError(f"a JSON schema must be a dict, got {type(schema).__name__}")
    lib = _jsonschema()
    if lib is None:
        return
    try:
        lib.validators.validator_for(schema).check_schema(schema)
    except lib.SchemaError as exc:
        raise InvalidOptionError(f"invalid JSON schema: {exc.message}") from exc


def schema_errors(value: Any, schema: Mapping[str, Any]) -> list[str]:
    """Why ``value`` does not satisfy ``schema`` (empty when it does)."""
    lib = _jsonschema()
    if lib is not None:
        validator = lib.validators.validator_for(schema)(schema)
        return [e.message for e in validator.iter_errors(value)]
    return _fallback_errors(value, schema, "$")


_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    # JSON Schema counts 1.0 as an integer, as jsonschema does.
    "integer": lambda v: (
        (isinstance(v, int) and not isinstance(v, bool))
        or (isinstance(v, float) and v.is_integer())
    ),
}


def _fallback_errors(value: Any, schema: Mapping[str, Any], path: str) -> list[str]:
    errors: list[str] = []
    wanted = schema.get("type")
    if wanted is not None:
        names = [wanted] if isinstance(wanted, str) else list(wanted)
        if not any(_TYPES.get(n, lambda v: True)(value) for n in names):
            return [f"{path}: {value!r} is not of type {' or '.join(names)}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} is not one of {schema['enum']!r}")
    if isinstance(value, dict):
        props: Mapping[str, Any] = schema.get("properties") or {}
        errors += [
            f"{path}: {name!r} is a required property"
            for name in schema.get("required") or ()
            if name not in value
        ]
        for name, item in value.items():
            if name in props:
                errors += _fallback_errors(item, props[name], f"{path}.{name}")
            elif schema.get("additionalProperties") is False:
                errors.append(f"{path}: additional property {name!r} is not allowed")
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for i, item in enumerate(value):
            errors += _fallback_errors(item, schema["items"], f"{path}[{i}]")
    return errors
