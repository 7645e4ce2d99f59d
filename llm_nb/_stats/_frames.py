"""DataFrames over the recorded rows: per call, per model summary, and the on-disk history.
The only module of llm_nb that imports pandas, and only when one of these is called."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._row import COLUMNS

if TYPE_CHECKING:
    import pandas as pd

    from ._recorder import Recorder

SUMMARY_METRICS = ("ttft_s", "tpot_s", "e2e_s", "output_tps")
QUANTILES = (("p50", 0.5), ("p90", 0.9), ("p95", 0.95), ("p99", 0.99))
GROUP = ["run_id", "provider", "host", "model"]
#: What :func:`summary` reads (the call id to tell stored rows from this session's).
SUMMARY_COLUMNS = ("call_id", *GROUP, "warmup", "status", "started_at", *SUMMARY_METRICS,
                   "completion_tokens", "gpu_energy_j", "cost_usd")  # fmt: skip


def frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    import pandas as pd

    df = pd.DataFrame(rows, columns=list(COLUMNS))
    df["started_at"] = pd.to_datetime(df["started_at"], utc=True)
    for col in ("stream", "warmup"):
        df[col] = df[col].astype(bool)
    return df


def stats(recorder: Recorder, run_id: str | None = None) -> pd.DataFrame:
    """This session's calls (of one run): read back from the store by session id, then
    those the store did not take."""
    where = {"session_id": recorder.session_id}
    if run_id:
        where["run_id"] = run_id
    return _combined(recorder, where)


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
    facts where known. Warm-up calls are left out. Each figure is one grouped operation over
    every group at once, so a summary of many runs costs no more per row than one of a few."""
    import numpy as np
    import pandas as pd

    df = df[~df["warmup"].astype(bool)]
    if df.empty:
        return pd.DataFrame()
    numbers = [*SUMMARY_METRICS, "completion_tokens", "gpu_energy_j", "cost_usd"]
    loose = [c for c in numbers if df[c].dtype == object]  # a column of None read as objects
    if loose:
        df = df.assign(**{c: pd.to_numeric(df[c], errors="coerce") for c in loose})
    # Groups numbered in order of their first call (the earliest start; the first one met
    # among equals); every figure is grouped by that number, which, unlike the keys, is
    # never missing.
    df = df.iloc[np.argsort(df["started_at"].to_numpy(), kind="stable")]
    codes = df.groupby(GROUP, sort=False, dropna=False).ngroup().to_numpy()
    keys = df.loc[~pd.Series(codes).duplicated().to_numpy(), GROUP].reset_index(drop=True)
    n = len(keys)
    every = pd.RangeIndex(n)
    status = df["status"].to_numpy()
    is_ok = status == "ok"
    total = np.bincount(codes, minlength=n)
    n_ok = np.bincount(codes, weights=is_ok, minlength=n).astype(int)
    # A call the user stopped did not fail: counted apart, and out of the error rate.
    n_cancelled = np.bincount(codes, weights=status == "cancelled", minlength=n).astype(int)
    n_error = total - n_ok - n_cancelled
    attempted = total - n_cancelled
    out = keys.copy()
    out["n_ok"], out["n_error"], out["n_cancelled"] = n_ok, n_error, n_cancelled
    with np.errstate(invalid="ignore", divide="ignore"):
        out["error_rate"] = np.where(attempted > 0, n_error / attempted, np.nan)
    ok = df[is_ok]
    by = ok.groupby(codes[is_ok], sort=False)
    for m in SUMMARY_METRICS:
        values = by[m]
        out[f"{m}_mean"] = values.mean().reindex(every).to_numpy()
        qs = values.quantile([q for _, q in QUANTILES]).unstack().reindex(every)
        for name, q in QUANTILES:
            out[f"{m}_{name}"] = qs[q].to_numpy() if q in qs else np.nan
        out[f"{m}_max"] = values.max().reindex(every).to_numpy()
    tokens = by["completion_tokens"].sum().reindex(every, fill_value=0.0).to_numpy()
    out["output_tokens"] = tokens
    # Wall time of the run for this model: first send to last end, so concurrency counts.
    start = by["started_at"].min()
    end = (ok["started_at"] + pd.to_timedelta(ok["e2e_s"], unit="s")).groupby(codes[is_ok]).max()
    wall = (end - start).dt.total_seconds().reindex(every).to_numpy()
    energy = by["gpu_energy_j"].sum(min_count=1).reindex(every).to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        out["throughput_tps"] = np.where(wall > 0, tokens / wall, np.nan)
        out["energy_j_per_token"] = np.where(tokens != 0, energy / tokens, np.nan)
    out["cost_usd"] = by["cost_usd"].sum(min_count=1).reindex(every).to_numpy()
    for col, fact in HOST_COLUMNS:
        out[col] = (host or {}).get(fact)
    facts = [(servers or {}).get(tuple(k), {}) for k in keys.itertuples(index=False)]
    for col, fact in SERVER_COLUMNS:
        values_ = [f.get(fact) for f in facts]
        out[col] = [build_label(v) for v in values_] if fact == "build" else values_
    return out


