"""The Session: the state behind one use of llm_nb, and the default one the API runs on.

A :class:`Session` owns its provider registry (model ids, aliases, one provider per server),
the observers that hear each call, the stats recorder with its store and hardware sampler,
and the loop thread that sync calls run on. ``llm_nb.chat``, ``stats`` and the rest are thin
functions over the default session, made on first use (nothing at import). A test builds
its own, isolated one, and makes it the default while it runs with :func:`use_session`::

    with Session(recorder=Recorder()) as s, use_session(s):
        llm_nb.chat("llamacpp:m@127.0.0.1:8080", "Hi")
        assert len(s.recorder.rows()) == 1

After a successful call the session asks its provider for that server for the server's facts
(on its own loop, once per run, provider, host and model) and hands them to its recorder.
"""

from __future__ import annotations

import contextlib
import threading
import time
import warnings
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ._loop import Job, LoopThread, SyncIterator
from ._observers import CallObservers
from ._registry import Registry
from ._stats._recorder import FactsKey, Recorder, new_session_run_id, recording_enabled

if TYPE_CHECKING:
    import asyncio

    import pandas as pd

    from ._chats import Conversations
    from ._stats._sampler import HardwareSampler
    from ._types import ChatResponse
    from .providers.base import Provider

T = TypeVar("T")


