"""A fake OpenAI-compatible server whose models give answers of very different lengths, for
the layout tests: side-by-side columns must keep one height, their footers on one line,
whatever each answer's length.

Models (``openai:<name>@host``): ``short`` answers :data:`SHORT` (3 lines) at once; ``long``
streams :data:`LONG` (30 lines) one line every :data:`LINE_S` seconds, so a test can stop it
mid-way; ``failing`` answers HTTP 400 with :data:`ERROR_MESSAGE`. Served by
:class:`tests.faults.server.FaultServer` (``FaultServer(play)``).
"""

from __future__ import annotations

import re

from tests.browser.fake_openai import Reply, serving

SHORT = "Short answer, line 1.\n\nLine 2.\n\nLine 3, the last.\n"
LONG = "".join(f"Long answer, line {i}: the longer column.\n\n" for i in range(1, 31))
ANSWERS = {"short": SHORT, "long": LONG}
FAILING = "failing"
ERROR_MESSAGE = "the model 'failing' cannot answer (a test's fake server)"
#: Seconds between two lines of the long answer: about 6 s in all.
LINE_S = 0.2


def _reply(model: str) -> Reply | None:
    if model not in ANSWERS:
        return None
    # One piece per paragraph (a line and the blank line after it).
    lines = re.findall(r".+?(?:\n\n|$)", ANSWERS[model], flags=re.S)
    return Reply(model, lines, delay_s=LINE_S if model == "long" else 0.0)


#: The fake server's answer to every request.
play = serving([*ANSWERS, FAILING], _reply, error_message=ERROR_MESSAGE, chat_id="chatcmpl-lengths")