def history(
    path: Path | None = None,
    *,
    run: str | None = None,
    model: str | None = None,
    provider: str | None = None,
    since: Any = None,
    until: Any = None,
    limit: int | None = None,
    columns: Sequence[str] | None = None,
    chunksize: int | None = None,
) -> pd.DataFrame | Iterator[pd.DataFrame]:
    """Calls recorded on this machine (the SQLite store), answer text included, filtered in
    the store: only matching rows are read. With ``chunksize``, an iterator of frames of up
    to that many rows, read as they are consumed. Raises :class:`StatsStoreError` (an
    LLMError) when the store cannot be read."""
    where = where_of(run=run, model=model, provider=provider)
    limit = _count("limit", limit, minimum=0)
    chunksize = _count("chunksize", chunksize, minimum=1)
    columns = _columns(columns)
    bounds = {"since": _utc("since", since), "until": _utc("until", until), "limit": limit}
    if chunksize is not None:
        return _chunks(path, where, bounds, columns, chunksize)
    return _read(path, where, bounds, columns)


#: Rows read from the file at a time when building a whole frame.
_READ_CHUNK = 2_000


def _read(
    path: Path | None, where: dict[str, str], bounds: dict[str, Any], columns: Any
) -> pd.DataFrame:
    from ._load import whole
    from ._store import Store

    store = Store(path)
    try:
        with store.scan(where, columns=columns, chunksize=_READ_CHUNK, **bounds) as scan:
            return whole(scan)
    finally:
        store.close()


def _chunks(
    path: Path | None, where: dict[str, str], bounds: dict[str, Any], columns: Any, size: int
) -> Iterator[pd.DataFrame]:
    from ._load import chunks
    from ._store import Store

    store = Store(path)
    try:
        fetch = min(size, _READ_CHUNK)
        with store.scan(where, columns=columns, chunksize=fetch, **bounds) as scan:
            yield from chunks(scan, size)
    finally:
        store.close()


def recorded(
    recorder: Recorder,
    run: str | None,
    model: str | None,
    columns: Sequence[str] = COLUMNS,
) -> pd.DataFrame:
    """The calls of a run and/or model: those in the store (read filtered, without the
    answer text; only ``columns``) and this session's that are not there (the store could
    not be written)."""
    return _combined(recorder, where_of(run=run, model=model), columns)


