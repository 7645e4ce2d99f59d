"""The stats table of a run under side-by-side answers (a ``%%llm`` cell with several models,
the compare panel): the run's calls in the answers' order, each labelled as its column. The
table itself (key columns, units, figures, escaping) is llm_nb/_tables.py's."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from .._tables import Table
    from ._calls import Call


def run_frame(calls: Sequence[Call], run_id: str) -> pd.DataFrame | None:
    """The stats rows of ``calls`` (one run), in column order, with each column's ``label``;
    None when nothing was recorded (recording is off: ``LLM_NB_RECORD=0``)."""
    from .._session import stats
    from .._tables import answers_frame

    ids = [call.record.call_id for call in calls]
    return answers_frame(stats(run_id), ids, [call.label for call in calls])


def run_table(frame: pd.DataFrame) -> Table:
    """A :func:`run_frame` as the table shown under the answers."""
    from .._tables import ANSWERS, render

    return render(frame, ANSWERS)


def show_run_table(calls: Sequence[Call], run_id: str, rich: bool) -> None:
    """Display the run's table under a cell's side-by-side answers."""
    from ._display import ipython_display

    frame = run_frame(calls, run_id)
    if frame is None:
        return
    table = run_table(frame)
    if rich:
        ipython_display()(table)
    else:
        print(table.text)
