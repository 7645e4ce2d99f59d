"""A real llama-server for the benchmarks that need one (concurrency, fidelity).

Uses llm_nb's embedded server support: ``ensure_llama_server()`` and ``ensure_model()`` honour
``LLAMA_SERVER_BIN`` and ``LLM_NB_MODEL`` (and otherwise build / fetch once into the cache).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

ALIAS = "smollm2"


@contextlib.contextmanager
def llama_server(parallel: int = 4, ctx_size: int = 4096) -> Iterator[str]:
    """A llama-server with ``-np parallel`` on a free loopback port; yields its URL."""
    from llm_nb._embedded import LlamaServer, ensure_llama_server, ensure_model

    server = LlamaServer(
        ensure_llama_server(),
        model=ensure_model(),
        alias=ALIAS,
        parallel=parallel,
        ctx_size=ctx_size,
    )
    with server.start() as running:
        yield running.url
