"""What the hardware sampler itself costs: this process's CPU time over a stretch of idle
wall time with the sampler running, minus the same stretch without it, as percent of one core.

    python -m benchmarks.bench_sampler [--seconds 20] [--extra-pid]   # from the repo root

``--extra-pid`` also samples a sleeping child process, as when llm_nb started a llama-server.
The main thread only sleeps, so the process's CPU time is the sampler's (plus the
interpreter's background noise, which the idle stretch measures and subtracts).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from llm_nb._stats._sampler import HardwareSampler


def cpu_seconds_over(seconds: float, sampler: HardwareSampler | None) -> float:
    if sampler is not None:
        sampler.acquire()
    try:
        c0 = time.process_time()
        time.sleep(seconds)
        return time.process_time() - c0
    finally:
        if sampler is not None:
            sampler.release()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each stretch")
    parser.add_argument("--interval", type=float, default=1 / 3, help="sampling interval (s)")
    parser.add_argument("--extra-pid", action="store_true", help="also sample a child process")
    args = parser.parse_args()

    child = (
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
        if args.extra_pid
        else None
    )
    try:
        pids = [child.pid] if child is not None else []
        sampler = HardwareSampler(args.interval, pids=lambda: pids)
        # Warm up once: first-use imports (psutil, pynvml) and NVML init are not steady state.
        cpu_seconds_over(0.5, sampler)
        n0 = len(sampler.samples())
        idle = cpu_seconds_over(args.seconds, None)
        busy = cpu_seconds_over(args.seconds, sampler)
        n = len(sampler.samples()) - n0
    finally:
        if child is not None:
            child.kill()
            child.wait()

    cost = max(busy - idle, 0.0)
    pct = cost / args.seconds * 100
    processes = 1 + len(pids)
    print(
        f"sampler at {1 / args.interval:.1f} Hz, {processes} process(es): {pct:.3f}% of one core "
        f"(process CPU {busy * 1e3:.1f} ms sampling vs {idle * 1e3:.1f} ms idle over "
        f"{args.seconds:g} s; {n} samples, {cost / max(n, 1) * 1e6:.0f} us/sample)"
    )


if __name__ == "__main__":
    main()
