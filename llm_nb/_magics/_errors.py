"""How the magics fail: one line, never a traceback flood.

IPython shows an exception through its ``_render_traceback_`` method when it has one (the
hook ipyparallel uses for remote errors). Raising these therefore marks the cell as failed
(Run All stops, nbclient reports the error) while the user sees only ``llm_nb: <message>``,
in red. No global exception hook is installed: other cells' tracebacks are untouched.
"""

from __future__ import annotations

_RED = "\x1b[31m"
_RESET = "\x1b[0m"


def one_line(message: str) -> str:
    """``llm_nb: <message>`` in red, folded onto one line whatever the message holds (a
    server's words included: their escape sequences are removed)."""
    from .._terminal import strip_controls

    return f"{_RED}llm_nb: {' '.join(strip_controls(message).split())}{_RESET}"


class MagicError(Exception):
    """A failure the user can act on from its message alone (unknown model, no server...)."""

    def _render_traceback_(self) -> list[str]:
        return [one_line(str(self))]


class StreamInterrupted(KeyboardInterrupt):
    """Raised once an interrupted answer has been stopped, shown and recorded.

    A KeyboardInterrupt still, so the kernel treats the cell as interrupted and drops the
    cells queued after it, as for any other interrupted cell.
    """

    def _render_traceback_(self) -> list[str]:
        return [one_line(str(self))]