class Session:
    """The registry, observers, recorder and loop thread of one use of llm_nb.

    ``recorder``: the stats recorder (default: one appending to the store in the user data
    dir, with the hardware sampler, made on first use). ``record``: whether calls are
    recorded (default: unless ``LLM_NB_RECORD=0``). ``server_facts``: whether the servers'
    facts (build, quantization, context size) are fetched after a successful call.
    """

    def __init__(
        self,
        *,
        recorder: Recorder | None = None,
        record: bool | None = None,
        server_facts: bool = True,
    ) -> None:
        self.run_id = recorder.session_run_id if recorder is not None else new_session_run_id()
        self.observers: CallObservers = _SessionObservers(self)
        self.registry = Registry(adopt=self._adopt)
        self.loop = LoopThread()
        self._recorder = recorder
        #: A recorder the session made is the session's to close; one handed in is not.
        self._own_recorder = recorder is None
        self._record = record
        self._server_facts = server_facts
        self._lock = threading.Lock()
        self._prepare_lock = threading.Lock()
        self._prepared = False
        #: Server-facts fetches still running, held until done (a loop holds tasks weakly).
        self._pending: set[Job] = set()
        self._closed = False
        self._conversations: Conversations | None = None

    def __repr__(self) -> str:
        return f"Session(run_id={self.run_id!r})"

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- recording --------------------------------------------------------------------------

    @property
    def recorder(self) -> Recorder:
        """The stats recorder (made on first use)."""
        with self._lock:
            if self._recorder is None:
                from ._stats._store import Store

                self._recorder = Recorder(Store(), _default_sampler(), session_run_id=self.run_id)
            return self._recorder

    @property
    def recording(self) -> bool:
        return recording_enabled() if self._record is None else self._record

    @property
    def conversations(self) -> Conversations:
        """The named conversations of ``%%llm --chat`` and the chat panels (made on first
        use; stored in this session's call log while it records)."""
        with self._lock:
            if self._conversations is None:
                from ._chats import Conversations

                self._conversations = Conversations(
                    lambda: self.recorder.store if self.recording else None
                )
            return self._conversations

    def _prepare(self) -> None:
        """Recording is on by default: the session's first call installs its recorder."""
        if self._prepared:
            return
        with self._prepare_lock:  # calls starting at once on two threads: both recorded
            if self._prepared:
                return
            try:
                if self.recording:
                    self.observers.add(self.recorder)
            except Exception as exc:  # recording must never stop a call from being made
                warnings.warn(
                    f"llm_nb stats recording is off: {exc!r}", RuntimeWarning, stacklevel=3
                )
            finally:
                self._prepared = True

    def _call_succeeded(self, record: ChatResponse) -> None:
        recorder = self._recorder
        if self._closed or not self._server_facts or recorder is None:
            return
        if recorder not in self.observers:
            return
        key = recorder.claim_server_facts(record)
        if key is None:
            return
        # On the session's own loop, not the caller's: a fetch left on the caller's loop is
        # cancelled wherever that loop is torn down (asyncio.run, a test runner), possibly
        # in the middle of opening a connection. The session's loop lives as long as it does.
        job = self.loop.submit(self._fetch_server_facts(recorder, key, record))
        self._pending.add(job)
        job.future.add_done_callback(lambda _: self._pending.discard(job))

    async def _fetch_server_facts(
        self, recorder: Recorder, key: FactsKey, record: ChatResponse
    ) -> None:
        facts: dict[str, Any] = {"model_reported": record.model_reported}
        try:
            # Through the registry's provider for that server, whose connections on this
            # loop the session closes (the caller's own instance may be dropped with them
            # open).
            provider = self.registry.get(record.provider, record.host)
            facts.update(await provider.server_facts(record.model))
        except Exception as exc:  # facts are best effort: the call itself succeeded
            facts["error"] = str(exc)
        facts["fetched_at"] = time.time()
        recorder.add_server_facts(key, facts)

    def stats(self, run_id: str | None = None) -> pd.DataFrame:
        """Every call this session recorded, one row each (METRICS.md columns)."""
        from ._stats import _frames

        return _frames.stats(self.recorder, run_id)

    def summary(self, run_id: str | None = None, *, model: str | None = None) -> pd.DataFrame:
        """One row per model per run (see :func:`llm_nb.summary`), displayed as a table of
        its key columns."""
        from . import _tables

        return _tables.shown(self._summary(run_id, model), _tables.SUMMARY_VIEW)

    def _summary(self, run_id: str | None, model: str | None) -> pd.DataFrame:
        from ._stats import _frames

        rec = self.recorder
        host, servers = rec.host_facts(), dict(rec.server_facts)
        if run_id is None and model is None:
            return _frames.summary(self.stats(), host, servers)
        where = _frames.where_of(run=run_id, model=model)
        unstored = [r for r in rec.unstored_rows() if all(r.get(k) == v for k, v in where.items())]
        if rec.store is not None and not unstored:
            # Aggregated in the store; rows only memory holds need the pandas path below.
            from ._stats import _aggregate
            from ._stats._store import StatsStoreError

            with contextlib.suppress(StatsStoreError):  # unreadable: what memory holds
                return _aggregate.summary(rec.store, where, host, servers)
        df = _frames.recorded(rec, run_id, model, _frames.SUMMARY_COLUMNS)
        return _frames.summary(df, host, servers)

    def export(
        self,
        path: str | Path,
        frame: Any = None,
        *,
        call: str | None = None,
        run: str | None = None,
        conversation: str | None = None,
    ) -> Path:
        """Write calls to ``path`` (see :func:`llm_nb.export`)."""
        from ._stats import _frames

        store = self.recorder.store
        return _frames.export_calls(
            path,
            frame,
            call=call,
            run=run,
            conversation=conversation,
            default=self.stats,
            store_path=store.path if store is not None else None,
        )

    # -- providers ---------------------------------------------------------------------------

    def _adopt(self, provider: Provider) -> None:
        """A provider the registry takes in reports its calls to this session."""
        provider.observers = self.observers

    def provider(self, model_id: str) -> tuple[Provider, str]:
        """(provider, model name) for a model id like ``llamacpp:smollm2@127.0.0.1:8080``."""
        return self.registry.resolve(model_id)

    # -- closing -----------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connections the session's providers opened on its loop, stop the loop
        thread and the fetches still running on it, and close the recorder's store."""
        if self._closed:
            return
        self._closed = True
        for job in list(self._pending):
            job.future.cancel()
        if self.loop.started:
            for p in self.registry.providers():
                with contextlib.suppress(Exception):
                    self.loop.run_sync(p.aclose(), timeout=5)
        self.loop.close()
        recorder = self._recorder
        if self._own_recorder and recorder is not None and recorder.store is not None:
            recorder.store.close()


