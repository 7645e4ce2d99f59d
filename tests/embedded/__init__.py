"""Tests of llm_nb/_embedded, the local llama-server: its build and cache, the model, which
server runs (native or prebuilt), the server process, and no server outliving its owner."""
