"""IPython magics: ``%load_ext llm_nb`` registers ``%%llm``, ``%llm_models`` and ``%llm_stats``.

Loading imports only IPython and traitlets (already loaded in any IPython) and this
package's small modules; httpx, pandas and ipywidgets are imported when a magic first needs
them, so ``%load_ext llm_nb`` takes milliseconds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._magics import LLMMagics

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

__all__ = ["LLMMagics", "load_ipython_extension", "unload_ipython_extension"]


def load_ipython_extension(ipython: InteractiveShell) -> None:
    """Called by ``%load_ext llm_nb``."""
    ipython.register_magics(LLMMagics(shell=ipython))


def unload_ipython_extension(ipython: InteractiveShell) -> None:
    """Called by ``%unload_ext llm_nb`` (and ``%reload_ext``): removes the magics and the
    configurable, so a reload does not leave a stale instance answering ``%config``."""
    manager = ipython.magics_manager
    magics = manager.registry.pop(LLMMagics.__name__, None)
    if magics is None:
        return
    for kind, table in magics.magics.items():
        for name in table:
            manager.magics[kind].pop(name, None)
    if magics in ipython.configurables:
        ipython.configurables.remove(magics)
