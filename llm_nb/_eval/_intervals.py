"""Confidence intervals for an evaluation's timings: per contender, the median with a
distribution-free interval; between two contenders, the median paired difference with one.

Why medians and order statistics: call timings are skewed and have outliers (a slow first
call, a pause on a busy machine), so a mean with a t-interval is pulled by single calls and
assumes a normal shape that a dozen calls cannot show. The interval used here,
``[x(k), x(n+1-k)]`` of the sorted values, covers the true median with probability at least
the confidence asked for, whatever the distribution, assuming only independent calls (the
binomial or sign-test interval). The probability it actually reaches is reported as
``coverage``. With too few values for the confidence asked for (fewer than 6 at 95%) there
is no such interval, and its bounds are NaN rather than a narrower, dishonest one.

Pairs: :func:`evaluate` sends the contenders round by round, so one prompt's repeat on two
contenders is a pair, sent close together in time. The median of the paired differences
leaves out what the prompt itself costs and most of the drift in background load, so it
separates two contenders with fewer calls than comparing their own intervals would.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._errors import InvalidOptionError

if TYPE_CHECKING:
    import pandas as pd

#: The timings that get intervals: seconds to the first token, per output token and per
#: call, and output tokens per second.
TIMINGS = ("ttft_s", "tpot_s", "e2e_s", "output_tps")

#: The summary's confidence level.
CONFIDENCE = 0.95


@dataclass(frozen=True, slots=True)
class Interval:
    """The median of ``n`` values and the bounds of its confidence interval (NaN when
    ``n`` is too small for one); ``coverage`` is the interval's own confidence, at least
    the one asked for."""

    n: int
    median: float
    low: float
    high: float
    coverage: float


def median_interval(values: Iterable[float], confidence: float = CONFIDENCE) -> Interval:
    """The median of ``values`` (NaN ones left out) with its distribution-free interval."""
    _check_confidence(confidence)
    xs = sorted(v for v in (float(x) for x in values) if not math.isnan(v))
    n = len(xs)
    if n == 0:
        return Interval(0, math.nan, math.nan, math.nan, math.nan)
    median = _median(xs)
    k, coverage = _rank(n, confidence)
    if k == 0:
        return Interval(n, median, math.nan, math.nan, math.nan)
    return Interval(n, median, xs[k - 1], xs[n - k], coverage)


def _rank(n: int, confidence: float) -> tuple[int, float]:
    """The largest k whose interval ``[x(k), x(n+1-k)]`` has coverage at least
    ``confidence``, and that coverage; (0, NaN) when even ``[min, max]`` falls short.

    The coverage is 1 - 2·P(B <= k-1) for B ~ Binomial(n, 1/2): the median lies outside
    only when k or fewer values fall on one side of it. Whole numbers until the division,
    so large n neither overflows nor underflows."""
    total = 2**n
    below = 0  # sum of C(n, i) for i < k, i.e. total * P(B <= k-1)
    best, best_coverage = 0, math.nan
    for k in range(1, n // 2 + 2):
        below += math.comb(n, k - 1)
        coverage = 1 - 2 * below / total
        if coverage < confidence or k > n + 1 - k:
            break
        best, best_coverage = k, coverage
    return best, best_coverage


def _median(sorted_xs: Sequence[float]) -> float:
    n = len(sorted_xs)
    mid = n // 2
    return sorted_xs[mid] if n % 2 else (sorted_xs[mid - 1] + sorted_xs[mid]) / 2


def _check_confidence(confidence: float) -> None:
    if isinstance(confidence, bool) or not isinstance(confidence, int | float):
        raise InvalidOptionError(f"confidence must be a number, got {confidence!r}")
    if not 0 < confidence < 1:
        raise InvalidOptionError(f"confidence must be between 0 and 1, e.g. 0.95; got {confidence}")


def summary_intervals(ok: pd.DataFrame) -> dict[str, float]:
    """For a contender's ok calls: ``<timing>_p50_ci_low`` and ``<timing>_p50_ci_high``,
    the 95% interval of each timing's median (NaN with fewer than 6 calls)."""
    out: dict[str, float] = {}
    for metric in TIMINGS:
        found = median_interval(ok[metric], CONFIDENCE)
        out[f"{metric}_p50_ci_low"] = found.low
        out[f"{metric}_p50_ci_high"] = found.high
    return out


#: What :func:`compare` says of a difference.
DIFFER = "differ"
WITHIN_NOISE = "within noise"
TOO_FEW = "too few pairs"


def compare(
    frame: pd.DataFrame,
    a: str,
    b: str,
    *,
    metrics: Sequence[str] = TIMINGS,
    confidence: float = CONFIDENCE,
) -> pd.DataFrame:
    """Contender ``b`` against ``a`` (model ids in ``frame``), one row per timing.

    Cells are paired by prompt and repeat; a pair counts when both calls are ok and have
    the figure. Columns: ``n_pairs``, each one's median (``a_p50``, ``b_p50``), the median
    of the differences ``b - a`` (``diff_p50``) with its distribution-free interval
    (``ci_low``, ``ci_high``, ``coverage``), and ``verdict``: ``"differ"`` when the interval
    leaves out 0, ``"within noise"`` when it holds 0 (these calls cannot tell the two
    apart; more calls may), ``"too few pairs"`` when there is no interval (fewer than 6
    pairs at 95%)."""
    import pandas as pd

    _check_confidence(confidence)
    known = list(dict.fromkeys(frame["model_id"]))
    for name, model_id in (("a", a), ("b", b)):
        if model_id not in known:
            raise InvalidOptionError(
                f"{name}={model_id!r} is not a model of this evaluation; its models: {known}"
            )
    if a == b:
        raise InvalidOptionError("compare needs two different models, got the same one twice")
    unknown = [m for m in metrics if m not in frame.columns]
    if unknown:
        raise InvalidOptionError(f"no column {unknown} in the evaluation frame")
    pairs = _pairs(frame, a, b)
    rows = []
    for metric in metrics:
        both = pairs[[f"{metric}_a", f"{metric}_b"]].dropna()
        diff = median_interval(both[f"{metric}_b"] - both[f"{metric}_a"], confidence)
        if math.isnan(diff.low):
            verdict = TOO_FEW
        elif diff.low <= 0 <= diff.high:
            verdict = WITHIN_NOISE
        else:
            verdict = DIFFER
        rows.append(
            {
                "metric": metric,
                "n_pairs": diff.n,
                "a_p50": _median(sorted(both[f"{metric}_a"])) if len(both) else math.nan,
                "b_p50": _median(sorted(both[f"{metric}_b"])) if len(both) else math.nan,
                "diff_p50": diff.median,
                "ci_low": diff.low,
                "ci_high": diff.high,
                "coverage": diff.coverage,
                "verdict": verdict,
            }
        )
    return pd.DataFrame(rows).set_index("metric")


def _pairs(frame: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """One row per (prompt, repeat) that both ``a`` and ``b`` answered ok, with each
    contender's figures suffixed ``_a`` and ``_b``. A prompt listed twice is two prompts:
    its occurrences pair up in the frame's order."""
    ok = frame[(frame["status"] == "ok") & frame["model_id"].isin([a, b])].copy()
    ok["_prompt"] = [json.dumps(p, sort_keys=True, default=repr) for p in ok["prompt"]]
    ok["_occurrence"] = ok.groupby(["model_id", "_prompt", "repeat"]).cumcount()
    key = ["_prompt", "repeat", "_occurrence"]
    left, right = ok[ok["model_id"] == a], ok[ok["model_id"] == b]
    return left.merge(right, on=key, how="inner", suffixes=("_a", "_b"))
