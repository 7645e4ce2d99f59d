"""The evaluation runner: prompts x models x repeats, warm-up first, bounded concurrency per
server, every finished cell saved as it ends.

The order is what makes a comparison fair. By default (``order="interleaved"``) the cells go
round by round: the first prompt on every contender, then the second prompt on every
contender, ..., every prompt once and then again for each repeat, the contenders' order in
a round turning by one place each time (:meth:`Plan.rounds`). A single dispatcher sends
them in that order, taking a free slot of the cell's server (at most ``concurrency`` calls
in flight per ``host:port``) before sending; so calls reach the servers in round order, no
contender runs ahead of the others, and a stretch of background load falls on every
contender alike instead of on whichever happened to be running. Every contender's warm-up
calls come first, before any measured call.

``order="grouped"`` is the other way, for a server that holds one model at a time (an
Ollama with room for one model), where interleaving would reload a model for every call:
servers run side by side, and on one server the models run one after another, each its
warm-up calls, then its cells, at most ``concurrency`` in flight, repeat by repeat. Load
that changes during such a run tilts the comparison.

A cell waits for the server's slot *after* its record exists, with ``trace.t_queued_ns``
stamped first, so the wait shows as ``queue_s`` and never inside ``ttft_s``. A failed cell
is kept (status, error text, partial answer) and the run goes on; only an interrupt or a
cancelled task stops it, and then every cell that finished is on disk for ``resume=True``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, Unpack

from .._errors import InvalidOptionError
from .._loop import Job
from .._options import ChatKwargs, takes_chat_options
from .._session import in_loop_thread, submit
from .._stats import call_row, new_run
from .._stats import warmup as warmup_calls
from .._types import ChatResponse
from .._waiting import wait_interruptibly
from ._plan import Cell, Plan, ScorerSpec, make_plan
from ._progress import Progress, make_progress
from ._result import EvalResult, build_result
from ._store import CellStore

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .._stream import ChatStream
    from ..providers.base import Provider

Results = dict[str, dict[str, Any]]


@takes_chat_options
def evaluate(
    prompts: Any,
    models: str | Sequence[str],
    *,
    repeats: int = 1,
    warmup: int = 1,
    concurrency: int = 4,
    order: Literal["interleaved", "shuffled", "grouped"] = "interleaved",
    scorers: ScorerSpec = None,
    expected: Any = None,
    progress: bool = True,
    run: str | None = None,
    resume: bool | None = None,
    **options: Unpack[ChatKwargs],
) -> EvalResult:
    """Ask every model every prompt ``repeats`` times; score, time and tabulate the answers.

    ``prompts`` is a list of prompts or a DataFrame with a ``prompt`` column (an
    ``expected`` column and any others are carried into the result). ``models`` are model
    ids. Each model first gets ``warmup`` calls (recorded as warm-up, left out of every
    summary), then the cells run, at most ``concurrency`` at a time per server.

    ``order`` is the order the cells are sent in. ``"interleaved"`` (the default) goes round
    by round: prompt 1 on every model, then prompt 2 on every model, ..., then the next
    repeat, the models' order turning by one place each round; so a stretch of background
    load falls on every model alike rather than on whichever ran then. ``"shuffled"``: the
    same rounds, each in a random order (seeded, so a rerun sends the same). ``"grouped"``:
    model after model on each server (servers side by side), for a server that holds one
    model at a time and would reload it for every interleaved call; its timings are not
    comparable if the load changes meanwhile. With ``seed``,
    repeat ``r`` of every prompt is sent ``seed + r`` on every model. ``scorers`` are
    names (``"exact"``, ``"contains"``, ``"icontains"``, ``"regex"``, ``"valid_json"``,
    ``"json_schema"``), functions ``(answer, expected[, row]) -> float | bool`` (see
    ``llm_nb.scorers``), a list of those or a dict naming them; by default exact match
    when there are expected answers. ``expected`` (one value per prompt, or one for all)
    replaces the frame's ``expected`` column. ``**options`` are the chat options of
    :class:`ChatKwargs` (``temperature=0``, ``max_tokens=64``, ``system=...``), ``seed`` as
    described.

    Calls are recorded in the stats under run id ``run`` (a fresh ``eval-...`` name when
    not given). Each finished cell is saved at once; after an interrupt,
    ``evaluate(..., run=name, resume=True)`` sends only the cells that did not finish (failed
    cells are tried again) and merges. ``resume=False`` starts the named run over; left
    out, reusing a name that has saved cells is refused rather than guessed.

    Works in scripts and inside a running Jupyter kernel (the calls run on llm_nb's own loop
    thread); Ctrl-C stops it within a moment, keeping what finished.
    """
    seed = options.pop("seed", None)  # varied per repeat: see above
    plan, store, done, pending = prepare(
        prompts,
        models,
        repeats=repeats,
        warmup=warmup,
        concurrency=concurrency,
        order=order,
        seed=seed,
        scorers=scorers,
        expected=expected,
        run=run,
        resume=resume,
        options=dict(options),
    )
    if in_loop_thread():
        raise RuntimeError("llm_nb.evaluate was called from llm_nb's loop; use aevaluate")
    shown = make_progress(progress, f"evaluate {plan.run}")
    shown.start(len(plan.cells), len(done))
    job: Job | None = None
    try:
        # Inside the try: the calls start at once on the loop thread, and a Ctrl-C that
        # lands before the wait must stop them too.
        job = submit(run_cells(plan, pending, store, shown))
        fresh: Results = wait_for(job)
    except BaseException as exc:
        # Ctrl-C or a kernel interrupt: stop the calls (each stream closes its connection)
        # and give them a moment, so nothing keeps generating behind the user's back.
        if job is not None:
            job.cancel_and_wait()
        shown.close(stopped_note(plan, exc), failed=True)
        raise
    shown.close()
    return build_result(plan, {**done, **fresh}, resumed=len(done))


def wait_for(job: Job) -> Any:
    """The job's result, waiting so that an interrupt is noticed (``llm_nb._waiting``)."""
    wait_interruptibly(job.finished)
    return job.future.result()


