"""Untrusted text made safe for a terminal: escape sequences and control characters removed.

A terminal obeys what it is sent: an answer (or a server's error message) holding ANSI/OSC
sequences could move the cursor and overwrite what was printed, retitle the window, set the
clipboard (OSC 52) or plant a link whose text lies about its target (OSC 8). Whole sequences
are removed (so no "[31m" debris is left), then every remaining C0 control except tab and
newline, DEL, and every C1 control (U+0080 to U+009F, which terminals may read as 8-bit
CSI/OSC introducers). A carriage return goes too: it would let later text overwrite earlier.
"""

from __future__ import annotations

import re

#: Complete sequences: CSI (ESC [ … final), OSC/DCS/SOS/PM/APC (ESC ] P X ^ _ … BEL or ST),
#: and the two- or three-character escapes (ESC, intermediates, final).
_SEQUENCE = re.compile(
    r"\x1b\[[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]"
    r"|\x1b[\]PX^_][^\x07\x1b]*(?:\x07|\x1b\\)"
    r"|\x1b[\x20-\x2f]*[\x30-\x7e]"
)
#: A sequence begun at the end of what has arrived so far, which the next piece may complete.
_UNFINISHED = re.compile(
    r"\x1b(?:\[[\x30-\x3f]*[\x20-\x2f]*|[\]PX^_][^\x07\x1b]*\x1b?|[\x20-\x2f]*)\Z"
)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def strip_controls(text: str) -> str:
    """``text`` without escape sequences or control characters (tab and newline stay)."""
    return _CONTROL.sub("", _SEQUENCE.sub("", text))


class ControlStripper:
    """:func:`strip_controls` for text that arrives in pieces: a sequence split across two
    pieces is held back until it is complete, so it is removed whole."""

    def __init__(self) -> None:
        self._held = ""

    def feed(self, piece: str) -> str:
        """What can be written now of ``piece``."""
        text = self._held + piece
        unfinished = _UNFINISHED.search(text)
        cut = unfinished.start() if unfinished else len(text)
        self._held = text[cut:]
        return strip_controls(text[:cut])

    def flush(self) -> str:
        """The rest, at the end of the text (an unfinished sequence loses its controls)."""
        text, self._held = self._held, ""
        return strip_controls(text)
