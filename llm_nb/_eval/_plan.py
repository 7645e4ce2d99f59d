"""An evaluation's plan: the prompt rows, the models, and one :class:`Cell` per
(prompt, model, repeat), each with the seed and options it is sent with and the key it is
saved under. Everything the caller got wrong is refused here, before anything is sent.

A cell's key is a digest of what determines its answer: the prompt (and which occurrence
of it, so a prompt listed twice is two cells), the model id, the repeat and the options,
seed included. The key does not depend on list positions, so adding prompts or repeats to a
run and resuming it reuses every cell already answered.

The plan also says in which order the cells are sent (:meth:`Plan.rounds`): round by round,
one round per prompt and repeat, each contender once per round, so no contender's calls all
fall in a quiet or a busy stretch of the machine.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from .._errors import InvalidOptionError
from .._options import ChatOptions
from .._session import registry
from .._stats import COLUMNS
from .._types import build_messages
from . import scorers as sc

if TYPE_CHECKING:
    from ..providers.base import Provider

#: Columns the evaluation adds to the prompt rows (besides the docs/METRICS.md ones).
CELL_COLUMNS = ("model_id", "repeat", "seed", "answer", "reasoning", "error")

#: Scorers by the names ``scorers=["exact", ...]`` accepts.
NAMED_SCORERS: dict[str, sc.Scorer] = {
    "exact": sc.exact,
    "contains": sc.contains,
    "icontains": sc.icontains,
    "regex": sc.regex,
    "valid_json": sc.valid_json,
    "json": sc.valid_json,
    "json_schema": sc.json_schema(),
}

#: The orders :func:`evaluate` can send cells in (see :meth:`Plan.rounds`).
Order = Literal["interleaved", "shuffled", "grouped"]
ORDERS: tuple[Order, ...] = ("interleaved", "shuffled", "grouped")

ScorerSpec = sc.Scorer | str | Sequence[sc.Scorer | str] | Mapping[str, sc.Scorer | str] | None


@dataclass(frozen=True, slots=True)
class Cell:
    """One call to make: prompt ``index`` of the plan, to ``model_id``, repeat ``repeat``."""

    key: str
    index: int
    model_id: str
    repeat: int
    seed: int | None
    prompt: Any
    options: Mapping[str, Any]


@dataclass(slots=True)
class Plan:
    run: str
    rows: list[dict[str, Any]]
    columns: list[str]
    models: list[str]
    targets: dict[str, tuple[Provider, str]]
    cells: list[Cell]
    scorers: dict[str, sc.Scorer]
    warmup: int
    concurrency: int
    options: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    order: Order = "interleaved"

    def hosts(self) -> dict[str, list[str]]:
        """Model ids by server host (``host:port``), in the order given."""
        out: dict[str, list[str]] = {}
        for model_id in self.models:
            out.setdefault(self.targets[model_id][0].host, []).append(model_id)
        return out

    def rounds(self, cells: Iterable[Cell]) -> list[list[Cell]]:
        """``cells`` in the order they are sent, in rounds: one round per (repeat, prompt),
        every prompt once and then again, each round holding that prompt's cell on every
        contender. ``"interleaved"`` turns the contenders' order by one place each round,
        so that each goes first, second, ... equally often (the second call of a prompt may
        find it in the server's cache); ``"shuffled"`` draws each round's order at random,
        seeded by ``seed`` and the round. Either way the order depends only on the plan, so
        a rerun or a resumed run sends in the same order."""
        by_round: dict[tuple[int, int], dict[str, Cell]] = {}
        for cell in cells:
            by_round.setdefault((cell.repeat, cell.index), {})[cell.model_id] = cell
        out = []
        for repeat, index in sorted(by_round):
            here = by_round[repeat, index]
            number = repeat * len(self.rows) + index
            out.append([here[m] for m in self.contender_order(number) if m in here])
        return out

    def contender_order(self, number: int) -> list[str]:
        """The model ids in the order round ``number`` (from 0) sends them."""
        if self.order == "shuffled":
            models = list(self.models)
            random.Random(f"{self.seed}:{number}").shuffle(models)
            return models
        turn = number % len(self.models)
        return [*self.models[turn:], *self.models[:turn]]


def new_run_name() -> str:
    return f"eval-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


def make_plan(
    prompts: Any,
    models: str | Sequence[str],
    *,
    repeats: int,
    warmup: int,
    concurrency: int,
    seed: int | None,
    scorers: ScorerSpec,
    expected: Any,
    run: str | None,
    options: dict[str, Any],
    order: str = "interleaved",
) -> Plan:
    _whole("repeats", repeats, 1)
    _whole("warmup", warmup, 0)
    _whole("concurrency", concurrency, 1)
    if seed is not None:
        _whole("seed", seed, None)
    if order not in ORDERS:
        raise InvalidOptionError(
            f"order must be one of {', '.join(map(repr, ORDERS))}, got {order!r}"
        )
    ChatOptions.from_kwargs(**options)  # refuse unknown or bad options before any call
    if run is not None and (not isinstance(run, str) or not run.strip()):
        raise InvalidOptionError(f"run must be a non-empty name, got {run!r}")
    rows, columns = prompt_rows(prompts, expected)
    model_ids = [models] if isinstance(models, str) else list(models)
    if not model_ids or not all(isinstance(m, str) for m in model_ids):
        raise InvalidOptionError("models must be a list of model ids, e.g. ['ollama:qwen3:0.6b']")
    if len(set(model_ids)) != len(model_ids):
        raise InvalidOptionError(f"models lists a model twice: {model_ids}")
    reg = registry()
    targets = {m: reg.resolve(m) for m in model_ids}
    has_expected = any(r.get("expected") is not None for r in rows)
    plan = Plan(
        run=run or new_run_name(),
        rows=rows,
        columns=columns,
        models=model_ids,
        targets=targets,
        cells=[],
        scorers=resolve_scorers(scorers, has_expected),
        warmup=warmup,
        concurrency=concurrency,
        options=dict(options),
        seed=seed,
        order=order,
    )
    plan.cells = make_cells(plan, repeats)
    return plan


def _whole(name: str, value: Any, least: int | None) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or (least is not None and value < least)
    ):
        bound = "" if least is None else f" >= {least}"
        raise InvalidOptionError(f"{name} must be a whole number{bound}, got {value!r}")


def prompt_rows(prompts: Any, expected: Any) -> tuple[list[dict[str, Any]], list[str]]:
    """The prompt rows as dicts (``prompt``, ``expected`` when known, other columns) and the
    column names in order."""
    if hasattr(prompts, "columns") and hasattr(prompts, "to_dict"):
        if "prompt" not in prompts.columns:
            raise InvalidOptionError(
                f"the prompts frame needs a 'prompt' column; it has {list(prompts.columns)}"
            )
        columns = [str(c) for c in prompts.columns]
        rows = [{str(k): v for k, v in r.items()} for r in prompts.to_dict("records")]
    else:
        items = [prompts] if isinstance(prompts, str) else list(prompts)
        columns = ["prompt"]
        rows = [{"prompt": p} for p in items]
    if not rows:
        raise InvalidOptionError("no prompts to evaluate")
    clash = sorted(set(columns) & (set(CELL_COLUMNS) | set(COLUMNS)))
    if clash:
        raise InvalidOptionError(
            f"the prompts frame has columns {clash} that the result frame uses too; rename them"
        )
    if expected is not None:
        values = (
            list(expected)
            if isinstance(expected, list | tuple) or hasattr(expected, "dtype")
            else [expected] * len(rows)
        )
        if len(values) != len(rows):
            raise InvalidOptionError(
                f"expected has {len(values)} values for {len(rows)} prompts; give one per prompt"
            )
        for row, value in zip(rows, values, strict=True):
            row["expected"] = value
        if "expected" not in columns:
            columns.insert(1, "expected")
    for row in rows:
        if "expected" in row and _missing(row["expected"]):
            row["expected"] = None
        if _missing(row["prompt"]) or row["prompt"] == "":
            raise InvalidOptionError("a prompt is empty; every row needs a prompt")
        build_messages(row["prompt"], None)  # a wrong prompt fails here, not in its cell
    return rows, columns


def _missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    # pandas.NA and NaT say they are missing by refusing to be truthy or compared.
    return type(value).__name__ in ("NAType", "NaTType")


def resolve_scorers(spec: ScorerSpec, has_expected: bool) -> dict[str, sc.Scorer]:
    """Scorers by column name. None: exact match when any prompt has an expected answer."""
    if spec is None:
        return {"exact": sc.exact} if has_expected else {}
    items: Iterable[tuple[str | None, sc.Scorer | str]]
    if isinstance(spec, Mapping):
        items = [(str(k), v) for k, v in spec.items()]
    elif isinstance(spec, str) or callable(spec):
        items = [(None, spec)]
    else:
        items = [(None, s) for s in spec]
    out: dict[str, sc.Scorer] = {}
    for name, item in items:
        fn = _scorer(item)
        base = name or getattr(fn, "__name__", "") or "score"
        if base == "<lambda>":
            base = "lambda"
        final, n = base, 1
        while final in out:
            n += 1
            final = f"{base}_{n}"
        out[final] = fn
    return out


def _scorer(item: sc.Scorer | str) -> sc.Scorer:
    if isinstance(item, str):
        found = NAMED_SCORERS.get(item)
        if found is None:
            raise InvalidOptionError(
                f"unknown scorer {item!r}; known: {', '.join(sorted(NAMED_SCORERS))}, "
                "or pass a function (answer, expected[, row]) -> float | bool"
            )
        return found
    if not callable(item):
        raise InvalidOptionError(f"a scorer must be a name or a function, got {item!r}")
    return item


def make_cells(plan: Plan, repeats: int) -> list[Cell]:
    """Every cell, prompt by prompt, then model, then repeat (the frame's order)."""
    seen: dict[str, int] = {}
    cells = []
    for index, row in enumerate(plan.rows):
        prompt_text = _canonical(row["prompt"])
        occurrence = seen.get(prompt_text, 0)
        seen[prompt_text] = occurrence + 1
        for model_id in plan.models:
            for repeat in range(repeats):
                seed = None if plan.seed is None else plan.seed + repeat
                options = dict(plan.options)
                if seed is not None:
                    options["seed"] = seed
                key = _digest([prompt_text, occurrence, model_id, repeat, _canonical(options)])
                cells.append(Cell(key, index, model_id, repeat, seed, row["prompt"], options))
    return cells


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=repr, ensure_ascii=False)


def _digest(parts: list[Any]) -> str:
    return hashlib.sha256(_canonical(parts).encode()).hexdigest()[:32]


def call_scorer(fn: sc.Scorer) -> Callable[[str, Any, dict[str, Any]], Any]:
    """Call ``fn`` with (answer, expected) or (answer, expected, row), whichever it takes."""
    import inspect

    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # some builtins have no signature
        return lambda answer, expected, row: fn(answer, expected)
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if any(p.kind is p.VAR_POSITIONAL for p in params) or len(positional) >= 3:
        return lambda answer, expected, row: fn(answer, expected, row)
    return lambda answer, expected, row: fn(answer, expected)
