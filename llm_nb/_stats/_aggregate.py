"""``summary()`` of stored calls computed in the store: one grouped query instead of every
row read into pandas.

SQLite counts, sums and finds the time span of each (run, provider, host, model) group; it
has no percentile function, so each group's ok values of a metric come back as one
comma-separated string (``group_concat``, NULLs left out), which numpy parses and sorts per
group at once. The figures are those of :func:`llm_nb._stats._frames.summary` (the same
definitions, checked against it in the tests); a value travels as text with 15 significant
digits, and a time span at SQLite's millisecond resolution.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from ._store import Store

_OK = "status = 'ok'"
_EPOCH = "(julianday(started_at) - 2440587.5) * 86400.0"


def _sql(where: Sequence[str], metrics: Sequence[str]) -> str:
    concat = ", ".join(f"group_concat(CASE WHEN {_OK} THEN {m} END)" for m in metrics)
    return (
        "SELECT run_id, provider, host, model, count(*), "
        f"total({_OK}), total(status = 'cancelled'), "
        f"total(CASE WHEN {_OK} THEN completion_tokens END), "
        f"min(CASE WHEN {_OK} THEN {_EPOCH} END), "
        f"max(CASE WHEN {_OK} THEN {_EPOCH} + e2e_s END), "
        f"sum(CASE WHEN {_OK} THEN gpu_energy_j END), "
        f"sum(CASE WHEN {_OK} THEN cost_usd END), {concat} "
        "FROM calls WHERE coalesce(warmup, 0) = 0"
        + "".join(f' AND "{c}" = ?' for c in where)
        + " GROUP BY run_id, provider, host, model ORDER BY min(started_at), min(rowid)"
    )


def _values(texts: Sequence[str | None]) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Every group's values (parsed, sorted within the group, groups in order) and each
    group's count."""
    import numpy as np

    sizes = np.array([t.count(",") + 1 if t else 0 for t in texts], dtype=np.int64)
    joined = ",".join(t for t in texts if t)
    flat = np.fromstring(joined, sep=",") if joined else np.empty(0)
    if len(flat) != sizes.sum():  # a value numpy's parser stops at (SQLite's "Inf")
        flat = np.array(joined.split(","), dtype=np.float64)
    group = np.repeat(np.arange(len(texts)), sizes)
    return flat[np.lexsort((flat, group))], sizes


def figures(texts: Sequence[str | None], quantiles: Sequence[float]) -> dict[str | float, Any]:
    """mean, each quantile (linear interpolation, as numpy and pandas) and max per group;
    NaN for a group without values."""
    import numpy as np

    values, sizes = _values(texts)
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)
    has = sizes > 0
    last = np.where(has, starts + sizes - 1, 0)
    out: dict[str | float, Any] = {}
    sums = np.add.reduceat(values, starts[has]) if len(values) else np.empty(0)
    mean = np.full(len(sizes), np.nan)
    mean[has] = sums / sizes[has]
    out["mean"] = mean
    for q in quantiles:
        pos = (sizes - 1) * q
        lo = np.floor(np.maximum(pos, 0)).astype(np.int64)
        hi = np.minimum(lo + 1, np.maximum(sizes - 1, 0))
        safe = values if len(values) else np.zeros(1)
        a, b = safe[np.where(has, starts + lo, 0)], safe[np.where(has, starts + hi, 0)]
        out[q] = np.where(has, a + (b - a) * (pos - lo), np.nan)
    out["max"] = np.where(has, (values if len(values) else np.zeros(1))[last], np.nan)
    return out


def summary(
    store: Store,
    where: Mapping[str, str],
    host: Mapping[str, Any] | None,
    servers: Mapping[tuple[str, str, str, str], Mapping[str, Any]] | None,
) -> pd.DataFrame:
    """The summary of the stored calls matching ``where`` (``run_id`` and/or ``model``)."""
    import numpy as np
    import pandas as pd

    from ._frames import (
        GROUP,
        HOST_COLUMNS,
        QUANTILES,
        SERVER_COLUMNS,
        SUMMARY_METRICS,
        build_label,
    )

    rows: list[tuple[Any, ...]] = []
    with store.reading() as conn:
        if conn is not None:
            sql = _sql(list(where), SUMMARY_METRICS)
            rows = conn.execute(sql, list(where.values())).fetchall()
    if not rows:
        return pd.DataFrame()
    cols = list(zip(*rows, strict=True))
    out = pd.DataFrame({name: list(cols[i]) for i, name in enumerate(GROUP)})
    total = np.array(cols[4], dtype=np.int64)
    n_ok = np.array(cols[5], dtype=np.float64).astype(np.int64)
    n_cancelled = np.array(cols[6], dtype=np.float64).astype(np.int64)
    n_error = total - n_ok - n_cancelled
    attempted = total - n_cancelled
    out["n_ok"], out["n_error"], out["n_cancelled"] = n_ok, n_error, n_cancelled
    with np.errstate(invalid="ignore", divide="ignore"):
        out["error_rate"] = np.where(attempted > 0, n_error / attempted, np.nan)
    for k, m in enumerate(SUMMARY_METRICS):
        got = figures(cols[12 + k], [q for _, q in QUANTILES])
        out[f"{m}_mean"] = got["mean"]
        for name, q in QUANTILES:
            out[f"{m}_{name}"] = got[q]
        out[f"{m}_max"] = got["max"]
    tokens = np.array(cols[7], dtype=np.float64)
    start, end = (np.array(cols[i], dtype=np.float64) for i in (8, 9))
    energy = np.array(cols[10], dtype=np.float64)
    wall = end - start
    out["output_tokens"] = tokens
    with np.errstate(invalid="ignore", divide="ignore"):
        out["throughput_tps"] = np.where(wall > 0, tokens / wall, np.nan)
        out["energy_j_per_token"] = np.where(tokens != 0, energy / tokens, np.nan)
    out["cost_usd"] = np.array(cols[11], dtype=np.float64)
    for col, fact in HOST_COLUMNS:
        out[col] = (host or {}).get(fact)
    facts = [(servers or {}).get(tuple(r[:4]), {}) for r in rows]
    for col, fact in SERVER_COLUMNS:
        values = [f.get(fact) for f in facts]
        out[col] = [build_label(v) for v in values] if fact == "build" else values
    return out
