"""DataFrames over the recorded rows: per call, per model summary, and the on-disk history.
The only module of llm_nb that imports pandas, and only when one of these is called."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._row import COLUMNS

if TYPE_CHECKING:
    import pandas as pd

    from ._recorder import Recorder

SUMMARY_METRICS = ("ttft_s", "tpot_s", "e2e_s", "output_tps")
QUANTILES = (("p50", 0.5), ("p90", 0.9), ("p95", 0.95), ("p99", 0.99))
GROUP = ["run_id", "provider", "host", "model"]


def frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    import pandas as pd

    df = pd.DataFrame(rows, columns=list(COLUMNS))
    df["started_at"] = pd.to_datetime(df["started_at"], utc=True)
    for col in ("stream", "warmup"):
        df[col] = df[col].astype(bool)
    return df


def stats(recorder: Recorder, run_id: str | None = None) -> pd.DataFrame:
    df = frame(recorder.rows())
    return df[df["run_id"] == run_id].reset_index(drop=True) if run_id else df


#: Host facts (from the hardware module) and server facts (from /props, /api/show) that
#: the summary carries, as (column, fact key).
HOST_COLUMNS = (("host_cpu", "cpu_model"), ("host_cores", "cpu_cores_logical"),
                ("host_ram_gb", "ram_gb"), ("gpu_name", "gpu_name"),
                ("gpu_driver", "gpu_driver"))  # fmt: skip
SERVER_COLUMNS = (("server_build", "build"), ("server_version", "version"),
                  ("quantization", "quantization"), ("n_ctx", "n_ctx"))  # fmt: skip


def build_label(build_info: object) -> str | None:
    """A server's build as it reports it, without placeholders: llama.cpp's ``b<number>-<commit>``
    says ``b0`` and ``unknown`` when it was built without its git history, which are no build
    at all, so those parts are dropped (``b0-unknown`` is None; other servers' strings pass)."""
    if not isinstance(build_info, str) or not build_info.strip():
        return None
    value = build_info.strip()
    number, sep, commit = value.partition("-")
    if not (sep and number[:1] == "b" and number[1:].isdigit()):
        return value
    parts = [number] if int(number[1:]) else []
    if commit != "unknown":
        parts.append(commit)
    return "-".join(parts) or None


def summary(
    df: pd.DataFrame,
    host: dict[str, Any] | None = None,
    servers: dict[tuple[str, str, str, str], dict[str, Any]] | None = None,
) -> pd.DataFrame:
    """One row per (run, provider, host, model): counts (n_ok, n_error, and n_cancelled for
    calls the user stopped, which the error rate leaves out), error rate, mean and percentiles of
    ttft_s, tpot_s, e2e_s and output_tps over ok calls, throughput, and the host and server
    facts where known. Warm-up calls are left out."""
    import numpy as np
    import pandas as pd

    df = df[~df["warmup"]]
    out = []
    for key, g in df.groupby(GROUP, sort=False, dropna=False):
        ok = g[g["status"] == "ok"]
        row: dict[str, Any] = dict(zip(GROUP, key, strict=True))
        row["n_ok"] = len(ok)
        # A call the user stopped did not fail: counted apart, and out of the error rate.
        n_cancelled = int((g["status"] == "cancelled").sum())
        row["n_error"] = len(g) - len(ok) - n_cancelled
        row["n_cancelled"] = n_cancelled
        attempted = len(g) - n_cancelled
        row["error_rate"] = row["n_error"] / attempted if attempted else np.nan
        for m in SUMMARY_METRICS:
            values = ok[m].dropna()
            row[f"{m}_mean"] = values.mean() if len(values) else np.nan
            for name, q in QUANTILES:
                row[f"{m}_{name}"] = values.quantile(q) if len(values) else np.nan
            row[f"{m}_max"] = values.max() if len(values) else np.nan
        tokens = ok["completion_tokens"].sum()
        row["output_tokens"] = tokens
        # Wall time of the run for this model: first send to last end, so concurrency counts.
        if len(ok):
            start = ok["started_at"].min()
            end = (ok["started_at"] + pd.to_timedelta(ok["e2e_s"], unit="s")).max()
            wall = (end - start).total_seconds()
            row["throughput_tps"] = tokens / wall if wall > 0 else np.nan
        else:
            row["throughput_tps"] = np.nan
        energy = ok["gpu_energy_j"].dropna()
        row["energy_j_per_token"] = energy.sum() / tokens if len(energy) and tokens else np.nan
        row["cost_usd"] = ok["cost_usd"].sum(min_count=1)
        for col, fact in HOST_COLUMNS:
            row[col] = (host or {}).get(fact)
        facts = (servers or {}).get(tuple(key), {})  # type: ignore[arg-type]
        for col, fact in SERVER_COLUMNS:
            value = facts.get(fact)
            row[col] = build_label(value) if fact == "build" else value
        out.append(row)
    return pd.DataFrame(out)


def history(
    path: Path | None = None,
    *,
    run: str | None = None,
    model: str | None = None,
    provider: str | None = None,
    since: Any = None,
    until: Any = None,
    limit: int | None = None,
    columns: tuple[str, ...] | None = None,
) -> pd.DataFrame:
    """Calls recorded on this machine (the SQLite store), answer text included, filtered in
    the store: only matching rows are read. Raises :class:`StatsStoreError` (an LLMError)
    when the store cannot be read."""
    from ._store import Store

    where = _where(run=run, model=model, provider=provider)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        from .._errors import InvalidOptionError

        raise InvalidOptionError(f"limit must be a whole number of calls >= 0, got {limit!r}")
    store = Store(path)
    try:
        names, rows = store.query(
            where,
            since=_utc("since", since),
            until=_utc("until", until),
            limit=limit,
            columns=columns,
        )
    finally:
        store.close()
    return _stored_frame(names, rows)


def recorded(recorder: Recorder, run: str | None, model: str | None) -> pd.DataFrame:
    """The calls of a run and/or model: those in the store (read filtered, without the
    answer text) and this session's that are not there (the store could not be written)."""
    import pandas as pd

    where = _where(run=run, model=model)
    df = frame([])
    if recorder.store is not None:
        names, rows = recorder.store.query(where, columns=COLUMNS)
        df = _stored_frame(names, rows)
    stored = set(df["call_id"])
    mine = [
        r for r in recorder.rows()
        if r["call_id"] not in stored and all(r.get(k) == v for k, v in where.items())
    ]  # fmt: skip
    if mine:
        df = pd.concat([df, frame(mine)], ignore_index=True) if len(df) else frame(mine)
    return df


def _where(**filters: Any) -> dict[str, str]:
    from .._errors import InvalidOptionError

    where = {}
    for name, value in filters.items():
        if value is None:
            continue
        if not isinstance(value, str):
            raise InvalidOptionError(f"{name} must be a string, got a {type(value).__name__}")
        where["run_id" if name == "run" else name] = value
    return where


def _utc(name: str, value: Any) -> str | None:
    """A time bound as the store writes ``started_at``: ISO 8601 in UTC. A naive datetime or
    string is local time, as Python's own conversions take it."""
    from datetime import UTC, datetime

    from .._errors import InvalidOptionError

    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidOptionError(
                f"{name} must be a datetime or an ISO 8601 time such as "
                f"'2026-01-31T12:00', got {value!r}"
            ) from None
    if not isinstance(value, datetime):
        raise InvalidOptionError(f"{name} must be a datetime or an ISO 8601 string, got a "
                                 f"{type(value).__name__}")  # fmt: skip
    return value.astimezone(UTC).isoformat()


def _stored_frame(names: list[str], rows: Any) -> pd.DataFrame:
    import pandas as pd

    df = pd.DataFrame(list(rows), columns=names)
    df["started_at"] = pd.to_datetime(df["started_at"], utc=True, format="ISO8601")
    for col in ("stream", "warmup"):
        df[col] = df[col].astype(bool)
    return df


def export(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a frame to .csv or .parquet (by suffix). A file that cannot be written is a
    :class:`StatsStoreError` (an LLMError) saying why."""
    from .._errors import InvalidOptionError
    from ._store import StatsStoreError, cause

    if not isinstance(path, str | Path):
        raise InvalidOptionError(f"export needs a file path, got a {type(path).__name__}")
    path = Path(path)
    if path.suffix not in (".csv", ".parquet"):
        raise InvalidOptionError(f"export to .csv or .parquet, not {path.suffix or path.name!r}")
    try:
        if path.suffix == ".csv":
            df.to_csv(path, index=False)
        else:
            df.to_parquet(path, index=False)
    except ImportError as exc:
        raise InvalidOptionError(
            "writing Parquet needs pyarrow: pip install pyarrow (or export to .csv)"
        ) from exc
    except OSError as exc:
        raise StatsStoreError(f"cannot write {path}: {cause(exc)}") from None
    return path
