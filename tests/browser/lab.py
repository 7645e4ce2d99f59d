"""A throwaway JupyterLab server on 127.0.0.1 for the browser tests.

Everything Jupyter reads or writes (config, data, runtime, lab settings and workspaces, the
IPython profile) lives under one temporary directory, so the user's own setup cannot leak in
and nothing is left behind. The server needs no network: news, update checks and the PyPI
extension manager are turned off, and the kernel is this interpreter's (``python`` in the
kernelspec is replaced by ``sys.executable`` by jupyter_client).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from llm_nb._embedded.process.server import free_port

#: JupyterLab user settings written before start (plugin id -> settings).
LAB_SETTINGS: dict[str, dict[str, Any]] = {
    # Every cell stays in the DOM (the default windowing drops cells scrolled out of view).
    # autoStartDefaultKernel: on a loaded machine the notebook may open before the kernel
    # specs have loaded, and JupyterLab then asks "Select Kernel" instead of starting python3.
    "@jupyterlab/notebook-extension/tracker": {
        "windowingMode": "none",
        "autoStartDefaultKernel": True,
    },
    # No "receive news?" toast and no fetch from jupyter.org.
    "@jupyterlab/apputils-extension/notification": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
    # No "file changed on disk" dialogs while the test runs; nothing needs saving.
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    "@jupyterlab/extensionmanager-extension/plugin": {"enabled": False},
}


class JupyterLab:
    """``jupyter lab`` serving ``root`` on a free loopback port with a random token.

    ``env`` is added to the server's environment, which kernels inherit; a None value removes
    that variable.
    """

    def __init__(self, root: Path, home: Path, env: Mapping[str, str | None] | None = None) -> None:
        self.root = root
        self.home = home
        self.env = dict(env or {})
        self.token = secrets.token_hex(16)
        self.port = 0
        self.log_path = home / "jupyterlab.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def lab_url(self, path: str, workspace: str) -> str:
        """The address that opens ``path`` (relative to the root) in JupyterLab, in a
        workspace of its own (the default one would reopen the tabs of an earlier page)."""
        return f"{self.url}/lab/workspaces/{workspace}/tree/{path}?token={self.token}"

    def _environment(self) -> dict[str, str]:
        dirs = {
            "JUPYTER_CONFIG_DIR": "config",
            "JUPYTER_DATA_DIR": "data",
            "JUPYTER_RUNTIME_DIR": "runtime",
            "JUPYTERLAB_SETTINGS_DIR": "lab-settings",
            "JUPYTERLAB_WORKSPACES_DIR": "lab-workspaces",
            "IPYTHONDIR": "ipython",
        }
        env = dict(os.environ)
        for var, name in dirs.items():
            path = self.home / name
            path.mkdir(parents=True, exist_ok=True)
            env[var] = str(path)
        env["JUPYTER_PLATFORM_DIRS"] = "1"  # silences jupyter_core's deprecation notice
        for var, value in self.env.items():
            if value is None:
                env.pop(var, None)
            else:
                env[var] = value
        return env

    def _write_config(self) -> None:
        config = {
            "ServerApp": {
                "ip": "127.0.0.1",
                "port": self.port,
                "port_retries": 0,
                "open_browser": False,
                "root_dir": str(self.root),
                "terminals_enabled": False,
                # CI runs as root (a container); only this test's browser connects.
                "allow_root": True,
            },
            "IdentityProvider": {"token": self.token},
            "LabApp": {
                "news_url": None,
                "check_for_updates_class": "jupyterlab.handlers.announcements.NeverCheckForUpdate",
                "extension_manager": "readonly",
            },
        }
        config_dir = self.home / "config"
        config_dir.mkdir(parents=True, exist_ok=True)
        (config_dir / "jupyter_server_config.json").write_text(json.dumps(config, indent=1))
        settings = self.home / "lab-settings"
        for plugin, values in LAB_SETTINGS.items():
            package, _, name = plugin.rpartition("/")
            path = settings / package / f"{name}.jupyterlab-settings"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))

    def start(self, timeout: float = 60.0) -> Self:
        self.home.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self._write_config()
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "jupyterlab", "--no-browser",
                 "--ServerApp.open_browser=False"],
                cwd=self.root,
                env=self._environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its kernels too: stop() ends the whole group
            )  # fmt: skip
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        request = urllib.request.Request(
            f"{self.url}/api/status", headers={"Authorization": f"token {self.token}"}
        )
        while True:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"JupyterLab exited with {self._proc.returncode}:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(request, timeout=2.0) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"JupyterLab did not answer within {timeout:.0f} s:\n{self.log_tail()}"
                )
            time.sleep(0.2)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM (the server shuts its kernels down), then SIGKILL the group if needed."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # kernels left behind, if any
        proc.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
