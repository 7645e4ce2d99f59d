"""Tests of the test doubles and instruments, not of llm_nb (each module is marked ``doubles``
and counted apart): the wire fixtures and the Ollama contract server against the official
``openai`` and ``ollama`` clients, the fault server, the secret scan."""
