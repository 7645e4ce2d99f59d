"""The request of each call, kept in the call log so the call can be sent again.

A row's ``request`` column holds, as JSON, the model id, the messages (system prompt
first), every option that was set (seed, stop, tools, response format, ``extra``...) and
whether it streamed. Prompts can hold private data, so which calls keep theirs is a
setting, ``LLM_NB_RECORD_PROMPTS`` or ``record_prompts`` in the ``[stats]`` table of the
config file:

- ``local`` (the default): calls to a server on this machine (a loopback address);
- ``all``: every call, remote providers' included;
- ``none``: no call.

``llm_nb.replay`` reads a call's request back (:func:`recorded`) and sends it again inside
:func:`replaying`, so the new call's row names the original in ``replay_of``.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import ipaddress
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._errors import InvalidOptionError

if TYPE_CHECKING:
    from .._types import CallRequest, ChatResponse

POLICIES = ("local", "all", "none")

#: The call a call in this context replays (set by :func:`replay`).
_replay_of: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "llm_nb_replay_of", default=None
)


@contextlib.contextmanager
def replaying(call_id: str) -> Iterator[None]:
    """Calls made inside are recorded as replays of ``call_id``."""
    token = _replay_of.set(call_id)
    try:
        yield
    finally:
        _replay_of.reset(token)


def policy() -> str:
    """Which calls keep their request: ``local``, ``all`` or ``none`` (see the module)."""
    from .._config import resolve

    value = resolve(None, ("LLM_NB_RECORD_PROMPTS",), "stats", "record_prompts", "local")
    if value not in POLICIES:
        raise InvalidOptionError(
            f"LLM_NB_RECORD_PROMPTS (or record_prompts in the config file) must be one of "
            f"{', '.join(POLICIES)}, got {value!r}"
        )
    return str(value)


def is_local(host: str) -> bool:
    """Whether ``host:port`` is on this machine (a loopback address or ``localhost``)."""
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 or host.startswith("[") else host
    name = name.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def columns(record: ChatResponse) -> dict[str, Any]:
    """The store's ``request`` and ``replay_of`` values for a finished call. A wrong
    setting keeps no request (and says so once): prompts stay out unless asked for."""
    from ._store import warn_once

    out: dict[str, Any] = {"replay_of": _replay_of.get()}
    try:
        keep = policy()
    except InvalidOptionError as exc:
        warn_once(("setting", "record_prompts"), f"llm_nb records no prompt: {exc}")
        return out
    if record.request is not None and (
        keep == "all" or (keep == "local" and is_local(record.host))
    ):
        out["request"] = to_json(record, record.request)
    return out


def to_json(record: ChatResponse, request: CallRequest) -> str:
    """The ``request`` column of a call: where it went, what it said, how."""
    options = {
        f.name: getattr(request.options, f.name)
        for f in dataclasses.fields(request.options)
        if getattr(request.options, f.name) != _default(f)
    }
    return json.dumps(
        {
            "provider": record.provider,
            "host": record.host,
            "model": record.model,
            "messages": [_message(m) for m in request.messages],
            "options": options,
            "stream": record.stream,
        },
        default=_plain,
        ensure_ascii=False,
    )


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def _message(m: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "type": "function",
             "function": {"name": c.name, "arguments": c.arguments}}
            for c in m.tool_calls
        ]  # fmt: skip
    if m.tool_call_id is not None:
        out["tool_call_id"] = m.tool_call_id
    if m.name is not None:
        out["name"] = m.name
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    return str(value)


def parse(text: str) -> dict[str, Any]:
    """A stored request: ``provider``, ``host``, ``model``, ``messages`` (dicts),
    ``options`` (dict), ``stream``."""
    value = json.loads(text)
    if not isinstance(value, dict) or not isinstance(value.get("messages"), list):
        raise ValueError("not a recorded request")
    return value


def recorded(call_id: str, path: Path | None = None) -> dict[str, Any]:
    """The request of call ``call_id`` from the store, parsed; a clear error when the call
    is not there or was recorded without its request."""
    from ._store import StatsStoreError, Store

    if not isinstance(call_id, str) or not call_id:
        raise InvalidOptionError(f"replay needs a call id (a string), got {call_id!r}")
    store = Store(path)
    try:
        _, rows = store.query({"call_id": call_id}, ["request"])
    finally:
        store.close()
    if not rows:
        raise InvalidOptionError(
            f"no call {call_id!r} in the call log {store.path}; llm_nb.history() lists the calls"
        )
    if rows[-1][0] is None:
        raise InvalidOptionError(
            f"call {call_id!r} was recorded without its request: prompts are kept for local "
            'servers only, unless LLM_NB_RECORD_PROMPTS=all (or record_prompts = "all" in '
            "the [stats] table of the config file)"
        )
    try:
        return parse(rows[-1][0])
    except ValueError as exc:
        raise StatsStoreError(
            f"the request of call {call_id!r} in {store.path} cannot be read ({exc})"
        ) from None
