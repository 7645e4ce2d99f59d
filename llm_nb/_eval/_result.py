"""What an evaluation returns: the per-cell frame, the per-model summary, plots.

Scores are computed here, from the saved answers, not during the run: changing scorers
(:meth:`EvalResult.rescore`) costs no calls, and a resumed run scores old and new cells
alike. A cell that did not end ``ok`` is not scored (NaN): its failure shows in the
summary's ``error_rate`` instead of pulling the mean score down.
"""

from __future__ import annotations

import html
import math
import warnings
from typing import TYPE_CHECKING, Any

from .._stats import COLUMNS
from ._intervals import summary_intervals
from ._plan import CELL_COLUMNS, Plan, ScorerSpec, call_scorer, resolve_scorers

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .. import _tables
    from . import scorers as sc


class EvalResult:
    """``frame``: one row per (prompt, model, repeat) with the prompt's columns, model_id,
    repeat, seed, answer, reasoning, error, one ``score_<name>`` column per scorer and the
    docs/METRICS.md columns. ``summary``: one row per model with the mean of each score, ``n``
    (cells) and the stats summary columns (n_ok, error_rate, ttft_s/tpot_s/e2e_s/output_tps
    mean and percentiles, throughput, host and server facts), and for each of those four
    timings the 95% confidence interval of its median (``ttft_s_p50_ci_low``,
    ``ttft_s_p50_ci_high``, ...; distribution-free, NaN with fewer than 6 calls).
    :meth:`compare` tells whether two models' timings differ. ``resumed``: how many cells
    came from the saved run rather than from calls made now."""

    def __init__(
        self, plan: Plan, cells: dict[str, dict[str, Any]], frame: pd.DataFrame, resumed: int
    ) -> None:
        self._plan = plan
        self._cells = cells
        self.run = plan.run
        self.frame = frame
        self.scorers = list(plan.scorers)
        self.summary = summarize(frame, self.scorers)
        self.resumed = resumed

    def __repr__(self) -> str:
        failed = int((self.frame["status"] != "ok").sum()) if len(self.frame) else 0
        return (
            f"<EvalResult run={self.run!r}: {len(self.frame)} cells, "
            f"{len(self._plan.models)} models, {failed} failed>"
        )

    def _repr_html_(self) -> str:
        # The table escapes its cells (model ids come from servers); the run name is the user's.
        table = self._table().html
        return f"<p><b>evaluation {html.escape(self.run)}</b>: {len(self.frame)} cells</p>{table}"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(f"{self!r}\n{self._table().text}" if len(self.summary) else repr(self))

    def _table(self) -> _tables.Table:
        from .. import _tables

        return _tables.eval_table(self.summary)

    def rescore(self, scorers: ScorerSpec) -> EvalResult:
        """The same answers scored with other scorers; no call is made."""
        has_expected = any(r.get("expected") is not None for r in self._plan.rows)
        plan = _with_scorers(self._plan, resolve_scorers(scorers, has_expected))
        return build_result(plan, self._cells, resumed=self.resumed)

    def compare(
        self,
        a: str,
        b: str,
        *,
        metrics: Sequence[str] = ("ttft_s", "tpot_s", "e2e_s", "output_tps"),
        confidence: float = 0.95,
    ) -> pd.DataFrame:
        """Model ``b`` against model ``a``, one row per timing (``ttft_s``, ``tpot_s``,
        ``e2e_s``, ``output_tps`` by default): the median of the differences ``b - a`` over
        the (prompt, repeat) pairs both answered, its distribution-free confidence interval,
        and a ``verdict``: ``"differ"`` (the interval leaves out 0), ``"within noise"`` (it
        holds 0: these calls cannot tell the two apart) or ``"too few pairs"``."""
        from ._intervals import compare

        return compare(self.frame, a, b, metrics=metrics, confidence=confidence)

    def plot(self, kind: str = "ttft", *, ax: Axes | None = None) -> Figure:
        """A matplotlib Figure: ``"ttft"`` (time to first token per model), ``"tps"``
        (output tokens/s per model), ``"score"`` (mean score per model and scorer),
        ``"latency"`` (end-to-end latency against answer length). With ``ax``, draws there."""
        from ._plots import plot

        return plot(self.frame, kind, self.scorers, ax=ax)


def _with_scorers(plan: Plan, scorers: dict[str, sc.Scorer]) -> Plan:
    from dataclasses import replace

    return replace(plan, scorers=scorers)


def build_result(plan: Plan, cells: dict[str, dict[str, Any]], *, resumed: int) -> EvalResult:
    return EvalResult(plan, cells, build_frame(plan, cells), resumed)


def build_frame(plan: Plan, cells: dict[str, dict[str, Any]]) -> pd.DataFrame:
    import pandas as pd

    callers = {name: call_scorer(fn) for name, fn in plan.scorers.items()}
    failures: dict[str, tuple[int, BaseException]] = {}
    rows = []
    for cell in plan.cells:
        saved = cells.get(cell.key)
        if saved is None:
            continue
        row: dict[str, Any] = dict(plan.rows[cell.index])
        row.update(
            model_id=cell.model_id,
            repeat=cell.repeat,
            seed=cell.seed,
            answer=saved["answer"],
            reasoning=saved.get("reasoning", ""),
            error=saved.get("error"),
        )
        row.update(saved["row"])
        for name, call in callers.items():
            row[f"score_{name}"] = math.nan
            if saved["status"] != "ok":
                continue
            try:
                row[f"score_{name}"] = _number(call(saved["answer"], row.get("expected"), row))
            except Exception as exc:  # one bad scorer must not cost the whole result
                count, first = failures.get(name, (0, exc))
                failures[name] = (count + 1, first)
        rows.append(row)
    for name, (count, first) in failures.items():
        warnings.warn(
            f"scorer {name!r} failed on {count} cell(s), scored NaN; first error: {first!r}",
            RuntimeWarning,
            stacklevel=4,
        )
    score_columns = [f"score_{name}" for name in plan.scorers]
    columns = [*plan.columns, *CELL_COLUMNS, *score_columns, *COLUMNS]
    df = pd.DataFrame(rows, columns=columns)
    df["started_at"] = pd.to_datetime(df["started_at"], utc=True, format="ISO8601")
    for col in ("stream", "warmup"):
        df[col] = df[col].astype(bool)
    for col in score_columns:
        df[col] = df[col].astype(float)
    return df


def _number(value: Any) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    # numpy scalars and the like
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"a scorer must return a number, a bool or None, not {value!r}") from exc


def summarize(frame: pd.DataFrame, scorer_names: list[str]) -> pd.DataFrame:
    """One row per model id: mean scores, cell count, then the stats summary columns."""
    import pandas as pd

    from .._session import get_recorder
    from .._stats._frames import summary as stats_summary
    from .._stats._host import host_facts

    score_columns = [f"score_{name}" for name in scorer_names]
    servers = dict(get_recorder().server_facts)
    out = []
    for model_id, group in frame.groupby("model_id", sort=False):
        row: dict[str, Any] = {"model_id": model_id}
        for col in score_columns:
            row[col] = group[col].mean()
        row["n"] = len(group)
        stats = stats_summary(group[list(COLUMNS)], host_facts(), servers)
        if len(stats):
            row.update({str(k): v for k, v in stats.iloc[0].items()})
        row.update(summary_intervals(group[group["status"] == "ok"]))
        out.append(row)
    if not out:
        return pd.DataFrame(columns=["model_id", *score_columns, "n"])
    return pd.DataFrame(out)
