"""Embedded llama.cpp: build/locate llama-server, fetch the bundled model, run servers.

Importing this package is cheap: the submodules only define functions and classes.
"""

from llm_nb._embedded.build import (
    DEFAULT_MODEL_ALIAS,
    BuildError,
    BuildToolsMissingError,
    cache_dir,
    cached_llama_server_path,
    cpu_fingerprint,
    ensure_llama_server,
    ensure_model,
    find_llama_server,
)
from llm_nb._embedded.server import LlamaServer, LlamaServerError, default_server, free_port

__all__ = [
    "DEFAULT_MODEL_ALIAS",
    "BuildError",
    "BuildToolsMissingError",
    "LlamaServer",
    "LlamaServerError",
    "cache_dir",
    "cached_llama_server_path",
    "cpu_fingerprint",
    "default_server",
    "ensure_llama_server",
    "ensure_model",
    "find_llama_server",
    "free_port",
]
