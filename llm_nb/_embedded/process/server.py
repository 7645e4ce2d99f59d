"""Run a llama-server child process on a loopback port.

``LlamaServer`` starts llama-server (the prebuilt one or a native binary, see ``binary``) in
single-model mode (``-m``/``-a``) or router mode (``--models-dir``/``--models-max``, native
only), waits until ``GET /health`` answers 200, and makes sure the process (and, in router
mode, its per-model children) never outlives the Python process that started it: stopped at a
normal exit (``live``), and ended by the operating system when that process is killed (see
``lifetime``).

Nothing runs at import time; only the standard library is used.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from ..._errors import InvalidOptionError, LLMError
from ..binary.program import NATIVE_HINT, ServerProgram, check_platform, native_program
from ..lifetime import exited_unreaped, spawn_owned, term_then_kill
from .live import register, unregister

__all__ = ["LlamaServer", "LlamaServerError", "free_port"]

_LOG_TAIL_LINES = 30
_STOP_GRACE_S = 10.0


class LlamaServerError(LLMError, RuntimeError):
    """llama-server failed to start or exited early; the message carries the log tail."""


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on host right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


# Environment variables llama-server reads as defaults for its options (common/arg.cpp set_env).
# An inherited LLAMA_ARG_EMBEDDINGS or LLAMA_API_KEY from the user's shell would silently change
# the server we start, so they are dropped unless passed explicitly.
_SERVER_ENV_PREFIXES = ("LLAMA_ARG_", "LLAMA_API_KEY")


class LlamaServer:
    """A llama-server child process bound to a loopback port.

    ``binary`` is a native llama-server binary or a ``ServerProgram`` (``server_program()``
    picks one the way ``LLM_NB_SERVER`` says). Exactly one of ``model`` (single-model mode) or
    ``models_dir`` (router mode, native only) is required.
    In router mode the shared flags (-c, -np, -t, -ngl, --no-warmup, extra_args) are passed on
    by the router to every per-model child it spawns.

    The API key, if any, is handed over in the ``LLAMA_API_KEY`` environment variable, which
    llama-server reads like ``--api-key`` but which is not visible in ``/proc/<pid>/cmdline``.
    """

    def __init__(
        self,
        binary: Path | ServerProgram,
        *,
        model: Path | None = None,
        alias: str | None = None,
        models_dir: Path | None = None,
        models_max: int | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        ctx_size: int = 2048,
        parallel: int = 1,
        threads: int = 2,
        extra_args: Sequence[str] = (),
        log_path: Path | None = None,
        api_key: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if (model is None) == (models_dir is None):
            raise ValueError("pass exactly one of model= (single-model) or models_dir= (router)")
        if models_dir is None and models_max is not None:
            raise ValueError("models_max only applies to router mode (models_dir=)")
        if model is None and alias is not None:
            raise ValueError("alias only applies to single-model mode; router ids are file names")
        self.program = binary if isinstance(binary, ServerProgram) else native_program(binary)
        if models_dir is not None and not self.program.router:
            raise LlamaServerError(
                f"router mode (models_dir=) needs the native llama-server, not the "
                f"{self.program}: {NATIVE_HINT}"
            )
        #: The native binary, or for the prebuilt server the interpreter that runs it.
        self.binary = self.program.path
        self.model = Path(model) if model is not None else None
        self.alias = alias
        self.models_dir = Path(models_dir) if models_dir is not None else None
        self.models_max = models_max
        self.host = host
        self._auto_port = port is None
        self.port = port if port is not None else free_port(host)
        self.ctx_size = ctx_size
        self.parallel = parallel
        self.threads = threads
        self.extra_args = tuple(extra_args)
        self._api_key = api_key
        self._extra_env = dict(env or {})
        self._log_path = Path(log_path) if log_path is not None else None
        self._log_file: IO[bytes] | None = None
        if self.program.kind == "prebuilt":
            self._check_prebuilt_options()
        self._process: subprocess.Popen[bytes] | None = None
        self._owner_pid: int | None = None  # the process that started it; only it stops it
        self._lock = threading.RLock()

    # --- public attributes -------------------------------------------------------------------
    @property
    def mode(self) -> str:
        """``"single"`` (one model, -m) or ``"router"`` (--models-dir)."""
        return "single" if self.model is not None else "router"

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8123`` (no trailing slash, no /v1)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        return self._process

    @property
    def pid(self) -> int | None:
        """The child llm_nb started: the prebuilt server itself, or the native server's
        watchdog (the server is its child; signals to this pid's group reach both)."""
        return self._process.pid if self._process is not None else None

    @property
    def log_path(self) -> Path | None:
        """File receiving the server's stdout+stderr (set once started)."""
        return self._log_path

    @property
    def has_api_key(self) -> bool:
        return self._api_key is not None

    def is_running(self) -> bool:
        """Whether the server still runs, without reaping it: other threads ask (the hardware
        sampler lists live servers), and a leader reaped behind :meth:`stop`'s back would free
        its group id before the group's final SIGKILL."""
        proc = self._process
        return proc is not None and proc.returncode is None and not exited_unreaped(proc.pid)

    def command(self) -> list[str]:
        """The server's argv (never contains the API key)."""
        return [*self.program.argv(), *self._options()]

    def _options(self) -> list[str]:
        cmd: list[str] = []
        if self.model is not None:
            cmd += ["-m", str(self.model)]
            if self.alias:
                cmd += ["-a", self.alias]
        else:
            assert self.models_dir is not None
            cmd += ["--models-dir", str(self.models_dir)]
            if self.models_max is not None:
                cmd += ["--models-max", str(self.models_max)]
        cmd += [
            "--host", self.host,
            "--port", str(self.port),
            "-c", str(self.ctx_size),
            "-np", str(self.parallel),
            "-t", str(self.threads),
            "-ngl", "0",
            "--no-warmup",
        ]  # fmt: skip
        cmd += self.extra_args
        return cmd

    def _check_prebuilt_options(self) -> None:
        """Options the prebuilt server lacks fail here, in one line, not in the child."""
        from ..binary.prebuilt import UnsupportedOptionError, parse_options

        try:
            parse_options(self._options())
        except UnsupportedOptionError as exc:
            raise InvalidOptionError(f"extra_args: {exc}") from None

    def _environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(_SERVER_ENV_PREFIXES)}
        env.update(self._extra_env)
        if self._api_key is not None:
            env["LLAMA_API_KEY"] = self._api_key
        return env

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self, timeout: float = 120.0) -> Self:
        """Launch the server and wait until /health answers 200; return self.

        Raises LlamaServerError (with the log tail) if the process exits or is not ready
        within timeout seconds. Calling start() on a running server is a no-op.
        """
        check_platform()
        with self._lock:
            if self.is_running():
                return self
            self.stop()  # one that died: reap it and its group before starting anew
            attempts = 3 if self._auto_port else 1
            for attempt in range(attempts):
                self._launch()
                try:
                    self._wait_ready(timeout)
                    return self
                except LlamaServerError as exc:
                    # free_port() cannot reserve the port; if another process took it between
                    # our probe and llama-server's bind, retry once more on a fresh port
                    if attempt + 1 < attempts and "couldn't bind" in str(exc):
                        self.port = free_port(self.host)
                        continue
                    raise
            raise AssertionError("unreachable")  # pragma: no cover

    def _launch(self) -> None:
        if self._log_path is None:
            fd, name = tempfile.mkstemp(prefix="llm_nb-llama-server-", suffix=".log")
            os.close(fd)
            self._log_path = Path(name)
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        if self._log_file is not None:
            self._log_file.close()
        self._log_file = open(self._log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self._log_file.write(f"$ {' '.join(self.command())}\n".encode())
        self._log_file.flush()
        if self.program.kind == "native" and not os.access(self.binary, os.X_OK):
            self._cleanup()
            raise LlamaServerError(f"cannot run {self.binary}: not an executable file")
        try:
            # own process group (stop() signals the group, which includes the watchdog, the
            # server and router children), and a lifeline that ends it all if we are killed
            self._process = spawn_owned(
                [*self.program.launch_argv(), *self._options()],
                stdout=self._log_file,
                env=self._environment(),
            )
        except OSError as exc:
            self._cleanup()
            raise LlamaServerError(f"cannot run {self.program}: {exc.strerror or exc}") from exc
        self._owner_pid = os.getpid()
        register(self)

    def _wait_ready(self, timeout: float) -> None:
        assert self._process is not None
        deadline = time.monotonic() + timeout
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        delay = 0.05
        while True:
            rc = self._process.poll()
            if rc is not None:
                self._cleanup()
                raise LlamaServerError(
                    f"{self.program} exited with code {rc} before it was ready "
                    f"({self._describe()}){self._log_tail()}"
                )
            try:
                req = urllib.request.Request(f"{self.url}/health", headers=headers)
                with urllib.request.urlopen(req, timeout=2.0) as resp:
                    if resp.status == 200:
                        return
            except urllib.error.HTTPError as exc:
                exc.close()  # 503 "Loading model" while the model loads: keep polling
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass  # not listening yet
            if time.monotonic() >= deadline:
                self.stop()
                raise LlamaServerError(
                    f"{self.program} did not become ready within {timeout:g} s "
                    f"({self._describe()}){self._log_tail()}"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    def stop(self) -> None:
        """SIGTERM the server's process group, SIGKILL after 10 s. Safe to call repeatedly.

        Does nothing in a process forked from the one that started the server: the server is
        not its child (it cannot even tell whether it still runs) and belongs to its owner.
        """
        with self._lock:
            if self._owner_pid is not None and self._owner_pid != os.getpid():
                return
            proc = self._process
            if proc is not None and proc.returncode is None:
                # The group (router children included) gets its SIGKILL while the leader is
                # still unreaped: once reaped, its pid, the group's id, may be reused.
                term_then_kill(
                    lambda sig: self._signal_group(proc, sig),
                    lambda: exited_unreaped(proc.pid),
                    _STOP_GRACE_S,
                )
                proc.wait()
            self._cleanup()

    @staticmethod
    def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        if proc.returncode is not None:
            return  # reaped: the group id may belong to someone else now
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)

    def _cleanup(self) -> None:
        proc = self._process
        if proc is not None and proc.stdin is not None and proc.poll() is not None:
            proc.stdin.close()  # the lifeline of a child that is gone
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        unregister(self)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- diagnostics -------------------------------------------------------------------------
    def _describe(self) -> str:
        what = f"model={self.model}" if self.model is not None else f"models_dir={self.models_dir}"
        return f"{what}, {self.url}, log {self._log_path}"

    def _log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        if self._log_path is None:
            return ""
        try:
            with open(self._log_path, errors="replace") as fh:
                tail = "".join(deque(fh, maxlen=lines))
        except OSError:
            return ""
        if self._api_key:
            tail = tail.replace(self._api_key, "***")  # secrets never reach error messages
        return f"\nlast {lines} lines of {self._log_path}:\n{tail}"

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last lines of the server log (API key masked)."""
        return self._log_tail(lines)

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.is_running() else "stopped"
        where = self.model if self.model is not None else self.models_dir
        target = f"{'model' if self.model is not None else 'models_dir'}={str(where)!r}"
        key = ", api_key=***" if self._api_key is not None else ""
        return (
            f"LlamaServer({self.program.kind}, {self.mode}, url={self.url!r}, {target}, "
            f"{state}{key})"
        )
