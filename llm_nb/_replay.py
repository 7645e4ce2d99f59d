"""``llm_nb.replay``: send a recorded call's request again.

The request comes from the call log (``llm_nb._stats._request``); the new call runs inside
``replaying``, so its row names the original in ``replay_of``. A streamed call replays
streamed, a whole answer whole.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._record import ChatResponse
from ._stats._request import recorded, replaying


def model_id(request: Mapping[str, Any]) -> str:
    """The model id that reaches the recorded server: without ``@host`` when it is the
    provider's configured one (which knows its URL scheme and path, a bare host does not)."""
    from ._session import registry

    name, host, model = request["provider"], request["host"], request["model"]
    if registry().get(name).host == host:
        return f"{name}:{model}"
    return f"{name}:{model}@{host}"


def replay(call_id: str, model: str | None = None, *, path: Path | None = None) -> ChatResponse:
    """Send call ``call_id``'s recorded request again (to ``model`` instead, if given) and
    return the new answer; its row names the original in ``replay_of``. ``path``: the call
    log to read it from (default: the user's)."""
    from ._api import chat, stream

    request = recorded(call_id, path)
    target, messages, options = model or model_id(request), request["messages"], request["options"]
    with replaying(call_id):
        if request.get("stream"):
            return stream(target, messages, **options).collect()
        return chat(target, messages, **options)


async def areplay(
    call_id: str, model: str | None = None, *, path: Path | None = None
) -> ChatResponse:
    """:func:`replay`, async."""
    from ._api import achat, astream

    request = recorded(call_id, path)
    target, messages, options = model or model_id(request), request["messages"], request["options"]
    with replaying(call_id):
        if request.get("stream"):
            return await astream(target, messages, **options).collect()
        return await achat(target, messages, **options)
