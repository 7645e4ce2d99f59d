"""The scorers (llm_nb/_eval/scorers.py): the built-in ones, the JSON-schema fallback, and a
failing scorer in a run."""

from __future__ import annotations

from typing import Any

import pytest

import llm_nb
from llm_nb import InvalidOptionError, scorers
from llm_nb._eval import scorers as scorer_module
from llm_nb._registry import Registry
from tests.eval.scripted_server import MockServer, serve


def test_builtin_scorers() -> None:
    assert scorers.exact("  Paris\n", "Paris") is True
    assert scorers.exact("paris", "Paris") is False
    assert scorers.exact("x", None) is None
    assert scorers.contains("It is Paris.", "Paris") and not scorers.contains("paris", "Paris")
    assert scorers.icontains("It is PARIS.", "paris") is True
    assert scorers.regex("answer: 42", r"\b4\d\b") is True
    assert scorers.regex("answer: 4", r"\b4\d\b") is False
    assert scorers.matches(r"^\d+$")("123", None) is True
    assert scorers.valid_json('{"a": 1}') and scorers.valid_json('```json\n{"a": 1}\n```')
    assert not scorers.valid_json("{'a': 1}") and not scorers.valid_json("")
    schema = {
        "type": "object",
        "required": ["name", "age"],
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    }
    check = scorers.json_schema(schema)
    assert check('{"name": "Ada", "age": 36}', None) is True
    assert check('{"name": "Ada"}', None) is False
    assert check('{"name": "Ada", "age": "old"}', None) is False
    assert check("not json", None) is False
    per_row = scorers.json_schema()
    assert per_row("[1, 2]", {"type": "array", "items": {"type": "number"}}) is True
    assert per_row("[1, 2]", None) is None
    with pytest.raises(InvalidOptionError, match="invalid JSON schema"):
        scorers.json_schema({"type": 12})


def test_json_schema_fallback_without_jsonschema(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scorer_module, "_jsonschema", lambda: None)
    schema = {
        "type": "object",
        "required": ["tags"],
        "properties": {
            "tags": {"type": "array", "items": {"type": "string"}},
            "n": {"type": ["integer", "null"]},
            "kind": {"enum": ["a", "b"]},
        },
        "additionalProperties": False,
    }
    check = scorers.json_schema(schema)
    assert check('{"tags": ["x"], "n": 3, "kind": "a"}', None) is True
    assert check('{"tags": ["x"], "n": null}', None) is True
    assert check('{"tags": ["x"], "n": 2.0}', None) is True  # 2.0 is an integer in JSON Schema
    assert check('{"tags": [1]}', None) is False
    assert check('{"n": 3}', None) is False
    assert check('{"tags": [], "kind": "c"}', None) is False
    assert check('{"tags": [], "extra": 1}', None) is False
    assert check('{"tags": [], "n": true}', None) is False  # a bool is not an integer
    assert scorer_module.schema_errors([1], {"type": "object"}) == ["$: [1] is not of type object"]


async def test_a_failing_scorer_warns_and_scores_nan(reg: Registry) -> None:
    server = MockServer()
    model = serve(reg, server, "eval-a:10").format("m")

    def broken(answer: str, expected: Any) -> float:
        raise ValueError("oops")

    with pytest.warns(RuntimeWarning, match="scorer 'broken' failed on 2 cell"):
        result = await llm_nb.aevaluate(
            ["a", "b"], [model], scorers=[broken, "valid_json"], warmup=0, progress=False
        )
    assert result.frame["score_broken"].isna().all()
    assert result.frame["score_valid_json"].tolist() == [0.0, 0.0]
