"""``python -m llm_nb notebook`` and the notebooks' test setup.

The notebooks themselves run under nbval (``notebooks/conftest.py``); these tests check what
nbval cannot: that the cells whose output it compares have a reference to compare with, that
``LLM_NB_LOCAL_URL`` makes ``local`` use a running server, and that the ``notebook``
subcommand starts the server, hands it to Jupyter and stops it afterwards — with a stand-in
for JupyterLab, and with the real one headless on loopback when it is installed.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from llm_nb import _notebook
from llm_nb.__main__ import main as cli_main
from llm_nb._embedded import DEFAULT_MODEL_ALIAS, LlamaServer, free_port
from llm_nb._registry import LOCAL_URL_ENV, Registry

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
CHECK = "# NBVAL_CHECK_OUTPUT"


def _cells(path: Path) -> list[dict[str, object]]:
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert nb["nbformat"] == 4
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    cells: list[dict[str, object]] = nb["cells"]
    return cells


def _source(cell: dict[str, object]) -> str:
    source = cell["source"]
    return "".join(source) if isinstance(source, list) else str(source)


def test_the_four_notebooks_are_there() -> None:
    assert [p.name for p in NOTEBOOKS] == [
        "01-quickstart.ipynb",
        "02-model-management.ipynb",
        "03-provider-comparison.ipynb",
        "04-evaluation.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_checked_cells_have_a_reference(path: Path) -> None:
    # nbval compares a "# NBVAL_CHECK_OUTPUT" cell only if the stored cell ran
    # (execution_count set); without one it passes whatever the output is.
    checked = [c for c in _cells(path) if c["cell_type"] == "code" and CHECK in _source(c)]
    assert checked, f"{path.name} has no {CHECK} cell"
    for cell in checked:
        assert cell["execution_count"] is not None, _source(cell)
        assert cell["outputs"], _source(cell)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_notebook_explains_itself(path: Path) -> None:
    cells = _cells(path)
    assert cells[0]["cell_type"] == "markdown" and _source(cells[0]).startswith("# ")
    prose = [c for c in cells if c["cell_type"] == "markdown"]
    assert len(prose) >= 4


def test_notebooks_run_with_the_tests(pytestconfig: pytest.Config) -> None:
    assert "notebooks" in pytestconfig.getini("testpaths")
    assert pytestconfig.getoption("nbval_lax")


# -- LLM_NB_LOCAL_URL -----------------------------------------------------------------------


def test_local_uses_the_server_named_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_default_server() -> None:
        raise AssertionError("local started its own server despite LLM_NB_LOCAL_URL")

    monkeypatch.setattr("llm_nb._embedded.default_server", no_default_server)
    monkeypatch.setenv(LOCAL_URL_ENV, "127.0.0.1:8123")
    provider, model = Registry().resolve("local")
    assert (provider.name, provider.host, model) == ("llamacpp", "127.0.0.1:8123", "smollm2")
    assert provider.base_url == "http://127.0.0.1:8123"


# -- python -m llm_nb notebook -----------------------------------------------------------------


def test_dry_run_prints_the_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(LOCAL_URL_ENV, raising=False)
    monkeypatch.delenv("LLAMA_CPP_URL", raising=False)
    monkeypatch.chdir(REPO)
    monkeypatch.setattr("llm_nb._embedded.default_server", lambda: pytest.fail("started"))
    assert cli_main(["notebook", "--dry-run", "--no-browser", "--port", "8899"]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith(f"cd {shlex.quote(str(REPO / 'notebooks'))} && ")
    assert f"{LOCAL_URL_ENV}='<url of the local llama-server started first>'" in out
    assert "LLAMA_CPP_URL=" in out
    root = " --allow-root" if os.geteuid() == 0 else ""
    assert out.endswith(
        f"{sys.executable} -m jupyterlab 01-quickstart.ipynb --no-browser --port 8899{root}"
    )


def test_dry_run_keeps_a_given_server(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(LOCAL_URL_ENV, "http://127.0.0.1:8123")
    monkeypatch.setenv("LLAMA_CPP_URL", "http://gpu-box:8080")
    nb = REPO / "notebooks" / "04-evaluation.ipynb"
    assert _notebook.main(["--dry-run", "--notebook", str(nb)]) == 0
    out = capsys.readouterr().out
    assert "LLAMA_CPP_URL" not in out  # the user's own setting is left alone
    assert "-m jupyterlab 04-evaluation.ipynb" in out


def test_missing_notebook_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _notebook.main(["--notebook", str(tmp_path / "nope.ipynb")]) == 2
    assert capsys.readouterr().err == f"llm_nb: no notebook at {tmp_path / 'nope.ipynb'}\n"


def test_missing_jupyterlab_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "jupyterlab" else real(name)
    )
    monkeypatch.setattr("llm_nb._embedded.default_server", lambda: pytest.fail("started"))
    assert _notebook.main(["--notebook", str(NOTEBOOKS[0])]) == 1
    assert "pip install -e '.[notebook]'" in capsys.readouterr().err


# The stand-in for JupyterLab: a process that, like a kernel, inherits the environment, asks
# `local` for an answer, and checks that it came from the server it was handed.
_KERNEL_STANDIN = """
import os, sys
import llm_nb
from llm_nb._embedded.process import default
url = os.environ["LLM_NB_LOCAL_URL"]
assert os.environ["LLAMA_CPP_URL"] == url, os.environ["LLAMA_CPP_URL"]
reply = llm_nb.chat("local", "Say hi.", max_tokens=4)
assert url.endswith(reply.host), (url, reply.host)
assert default._DEFAULT is None, "started a server of its own"
sys.exit(7)
"""


def test_command_runs_with_the_server_and_stops_it(
    llama_server_bin: Path, smollm2_gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(LOCAL_URL_ENV, raising=False)
    monkeypatch.delenv("LLAMA_CPP_URL", raising=False)
    started: list[LlamaServer] = []

    def start() -> LlamaServer:
        server = LlamaServer(llama_server_bin, model=smollm2_gguf, alias=DEFAULT_MODEL_ALIAS)
        started.append(server.start())
        return server

    rc = _notebook.run_with_server(
        [sys.executable, "-c", _KERNEL_STANDIN], REPO, start_server=start
    )
    assert rc == 7  # the stand-in's own status: every assertion in it held
    assert len(started) == 1 and not started[0].is_running()


def _get(url: str) -> int:
    """The HTTP status of a GET, 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code
    except urllib.error.URLError:
        return 0


