"""Call observers: how the stats recorder (and anything else) hears about every call.

Providers know nothing about recording; the stream engine reports each call's start and
end here. Observers must be quick and must not raise into the call: a failing observer is
reported as a warning and the call goes on.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ._types import ChatResponse


class CallObserver(Protocol):
    def call_started(self, record: ChatResponse) -> None: ...

    def call_finished(self, record: ChatResponse) -> None: ...


_observers: list[CallObserver] = []
_default_installed = False


def _install_default() -> None:
    """Recording is on by default: the first call installs the stats recorder."""
    global _default_installed
    _default_installed = True
    try:
        from ._stats._recorder import get_recorder, recording_enabled

        if recording_enabled():
            add(get_recorder())
    except Exception as exc:  # recording must never stop a call from being made
        warnings.warn(f"llm_nb stats recording is off: {exc!r}", RuntimeWarning, stacklevel=3)


def add(observer: CallObserver) -> None:
    if observer not in _observers:
        _observers.append(observer)


def remove(observer: CallObserver) -> None:
    if observer in _observers:
        _observers.remove(observer)


def started(record: ChatResponse) -> None:
    if not _default_installed:
        _install_default()
    for obs in list(_observers):
        try:
            obs.call_started(record)
        except Exception as exc:  # an observer bug must not break the user's call
            warnings.warn(f"llm_nb observer {obs!r} failed: {exc!r}", RuntimeWarning, stacklevel=2)


def finished(record: ChatResponse) -> None:
    for obs in list(_observers):
        try:
            obs.call_finished(record)
        except Exception as exc:  # an observer bug must not break the user's call
            warnings.warn(f"llm_nb observer {obs!r} failed: {exc!r}", RuntimeWarning, stacklevel=2)
