"""Filling ``{name}`` in a ``%%llm`` cell from the notebook's variables.

The rules are Python's ``str.format`` rules, which notebook users already know: ``{x}``,
``{df.shape}``, ``{Out[3]}`` and ``{x:.2f}`` work; ``{{`` and ``}}`` are literal braces. Unlike
``str.format`` (and unlike IPython's own ``{}`` expansion, which leaves what it cannot
evaluate in place), anything that cannot be filled is an error, so a typo never reaches the
model as a literal ``{naem}``.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from typing import Any

from ._errors import MagicError

_BRACES_HINT = "write {{ and }} for literal braces"


class _StrictFormatter(string.Formatter):
    def get_value(self, key: int | str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        if isinstance(key, int):
            raise MagicError(
                "the cell has a field with no variable name ({} or {0}); put a name inside, "
                f"or {_BRACES_HINT}"
            )
        if key not in kwargs:
            raise MagicError(f"{{{key}}} in the cell is not a notebook variable; {_BRACES_HINT}")
        return kwargs[key]


def fill(cell: str, namespace: Mapping[str, Any]) -> str:
    """The cell with every ``{field}`` replaced from ``namespace`` (the user namespace)."""
    try:
        return _StrictFormatter().vformat(cell, (), namespace)
    except MagicError:
        raise
    except (ValueError, LookupError, AttributeError, TypeError) as exc:
        # Unbalanced braces, a bad index or attribute, a bad format spec...
        raise MagicError(f"cannot fill the cell's {{...}} fields: {exc}; {_BRACES_HINT}") from None
