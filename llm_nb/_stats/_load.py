"""Rows read from the store, turned into pandas columns a chunk at a time.

A frame built from a list of row tuples holds every row twice at its peak: once as Python
objects (a tuple per row, an object per value) and once as columns. Here the row count is
known first (:meth:`Store.scan`), each column is allocated once with its final type, and
the rows are copied in ``chunksize`` at a time, so the Python objects of one chunk are all
that exists besides the frame. Text that repeats (run, model, provider, status...) is kept
as one string object per distinct value instead of one per row.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ._store import TEXT_COLUMNS

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from ._store import Scan

#: Distinct values remembered per text column; past that the column is treated as unique
#: per row (call ids, digests, answers), where sharing saves nothing.
_SHARED_MAX = 4096

_BOOL_COLUMNS = frozenset({"stream", "warmup"})


class _Columns:
    """Typed column arrays being filled from row chunks."""

    def __init__(
        self, names: Sequence[str], total: int, shared: list[dict[Any, Any]] | None = None
    ) -> None:
        import numpy as np

        self.names = list(names)
        self.size = 0
        self._kinds = [_kind(n) for n in self.names]
        self._arrays: list[np.ndarray[Any, Any]] = [
            np.empty(total, dtype=_DTYPES[k]) for k in self._kinds
        ]
        #: Per column, its distinct values so far (shared by the chunks of one scan).
        self.shared = shared if shared is not None else [{} for _ in self.names]

    def add(self, rows: Sequence[tuple[Any, ...]]) -> None:
        import numpy as np
        import pandas as pd

        start, stop = self.size, self.size + len(rows)
        if self._arrays and stop > len(self._arrays[0]):
            self._grow(stop)  # only if the file had more rows than it counted
        columns = list(zip(*rows, strict=True)) if rows else [() for _ in self.names]
        for j, values in enumerate(columns):
            kind, target = self._kinds[j], self._arrays[j]
            if kind == "float":
                target[start:stop] = np.array(values, dtype=np.float64)
            elif kind == "time":
                stamps = pd.to_datetime(list(values), utc=True, format="ISO8601")
                target[start:stop] = stamps.tz_convert(None).as_unit("ns").to_numpy()
            else:
                seen = self.shared[j]
                if len(seen) < _SHARED_MAX:
                    values = tuple(seen.setdefault(v, v) for v in values)
                target[start:stop] = values
        self.size = stop

    def _grow(self, size: int) -> None:
        import numpy as np

        for j, array in enumerate(self._arrays):
            grown = np.empty(max(size, 2 * len(array)), dtype=array.dtype)
            grown[: self.size] = array[: self.size]
            self._arrays[j] = grown

    def frame(self) -> pd.DataFrame:
        import pandas as pd

        data: dict[str, Any] = {}
        for name, kind, array in zip(self.names, self._kinds, self._arrays, strict=True):
            array = array[: self.size]
            if kind == "time":
                data[name] = pd.Series(array, copy=False).dt.tz_localize("UTC")
            elif name in _BOOL_COLUMNS:
                data[name] = array == 1.0
            else:
                data[name] = array
        return pd.DataFrame(data, copy=False)


_DTYPES = {"float": "float64", "time": "datetime64[ns]", "object": "object"}


def _kind(name: str) -> str:
    if name == "started_at":
        return "time"
    from ._row import COLUMNS

    if name in COLUMNS and name not in TEXT_COLUMNS:
        return "float"
    return "object"


def whole(scan: Scan) -> pd.DataFrame:
    """Every row of the scan as one frame."""
    columns = _Columns(scan.names, scan.total)
    for chunk in scan.chunks:
        columns.add(chunk)
    return columns.frame()


def chunks(scan: Scan, size: int) -> Iterator[pd.DataFrame]:
    """The rows of the scan as frames of ``size`` rows (the last may be shorter; one empty
    frame when there are no rows, so its columns are still known). The file is read in the
    scan's own smaller chunks, so a frame's rows are never all held as Python objects."""
    shared: list[dict[Any, Any]] | None = None
    remaining = scan.total
    columns: _Columns | None = None
    yielded = False
    for rows in scan.chunks:
        while rows:
            if columns is None:
                columns = _Columns(scan.names, max(1, min(size, remaining)), shared)
                shared = columns.shared
            room = size - columns.size
            columns.add(rows[:room])
            remaining -= min(room, len(rows))
            rows = rows[room:]
            if columns.size >= size:
                yield columns.frame()
                yielded, columns = True, None
    if columns is not None and columns.size:
        yield columns.frame()
    elif not yielded:
        yield _Columns(scan.names, 0).frame()
