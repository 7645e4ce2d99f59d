"""Child processes that die with the process that started them, even when it is SIGKILLed.

Two operating-system mechanisms, neither of which needs the owner to run any code at exit:

* **A pipe on the child's stdin** (Linux and macOS). The owner holds the only write end and
  never writes to it. When the owner dies for any reason (SIGKILL, the OOM killer, a kernel
  killed by the front end) the kernel closes that end, the child reads end-of-file and exits.
  The pipe belongs to the process, not to a thread, so it does not matter which thread
  started the child. ``spawn_owned`` starts such a child; ``exit_when_owner_dies`` is its side.
* **The parent-death signal** (Linux ``prctl(PR_SET_PDEATHSIG)``). It fires when the *thread*
  that forked the child exits, not the process, so it is only set by a single-threaded parent
  on a child it forks from its main thread: the watchdog in front of a native llama-server.

A child forked from the owner (``os.fork``, a multiprocessing ``fork`` worker) would inherit
the write end of every lifeline and keep those children alive after the owner died; an at-fork
hook closes the inherited ends in such a child.

Nothing runs at import time; only the standard library is used.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import IO

__all__ = [
    "exit_when_owner_dies",
    "exited_unreaped",
    "parent_death_signal",
    "spawn_owned",
    "term_then_kill",
    "watched",
]

_PR_SET_PDEATHSIG = 1

# Children started by spawn_owned, whose lifeline (their stdin) this process holds.
_OWNED: weakref.WeakSet[subprocess.Popen[bytes]] = weakref.WeakSet()
_AT_FORK_REGISTERED = False


def _drop_lifelines_in_forked_child() -> None:
    """After os.fork, in the child: close its copies of the lifelines, so that only the owner
    keeps its children alive. The child runs one thread here, so no lock is taken."""
    for proc in list(_OWNED):
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
    _OWNED.clear()


def parent_death_signal(sig: int | None = None) -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to send ``sig`` (SIGKILL unless given) to the child when
    its parent thread exits.

    None where the platform has no such signal. Use it only from a single-threaded parent:
    ``preexec_fn`` is unsafe after other threads exist, and the signal follows the thread.
    """
    if not sys.platform.startswith("linux"):
        return None
    if sig is None:
        sig = signal.SIGKILL  # looked up here: Windows has no SIGKILL
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()
    signum = sig

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0)
        # the parent may have died between fork and prctl; then nobody sends the signal
        if os.getppid() != parent:
            os.kill(os.getpid(), signum)

    return preexec


def spawn_owned(
    argv: Sequence[str], *, stdout: IO[bytes] | int, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start argv with stdout and stderr to ``stdout`` (a file or ``subprocess.PIPE``) and a
    lifeline pipe on its stdin (see module doc): argv must watch it, as the prebuilt server
    and ``watched(...)`` do.

    The child gets its own session, so a Ctrl-C in the terminal or kernel does not reach it
    mid-request and the owner can signal its whole process group.
    """
    global _AT_FORK_REGISTERED
    if not _AT_FORK_REGISTERED and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_drop_lifelines_in_forked_child)
        _AT_FORK_REGISTERED = True
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.PIPE,  # the lifeline: never written, closed by the kernel at our death
        stdout=stdout,
        stderr=subprocess.STDOUT,
        env=dict(env) if env is not None else None,
        close_fds=True,
        start_new_session=True,
    )
    _OWNED.add(proc)
    return proc


def watched(argv: Sequence[str]) -> list[str]:
    """argv run under the watchdog (``python -m llm_nb._embedded.watchdog``), for a program
    that does not watch a lifeline itself: a native llama-server, a build."""
    return [sys.executable, "-m", "llm_nb._embedded.watchdog", *argv]


def exit_when_owner_dies(on_exit: Callable[[], None] | None = None, code: int = 0) -> None:
    """In a child started by ``spawn_owned``: exit as soon as the owner's end of stdin closes.

    A daemon thread blocks on stdin; at end-of-file it runs on_exit (say, stopping a grandchild)
    and ends the process with ``os._exit`` so no cleanup can hang it.
    """

    def watch() -> None:
        with contextlib.suppress(OSError):
            while os.read(0, 4096):
                pass  # the owner never writes; anything read is ignored
        if on_exit is not None:
            with contextlib.suppress(Exception):
                on_exit()
        os._exit(code)

    threading.Thread(target=watch, name="llm_nb-owner-watch", daemon=True).start()


def term_then_kill(
    send: Callable[[signal.Signals], None], exited: Callable[[], bool], grace_s: float
) -> None:
    """Stop a process group: ``send`` SIGTERM, wait until ``exited()`` or ``grace_s`` seconds,
    then ``send`` SIGKILL for whatever is left (router children, a server that ignored TERM)."""
    send(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while not exited() and time.monotonic() < deadline:
        time.sleep(0.05)
    send(signal.SIGKILL)


def exited_unreaped(pid: int) -> bool:
    """Whether child pid has exited, without reaping it. An unreaped leader keeps its process
    group id from being reused, so the group can still be signalled safely."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True  # reaped already
