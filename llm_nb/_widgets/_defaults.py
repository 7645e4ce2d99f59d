"""The default model, shared by the model picker, the panels and ``%%llm``.

``%%llm`` reads ``LLMMagics.default_model`` (a traitlet on the magics instance the shell has
registered). Choosing a model in the picker therefore sets three things: that trait on the
live instance, if the extension is loaded; ``shell.config.LLMMagics.default_model``, which a
later ``%load_ext llm_nb`` (or ``%reload_ext``) reads when it creates its instance, so a
choice made before the extension is loaded still applies; and a module-level default for
panels used outside IPython. ``%config LLMMagics.default_model = ...`` changes the live
instance, which panels read first, so the two stay in agreement.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

#: The picker's last choice (the default when no IPython shell is running).
_chosen: str | None = None
#: Who wants to hear of a new default (see :func:`watch_default`), held weakly.
_watchers: list[weakref.WeakMethod[Callable[[], None]]] = []
#: Shells and magics instances already watched, so each is hooked once.
_hooked: weakref.WeakSet[Any] = weakref.WeakSet()

#: The model everything falls back to: llm_nb's bundled llama-server.
FALLBACK = "local"


def _shell() -> Any:
    from IPython import get_ipython

    return get_ipython()


def _magics(shell: Any) -> Any:
    """The ``LLMMagics`` instance registered in ``shell``, or None before ``%load_ext``."""
    manager = getattr(shell, "magics_manager", None)
    if manager is None:
        return None
    return manager.registry.get("LLMMagics")


def default_model() -> str:
    """The model a panel uses when none is given: ``%%llm``'s default when the extension is
    loaded, else the picker's last choice, else ``local``."""
    shell = _shell()
    magics = _magics(shell) if shell is not None else None
    if magics is not None:
        return str(magics.default_model or FALLBACK)
    return _chosen or FALLBACK


def set_default_model(model_id: str) -> None:
    """Make ``model_id`` the default of ``%%llm`` (now, and once the extension is loaded) and
    of the panels."""
    global _chosen
    _chosen = model_id
    shell = _shell()
    if shell is None:
        return
    magics = _magics(shell)
    if magics is not None:
        magics.default_model = model_id
    config = getattr(shell, "config", None)
    if config is not None:
        config.LLMMagics.default_model = model_id
    _notify()


def watch_default(callback: Callable[[], None]) -> None:
    """Call ``callback`` (a bound method: it is held weakly, so a panel that is gone is not
    kept alive) whenever the default may have changed: a choice in a picker, an assignment
    to ``LLMMagics.default_model`` (``%config`` included), and after each cell, which also
    covers a ``%reload_ext`` that replaced the magics instance."""
    _watchers.append(weakref.WeakMethod(callback))
    _hook()


def _hook() -> None:
    """Observe the shell's cells and the current magics instance's trait, once each."""
    shell = _shell()
    if shell is None:
        return
    if shell not in _hooked:
        shell.events.register("post_run_cell", _after_cell)
        _hooked.add(shell)
    magics = _magics(shell)
    if magics is not None and magics not in _hooked:
        magics.observe(_trait_changed, "default_model")
        _hooked.add(magics)


def _after_cell(result: Any) -> None:
    _hook()
    _notify()


def _trait_changed(change: Any) -> None:
    _notify()


def _notify() -> None:
    alive = []
    for ref in _watchers:
        callback = ref()
        if callback is not None:
            alive.append(ref)
            callback()
    _watchers[:] = alive


def throttle_s(given: float | None) -> float:
    """Seconds between redraws: ``given``, else ``LLMMagics.throttle_s``, else 0.1."""
    if given is not None:
        return max(0.0, given)
    shell = _shell()
    magics = _magics(shell) if shell is not None else None
    return float(magics.throttle_s) if magics is not None else 0.1
