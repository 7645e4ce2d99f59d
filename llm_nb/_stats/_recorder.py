"""The Recorder: hears every call (as one of a session's observers) and keeps one row per call.

On by default: a session's first call installs its recorder, unless ``LLM_NB_RECORD=0``. Rows
are appended to the on-disk store, marked with the recorder's session id, and read back from
there; only those the store did not take stay in memory (see ``_unstored``). The recorder
only consumes what it is handed: call records, and the server facts its session fetched
through the call's provider; it never calls a server. ``new_run()`` groups calls under one
run id and ``warmup()`` marks calls to leave out of summaries; both are context variables,
so they follow a call into tasks and onto llm_nb's loop thread.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import logging
import os
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ._request import columns as request_columns
from ._row import COLUMNS, call_row
from ._store import StatsStoreError, Store, cause, warn_once
from ._unstored import Unstored, as_row

if TYPE_CHECKING:
    from .._types import ChatResponse
    from ._sampler import HardwareSampler

log = logging.getLogger("llm_nb.stats")

_run_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("llm_nb_run", default=None)
_warmup: contextvars.ContextVar[bool] = contextvars.ContextVar("llm_nb_warmup", default=False)
_counter = itertools.count(1)


def _new_id(prefix: str) -> str:
    return f"{prefix}-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


def new_session_run_id() -> str:
    """A run id for the calls a session makes outside any ``new_run()``."""
    return _new_id("session")


#: (run id, provider, host, model): the calls whose server facts are kept once.
FactsKey = tuple[str, str, str, str]


@contextlib.contextmanager
def new_run(name: str | None = None) -> Iterator[str]:
    """Record the calls made inside as one run: ``with llm_nb.new_run("cmp") as run_id:``.

    A run is a named group of calls (their ``run_id`` column), which ``stats(run_id)``,
    ``summary(run_id)`` and ``history(run=...)`` read back; ``evaluate(run=...)`` names the
    run an evaluation records into. Without ``name``, a fresh ``run-...`` id is made."""
    run_id = name or _new_id("run")
    token = _run_id.set(run_id)
    try:
        yield run_id
    finally:
        _run_id.reset(token)


@contextlib.contextmanager
def warmup() -> Iterator[None]:
    """Calls inside are recorded with ``warmup=True`` and left out of summaries."""
    token = _warmup.set(True)
    try:
        yield
    finally:
        _warmup.reset(token)


class Recorder:
    """Collects rows. ``store=None`` keeps them in memory only; ``sampler=None`` records no
    hardware figures. Calls made outside any ``run()`` get ``session_run_id`` (a new one by
    default)."""

    def __init__(
        self,
        store: Store | None = None,
        sampler: HardwareSampler | None = None,
        *,
        session_run_id: str | None = None,
    ) -> None:
        self.store = store
        self.sampler = sampler
        self.session_run_id = session_run_id or new_session_run_id()
        #: Marks this recorder's rows in the store, where they are read back from.
        self.session_id = uuid.uuid4().hex
        self._unstored = Unstored()
        self._runs_seen: set[str] = set()
        self.server_facts: dict[FactsKey, dict[str, Any]] = {}
        self._lock = threading.Lock()

    # -- observer protocol ------------------------------------------------------------------

    def call_started(self, record: ChatResponse) -> None:
        record.call_id = record.call_id or f"c{next(_counter)}-{uuid.uuid4().hex[:8]}"
        record.run_id = record.run_id or _run_id.get() or self.session_run_id
        record.warmup = record.warmup or _warmup.get()
        if self.sampler is not None:
            self.sampler.acquire()

    def call_finished(self, record: ChatResponse) -> None:
        hardware = None
        t = record.trace
        if self.sampler is not None:
            try:
                if t.t_send_ns is not None and t.t_end_ns is not None:
                    hardware = self.sampler.window(t.t_send_ns, t.t_end_ns)
            finally:
                self.sampler.release()
        row = call_row(record, hardware=hardware)
        run_id = row["run_id"]
        with self._lock:
            new_run = run_id not in self._runs_seen
            self._runs_seen.add(run_id)
        stored = False
        if self.store is not None:
            try:
                if new_run:
                    self.store.append_run(run_id, self.host_facts())
                extra = {"session_id": self.session_id, **request_columns(record)}
                stored = self.store.append(row, record.text, record.reasoning, extra)
            except Exception as exc:  # the store must never break the user's call
                warn_once(
                    (str(self.store.path), "write"),
                    f"llm_nb cannot record to its stats store {self.store.path} ({cause(exc)}); "
                    "calls go on and this session's rows stay in memory (llm_nb.stats())",
                )
        if not stored:
            self._unstored.add(row, record.text, record.reasoning)

    # -- reading ----------------------------------------------------------------------------

    def rows(self) -> list[dict[str, Any]]:
        """This session's rows: read back from the store, then those it did not take."""
        stored: list[dict[str, Any]] = []
        if self.store is not None:
            with contextlib.suppress(StatsStoreError):  # unreadable: what memory holds
                names, values = self.store.query({"session_id": self.session_id}, COLUMNS)
                stored = [as_row(names, v) for v in values]
        ids = {r["call_id"] for r in stored}
        return stored + [r for r in self._unstored.rows() if r["call_id"] not in ids]

    def unstored_rows(self) -> list[dict[str, Any]]:
        """This session's rows that only memory holds (the store did not take them)."""
        return self._unstored.rows()

    def text(self, call_id: str) -> str:
        """The answer text of a call (kept apart from the frame, which has its digest)."""
        kept = self._unstored.answer(call_id)
        if kept is not None:
            return kept[0]
        if self.store is not None:
            with contextlib.suppress(StatsStoreError):
                _, found = self.store.query({"call_id": call_id}, ["text"], limit=1)
                if found:
                    return str(found[0][0])
        raise KeyError(call_id)

    def clear(self) -> None:
        """Start afresh: stats() shows only the calls made from now on."""
        with self._lock:
            self.session_id = uuid.uuid4().hex
            self._unstored.clear()

    # -- facts ------------------------------------------------------------------------------

    def host_facts(self) -> dict[str, Any]:
        from ._host import host_facts

        return dict(host_facts())

    def claim_server_facts(self, record: ChatResponse) -> FactsKey | None:
        """The key under which the facts of ``record``'s server are to be kept, if they are
        wanted: a successful call whose run, provider, host and model has none yet. Claimed
        at once, so that they are fetched once."""
        key = (record.run_id or "", record.provider, record.host, record.model)
        if record.status != "ok":
            return None
        with self._lock:
            if key in self.server_facts:
                return None
            self.server_facts[key] = {}
        return key

    def add_server_facts(self, key: FactsKey, facts: dict[str, Any]) -> None:
        """Keep what a server said about itself (fetched by the session through the call's
        provider), for the summaries, and append it to the store with the run."""
        self.server_facts[key] = facts
        if self.store is not None:
            run_id, provider_name, host, model = key
            server = {"provider": provider_name, "host": host, "model": model, **facts}
            try:
                self.store.append_run(run_id, {"server": server})
            except Exception as exc:  # best effort, like the facts themselves
                log.warning("llm_nb could not write server facts: %s", exc)


def recording_enabled() -> bool:
    return os.environ.get("LLM_NB_RECORD", "1") not in ("0", "false", "no", "off")
