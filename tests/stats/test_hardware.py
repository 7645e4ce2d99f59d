"""HardwareSampler and host_facts: real psutil readings of this process and a child, a fake
NVML module for the GPU columns (this machine has no GPU), and the thread's life cycle."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from llm_nb._stats._host import host_facts, host_facts_from
from llm_nb._stats._sampler import HardwareSampler
from llm_nb._stats._window import WINDOW_KEYS

GPU_KEYS = ("gpu_util_pct", "gpu_mem_mb", "gpu_power_w", "gpu_energy_j")
THREAD_NAME = "llm_nb-hw-sampler"
MIB = 2**20

has_real_gpu = shutil.which("nvidia-smi") is not None or Path("/proc/driver/nvidia").exists()


@pytest.fixture
def sampler() -> Iterator[HardwareSampler]:
    s = HardwareSampler()
    s.acquire()
    time.sleep(0.1)  # past the first sample, so windows below start with a primed thread
    try:
        yield s
    finally:
        s.release()


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def measure(s: HardwareSampler, seconds: float, busy: bool = False) -> dict[str, float]:
    t0 = time.perf_counter_ns()
    if busy:
        worker = threading.Thread(target=spin, args=(seconds,))
        worker.start()
        worker.join()
    else:
        time.sleep(seconds)
    return s.window(t0, time.perf_counter_ns())


def measure_with_truth(
    s: HardwareSampler, seconds: float, busy: bool = False, child: psutil.Process | None = None
) -> tuple[float, float]:
    """The window's cpu_pct and the CPU time the kernel accounted over the same window, as
    percent of one core. The shared test machine may be loaded, so a busy thread can get less
    than a whole core; the sampler must agree with the kernel either way."""
    c0 = sum(child.cpu_times()[:2]) if child else 0.0
    p0 = time.process_time()
    w0 = time.perf_counter()
    window = measure(s, seconds, busy)
    wall = time.perf_counter() - w0
    used = time.process_time() - p0 + (sum(child.cpu_times()[:2]) - c0 if child else 0.0)
    return window["cpu_pct"], used / wall * 100


def sampler_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == THREAD_NAME}


# -- CPU and memory ---------------------------------------------------------------------------


def test_busy_thread_shows_as_cpu_and_idle_does_not(sampler: HardwareSampler) -> None:
    busy, busy_truth = measure_with_truth(sampler, 1.0, busy=True)
    idle, idle_truth = measure_with_truth(sampler, 1.0)
    assert busy == pytest.approx(busy_truth, abs=15)  # ~100 on an idle machine
    assert idle == pytest.approx(idle_truth, abs=10)
    assert busy > 2 * idle + 10


def test_rss_matches_psutil(sampler: HardwareSampler) -> None:
    window = measure(sampler, 0.8)
    rss = psutil.Process().memory_info().rss / MIB
    assert window["rss_mb"] == pytest.approx(rss, rel=0.1)


def test_window_keys_and_never_raises() -> None:
    s = HardwareSampler()
    empty = s.window(0, 10)  # never acquired: nothing measured
    assert tuple(empty) == WINDOW_KEYS
    assert all(math.isnan(v) for v in empty.values())
    s.acquire()
    try:
        time.sleep(0.5)
        now = time.perf_counter_ns()
        assert all(math.isnan(v) for v in s.window(now, now - 10**9).values())  # reversed
        assert all(math.isnan(v) for v in s.window(now - 3600 * 10**9, now - 3599 * 10**9).values())
    finally:
        s.release()


def test_short_call_gets_the_neighbouring_sample(sampler: HardwareSampler) -> None:
    time.sleep(0.4)
    t0 = time.perf_counter_ns()
    time.sleep(0.01)  # far shorter than one tick: usually no sample inside
    window = sampler.window(t0, time.perf_counter_ns())
    assert window["rss_mb"] > 0
    assert not math.isnan(window["cpu_pct"])


# -- extra processes --------------------------------------------------------------------------


def test_extra_pid_cpu_counts_and_its_exit_is_survived() -> None:
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # past the interpreter's start-up
        s = HardwareSampler(pids=lambda: [child.pid])
        s.acquire()
        try:
            time.sleep(0.1)
            cpu, truth = measure_with_truth(s, 1.2, child=psutil.Process(child.pid))
            assert cpu == pytest.approx(truth, abs=15)  # ~100 on an idle machine
            assert cpu > 20  # the child's CPU is counted at all (this process sleeps)
            with_child = measure(s, 0.4)
            own_rss = psutil.Process().memory_info().rss / MIB
            assert with_child["rss_mb"] > own_rss  # the child's memory is added

            child.kill()
            child.wait()
            n_before = len(s.samples())
            after = measure(s, 1.0)
            assert len(s.samples()) > n_before
            assert s.running
            assert after["cpu_pct"] < 10
            assert after["rss_mb"] == pytest.approx(own_rss, rel=0.1)
        finally:
            s.release()
    finally:
        child.kill()
        child.wait()


def test_failing_pids_callback_and_unknown_pid_are_ignored() -> None:
    def pids() -> list[int]:
        raise RuntimeError("callback broke")

    s = HardwareSampler(pids=pids)
    s.add_pid(2**22 + 12345)  # above Linux's pid_max default: no such process
    s.acquire()
    try:
        window = measure(s, 0.8)
    finally:
        s.release()
    assert window["rss_mb"] == pytest.approx(psutil.Process().memory_info().rss / MIB, rel=0.1)


# -- GPU --------------------------------------------------------------------------------------


@pytest.mark.skipif(has_real_gpu, reason="this machine has an NVIDIA GPU")
def test_gpu_columns_are_nan_without_a_gpu(sampler: HardwareSampler) -> None:
    window = measure(sampler, 0.5)
    assert all(math.isnan(window[k]) for k in GPU_KEYS)
    assert not math.isnan(window["cpu_pct"]) and not math.isnan(window["rss_mb"])


class NVMLError(Exception):
    pass


class FakeNvml:
    """pynvml's functions for two devices; each energy read advances that device's counter."""

    NVMLError = NVMLError

    def __init__(self, *, energy: bool = True, init_fails: bool = False) -> None:
        self.energy = energy
        self.init_fails = init_fails
        self.counters = [5_000_000, 9_000_000]  # mJ since driver load
        self.step_mj = [1000, 500]

    def nvmlInit(self) -> None:
        if self.init_fails:
            raise NVMLError("NVML Shared Library Not Found")

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetUtilizationRates(self, h: int) -> Any:
        return type("Util", (), {"gpu": (40, 60)[h], "memory": 5})()

    def nvmlDeviceGetMemoryInfo(self, h: int) -> Any:
        return type("Mem", (), {"used": (1000, 3000)[h] * MIB, "total": 80_000 * MIB})()

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:
        return (100_000, 50_000)[h]  # mW

    def nvmlDeviceGetTotalEnergyConsumption(self, h: int) -> int:
        if not self.energy:
            raise NVMLError("Not Supported")
        self.counters[h] += self.step_mj[h]
        return self.counters[h]

    def nvmlDeviceGetName(self, h: int) -> str | bytes:
        return b"Fake H100" if h == 0 else "Fake H100"

    def nvmlSystemGetDriverVersion(self) -> str:
        return "550.54.15"


def run_fake(nvml: Any, seconds: float = 1.6) -> HardwareSampler:
    s = HardwareSampler(nvml=nvml)
    s.acquire()
    time.sleep(seconds)
    s.release()
    return s


def test_fake_nvml_values_flow_into_the_window() -> None:
    s = run_fake(FakeNvml())
    samples = s.samples()
    assert len(samples) >= 4
    inner = samples[1:]
    window = s.window(inner[0].t_ns, inner[-1].t_ns)
    assert window["gpu_util_pct"] == pytest.approx(50)  # mean over devices
    assert window["gpu_mem_mb"] == pytest.approx(4000)  # summed, MiB
    assert window["gpu_power_w"] == pytest.approx(150)  # summed, mW -> W
    # Both counters advance 1.5 J per sample together: the delta, in joules.
    assert window["gpu_energy_j"] == pytest.approx(1.5 * (len(inner) - 1))
    # 0.1 s before the first and after the last sample are filled in at the mean 150 W.
    wider = s.window(inner[0].t_ns - 10**8, inner[-1].t_ns + 10**8)
    assert wider["gpu_energy_j"] == pytest.approx(1.5 * (len(inner) - 1) + 150 * 0.2)


def test_fake_nvml_without_energy_counter_integrates_power() -> None:
    s = run_fake(FakeNvml(energy=False))
    samples = s.samples()
    t0, t1 = samples[1].t_ns, samples[-1].t_ns
    window = s.window(t0, t1)
    assert window["gpu_power_w"] == pytest.approx(150)
    assert window["gpu_energy_j"] == pytest.approx(150 * (t1 - t0) / 1e9)


def test_failing_nvml_init_gives_nan_and_no_warning() -> None:
    for nvml in (FakeNvml(init_fails=True), object()):
        s = run_fake(nvml, seconds=0.5)
        samples = s.samples()
        window = s.window(samples[0].t_ns, samples[-1].t_ns)
        assert all(math.isnan(window[k]) for k in GPU_KEYS)
        assert window["rss_mb"] > 0


def test_fake_nvml_host_facts() -> None:
    facts = host_facts_from(FakeNvml())
    assert facts["gpu_count"] == 2
    assert facts["gpu_name"] == "Fake H100"  # bytes decoded, duplicates named once
    assert facts["gpu_driver"] == "550.54.15"


# -- the thread's life cycle ------------------------------------------------------------------


def test_acquire_release_reference_counting() -> None:
    before = sampler_threads()
    s = HardwareSampler(linger_s=0)  # stops at the last release (lingering: the next test)
    s.acquire()
    s.acquire()
    started = sampler_threads() - before
    assert len(started) == 1 and s.active == 2
    (thread,) = started
    s.release()
    time.sleep(0.4)
    assert thread.is_alive() and s.active == 1
    n = len(s.samples())
    assert n >= 1

    s.release()
    thread.join(timeout=1.0)
    assert not thread.is_alive() and not s.running and s.active == 0
    time.sleep(0.5)
    assert len(s.samples()) <= n + 1  # stopped: at most the tick in flight at release
    s.release()  # one too many: ignored
    assert s.active == 0

    s.acquire()  # and it starts again
    try:
        time.sleep(0.5)
        assert s.running and len(s.samples()) > n + 1
    finally:
        s.release()


def test_thread_lingers_after_the_last_release_and_is_reused() -> None:
    before = sampler_threads()
    s = HardwareSampler(linger_s=1.0)
    s.acquire()
    s.release()
    (thread,) = sampler_threads() - before
    time.sleep(0.5)
    # Idle but within the linger: a new call reuses the running thread, starts none.
    assert thread.is_alive() and s.running and s.active == 0
    s.acquire()
    assert sampler_threads() - before == {thread} and s.active == 1
    time.sleep(1.5)  # held: no linger clock runs while a call holds it
    assert thread.is_alive()
    n = len(s.samples())
    s.release()
    thread.join(timeout=1.0 + 2 * s.interval_s)
    # Stopped within a tick of the linger's end, after sampling through it.
    assert not thread.is_alive() and not s.running
    assert len(s.samples()) >= n + 2
    s.acquire()  # a fresh thread after it has stopped
    try:
        (fresh,) = sampler_threads() - before - {thread}
        assert fresh.is_alive()
    finally:
        s.release()


def test_sampling_rate_is_about_3_hz(sampler: HardwareSampler) -> None:
    t0 = time.perf_counter_ns()
    time.sleep(2.1)
    t1 = t0 + 2 * 10**9
    n = sum(t0 <= s.t_ns <= t1 for s in sampler.samples())
    assert 4 <= n <= 9


# -- host facts -------------------------------------------------------------------------------


def test_host_facts() -> None:
    facts = host_facts()
    assert facts is host_facts()  # cached
    for key in (
        "cpu_model",
        "cpu_cores_logical",
        "cpu_cores_physical",
        "ram_gb",
        "os",
        "python",
        "llm_nb",
        "httpx",
        "gpu_name",
        "gpu_driver",
        "gpu_count",
    ):
        assert key in facts
    assert facts["cpu_cores_logical"] == os.cpu_count()
    assert facts["ram_gb"] == pytest.approx(psutil.virtual_memory().total / 2**30, abs=0.1)
    assert facts["python"] == ".".join(map(str, sys.version_info[:3]))
    if sys.platform.startswith("linux"):
        assert facts["cpu_model"]
    if not has_real_gpu:
        assert facts["gpu_count"] == 0 and facts["gpu_name"] is None
