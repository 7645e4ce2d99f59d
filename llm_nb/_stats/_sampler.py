"""The hardware sampler: a thread that reads CPU, memory and GPU while calls are measured.

A :class:`HardwareSampler` runs a daemon thread only while calls are being measured
(``acquire``/``release`` are reference-counted) and for a few seconds after the last one, so
calls made one after another reuse one thread instead of starting one inside each call's
time to first token; an idle kernel still costs nothing. About three times a second it
records

* CPU and resident memory of this process plus any extra processes (the llama-server llm_nb
  started), through psutil;
* GPU utilization, memory, power and the total-energy counter of every device (``_nvml``).

:meth:`HardwareSampler.window` summarizes the samples of one call (``_window``). Timestamps
are ``time.perf_counter_ns()``, the clock of the call traces. Without a GPU, without NVML, or
for any value a driver does not report, a column is NaN; nothing here raises.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from ._nvml import MIB, NAN, Gpus, open_nvml, system_gpus
from ._window import WINDOW_KEYS, Sample, summarize

log = logging.getLogger(__name__)

#: History kept, in seconds: long enough for any one call, bounded for a kernel left running.
_HISTORY_S = 600.0

#: How long the thread outlives the last release, waiting for the next call.
_LINGER_S = 5.0

#: Delay between starting the thread and its first sample: long enough for a CPU reading
#: (psutil's resolution is one 10 ms clock tick), short enough to land inside most calls.
_FIRST_SAMPLE_S = 0.05


class _Run:
    """One life of the sampling thread, so a stopping thread never shares state with its
    successor (psutil's CPU readings are relative to the previous read of the same object)."""

    __slots__ = ("idle_since", "stop", "thread")

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None
        #: perf_counter() of the last release that left no holder; None while held.
        self.idle_since: float | None = None


class HardwareSampler:
    """Samples CPU, memory and GPU at ``1 / interval_s`` Hz while at least one call holds it.

    ``pids``, if given, is called every tick for extra process ids to sample besides this one;
    :meth:`add_pid` does the same for a fixed process. ``nvml`` replaces the ``pynvml`` module
    (tests pass a stand-in with the same function names). The thread stops ``linger_s``
    seconds (within a tick) after the last release, unless a call acquires it again.
    """

    def __init__(
        self,
        interval_s: float = 1 / 3,
        *,
        pids: Callable[[], Iterable[int]] | None = None,
        nvml: Any | None = None,
        linger_s: float = _LINGER_S,
    ) -> None:
        self.interval_s = float(interval_s)
        self.linger_s = float(linger_s)
        self.pids = pids
        self._nvml = nvml
        self._gpus: Gpus | None = None
        self._gpus_opened = False
        self._extra: set[int] = set()
        self._samples: deque[Sample] = deque(maxlen=int(_HISTORY_S / self.interval_s) + 1)
        self._samples_lock = threading.Lock()
        self._lock = threading.Lock()
        self._active = 0
        self._run: _Run | None = None

    # -- reference counting -----------------------------------------------------------------

    @property
    def active(self) -> int:
        """How many calls hold the sampler now."""
        return self._active

    @property
    def running(self) -> bool:
        """Whether the sampling thread is alive (it outlives the last release by ``linger_s``)."""
        run = self._run
        return run is not None and run.thread is not None and run.thread.is_alive()

    def acquire(self) -> None:
        """Mark a call as being measured; starts the sampling thread unless it is running."""
        with self._lock:
            self._active += 1
            run = self._run
            if run is not None and run.thread is not None and run.thread.is_alive():
                run.idle_since = None  # lingering: keep it
                return
            # None, or a thread lost to a fork: start one.
            run = _Run()
            run.thread = threading.Thread(
                target=self._loop, args=(run,), name="llm_nb-hw-sampler", daemon=True
            )
            self._run = run
        run.thread.start()

    def release(self) -> None:
        """Undo one :meth:`acquire`; after the last, the thread stops ``linger_s`` later."""
        with self._lock:
            if self._active == 0:
                log.debug("HardwareSampler.release() without acquire()")
                return
            self._active -= 1
            run = self._run
            if self._active or run is None:
                return
            if self.linger_s > 0:
                run.idle_since = time.perf_counter()
                return
            self._run = None
        run.stop.set()

    def _retire(self, run: _Run) -> bool:
        """Whether ``run`` has lingered idle long enough; if so it is no longer the current
        run, so the next acquire starts a fresh thread rather than reuse a stopping one."""
        with self._lock:
            idle = run.idle_since
            if self._run is not run or (
                self._active == 0
                and idle is not None
                and time.perf_counter() - idle >= self.linger_s
            ):
                if self._run is run:
                    self._run = None
                return True
            return False

    # -- processes --------------------------------------------------------------------------

    def add_pid(self, pid: int) -> None:
        """Sample process ``pid`` too, until :meth:`discard_pid` (or it exits)."""
        # Rebound, not mutated: the thread iterates the set without a lock.
        self._extra = self._extra | {pid}

    def discard_pid(self, pid: int) -> None:
        self._extra = self._extra - {pid}

    def _wanted(self, own: int) -> set[int]:
        wanted = {own, *self._extra}
        if self.pids is not None:
            try:
                wanted.update(int(p) for p in self.pids())
            except Exception as exc:  # a caller's callback must not kill the thread
                log.debug("pids() failed: %r", exc)
        return wanted

    # -- the thread -------------------------------------------------------------------------

    def _loop(self, run: _Run) -> None:
        try:
            self._sample_until_stopped(run)
        except Exception as exc:  # a traceback from a daemon thread would only confuse users
            log.debug("hardware sampler stopped: %r", exc)

    def _sample_until_stopped(self, run: _Run) -> None:
        try:
            import psutil  # type: ignore[import-untyped, unused-ignore]
        except ImportError:
            psutil = None
        if not self._gpus_opened:
            self._gpus = system_gpus() if self._nvml is None else open_nvml(self._nvml)
            self._gpus_opened = True
        procs: dict[int, Any] = {}
        refused: set[int] = set()
        own = os.getpid()
        if psutil is not None:
            self._read_procs(psutil, procs, refused, own)  # primes the CPU counters
        since = time.perf_counter_ns()
        next_t = time.perf_counter() + min(self.interval_s, _FIRST_SAMPLE_S)
        failures = 0
        while not run.stop.wait(max(0.0, next_t - time.perf_counter())):
            try:
                cpu, rss = (
                    self._read_procs(psutil, procs, refused, own)
                    if psutil is not None
                    else (NAN, NAN)
                )
                gpu = self._gpus.read() if self._gpus is not None else (NAN, NAN, NAN, NAN)
                t = time.perf_counter_ns()
                sample = Sample(t, since, cpu, rss, *gpu)
                since = t
                with self._samples_lock:
                    self._samples.append(sample)
            except Exception as exc:  # keep measuring; one odd tick is not worth a traceback
                failures += 1
                if failures == 1:  # once per run: at 3 Hz a lasting fault would flood the log
                    log.debug("hardware sample failed: %r", exc)
            if run.idle_since is not None and self._retire(run):
                return
            now = time.perf_counter()
            next_t += self.interval_s
            if next_t < now:  # the process was suspended: resume the cadence, don't catch up
                next_t = now + self.interval_s

    def _read_procs(
        self, psutil: Any, procs: dict[int, Any], refused: set[int], own: int
    ) -> tuple[float, float]:
        """CPU % (of one core) and RSS (MiB) summed over the wanted processes."""
        wanted = self._wanted(own)
        for pid in [p for p in procs if p not in wanted]:
            del procs[pid]
        refused &= wanted
        cpu = 0.0
        rss = 0
        for pid in wanted:
            proc = procs.get(pid)
            new = proc is None
            if proc is None:
                if pid in refused:
                    continue
                try:
                    proc = psutil.Process(pid)
                except psutil.Error:
                    refused.add(pid)
                    continue
            try:
                # The first reading of a Process object only primes it (psutil returns 0.0),
                # so a process that just appeared adds its memory now and its CPU next tick.
                pct = proc.cpu_percent(None)
                rss += proc.memory_info().rss
            except psutil.Error:  # exited (NoSuchProcess, ZombieProcess) or not ours
                procs.pop(pid, None)
                refused.add(pid)
                continue
            if new:
                procs[pid] = proc
            else:
                cpu += pct
        return cpu, rss / MIB

    # -- reading ----------------------------------------------------------------------------

    def samples(self) -> list[Sample]:
        """A copy of the kept samples, oldest first."""
        with self._samples_lock:
            return list(self._samples)

    def window(self, t0_ns: int, t1_ns: int) -> dict[str, float]:
        """Summarize the samples of one call, ``perf_counter_ns`` stamps ``t0_ns``..``t1_ns``
        (the rule and the units: :func:`~llm_nb._stats._window.summarize`)."""
        try:
            return summarize(self.samples(), t0_ns, t1_ns, self.interval_s)
        except Exception as exc:  # the numbers are extras; the call's row must still be written
            log.debug("hardware window failed: %r", exc)
            return dict.fromkeys(WINDOW_KEYS, NAN)
