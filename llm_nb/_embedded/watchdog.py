"""``python -m llm_nb._embedded.watchdog PROGRAM [ARGS...]``: run a program that dies with its
owner.

llm_nb starts the native llama-server, and the steps of its build, through this small wrapper.
The wrapper watches the lifeline pipe on its stdin (see ``lifetime``): when the owner dies, it
stops the program and everything else in its process group (router children, compilers) and
exits. The program also gets the parent-death signal, so it dies with the wrapper if the
wrapper itself is killed; llama-server's router-mode children then follow their router (they
exit when the router's end of their stdin closes).

The server shares the wrapper's process group, so the owner can signal both at once; the
wrapper ignores SIGTERM and SIGINT itself and exits with the server's status once it is gone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys

from .lifetime import exit_when_owner_dies, parent_death_signal, term_then_kill

_STOP_GRACE_S = 5.0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m llm_nb._embedded.watchdog PROGRAM [ARGS...]", file=sys.stderr)
        return 2
    try:
        proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, preexec_fn=parent_death_signal(signal.SIGKILL)
        )
    except OSError as exc:
        print(f"cannot run {args[0]}: {exc.strerror or exc}", file=sys.stderr, flush=True)
        return 127
    # After the fork: the server keeps the default dispositions, the wrapper outlives a
    # group-wide SIGTERM long enough to report the server's exit status.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    # As a session leader (how llm_nb starts it) the wrapper stops its whole process group:
    # router children, or a build's compilers. Run by hand, it stops only its child.
    leader = os.getpgrp() == os.getpid()

    def signal_all(sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            if leader:
                os.killpg(0, sig)
            else:
                os.kill(proc.pid, sig)

    def stop_all() -> None:
        # SIGTERM is ignored by the wrapper itself; the group's SIGKILL ends it too
        term_then_kill(signal_all, lambda: proc.poll() is not None, _STOP_GRACE_S)

    exit_when_owner_dies(stop_all)
    rc = proc.wait()
    return rc if rc >= 0 else 128 - rc


if __name__ == "__main__":
    sys.exit(main())
