"""Plots of an evaluation frame; matplotlib is imported only when one is drawn.

The distributions (``ttft``, ``tps``) draw a box (the middle half of the calls), every call,
and beside the box the median's 95% confidence interval (see ``_intervals``), when there are
enough calls for one.

Each returns the Figure. A new one is made with pyplot and closed at once: that keeps it
out of pyplot's list of open figures, so Jupyter shows it once (as the returned value)
rather than twice, and a loop drawing many never trips the "too many figures" warning.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._errors import InvalidOptionError
from .._units import header
from ._intervals import median_interval

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def plot(frame: pd.DataFrame, kind: str, scorers: list[str], *, ax: Axes | None = None) -> Figure:
    draw = _KINDS.get(kind)
    if draw is None:
        raise InvalidOptionError(f"unknown plot {kind!r}; choose one of {', '.join(_KINDS)}")
    if ax is None:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
        plt.close(fig)
    else:
        fig = _figure_of(ax)
    ok = frame[frame["status"] == "ok"]
    models = list(dict.fromkeys(frame["model_id"]))
    draw(ax, ok, models, scorers)
    return fig


def _figure_of(ax: Axes) -> Figure:
    from matplotlib.figure import Figure

    fig: Any = ax.figure
    while not isinstance(fig, Figure):  # a SubFigure's root is a Figure
        fig = fig.figure
    return fig


def _distribution(column: str, title: str, label: str) -> Callable[..., None]:
    def draw(ax: Axes, ok: pd.DataFrame, models: list[str], scorers: list[str]) -> None:
        data = [ok.loc[ok["model_id"] == m, column].dropna().to_numpy() for m in models]
        positions = list(range(1, len(models) + 1))
        shown = [(p, d) for p, d in zip(positions, data, strict=True) if len(d)]
        if shown:
            ax.boxplot(
                [d for _, d in shown],
                positions=[p for p, _ in shown],
                widths=0.5,
                showfliers=False,  # every point is drawn below anyway
            )
            labelled = False
            for p, d in shown:
                # The points themselves, spread a little sideways so repeats don't hide.
                offsets = [(i / max(len(d) - 1, 1) - 0.5) * 0.3 for i in range(len(d))]
                ax.scatter([p + o for o in offsets], d, s=12, alpha=0.6, zorder=3)
                # Beside the box, the median's confidence interval: where the box shows how
                # calls spread, this says how well the median itself is known.
                found = median_interval(d)
                if not math.isnan(found.low):
                    ax.errorbar(
                        [p + 0.33],
                        [found.median],
                        yerr=[[found.median - found.low], [found.high - found.median]],
                        fmt="D",
                        markersize=4,
                        color="black",
                        capsize=3,
                        zorder=4,
                        label=None if labelled else "median, 95% interval",
                    )
                    labelled = True
            if labelled:
                ax.legend(fontsize="small")
        ax.set_xticks(positions, labels=models)
        ax.set_xlim(0.5, len(models) + 0.5)
        ax.tick_params(axis="x", labelrotation=15)
        ax.set_title(title)
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)

    return draw


def _scores(ax: Axes, ok: pd.DataFrame, models: list[str], scorers: list[str]) -> None:
    if not scorers:
        raise InvalidOptionError("this evaluation has no scores; run it with scorers=...")
    width = 0.8 / len(scorers)
    top = 0.0
    for i, name in enumerate(scorers):
        means = [ok.loc[ok["model_id"] == m, f"score_{name}"].mean() for m in models]
        xs = [j + (i - (len(scorers) - 1) / 2) * width for j in range(len(models))]
        ax.bar(xs, means, width=width, label=name)
        top = max(top, *(m for m in means if not math.isnan(m)), 0.0)
    ax.set_xticks(range(len(models)), labels=models)
    ax.tick_params(axis="x", labelrotation=15)
    if top <= 1:  # pass rates: show the whole 0..1 scale
        ax.set_ylim(0, 1.05)
    ax.set_title("Mean score per model")
    ax.set_ylabel("mean score")
    ax.legend(title="scorer")
    ax.grid(axis="y", alpha=0.3)


def _latency(ax: Axes, ok: pd.DataFrame, models: list[str], scorers: list[str]) -> None:
    for m in models:
        rows = ok[ok["model_id"] == m]
        ax.scatter(rows["completion_tokens"], rows["e2e_s"], s=16, alpha=0.7, label=m)
    ax.set_title("Latency against answer length")
    ax.set_xlabel(header("completion_tokens"))
    ax.set_ylabel(header("e2e_s"))
    ax.legend(title="model", fontsize="small")
    ax.grid(alpha=0.3)


_KINDS: dict[str, Callable[..., None]] = {
    "ttft": _distribution("ttft_s", "Time to first token", header("ttft_s")),
    "tps": _distribution("output_tps", "Output tokens per second", header("output_tps")),
    "score": _scores,
    "latency": _latency,
}
