"""Measurement: one row per call with the docs/METRICS.md columns, frames, summaries and the store.

Public entry points (re-exported by ``llm_nb``): :func:`history`, :func:`conversations`,
:func:`new_run`, :func:`warmup`, :func:`set_price`. What reads a session's recorder
(``stats``, ``summary``, ``export``) is on the session (``llm_nb._session``), which owns one.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, overload

from ._conversations import conversations
from ._pricing import set_price
from ._recorder import Recorder, new_run, warmup
from ._row import COLUMNS, call_row
from ._store import StatsStoreError, StatsStoreWarning

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from datetime import datetime

    import pandas as pd

__all__ = [
    "COLUMNS",
    "Recorder",
    "StatsStoreError",
    "StatsStoreWarning",
    "call_row",
    "conversations",
    "history",
    "new_run",
    "set_price",
    "warmup",
]


@overload
def history(
    path: Path | None = None,
    *,
    run: str | None = None,
    model: str | None = None,
    provider: str | None = None,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    limit: int | None = None,
    columns: Sequence[str] | None = None,
    chunksize: None = None,
) -> pd.DataFrame: ...


@overload
def history(
    path: Path | None = None,
    *,
    run: str | None = None,
    model: str | None = None,
    provider: str | None = None,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    limit: int | None = None,
    columns: Sequence[str] | None = None,
    chunksize: int,
) -> Iterator[pd.DataFrame]: ...


def history(
    path: Path | None = None,
    *,
    run: str | None = None,
    model: str | None = None,
    provider: str | None = None,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    limit: int | None = None,
    columns: Sequence[str] | None = None,
    chunksize: int | None = None,
) -> pd.DataFrame | Iterator[pd.DataFrame]:
    """Calls in the on-disk store (survives restarts), answer text included. Filters are
    applied in the store: ``run``, ``model``, ``provider``, ``since <= started_at < until``
    (datetimes or ISO 8601 strings; naive ones are local time) and ``limit`` (the latest
    calls), oldest first. ``columns`` reads only those (the docs/METRICS.md columns leave
    the answer text out). With ``chunksize``, an iterator of frames of up to that many rows
    each, read from the file as it is consumed, for stores too large to hold at once:
    ``for part in llm_nb.history(chunksize=50_000): ...``."""
    from . import _frames

    return _frames.history(
        path,
        run=run,
        model=model,
        provider=provider,
        since=since,
        until=until,
        limit=limit,
        columns=columns,
        chunksize=chunksize,
    )
