"""Hardware samples taken during calls, and the facts of the host they ran on.

A :class:`HardwareSampler` runs a daemon thread only while calls are being measured
(``acquire``/``release`` are reference-counted) and for a few seconds after the last one, so
calls made one after another reuse one thread instead of starting one inside each call's
time to first token; an idle kernel still costs nothing. About three times a second it
records

* CPU and resident memory of this process plus any extra processes (the llama-server llm_nb
  started), through psutil;
* GPU utilization, memory, power and the total-energy counter through NVML (``pynvml``, from
  the optional ``nvidia-ml-py`` package), over **all** devices: memory, power and energy are
  summed and utilization is averaged, because a model split across GPUs loads all of them and
  the first device alone would under-report.

:meth:`HardwareSampler.window` summarizes the samples of one call. Timestamps are
``time.perf_counter_ns()``, the clock of the call traces. Without a GPU, without NVML, or for
any value a driver does not report, a column is NaN; nothing here raises.

:func:`host_facts` describes the machine, once per process. "MB" means MiB (2**20 bytes) and
"GB" GiB throughout, as ``nvidia-smi`` and ``free`` print them.
"""

from __future__ import annotations

import bisect
import functools
import importlib
import logging
import math
import os
import platform
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

log = logging.getLogger(__name__)

NAN = math.nan
_MIB = float(2**20)

#: The keys of :meth:`HardwareSampler.window`, in docs/METRICS.md order.
WINDOW_KEYS = ("cpu_pct", "rss_mb", "gpu_util_pct", "gpu_mem_mb", "gpu_power_w", "gpu_energy_j")

#: History kept, in seconds: long enough for any one call, bounded for a kernel left running.
_HISTORY_S = 600.0

#: How long the thread outlives the last release, waiting for the next call.
_LINGER_S = 5.0

#: Delay between starting the thread and its first sample: long enough for a CPU reading
#: (psutil's resolution is one 10 ms clock tick), short enough to land inside most calls.
_FIRST_SAMPLE_S = 0.05


class Sample(NamedTuple):
    """One reading at ``t_ns``; ``cpu_pct`` is the mean over ``(since_ns, t_ns]``."""

    t_ns: int
    since_ns: int
    cpu_pct: float
    rss_mb: float
    gpu_util_pct: float
    gpu_mem_mb: float
    gpu_power_w: float
    gpu_energy_mj: float


class _Gpus:
    """Opened NVML devices, read together. A field a device refuses once stays NaN."""

    _FIELDS = ("util", "mem", "power", "energy")

    def __init__(self, nvml: Any, handles: list[Any]) -> None:
        self.nvml = nvml
        self.handles = handles
        # Drivers answer NotSupported for power or energy on some boards; asking again every
        # tick would only raise again, and exceptions are the expensive path.
        self.supported = dict.fromkeys(self._FIELDS, True)

    def read(self) -> tuple[float, float, float, float]:
        nvml = self.nvml
        util = mem = power = energy = 0.0
        for h in self.handles:
            if self.supported["util"]:
                try:
                    util += nvml.nvmlDeviceGetUtilizationRates(h).gpu
                except Exception as exc:
                    self._refuse("util", exc)
            if self.supported["mem"]:
                try:
                    mem += nvml.nvmlDeviceGetMemoryInfo(h).used
                except Exception as exc:
                    self._refuse("mem", exc)
            if self.supported["power"]:
                try:
                    power += nvml.nvmlDeviceGetPowerUsage(h)
                except Exception as exc:
                    self._refuse("power", exc)
            if self.supported["energy"]:
                try:
                    energy += nvml.nvmlDeviceGetTotalEnergyConsumption(h)
                except Exception as exc:
                    self._refuse("energy", exc)
        ok = self.supported
        return (
            util / len(self.handles) if ok["util"] else NAN,
            mem / _MIB if ok["mem"] else NAN,
            power / 1000.0 if ok["power"] else NAN,  # mW -> W
            energy if ok["energy"] else NAN,  # mJ, converted per window
        )

    def _refuse(self, field: str, exc: Exception) -> None:
        self.supported[field] = False
        log.debug("NVML does not report GPU %s here: %r", field, exc)


def _open_nvml(nvml: Any | None) -> _Gpus | None:
    """Initialize NVML (``pynvml`` unless a stand-in is given); None where there is no GPU."""
    try:
        if nvml is None:
            nvml = importlib.import_module("pynvml")
        nvml.nvmlInit()
        count = int(nvml.nvmlDeviceGetCount())
        handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
    # Optional telemetry: a missing package, library or driver (ImportError, NVMLError,
    # OSError from ctypes) all mean "no GPU columns", never a failed call.
    except Exception as exc:
        log.debug("no GPU sampling (NVML unavailable): %r", exc)
        return None
    return _Gpus(nvml, handles) if handles else None


