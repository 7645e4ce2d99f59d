"""Measurement: one row per call with the METRICS.md columns, frames, summaries and the store.

Public entry points (re-exported by ``llm_nb``): :func:`stats`, :func:`summary`,
:func:`history`, :func:`export`, :func:`run`, :func:`warmup`, :func:`set_price`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._pricing import set_price
from ._recorder import Recorder, get_recorder, run, warmup
from ._row import COLUMNS, call_row
from ._store import StatsStoreError, StatsStoreWarning

if TYPE_CHECKING:
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
    "run",
    "set_price",
    "stats",
    "summary",
    "warmup",
]


def stats(run_id: str | None = None) -> pd.DataFrame:
    """Every call recorded in this process, one row each (METRICS.md columns)."""
    from . import _frames

    return _frames.stats(get_recorder(), run_id)


def summary(run_id: str | None = None) -> pd.DataFrame:
    """One row per model per run: n_ok, n_error, n_cancelled (user stops, not in error_rate),
    error_rate, ttft/tpot/e2e/output_tps mean,
    p50, p90, p95, p99 and max, throughput; warm-up calls excluded."""
    from . import _frames

    rec = get_recorder()
    return _frames.summary(stats(run_id), rec.host_facts(), dict(rec.server_facts))


def history(path: Path | None = None) -> pd.DataFrame:
    """All calls in the on-disk store (survives restarts), answer text included."""
    from . import _frames

    return _frames.history(path)


def export(path: str | Path, frame: Any = None) -> Path:
    """Write ``frame`` (default: :func:`stats`) to ``path`` (.csv or .parquet)."""
    from . import _frames

    return _frames.export(stats() if frame is None else frame, path)
