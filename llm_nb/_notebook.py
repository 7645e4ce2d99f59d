"""``python -m llm_nb notebook``: JupyterLab on the quickstart notebook, local model running.

It starts llm_nb's bundled llama-server first (building it and fetching SmolLM2 on first
use, progress on stderr), hands its URL to JupyterLab and so to every kernel as
``LLM_NB_LOCAL_URL`` (the model id ``local`` then uses that server instead of starting one
per kernel) and, unless already set, as ``LLAMA_CPP_URL`` (so ``llamacpp:`` ids and
``%llm_models`` find it too). It runs ``jupyter lab`` in the ``notebooks`` folder of the
checkout and stops the server when JupyterLab exits. Options it does not know go to
``jupyter lab`` (``python -m llm_nb notebook --no-browser --port 8890``); as root (a
container, CI) ``--allow-root`` is added, which JupyterLab otherwise insists on. With
``LLM_NB_LOCAL_URL`` already set, that server is used and none is started.

JupyterLab is the optional extra ``notebook``: ``pip install -e '.[notebook]'``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Protocol

from ._errors import LLMError
from ._registry import LOCAL_URL_ENV

#: The notebook opened by default, relative to the checkout.
QUICKSTART = Path("notebooks") / "01-quickstart.ipynb"


class NotebookError(Exception):
    """A one-line reason the notebook cannot be opened."""


class Server(Protocol):
    """What :func:`run_with_server` needs of a server (``LlamaServer`` has it)."""

    @property
    def url(self) -> str: ...

    def stop(self) -> None: ...


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m llm_nb notebook",
        description="Open the quickstart notebook in JupyterLab with llm_nb's local model "
        "server running; other options are passed to `jupyter lab`.",
    )
    p.add_argument(
        "--notebook",
        metavar="PATH",
        help=f"notebook to open (default: {QUICKSTART} of this checkout)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print what would run, start nothing",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args, jupyter_args = _parser().parse_known_args(argv)
    try:
        notebook = find_notebook(args.notebook)
    except NotebookError as exc:
        print(f"llm_nb: {exc}", file=sys.stderr)
        return 2
    command = jupyter_command(notebook, jupyter_args)
    if args.dry_run:
        url = os.environ.get(LOCAL_URL_ENV) or "<url of the local llama-server started first>"
        env = kernel_environment(url)
        added = [f"{k}={shlex.quote(v)}" for k, v in sorted(env.items()) if os.environ.get(k) != v]
        where = shlex.quote(str(notebook.parent))
        print(f"cd {where} && {' '.join([*added, shlex.join(command)])}")
        return 0
    if importlib.util.find_spec("jupyterlab") is None:
        print(
            "llm_nb: JupyterLab is not installed; install it with: pip install -e '.[notebook]'",
            file=sys.stderr,
        )
        return 1
    try:
        return run_with_server(command, notebook.parent)
    except (LLMError, FileNotFoundError) as exc:  # no build tools, a bad LLAMA_SERVER_BIN...
        print(f"llm_nb: {exc}", file=sys.stderr)
        return 1


def find_notebook(given: str | None = None) -> Path:
    """``given``, else the quickstart notebook under the current directory or the checkout
    this package was installed from (an editable install)."""
    if given is not None:
        path = Path(given)
        if not path.is_file():
            raise NotebookError(f"no notebook at {path}")
        return path.resolve()
    for root in (Path.cwd(), Path(__file__).resolve().parent.parent):
        candidate = root / QUICKSTART
        if candidate.is_file():
            return candidate
    raise NotebookError(
        f"{QUICKSTART} not found; run this from the llm_nb checkout or pass --notebook PATH"
    )


def jupyter_command(notebook: Path, extra: Sequence[str] = ()) -> list[str]:
    """``jupyter lab`` on ``notebook``, run in the notebook's folder (JupyterLab only opens
    files under the folder it serves, and this way the other notebooks are listed too)."""
    command = [sys.executable, "-m", "jupyterlab", notebook.name, *extra]
    if os.geteuid() == 0 and "--allow-root" not in extra:
        # Containers and CI machines often run as root, which JupyterLab refuses by default.
        command.append("--allow-root")
    return command


def kernel_environment(url: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for JupyterLab and its kernels: ``local`` and, unless the user set
    another, ``llamacpp:`` ids point at the server at ``url``."""
    env = dict(os.environ if base is None else base)
    env[LOCAL_URL_ENV] = url
    env.setdefault("LLAMA_CPP_URL", url)
    return env


def run_with_server(
    command: Sequence[str],
    cwd: Path,
    *,
    start_server: Callable[[], Server] | None = None,
) -> int:
    """Run ``command`` with a local model server it reaches through ``LLM_NB_LOCAL_URL``;
    returns its exit status. The server is started first (``default_server()`` unless
    ``start_server`` is given) and stopped when the command exits; when
    ``LLM_NB_LOCAL_URL`` is already set, that server is used and none is started."""
    server: Server | None = None
    url = os.environ.get(LOCAL_URL_ENV)
    if not url:
        if start_server is None:
            from ._embedded import default_server

            start_server = default_server
        server = start_server()
        url = server.url
        print(f"llm_nb: local model server at {url}", file=sys.stderr, flush=True)
    try:
        proc = subprocess.Popen(list(command), cwd=cwd, env=kernel_environment(url))
        with _signals_go_to(proc):
            return proc.wait()
    finally:
        if server is not None:
            server.stop()


@contextlib.contextmanager
def _signals_go_to(proc: subprocess.Popen[bytes]) -> Iterator[None]:
    """While ``proc`` runs: Ctrl-C is left to it (the terminal sends SIGINT to both of us;
    JupyterLab asks before it shuts down, and exiting here would orphan it), and a SIGTERM
    to this process is passed on, so the ``finally`` that stops the server still runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def forward(signum: int, frame: FrameType | None) -> None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)

    previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
    previous_term = signal.signal(signal.SIGTERM, forward)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous_int)
        signal.signal(signal.SIGTERM, previous_term)
