"""Benchmarks of llm_nb against its baselines and peers: ``python -m benchmarks.run``.

Not part of the package and not timed tests: see benchmarks/README.md.
"""
