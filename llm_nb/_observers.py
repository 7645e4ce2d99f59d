"""Call observers: how a session's recorder (and anything else) hears about every call.

Providers know nothing about recording; the stream engine reports each call's start and end
to the :class:`CallObservers` of the provider's session. Observers must be quick and must not
raise into the call: a failing observer is reported as a warning and the call goes on.

A provider that belongs to no session reports to the default session's observers. The
default session sits above the providers, so this module cannot import it: the package root,
imported before any of its modules, hands over the way to it (:func:`set_default`). So that
``import llm_nb`` stays cheap, this module imports nothing at run time but the standard
library.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Protocol

    from ._types import ChatResponse

    class CallObserver(Protocol):
        """Anything told of each call's start and end (the stats recorder, a test's probe)."""

        def call_started(self, record: ChatResponse) -> None: ...

        def call_finished(self, record: ChatResponse) -> None: ...


class CallObservers:
    """The observers of one session's calls, told of each call's start and end in order."""

    def __init__(self) -> None:
        self._observers: list[CallObserver] = []

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._observers!r})"

    def __iter__(self) -> Iterator[CallObserver]:
        return iter(list(self._observers))

    def __contains__(self, observer: object) -> bool:
        return observer in self._observers

    def add(self, observer: CallObserver) -> None:
        if observer not in self._observers:
            self._observers.append(observer)

    def remove(self, observer: CallObserver) -> None:
        if observer in self._observers:
            self._observers.remove(observer)

    def started(self, record: ChatResponse) -> None:
        for obs in list(self._observers):
            try:
                obs.call_started(record)
            except Exception as exc:  # an observer bug must not break the user's call
                warnings.warn(
                    f"llm_nb observer {obs!r} failed: {exc!r}", RuntimeWarning, stacklevel=2
                )

    def finished(self, record: ChatResponse) -> None:
        for obs in list(self._observers):
            try:
                obs.call_finished(record)
            except Exception as exc:  # an observer bug must not break the user's call
                warnings.warn(
                    f"llm_nb observer {obs!r} failed: {exc!r}", RuntimeWarning, stacklevel=2
                )


def _no_default() -> CallObservers:
    return CallObservers()


_default: Callable[[], CallObservers] = _no_default


def set_default(observers: Callable[[], CallObservers]) -> None:
    """Where the calls of providers outside any session are reported (asked at each call)."""
    global _default
    _default = observers


def default() -> CallObservers:
    """The observers of calls made by a provider outside any session: the default
    session's (made on first use)."""
    return _default()