class _SessionObservers(CallObservers):
    """A session's observers: the first call installs its recorder, and a successful one
    has the session fetch its server's facts."""

    def __init__(self, session: Session) -> None:
        super().__init__()
        self._session = session

    def started(self, record: ChatResponse) -> None:
        self._session._prepare()
        super().started(record)

    def finished(self, record: ChatResponse) -> None:
        super().finished(record)
        if record.status == "ok":
            self._session._call_succeeded(record)


def _default_sampler() -> HardwareSampler:
    # Sample the llama-servers llm_nb started too: their CPU and memory are the call's cost
    # as much as this process's.
    from ._embedded.process.live import running_pids
    from ._stats._sampler import HardwareSampler

    return HardwareSampler(pids=running_pids)


# -- the default session -----------------------------------------------------------------------

_default: Session | None = None
_default_lock = threading.Lock()


def default_session() -> Session:
    """The session ``llm_nb.chat`` and the rest run on (made on first use)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Session()
        return _default


@contextlib.contextmanager
def use_session(session: Session) -> Iterator[Session]:
    """Make ``session`` the default inside the block (the previous one again after it)."""
    global _default
    with _default_lock:
        previous, _default = _default, session
    try:
        yield session
    finally:
        with _default_lock:
            _default = previous


def default_observers() -> CallObservers:
    """The default session's observers: where providers outside any session report."""
    return default_session().observers


# Thin accessors onto the default session, for the API, the magics and the panels.


def registry() -> Registry:
    """The default session's provider registry."""
    return default_session().registry


def get_recorder() -> Recorder:
    """The default session's stats recorder."""
    return default_session().recorder


def get_loop() -> asyncio.AbstractEventLoop:
    """The default session's loop (its thread started on first use)."""
    return default_session().loop.get_loop()


def in_loop_thread() -> bool:
    return default_session().loop.in_loop_thread()


def run_sync(coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Run ``coro`` on the default session's loop and wait for its result from any thread."""
    return default_session().loop.run_sync(coro, timeout)


def submit(coro: Coroutine[Any, Any, Any]) -> Job:
    """Schedule ``coro`` on the default session's loop without waiting."""
    return default_session().loop.submit(coro)


def iterate_sync(aiter_factory: Callable[[], AsyncIterator[Any]]) -> SyncIterator:
    """Iterate an async iterator, run on the default session's loop, from sync code."""
    return default_session().loop.iterate(aiter_factory)


def stats(run_id: str | None = None) -> pd.DataFrame:
    """Every call recorded in this process, one row each (METRICS.md columns)."""
    return default_session().stats(run_id)


def summary(run_id: str | None = None, *, model: str | None = None) -> pd.DataFrame:
    """One row per model per run: n_ok, n_error, n_cancelled (user stops, not in error_rate),
    error_rate, ttft/tpot/e2e/output_tps mean, p50, p90, p95, p99 and max, throughput;
    warm-up calls excluded. Without arguments, this session's calls; with ``run_id`` and/or
    ``model``, every recorded call of that run or model, this session's or not, read
    filtered from the store. The frame holds every column; it displays as a table of the
    key ones (units in the headers), and ``pandas.DataFrame(frame)`` displays them all."""
    return default_session().summary(run_id, model=model)


def export(
    path: str | Path,
    frame: Any = None,
    *,
    call: str | None = None,
    run: str | None = None,
    conversation: str | None = None,
) -> Path:
    """Write calls to ``path``, by its suffix: ``.csv`` or ``.parquet`` (a table of calls),
    ``.md`` or ``.html`` (a readable transcript: prompts, answers and figures) or
    ``.jsonl`` (one JSON object per call, for other tools). What is written: ``frame`` (a
    frame of calls, or an EvalResult for an evaluation), or from the call log one ``call``
    (its id), one ``run`` or one ``conversation`` (a ``%%llm --chat`` name); by default
    this session's calls (:func:`stats`)."""
    return default_session().export(path, frame, call=call, run=run, conversation=conversation)
