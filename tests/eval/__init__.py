"""Tests of llm_nb/_eval: evaluate() with its scorers, order, resume, progress and plots
(test_evaluate.py), and the confidence intervals of its timings (test_intervals.py)."""
