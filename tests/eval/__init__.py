"""Tests of llm_nb/_eval, a file per module: the runner (test_runner.py), the plan and its
order (test_plan.py), the scorers (test_scorers.py), the result (test_result.py), the saved
cells (test_store.py), progress (test_progress.py), plots (test_plots.py), and the confidence
intervals of its timings (test_intervals.py). The scripted llama-server they share is
scripted_server.py."""