@takes_chat_options
async def aevaluate(
    prompts: Any,
    models: str | Sequence[str],
    *,
    repeats: int = 1,
    warmup: int = 1,
    concurrency: int = 4,
    order: Literal["interleaved", "shuffled", "grouped"] = "interleaved",
    scorers: ScorerSpec = None,
    expected: Any = None,
    progress: bool = True,
    run: str | None = None,
    resume: bool | None = None,
    **options: Unpack[ChatKwargs],
) -> EvalResult:
    """:func:`evaluate` for async code (``await llm_nb.aevaluate(...)`` in a cell): the calls
    run on the caller's loop; cancelling the task stops it, keeping what finished."""
    seed = options.pop("seed", None)  # varied per repeat: see above
    plan, store, done, pending = prepare(
        prompts,
        models,
        repeats=repeats,
        warmup=warmup,
        concurrency=concurrency,
        order=order,
        seed=seed,
        scorers=scorers,
        expected=expected,
        run=run,
        resume=resume,
        options=dict(options),
    )
    shown = make_progress(progress, f"evaluate {plan.run}")
    shown.start(len(plan.cells), len(done))
    try:
        fresh = await run_cells(plan, pending, store, shown)
    except BaseException as exc:
        shown.close(stopped_note(plan, exc), failed=True)
        raise
    shown.close()
    return build_result(plan, {**done, **fresh}, resumed=len(done))