@functools.cache
def _system_nvml() -> _Gpus | None:
    # nvmlInit loads the driver library (tens of ms); once per process is enough.
    return _open_nvml(None)


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
        self._gpus: _Gpus | None = None
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
            self._gpus = _system_nvml() if self._nvml is None else _open_nvml(self._nvml)
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
        return cpu, rss / _MIB

    # -- reading ----------------------------------------------------------------------------

    def samples(self) -> list[Sample]:
        """A copy of the kept samples, oldest first."""
        with self._samples_lock:
            return list(self._samples)

    def window(self, t0_ns: int, t1_ns: int) -> dict[str, float]:
        """Summarize the samples of one call, ``perf_counter_ns`` stamps ``t0_ns``..``t1_ns``.

        The rule: samples stamped within ``[t0_ns, t1_ns]`` are summarized. A CPU reading is
        the mean since the previous sample, so cpu_pct weights each reading by how much of its
        interval lies in the window (the first sample after ``t1_ns``, if already taken, covers
        the window's tail). When no sample is stamped inside (a call shorter than one tick),
        the sample nearest the window stands in if it is at most one interval away: usually
        the one the thread takes 50 ms after the first :meth:`acquire`, or the tick just
        before the call. Otherwise every value is NaN.

        cpu_pct is percent of one core (two busy cores read 200), this process plus the sampled
        pids; rss_mb (summed over the same processes), gpu_util_pct and gpu_power_w are means;
        gpu_mem_mb is the maximum. gpu_energy_j is the increase of NVML's energy counter between
        the first and last sample in the window, plus the window's uncovered edges at the mean
        power; without the counter it is the mean power times the window's length.
        """
        try:
            return self._window(t0_ns, t1_ns)
        except Exception as exc:  # the numbers are extras; the call's row must still be written
            log.debug("hardware window failed: %r", exc)
            return dict.fromkeys(WINDOW_KEYS, NAN)

    def _window(self, t0_ns: int, t1_ns: int) -> dict[str, float]:
        if t1_ns < t0_ns:
            return dict.fromkeys(WINDOW_KEYS, NAN)
        samples = self.samples()
        lo = bisect.bisect_left(samples, t0_ns, key=_stamp)
        hi = bisect.bisect_right(samples, t1_ns, key=_stamp)
        inside = samples[lo:hi]
        cpu = _overlap_mean(samples[lo : hi + 1], t0_ns, t1_ns)
        if not inside:
            reach = int(self.interval_s * 1e9)
            near = [(t0_ns - s.t_ns, s) for s in samples[max(lo - 1, 0) : lo]]
            near += [(s.t_ns - t1_ns, s) for s in samples[hi : hi + 1]]
            near = [(d, s) for d, s in near if d <= reach]
            if not near:
                return dict.fromkeys(WINDOW_KEYS, NAN)
            inside = [min(near, key=_first)[1]]
            if math.isnan(cpu):
                cpu = inside[0].cpu_pct
        power = _mean(s.gpu_power_w for s in inside)
        return {
            "cpu_pct": cpu,
            "rss_mb": _mean(s.rss_mb for s in inside),
            "gpu_util_pct": _mean(s.gpu_util_pct for s in inside),
            "gpu_mem_mb": _max(s.gpu_mem_mb for s in inside),
            "gpu_power_w": power,
            "gpu_energy_j": _energy_j(inside, t0_ns, t1_ns, power),
        }


def _first(pair: tuple[int, Sample]) -> int:
    return pair[0]


def _overlap_mean(samples: list[Sample], t0_ns: int, t1_ns: int) -> float:
    """Mean CPU over the window, each reading weighted by its interval's overlap with it."""
    total = weight = 0.0
    for s in samples:
        overlap = min(s.t_ns, t1_ns) - max(s.since_ns, t0_ns)
        if overlap > 0 and not math.isnan(s.cpu_pct):
            total += s.cpu_pct * overlap
            weight += overlap
    return total / weight if weight else NAN


def _stamp(s: Sample) -> int:
    return s.t_ns


def _mean(values: Iterable[float]) -> float:
    known = [v for v in values if not math.isnan(v)]
    return math.fsum(known) / len(known) if known else NAN


def _max(values: Iterable[float]) -> float:
    known = [v for v in values if not math.isnan(v)]
    return max(known) if known else NAN


