"""``python -m llm_nb._embedded.watchdog PROGRAM [ARGS...]``: run a native server that dies with
its owner.

llm_nb starts the native llama-server through this small wrapper. The wrapper watches the
lifeline pipe on its stdin (see ``lifetime``): when the owner dies, it stops the server and
exits. The server also gets the parent-death signal, so it dies with the wrapper if the wrapper
itself is killed. llama-server's router-mode children follow their router the same way (they
exit when the router's end of their stdin closes).

The server shares the wrapper's process group, so the owner can signal both at once; the
wrapper ignores SIGTERM and SIGINT itself and exits with the server's status once it is gone.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys

from .lifetime import exit_when_owner_dies, parent_death_signal

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

    def stop_server() -> None:
        proc.terminate()
        try:
            proc.wait(_STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()

    exit_when_owner_dies(stop_server)
    rc = proc.wait()
    return rc if rc >= 0 else 128 - rc


if __name__ == "__main__":
    sys.exit(main())
