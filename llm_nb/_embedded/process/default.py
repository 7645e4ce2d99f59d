"""The process-wide llama-server llm_nb starts when the user configured no provider at all:
the program ``LLM_NB_SERVER`` chooses (``binary``), the bundled model (``model``), one
single-model server (``server``)."""

from __future__ import annotations

import os
import threading
from typing import Any

from ..binary.program import server_program
from ..cache import Progress
from ..model import DEFAULT_MODEL_ALIAS, ensure_model
from .server import LlamaServer

__all__ = ["default_options", "default_server"]


def default_options() -> dict[str, Any]:
    """The default server's options: alias ``"smollm2"``, 4 parallel slots so concurrent
    requests work, sharing a 4096-token context (1024 each), up to 4 threads."""
    return {
        "alias": DEFAULT_MODEL_ALIAS,
        "parallel": 4,
        "ctx_size": 4096,
        "threads": max(1, min(4, os.cpu_count() or 1)),
    }


_DEFAULT: LlamaServer | None = None
_DEFAULT_LOCK = threading.Lock()


def default_server(progress: Progress | None = None) -> LlamaServer:
    """The process-wide llama-server used when the user configured nothing.

    Starts the server ``LLM_NB_SERVER`` chooses (the prebuilt one by default; the native one is
    built on first use if chosen) with the SmolLM2 model (fetched on first use; progress to
    stderr by default): one single-model server, alias ``"smollm2"``, 4 parallel slots so
    concurrent requests work, on a free loopback port. Later calls return the same running
    server (restarting it if it died).
    """
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is not None:
            if _DEFAULT.is_running():
                return _DEFAULT
            _DEFAULT.stop()  # it died: reap it, close its log, forget it
        program = server_program(progress)
        model = ensure_model(progress)
        server = LlamaServer(program, model=model, **default_options())
        server.start()
        _DEFAULT = server
        return server