@pytest.mark.slow
def test_jupyterlab_starts_headless_and_stops_the_server(
    llama_server_bin: Path, smollm2_gguf: Path, tmp_path: Path
) -> None:
    pytest.importorskip("jupyterlab")
    port, token = free_port(), "llm-nb-test-token"
    env = {k: v for k, v in os.environ.items() if k not in (LOCAL_URL_ENV, "LLAMA_CPP_URL")}
    env |= {
        "LLAMA_SERVER_BIN": str(llama_server_bin),
        "LLM_NB_MODEL": str(smollm2_gguf),
        "PYTHONPATH": str(REPO),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
    }
    log = tmp_path / "notebook.log"
    args = [
        "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
        f"--IdentityProvider.token={token}", "--ServerApp.port_retries=0",
    ]  # fmt: skip
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llm_nb", "notebook", *args],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while _get(f"{base}/api/status?token={token}") != 200:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        # JupyterLab serves the notebooks folder, so the quickstart is at its top.
        assert _get(f"{base}/api/contents/01-quickstart.ipynb?content=0&token={token}") == 200
        url = next(
            line.rsplit(" ", 1)[1]
            for line in log.read_text().splitlines()
            if line.startswith("llm_nb: local model server at ")
        )
        assert _get(f"{url}/health") == 200
        proc.send_signal(signal.SIGTERM)  # passed on to JupyterLab; the server stops after it
        proc.wait(timeout=60)
        with pytest.raises(urllib.error.URLError, match="refused"):
            urllib.request.urlopen(f"{url}/health", timeout=2)
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)


# -- binder -----------------------------------------------------------------------------------

_BINDER_STANDIN = """
import json, os, sys, urllib.request
url = os.environ["LLM_NB_LOCAL_URL"]
body = json.dumps({"model": "smollm2", "max_tokens": 5,
                   "messages": [{"role": "user", "content": "Hi"}]}).encode()
req = urllib.request.Request(url + "/v1/chat/completions", body,
                             {"content-type": "application/json"})
with urllib.request.urlopen(req, timeout=60) as r:
    answer = json.load(r)
assert answer["choices"][0]["message"]["content"], answer
assert os.environ["LLAMA_CPP_URL"] == url
print(url)
"""


def test_binder_start_serves_the_model_before_the_session(
    llama_server_bin: Path, smollm2_gguf: Path, tmp_path: Path
) -> None:
    """binder/start (mybinder's session hook) starts llama-server on the configured port,
    exports its URL, then execs the session command: here a stand-in that chats with it."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in (LOCAL_URL_ENV, "LLAMA_CPP_URL")}
    env |= {
        "LLAMA_SERVER_BIN": str(llama_server_bin),
        "LLM_NB_MODEL": str(smollm2_gguf),
        "LLM_NB_SERVER_PORT": str(port),
        "PYTHONPATH": str(REPO),
        "TMPDIR": str(tmp_path),
    }
    pidfile = tmp_path / "llm_nb-llama-server.pid"
    try:
        done = subprocess.run(
            ["bash", str(REPO / "binder" / "start"), sys.executable, "-c", _BINDER_STANDIN],
            env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        log = tmp_path / "llm_nb-llama-server.log"
        details = done.stderr + (log.read_text() if log.exists() else "")
        assert done.returncode == 0, details
        assert done.stdout.strip() == f"http://127.0.0.1:{port}"
        assert f"local model server at http://127.0.0.1:{port}" in done.stderr
    finally:
        if pidfile.exists():
            os.kill(int(pidfile.read_text()), signal.SIGTERM)
