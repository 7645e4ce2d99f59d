"""Which llama-server program llm_nb runs: ``LLM_NB_SERVER=prebuilt|native|PATH``.

* ``prebuilt`` (the default): llama.cpp's server from the ``xllamacpp`` wheel, a dependency of
  llm_nb. Nothing to build; it starts in seconds. No router mode.
* ``native``: llama-server built from source for this CPU (see ``build``), once, in about 7-12
  minutes on 2 cores. Router mode (``--models-dir``), and the fastest on this exact CPU.
* a path: that llama-server binary (as ``LLAMA_SERVER_BIN`` has always meant; when only that
  older variable is set, it is used too).

Nothing runs at import time.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..._errors import InvalidOptionError
from ..cache import BuildError, Progress
from ..lifetime import watched
from .build import ensure_llama_server, find_llama_server

__all__ = [
    "DISTRIBUTION",
    "NATIVE_HINT",
    "SERVER_ENV",
    "RouterNeedsNativeError",
    "ServerProgram",
    "UnsupportedPlatformError",
    "check_platform",
    "installed_version",
    "native_program",
    "prebuilt_program",
    "router_program",
    "server_label",
    "server_program",
]

SERVER_ENV = "LLM_NB_SERVER"

#: The PyPI distribution holding the prebuilt server.
DISTRIBUTION = "xllamacpp"

#: How to get the native build, for messages about what the prebuilt server lacks.
NATIVE_HINT = (
    "set LLM_NB_SERVER=native to use the native llama-server "
    "(built once from source: about 7-12 minutes on 2 cores; needs cmake and a C++ compiler)"
)


def installed_version() -> str | None:
    """The installed xllamacpp version, or None when it is not installed."""
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None


class RouterNeedsNativeError(BuildError):
    """Router mode was asked for, and only the prebuilt server is at hand."""


class UnsupportedPlatformError(BuildError):
    """The local server cannot run on this operating system."""


def check_platform(os_name: str | None = None) -> None:
    """Raise one line unless this operating system can run a local server (``os.name`` unless
    given). The server has to die with its owner, which takes POSIX pipes, sessions and
    process groups (see ``lifetime``): Linux and macOS."""
    name = os.name if os_name is None else os_name
    if name != "posix":
        raise UnsupportedPlatformError(
            f"the local server needs Linux or macOS (os.name is {name!r}); point llm_nb at a "
            "running llama-server with LLM_NB_LOCAL_URL=http://HOST:PORT"
        )


@dataclass(frozen=True)
class ServerProgram:
    """A way to run llama-server: the prebuilt one (in a Python child) or a native binary."""

    kind: Literal["prebuilt", "native"]
    #: The native binary; for the prebuilt server, the Python interpreter that runs it.
    path: Path
    #: xllamacpp's version for the prebuilt server; None for a native binary.
    version: str | None = None

    @property
    def router(self) -> bool:
        """Whether this program has router mode (``--models-dir``)."""
        return self.kind == "native"

    def argv(self) -> list[str]:
        """The command to which llama-server options are appended."""
        if self.kind == "prebuilt":
            return [str(self.path), "-m", "llm_nb._embedded.binary.prebuilt"]
        return [str(self.path)]

    def launch_argv(self) -> list[str]:
        """``argv()`` behind what ties the server's life to its owner's (see ``lifetime``):
        the prebuilt child watches its lifeline itself, a native binary runs under the
        watchdog."""
        if self.kind == "prebuilt":
            return self.argv()
        return watched(self.argv())

    def __str__(self) -> str:
        if self.kind == "prebuilt":
            return f"prebuilt llama-server (xllamacpp {self.version})"
        return f"native llama-server {self.path}"


def prebuilt_program() -> ServerProgram:
    """The prebuilt server, or a one-line error when xllamacpp is not installed."""
    version = installed_version()
    if version is None:
        raise BuildError(
            f"the prebuilt llama-server needs the {DISTRIBUTION} package (wheels for glibc "
            f"Linux x86-64/aarch64 and macOS 13+): `pip install {DISTRIBUTION}` in "
            f"{sys.executable}, or on other platforms {NATIVE_HINT}"
        )
    return ServerProgram("prebuilt", Path(sys.executable), version)


def native_program(binary: Path) -> ServerProgram:
    return ServerProgram("native", Path(binary))


def _choice() -> str:
    value = os.environ.get(SERVER_ENV, "").strip()
    if value:
        return value
    return "native" if os.environ.get("LLAMA_SERVER_BIN") else "prebuilt"


def server_label() -> str:
    """The program ``LLM_NB_SERVER`` chooses, in words, for a progress line; starts nothing."""
    choice = _choice()
    if choice == "prebuilt":
        return "prebuilt llama.cpp"
    if choice == "native":
        return "llama.cpp built for this CPU"
    return f"llama-server at {choice}"


def _path_program(value: str) -> ServerProgram:
    path = Path(value).expanduser()
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise InvalidOptionError(
            f"{SERVER_ENV}={value!r}: expected prebuilt, native or the path of an executable "
            "llama-server binary"
        )
    return native_program(path)


def server_program(progress: Progress | None = None) -> ServerProgram:
    """The program ``LLM_NB_SERVER`` chooses; builds the native server first if asked to."""
    check_platform()
    choice = _choice()
    if choice == "prebuilt":
        return prebuilt_program()
    if choice == "native":
        return native_program(ensure_llama_server(progress))
    return _path_program(choice)


def router_program(progress: Progress | None = None) -> ServerProgram:
    """A native llama-server for router mode. With ``native`` chosen it is built if need be;
    with the default (``prebuilt``) one already built or on PATH is used, else a one-line error
    says how to get one, rather than starting a long build nobody asked for."""
    check_platform()
    choice = _choice()
    if choice == "native":
        return native_program(ensure_llama_server(progress))
    if choice != "prebuilt":
        return _path_program(choice)
    found = find_llama_server()
    if found is not None:
        return native_program(found)
    raise RouterNeedsNativeError(
        f"router mode (--models-dir) needs the native build: {NATIVE_HINT}"
    )
