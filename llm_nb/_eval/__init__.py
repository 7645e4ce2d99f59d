"""Evaluation: prompts x models x repeats, scored and measured, resumable, plotted.

Public entry points (re-exported by ``llm_nb``): :func:`evaluate`, :func:`aevaluate`,
:class:`EvalResult` and the :mod:`scorers <llm_nb._eval.scorers>` module.
"""

from __future__ import annotations

from . import scorers
from ._result import EvalResult
from ._runner import aevaluate, evaluate

__all__ = ["EvalResult", "aevaluate", "evaluate", "scorers"]
