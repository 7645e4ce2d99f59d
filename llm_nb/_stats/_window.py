"""One call's hardware figures, summarized from the samples taken while it ran.

A :class:`Sample` is one reading of the sampler (see ``_sampler``); :func:`summarize` turns the
samples around one call's ``perf_counter_ns`` stamps into the columns of :data:`WINDOW_KEYS`.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable
from typing import NamedTuple

NAN = math.nan

#: The keys of :func:`summarize`, in docs/METRICS.md order.
WINDOW_KEYS = ("cpu_pct", "rss_mb", "gpu_util_pct", "gpu_mem_mb", "gpu_power_w", "gpu_energy_j")


class Sample(NamedTuple):
    """One reading at ``t_ns``; ``cpu_pct`` is the mean over ``(since_ns, t_ns]``."""

    t_ns: int
    since_ns: int
    cpu_pct: float
    rss_mb: float
    gpu_util_pct: float
    gpu_mem_mb: float
    gpu_power_w: float
    gpu_energy_mj: float


def summarize(samples: list[Sample], t0_ns: int, t1_ns: int, interval_s: float) -> dict[str, float]:
    """Summarize ``samples`` (oldest first, taken every ``interval_s``) over one call,
    ``perf_counter_ns`` stamps ``t0_ns``..``t1_ns``.

    The rule: samples stamped within ``[t0_ns, t1_ns]`` are summarized. A CPU reading is
    the mean since the previous sample, so cpu_pct weights each reading by how much of its
    interval lies in the window (the first sample after ``t1_ns``, if already taken, covers
    the window's tail). When no sample is stamped inside (a call shorter than one tick),
    the sample nearest the window stands in if it is at most one interval away: usually
    the one the thread takes 50 ms after the first acquire, or the tick just
    before the call. Otherwise every value is NaN.

    cpu_pct is percent of one core (two busy cores read 200), this process plus the sampled
    pids; rss_mb (summed over the same processes), gpu_util_pct and gpu_power_w are means;
    gpu_mem_mb is the maximum. gpu_energy_j is the increase of NVML's energy counter between
    the first and last sample in the window, plus the window's uncovered edges at the mean
    power; without the counter it is the mean power times the window's length.
    """
    if t1_ns < t0_ns:
        return dict.fromkeys(WINDOW_KEYS, NAN)
    lo = bisect.bisect_left(samples, t0_ns, key=_stamp)
    hi = bisect.bisect_right(samples, t1_ns, key=_stamp)
    inside = samples[lo:hi]
    cpu = _overlap_mean(samples[lo : hi + 1], t0_ns, t1_ns)
    if not inside:
        reach = int(interval_s * 1e9)
        near = [(t0_ns - s.t_ns, s) for s in samples[max(lo - 1, 0) : lo]]
        near += [(s.t_ns - t1_ns, s) for s in samples[hi : hi + 1]]
        near = [(d, s) for d, s in near if d <= reach]
        if not near:
            return dict.fromkeys(WINDOW_KEYS, NAN)
        inside = [min(near, key=_first)[1]]
        if math.isnan(cpu):
            cpu = inside[0].cpu_pct
    power = _mean(s.gpu_power_w for s in inside)
    return {
        "cpu_pct": cpu,
        "rss_mb": _mean(s.rss_mb for s in inside),
        "gpu_util_pct": _mean(s.gpu_util_pct for s in inside),
        "gpu_mem_mb": _max(s.gpu_mem_mb for s in inside),
        "gpu_power_w": power,
        "gpu_energy_j": _energy_j(inside, t0_ns, t1_ns, power),
    }


def _first(pair: tuple[int, Sample]) -> int:
    return pair[0]


def _overlap_mean(samples: list[Sample], t0_ns: int, t1_ns: int) -> float:
    """Mean CPU over the window, each reading weighted by its interval's overlap with it."""
    total = weight = 0.0
    for s in samples:
        overlap = min(s.t_ns, t1_ns) - max(s.since_ns, t0_ns)
        if overlap > 0 and not math.isnan(s.cpu_pct):
            total += s.cpu_pct * overlap
            weight += overlap
    return total / weight if weight else NAN


def _stamp(s: Sample) -> int:
    return s.t_ns


def _mean(values: Iterable[float]) -> float:
    known = [v for v in values if not math.isnan(v)]
    return math.fsum(known) / len(known) if known else NAN


def _max(values: Iterable[float]) -> float:
    known = [v for v in values if not math.isnan(v)]
    return max(known) if known else NAN


def _energy_j(inside: list[Sample], t0_ns: int, t1_ns: int, power_w: float) -> float:
    duration_s = max(t1_ns - t0_ns, 0) / 1e9
    counted = [s for s in inside if not math.isnan(s.gpu_energy_mj)]
    if len(counted) < 2:
        return power_w * duration_s  # NaN when power is unknown too
    first, last = counted[0], counted[-1]
    delta_j = (last.gpu_energy_mj - first.gpu_energy_mj) / 1000.0
    span_s = (last.t_ns - first.t_ns) / 1e9
    if delta_j < 0 or span_s <= 0:  # counter reset (driver reload): no honest figure
        return NAN
    edges_s = max(duration_s - span_s, 0.0)
    # Without a power reading, the counter's own average power fills the edges.
    edge_w = power_w if not math.isnan(power_w) else delta_j / span_s
    return delta_j + edge_w * edges_s
