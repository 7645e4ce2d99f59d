"""The llama-servers this process started and has not stopped yet.

They are stopped at a normal exit (``atexit``); a process forked from this one forgets them,
since they are not its own. :func:`running_pids` lists them for the hardware sampler.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
from typing import Protocol

__all__ = ["LiveServer", "register", "running_pids", "unregister"]


class LiveServer(Protocol):
    """What is kept of a started server: its child's pid, and how to stop it."""

    @property
    def pid(self) -> int | None: ...

    def is_running(self) -> bool: ...

    def stop(self) -> None: ...


# Servers started and not yet stopped. Strong references on purpose: a server whose object was
# dropped must still be stopped at exit rather than leak a process.
_LIVE: set[LiveServer] = set()
_LIVE_LOCK = threading.Lock()
_ATEXIT_REGISTERED = False


def _stop_all() -> None:
    """At exit, stop the servers this process started. A forked child inherits this handler
    and a copy of _LIVE, but the servers are not its own: it must leave them running."""
    with _LIVE_LOCK:
        servers = list(_LIVE)
    for server in servers:
        server.stop()


def running_pids() -> list[int]:
    """Process ids of the llama-servers llm_nb started and that still run, with the processes
    they started (the native server's watchdog and its server, router children), for the
    hardware sampler, so a call's row includes the server's CPU and memory."""
    import psutil  # type: ignore[import-untyped, unused-ignore]

    with _LIVE_LOCK:
        servers = list(_LIVE)
    pids: list[int] = []
    for s in servers:
        pid = s.pid
        if pid is None or not s.is_running():
            continue
        pids.append(pid)
        with contextlib.suppress(psutil.Error):
            pids.extend(c.pid for c in psutil.Process(pid).children(recursive=True))
    return pids


def _forget_live_in_forked_child() -> None:
    # a fresh lock too: another thread of the parent may have held it at the fork
    global _LIVE_LOCK
    _LIVE_LOCK = threading.Lock()
    _LIVE.clear()


def register(server: LiveServer) -> None:
    global _ATEXIT_REGISTERED
    with _LIVE_LOCK:
        if not _ATEXIT_REGISTERED:
            atexit.register(_stop_all)
            if hasattr(os, "register_at_fork"):
                os.register_at_fork(after_in_child=_forget_live_in_forked_child)
            _ATEXIT_REGISTERED = True
        _LIVE.add(server)


def unregister(server: LiveServer) -> None:
    with _LIVE_LOCK:
        _LIVE.discard(server)
