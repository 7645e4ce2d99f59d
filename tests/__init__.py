"""llm_nb's test suite (a regular package: IPython 7 puts its own ``tests`` package on sys.path)."""
