"""What every benchmark shares: result rows, sizes, subprocesses, the firehose process, facts.

Every measured client runs in a subprocess of its own (imports, garbage and caches of one do
not land on another) which prints one ``BENCH_JSON {...}`` line; the parent only orchestrates.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MARKER = "BENCH_JSON "


@dataclass
class Sizes:
    """How much each benchmark does; ``full`` is the documented run."""

    startup_reps: int = 21
    chunks: int = 100_000
    chunk_reps: int = 3
    ttft_requests: int = 300
    display_tokens: int = 10_000
    display_rate: float = 2000.0
    concurrency: tuple[int, ...] = (1, 4, 16, 64)
    # About two seconds a run (was one): the shared machine's speed swings by up to ±25%
    # between one-second runs, and a longer run averages more of that out.
    concurrency_total_chunks: int = 128_000
    # Medians of nine paired runs: client and server share two cores, and one run of a pair
    # was seen to move by 15-25% from the next; with five, two identical runs of the whole
    # part still differed by 0.1 in a ratio (2026-12-02).
    concurrency_reps: int = 9
    # Many short answers at once (workers x answers each x tokens): the per-call part.
    short_streams: int = 64
    short_calls: int = 10
    short_tokens: int = 10
    llama_concurrency: tuple[int, ...] = (1, 2, 4)
    llama_tokens: int = 64
    llama_reps: int = 7
    fidelity_calls: int = 20
    # The call log: store sizes read back, calls through the recorder, appends timed.
    store_rows: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    store_calls: int = 100_000
    store_appends: int = 2_000

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            startup_reps=7,
            chunks=20_000,
            ttft_requests=100,
            display_tokens=2_000,
            concurrency_total_chunks=16_000,
            llama_tokens=32,
            llama_reps=2,
            fidelity_calls=8,
            store_rows=(10_000, 100_000),
            store_calls=20_000,
        )

    @classmethod
    def smoke(cls) -> Sizes:
        return cls(
            startup_reps=1,
            chunks=2_000,
            chunk_reps=1,
            ttft_requests=20,
            display_tokens=200,
            concurrency=(1, 4),
            concurrency_total_chunks=2_000,
            concurrency_reps=1,
            short_streams=4,
            short_calls=2,
            llama_concurrency=(1,),
            llama_tokens=8,
            llama_reps=1,
            fidelity_calls=2,
            store_rows=(2_000,),
            store_calls=1_000,
            store_appends=200,
        )


@dataclass
class Row:
    """One line of the results table."""

    section: str
    measurement: str
    llm_nb: float | None
    baseline: float | None
    baseline_name: str
    unit: str
    target: str = ""
    #: True/False when the target was checked, None for figures reported without a target.
    met: bool | None = None
    #: ratio as displayed; by default llm_nb / baseline.
    ratio: float | None = None
    note: str = ""

    def __post_init__(self) -> None:
        if self.ratio is None and self.llm_nb is not None and self.baseline:
            self.ratio = self.llm_nb / self.baseline


@dataclass
class Section:
    """A benchmark's rows plus the raw figures behind them (kept in the JSON dump)."""

    name: str
    rows: list[Row] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def have(module: str) -> bool:
    """Whether ``module`` is importable by the interpreter running the benchmarks."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def child_env(**extra: str) -> dict[str, str]:
    """Environment for benchmark subprocesses: loopback never proxied, llm_nb's stats store
    in a scratch directory, LiteLLM kept from fetching its price list over the network."""
    env = dict(os.environ)
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        env.pop(key, None)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost,::1"
    env.setdefault("LLM_NB_DATA_DIR", scratch_dir())
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


_scratch: str | None = None


def scratch_dir() -> str:
    global _scratch
    if _scratch is None:
        _scratch = tempfile.mkdtemp(prefix="llm_nb-bench-")
    return _scratch


def emit(obj: dict[str, Any]) -> None:
    """Print a subprocess's result for :func:`run_child`."""
    print(MARKER + json.dumps(obj), flush=True)


def run_child(
    args: Sequence[str], *, timeout: float = 300.0, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run ``python args...`` and return its BENCH_JSON object ({"error": ...} on failure)."""
    try:
        proc = subprocess.run(
            [sys.executable, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env or child_env(),
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:g} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(MARKER):
            result: dict[str, Any] = json.loads(line[len(MARKER) :])
            return result
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"error": f"exit {proc.returncode}: " + " | ".join(tail)}


@contextlib.contextmanager
def firehose(max_seconds: float = 3600.0) -> Iterator[str]:
    """A firehose server in its own process (its CPU is not the client's); yields its URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.firehose", "--max-seconds", str(max_seconds)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=child_env(),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("FIREHOSE_PORT "):
            raise RuntimeError(f"firehose did not start: {line!r}")
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        if proc.stdin is not None:
            proc.stdin.close()  # the firehose stops when its stdin closes
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def prime(url: str, wire: str, tokens: int, model: str = "firehose") -> None:
    """Ask the firehose for an answer once, so it is built and cached before any client is
    timed (building 100,000 events takes the server longer than sending them)."""
    import http.client

    host, port = url.removeprefix("http://").rsplit(":", 1)
    if wire == "sse":
        path = "/v1/chat/completions"
        body = {
            "model": model,
            "stream": True,
            "max_tokens": tokens,
            "stream_options": {"include_usage": True},
        }
    else:
        path = "/api/chat"
        body = {"model": model, "stream": True, "options": {"num_predict": tokens}}
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        conn.getresponse().read()
    finally:
        conn.close()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_facts() -> dict[str, Any]:
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    packages = (
        "llm_nb",
        "httpx",
        "openai",
        "ollama",
        "litellm",
        "jupyter_ai_magics",
        "llm",
        "ipython",
        "ipykernel",
        "jupyter_client",
    )
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": mem,
        "os": platform.platform(),
        "python": platform.python_version(),
        "interpreter": sys.executable,
        "packages": {name: version(name) for name in packages},
    }


def load_average() -> tuple[float, float, float] | None:
    try:
        return os.getloadavg()
    except OSError:
        return None
