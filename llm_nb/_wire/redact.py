"""Secrets kept out of messages: the configured key, and anything shaped like a key.

Servers echo keys back in errors (OpenAI: "Incorrect API key provided: sk-abc*****1234"),
masked or not; either way part of a secret.
"""

from __future__ import annotations

import re

_KEYLIKE = re.compile(r"\b(?:sk|pk|rk|key|tok|token|bearer)[-_][A-Za-z0-9_\-*.]{6,}", re.I)


def clean_message(message: str, secret: str | None = None) -> str:
    """One line, with the configured key and anything shaped like a key removed."""
    if secret:
        message = message.replace(secret, "[redacted]")
    return " ".join(redact_keylike(message).split())


def redact_keylike(text: str) -> str:
    """``text`` with anything shaped like an API key replaced by ``[redacted]``."""
    return _KEYLIKE.sub("[redacted]", text)
