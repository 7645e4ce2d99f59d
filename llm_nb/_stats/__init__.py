"""Measurement: one row per call with the docs/METRICS.md columns, frames, summaries and the store.

Public entry points (re-exported by ``llm_nb``): :func:`stats`, :func:`summary`,
:func:`history`, :func:`export`, :func:`new_run`, :func:`warmup`, :func:`set_price`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._pricing import set_price
from ._recorder import Recorder, get_recorder, new_run, warmup
from ._row import COLUMNS, call_row
from ._store import StatsStoreError, StatsStoreWarning

if TYPE_CHECKING:
    from datetime import datetime

    import pandas as pd

__all__ = [
    "COLUMNS",
    "Recorder",
    "StatsStoreError",
    "StatsStoreWarning",
    "call_row",
    "export",
    "get_recorder",
    "history",
    "new_run",
    "set_price",
    "stats",
    "summary",
    "warmup",
]


def stats(run_id: str | None = None) -> pd.DataFrame:
    """Every call recorded in this process, one row each (METRICS.md columns)."""
    from . import _frames

    return _frames.stats(get_recorder(), run_id)


def summary(run_id: str | None = None, *, model: str | None = None) -> pd.DataFrame:
    """One row per model per run: n_ok, n_error, n_cancelled (user stops, not in error_rate),
    error_rate, ttft/tpot/e2e/output_tps mean, p50, p90, p95, p99 and max, throughput;
    warm-up calls excluded. Without arguments, this session's calls; with ``run_id`` and/or
    ``model``, every recorded call of that run or model, this session's or not, read
    filtered from the store."""
    from . import _frames

    rec = get_recorder()
    df = stats() if run_id is None and model is None else _frames.recorded(rec, run_id, model)
    return _frames.summary(df, rec.host_facts(), dict(rec.server_facts))


def history(
    path: Path | None = None,
    *,
    run: str | None = None,
    model: str | None = None,
    provider: str | None = None,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    limit: int | None = None,
) -> pd.DataFrame:
    """Calls in the on-disk store (survives restarts), answer text included. Filters are
    applied in the store: ``run``, ``model``, ``provider``, ``since <= started_at < until``
    (datetimes or ISO 8601 strings; naive ones are local time) and ``limit`` (the latest
    calls), oldest first."""
    from . import _frames

    return _frames.history(
        path, run=run, model=model, provider=provider, since=since, until=until, limit=limit
    )


def export(path: str | Path, frame: Any = None) -> Path:
    """Write ``frame`` (default: :func:`stats`) to ``path`` (.csv or .parquet)."""
    from . import _frames

    return _frames.export(stats() if frame is None else frame, path)
