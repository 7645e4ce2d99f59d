"""The Recorder: hears every call (through ``llm_nb._observers``) and keeps one row per call.

On by default: the first call anywhere installs the process-wide recorder, unless
``LLM_NB_RECORD=0``. Rows are kept in memory as dicts (pandas is imported only when a frame is
asked for) and appended to the on-disk store. ``new_run()`` groups calls under one run id and
``warmup()`` marks calls to leave out of summaries; both are context variables, so they follow
a call into tasks and onto llm_nb's loop thread.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .._loop import Job, submit
from .._types import ChatResponse
from ._row import call_row
from ._store import Store, cause, warn_once

if TYPE_CHECKING:
    from ._sampler import HardwareSampler

log = logging.getLogger("llm_nb.stats")

_run_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("llm_nb_run", default=None)
_warmup: contextvars.ContextVar[bool] = contextvars.ContextVar("llm_nb_warmup", default=False)
_counter = itertools.count(1)


def _new_id(prefix: str) -> str:
    return f"{prefix}-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


#: Calls made outside any ``new_run()`` belong to this process's session run.
SESSION_RUN_ID = _new_id("session")


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
    """Collects rows. ``store=None`` keeps them in memory only."""

    def __init__(self, store: Store | None = None, sampler: HardwareSampler | None = None) -> None:
        self.store = store
        self.sampler = sampler
        self.session_run_id = SESSION_RUN_ID
        self._rows: list[dict[str, Any]] = []
        self._texts: dict[str, tuple[str, str]] = {}
        self._runs_seen: set[str] = set()
        self.server_facts: dict[tuple[str, str, str, str], dict[str, Any]] = {}
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
            self._rows.append(row)
            self._texts[row["call_id"]] = (record.text, record.reasoning)
            new_run = run_id not in self._runs_seen
            self._runs_seen.add(run_id)
        if self.store is not None:
            try:
                if new_run:
                    self.store.append_run(run_id, self.host_facts())
                self.store.append(row, record.text, record.reasoning)
            except Exception as exc:  # the store must never break the user's call
                warn_once(
                    (str(self.store.path), "write"),
                    f"llm_nb cannot record to its stats store {self.store.path} ({cause(exc)}); "
                    "calls go on and this session's rows stay in memory (llm_nb.stats())",
                )
        self._schedule_server_facts(record)

    # -- reading ----------------------------------------------------------------------------

    def rows(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._rows)

    def text(self, call_id: str) -> str:
        """The answer text of a call (kept apart from the frame, which has its digest)."""
        return self._texts[call_id][0]

    def clear(self) -> None:
        with self._lock:
            self._rows.clear()
            self._texts.clear()

    # -- facts ------------------------------------------------------------------------------

    def host_facts(self) -> dict[str, Any]:
        from ._host import host_facts

        return dict(host_facts())

    def _schedule_server_facts(self, record: ChatResponse) -> None:
        key = (record.run_id or "", record.provider, record.host, record.model)
        if record.status != "ok" or key in self.server_facts:
            return
        self.server_facts[key] = {}
        # On llm_nb's own loop, not the caller's: a fetch left on the caller's loop is
        # cancelled wherever that loop is torn down (asyncio.run, a test runner), possibly
        # in the middle of opening a connection. llm_nb's loop lives as long as the process.
        job = submit(self._fetch_server_facts(key, record))
        # Keep a reference until done: a loop holds its tasks only weakly.
        _pending.add(job)
        job.future.add_done_callback(lambda _: _pending.discard(job))

    async def _fetch_server_facts(
        self, key: tuple[str, str, str, str], record: ChatResponse
    ) -> None:
        from .._registry import registry

        facts: dict[str, Any] = {"model_reported": record.model_reported}
        try:
            provider = registry().get(record.provider, record.host)
            if record.provider == "llamacpp":
                props = await provider.props()  # type: ignore[attr-defined]
                settings = props.get("default_generation_settings") or {}
                facts.update(
                    build=props.get("build_info"),
                    model_path=props.get("model_path"),
                    quantization=props.get("model_ftype"),
                    n_ctx=settings.get("n_ctx"),
                    total_slots=props.get("total_slots"),
                )
            elif record.provider == "ollama":
                show = await provider.show(record.model)  # type: ignore[attr-defined]
                details = show.get("details") or {}
                facts.update(
                    version=await provider.version(),  # type: ignore[attr-defined]
                    quantization=details.get("quantization_level"),
                    parameter_size=details.get("parameter_size"),
                    family=details.get("family"),
                    n_ctx=next(
                        (
                            v
                            for k, v in (show.get("model_info") or {}).items()
                            if k.endswith(".context_length")
                        ),
                        None,
                    ),
                )
        except Exception as exc:  # facts are best effort: the call itself succeeded
            facts["error"] = str(exc)
        facts["fetched_at"] = time.time()
        self.server_facts[key] = facts
        if self.store is not None:
            run_id, provider_name, host, model = key
            server = {"provider": provider_name, "host": host, "model": model, **facts}
            try:
                self.store.append_run(run_id, {"server": server})
            except Exception as exc:  # best effort, like the facts themselves
                log.warning("llm_nb could not write server facts: %s", exc)


_pending: set[Job] = set()

_default: Recorder | None = None
_default_lock = threading.Lock()


def recording_enabled() -> bool:
    return os.environ.get("LLM_NB_RECORD", "1") not in ("0", "false", "no", "off")


def get_recorder() -> Recorder:
    """The process-wide recorder (store in the user data dir, hardware sampler on)."""
    global _default
    with _default_lock:
        if _default is None:
            from ._sampler import get_sampler

            _default = Recorder(Store(), get_sampler())
        return _default