def prepare(
    prompts: Any,
    models: str | Sequence[str],
    *,
    repeats: int,
    warmup: int,
    concurrency: int,
    order: str,
    seed: int | None,
    scorers: ScorerSpec,
    expected: Any,
    run: str | None,
    resume: bool | None,
    options: dict[str, Any],
) -> tuple[Plan, CellStore, Results, list[Cell]]:
    """The plan, its store, the saved cells it reuses and the cells still to run."""
    if resume and run is None:
        raise InvalidOptionError(
            "resume=True needs the run's name: evaluate(..., run='name', resume=True)"
        )
    plan = make_plan(
        prompts,
        models,
        repeats=repeats,
        warmup=warmup,
        concurrency=concurrency,
        order=order,
        seed=seed,
        scorers=scorers,
        expected=expected,
        run=run,
        options=options,
    )
    store = CellStore.for_run(plan.run)
    if resume is False:
        store.clear()
    saved = store.load()
    if saved and resume is None:
        raise InvalidOptionError(
            f"run {plan.run!r} already has {len(saved)} saved cells ({store.path}); pass "
            "resume=True to go on with it (only unfinished cells are sent) or resume=False "
            "to start it over"
        )
    keys = {cell.key for cell in plan.cells}
    done = {k: c for k, c in saved.items() if k in keys and c.get("status") == "ok"}
    pending = [cell for cell in plan.cells if cell.key not in done]
    return plan, store, done, pending


def stopped_note(plan: Plan, exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt | asyncio.CancelledError):
        why = "interrupted"
    else:
        why = f"stopped by {type(exc).__name__}"
    return (
        f"{why}; finished cells are saved: evaluate(..., run={plan.run!r}, resume=True) "
        "goes on from there"
    )


async def run_cells(
    plan: Plan, pending: list[Cell], store: CellStore, progress: Progress
) -> Results:
    """Run ``pending`` in the plan's order; the results of the cells that finished, by key."""
    results: Results = {}
    run = _grouped if plan.order == "grouped" else _interleaved
    try:
        with new_run(plan.run):
            await run(plan, pending, store, progress, results)
    finally:
        store.close()
    return results


async def _interleaved(
    plan: Plan, pending: list[Cell], store: CellStore, progress: Progress, results: Results
) -> None:
    rounds = plan.rounds(pending)
    if plan.warmup:
        # Each model's first cell to send: the same prompt and path as its measured calls.
        first: dict[str, Cell] = {}
        for cell in (c for cells in rounds for c in cells):
            first.setdefault(cell.model_id, cell)
        with warmup_calls():
            for _ in range(plan.warmup):
                for model_id in plan.contender_order(0):
                    if model_id in first:
                        progress.current(f"warm-up {model_id}")
                        await _warm(*plan.targets[model_id], first[model_id])
    limits = {host: asyncio.Semaphore(plan.concurrency) for host in plan.hosts()}
    async with asyncio.TaskGroup() as tg:
        for number, cells in enumerate(rounds, 1):
            progress.current(f"round {number}/{len(rounds)}")
            for cell in cells:
                provider, name = plan.targets[cell.model_id]
                stream, record = _open(cell, provider, name)
                if stream is None:
                    _finish(cell, record, None, store, progress, results)
                    continue
                # Waiting here, not in the task, keeps the send order: no later cell goes
                # to any server before this one has its slot.
                limit = limits[provider.host]
                await limit.acquire()
                tg.create_task(_send(cell, stream, limit, store, progress, results))


async def _send(
    cell: Cell,
    stream: ChatStream,
    limit: asyncio.Semaphore,
    store: CellStore,
    progress: Progress,
    results: Results,
) -> None:
    """Collect a cell whose slot is taken, then free the slot."""
    try:
        error = await _collect(stream)
    finally:
        limit.release()
    _finish(cell, stream.response, error, store, progress, results)


async def _grouped(
    plan: Plan, pending: list[Cell], store: CellStore, progress: Progress, results: Results
) -> None:
    by_model: dict[str, list[Cell]] = {}
    for cell in sorted(pending, key=lambda c: (c.repeat, c.index)):
        by_model.setdefault(cell.model_id, []).append(cell)
    async with asyncio.TaskGroup() as tg:
        for host, model_ids in plan.hosts().items():
            limit = asyncio.Semaphore(plan.concurrency)
            runs = [(m, by_model[m]) for m in model_ids if m in by_model]
            if runs:
                tg.create_task(
                    _host(plan, runs, limit, store, progress, results),
                    name=f"llm_nb-eval-{host}",
                )