def _energy_j(inside: list[Sample], t0_ns: int, t1_ns: int, power_w: float) -> float:
    duration_s = max(t1_ns - t0_ns, 0) / 1e9
    counted = [s for s in inside if not math.isnan(s.gpu_energy_mj)]
    if len(counted) < 2:
        return power_w * duration_s  # NaN when power is unknown too
    first, last = counted[0], counted[-1]
    delta_j = (last.gpu_energy_mj - first.gpu_energy_mj) / 1000.0
    span_s = (last.t_ns - first.t_ns) / 1e9
    if delta_j < 0 or span_s <= 0:  # counter reset (driver reload): no honest figure
        return NAN
    edges_s = max(duration_s - span_s, 0.0)
    # Without a power reading, the counter's own average power fills the edges.
    edge_w = power_w if not math.isnan(power_w) else delta_j / span_s
    return delta_j + edge_w * edges_s


# -- the process-wide sampler ---------------------------------------------------------------

_sampler: HardwareSampler | None = None
_sampler_lock = threading.Lock()


def get_sampler() -> HardwareSampler:
    """The process-wide sampler (created on first use; its thread runs only while held)."""
    global _sampler
    with _sampler_lock:
        if _sampler is None:
            # Sample the llama-servers llm_nb started too: their CPU and memory are the
            # call's cost as much as this process's.
            from .._embedded.server import running_pids

            _sampler = HardwareSampler(pids=running_pids)
        return _sampler


# -- host facts -----------------------------------------------------------------------------


@functools.cache
def host_facts() -> dict[str, Any]:
    """The machine and software versions, once per process (treat the dict as read-only).

    Keys: cpu_model, cpu_cores_logical, cpu_cores_physical, ram_gb (GiB), os, arch, python,
    llm_nb, httpx (versions), gpu_name (distinct names joined by ", "), gpu_driver, gpu_count
    (None, None, 0 without a GPU). Unknown values are None.
    """
    return _host_facts(None)


def _host_facts(nvml: Any | None) -> dict[str, Any]:
    from importlib import metadata

    from .. import __version__

    try:
        import psutil  # type: ignore[import-untyped, unused-ignore]

        physical = psutil.cpu_count(logical=False)
        ram_gb: float | None = round(psutil.virtual_memory().total / 2**30, 1)
    except Exception as exc:  # psutil is a dependency, but a locked-down /proc can refuse
        log.debug("psutil host facts unavailable: %r", exc)
        physical, ram_gb = None, None
    try:
        httpx_version: str | None = metadata.version("httpx")
    except metadata.PackageNotFoundError:
        httpx_version = None
    facts: dict[str, Any] = {
        "cpu_model": _cpu_model(),
        "cpu_cores_logical": os.cpu_count(),
        "cpu_cores_physical": physical,
        "ram_gb": ram_gb,
        "os": platform.platform(),
        "arch": platform.machine() or None,
        "python": platform.python_version(),
        "llm_nb": __version__,
        "httpx": httpx_version,
        "gpu_name": None,
        "gpu_driver": None,
        "gpu_count": 0,
    }
    gpus = _system_nvml() if nvml is None else _open_nvml(nvml)
    if gpus is not None:
        try:
            names = [_text(gpus.nvml.nvmlDeviceGetName(h)) for h in gpus.handles]
            facts["gpu_name"] = ", ".join(dict.fromkeys(names))
            facts["gpu_driver"] = _text(gpus.nvml.nvmlSystemGetDriverVersion())
        except Exception as exc:
            log.debug("NVML device facts unavailable: %r", exc)
        facts["gpu_count"] = len(gpus.handles)
    return facts


def _text(value: Any) -> str:
    # nvidia-ml-py < 11.515 returns bytes, later versions str.
    return value.decode() if isinstance(value, bytes) else str(value)


def _cpu_model() -> str | None:
    """The CPU's marketing name, without spawning a process where the OS allows."""
    try:
        if sys.platform.startswith("linux"):
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                for line in f:
                    # x86 says "model name"; many ARM kernels only "Hardware" or "Model".
                    key, _, value = line.partition(":")
                    if key.strip() in ("model name", "Hardware", "Model") and value.strip():
                        return value.strip()
        elif sys.platform == "win32":
            import winreg

            with winreg.OpenKey(
                winreg.HKEY_LOCAL_MACHINE, r"HARDWARE\DESCRIPTION\System\CentralProcessor\0"
            ) as key:
                return str(winreg.QueryValueEx(key, "ProcessorNameString")[0]).strip()
        elif sys.platform == "darwin":
            # macOS has no file for it; one sysctl, once per process (host_facts is cached).
            out = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"],
                capture_output=True,
                text=True,
                timeout=2,
                check=False,
            ).stdout.strip()
            if out:
                return out
    except (OSError, subprocess.SubprocessError) as exc:
        log.debug("CPU model unavailable: %r", exc)
    return platform.processor() or None