def _combined(
    recorder: Recorder, where: dict[str, str], columns: Sequence[str] = COLUMNS
) -> pd.DataFrame:
    import pandas as pd

    from ._load import whole
    from ._store import StatsStoreError, warn_once

    df = frame([])
    store = recorder.store
    if store is not None:
        try:
            with store.scan(where, columns=columns, chunksize=_READ_CHUNK) as scan:
                df = whole(scan)
        except StatsStoreError as exc:  # the rows it did not take are still shown
            warn_once((str(store.path), "read"), f"llm_nb shows only the calls it kept in "
                      f"memory: {exc}")  # fmt: skip
    stored = set(df["call_id"])
    mine = [
        r for r in recorder.unstored_rows()
        if r["call_id"] not in stored
        and all(r.get(k) == v for k, v in where.items() if k != "session_id")
    ]  # fmt: skip
    if mine:
        df = pd.concat([df, frame(mine)], ignore_index=True) if len(df) else frame(mine)
    return df


def _columns(value: Any) -> list[str] | None:
    from .._errors import InvalidOptionError
    from ._store import STORE_COLUMNS

    if value is None:
        return None
    if isinstance(value, str) or not all(isinstance(c, str) for c in value):
        raise InvalidOptionError("columns must be a list of column names, such as ['model', "
                                 f"'e2e_s'], got {value!r}")  # fmt: skip
    unknown = [c for c in value if c not in STORE_COLUMNS]
    if unknown:
        raise InvalidOptionError(
            f"columns: {unknown[0]!r} is not a column of the call log; the columns are "
            "the docs/METRICS.md per-call columns plus 'text' and 'reasoning'"
        )
    return list(value)


def _count(name: str, value: Any, *, minimum: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        from .._errors import InvalidOptionError

        raise InvalidOptionError(
            f"{name} must be a whole number of calls >= {minimum}, got {value!r}"
        )
    return value


def where_of(**filters: Any) -> dict[str, str]:
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


def export_calls(
    path: str | Path,
    frame: Any,
    *,
    call: str | None,
    run: str | None,
    conversation: str | None,
    default: Callable[[], pd.DataFrame],
    store_path: Path | None = None,
) -> Path:
    """:func:`llm_nb.export`: a frame, or a call, run or conversation of the call log, to
    .csv / .parquet (a table) or .md / .html / .jsonl (a transcript)."""
    from .._errors import InvalidOptionError
    from . import _transcript

    if not isinstance(path, str | Path):
        raise InvalidOptionError(f"export needs a file path, got a {type(path).__name__}")
    path = Path(path)
    tables = (".csv", ".parquet")
    if path.suffix not in (*tables, *_transcript.FORMATS):
        raise InvalidOptionError(
            f"export to .csv, .parquet, .md, .html or .jsonl, not {path.suffix or path.name!r}"
        )
    given = {"frame": frame, "call": call, "run": run, "conversation": conversation}
    chosen = [k for k, v in given.items() if v is not None]
    if len(chosen) > 1:
        raise InvalidOptionError(
            f"export takes one of frame, call, run or conversation; got {' and '.join(chosen)}"
        )
    for name in ("call", "run", "conversation"):
        if given[name] is not None and not isinstance(given[name], str):
            raise InvalidOptionError(f"{name} must be a string, got a {type(given[name]).__name__}")
    if frame is not None and not hasattr(getattr(frame, "frame", frame), "columns"):
        raise InvalidOptionError(
            f"export needs a DataFrame of calls or an EvalResult, got a {type(frame).__name__}"
        )
    if path.suffix in _transcript.FORMATS:
        if not chosen:
            frame = default()
        return _transcript.write(path, call=call, run=run, conversation=conversation,
                                 frame=frame, store_path=store_path)  # fmt: skip
    if conversation is not None:
        raise InvalidOptionError("a conversation exports to .md, .html or .jsonl")
    if call is not None or run is not None:
        from ._store import Store

        where = {"call_id": call} if call is not None else {"run_id": str(run)}
        store = Store(store_path)
        try:
            with store.scan(where, chunksize=_READ_CHUNK) as scan:
                from ._load import whole

                frame = whole(scan)
        finally:
            store.close()
    elif frame is None:
        frame = default()
    return export(getattr(frame, "frame", frame), path)