async def _host(
    plan: Plan,
    runs: list[tuple[str, list[Cell]]],
    limit: asyncio.Semaphore,
    store: CellStore,
    progress: Progress,
    results: Results,
) -> None:
    for model_id, cells in runs:
        provider, name = plan.targets[model_id]
        progress.current(model_id)
        if plan.warmup:
            # The first cell's prompt and options: the same path as the measured calls.
            with warmup_calls():
                for _ in range(plan.warmup):
                    await _warm(provider, name, cells[0])
        async with asyncio.TaskGroup() as tg:
            for cell in cells:
                tg.create_task(_cell(cell, provider, name, limit, store, progress, results))


async def _warm(provider: Provider, name: str, cell: Cell) -> None:
    try:
        await provider.stream(name, cell.prompt, **cell.options).collect()
    except Exception:  # recorded as a failed warm-up; the cells will say what is wrong
        return


async def _cell(
    cell: Cell,
    provider: Provider,
    name: str,
    limit: asyncio.Semaphore,
    store: CellStore,
    progress: Progress,
    results: Results,
) -> None:
    stream, record = _open(cell, provider, name)
    error = None
    if stream is not None:
        async with limit:
            error = await _collect(stream)
    _finish(cell, record, error, store, progress, results)


def _open(cell: Cell, provider: Provider, name: str) -> tuple[ChatStream | None, ChatResponse]:
    """The cell's stream (nothing sent yet) and its record, queue time starting now; or no
    stream and a failed record when the call cannot even be made."""
    try:
        stream = provider.stream(name, cell.prompt, **cell.options)
    except Exception as exc:  # nothing was sent; still a cell that failed
        return None, ChatResponse(provider.name, provider.host, name, status="error", error=exc)
    stream.response.trace.t_queued_ns = time.perf_counter_ns()
    return stream, stream.response


async def _collect(stream: ChatStream) -> Exception | None:
    try:
        await stream.collect()
    except Exception as exc:  # the cell fails, the run goes on
        return exc
    return None


def _finish(
    cell: Cell,
    record: ChatResponse,
    error: Exception | None,
    store: CellStore,
    progress: Progress,
    results: Results,
) -> None:
    result = cell_result(cell, record, error)
    results[cell.key] = result
    store.append(result)
    progress.advance(error=record.status != "ok")


def cell_result(cell: Cell, record: ChatResponse, error: Exception | None) -> dict[str, Any]:
    """What is saved of a finished cell: identity, answer, error and its docs/METRICS.md row."""
    row = observed_row(record)
    started = row["started_at"]
    row["started_at"] = started.isoformat() if started is not None else None
    err = record.error or error
    return {
        "key": cell.key,
        "index": cell.index,
        "model_id": cell.model_id,
        "repeat": cell.repeat,
        "seed": cell.seed,
        "status": record.status,
        "answer": record.text,
        "reasoning": record.reasoning,
        "error": None if err is None else (str(err) or type(err).__name__),
        "row": row,
    }


def observed_row(record: ChatResponse) -> dict[str, Any]:
    """The call's row as the stats recorder wrote it, with the same hardware window (its
    sampler keeps minutes of samples)."""
    from .._session import get_recorder
    from .._stats._recorder import recording_enabled

    hardware: Mapping[str, float] | None = None
    t = record.trace
    if recording_enabled() and t.t_send_ns is not None and t.t_end_ns is not None:
        sampler = get_recorder().sampler
        if sampler is not None:
            hardware = sampler.window(t.t_send_ns, t.t_end_ns)
    return call_row(record, hardware=hardware)
