"""No orphaned servers: a llama-server llm_nb started dies with the process that started it.

Each test starts the local server from a real process (a plain Python process, a thread in it
that then exits, a real Jupyter kernel), kills that process with SIGKILL, so that no exit
handler can run, and asserts that every process the server consisted of is gone within a few
seconds. Both servers are covered: the prebuilt one (a Python child running xllamacpp) and the
native binary (behind its watchdog, router children included).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from llm_nb._embedded import LlamaServer, native_program
from llm_nb._embedded.watchdog import _STOP_GRACE_S
from tests.fake_llama_server import write_fake_llama_server
from tests.kernels import REPO, iopub_until_idle, started_kernel

pytestmark = pytest.mark.slow

# the watchdog gives the server this grace after SIGTERM before it SIGKILLs; the margin is
# for a loaded machine
_GONE_WITHIN_S = _STOP_GRACE_S + 5.0


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _assert_gone(pids: list[int], what: str) -> None:
    deadline = time.monotonic() + _GONE_WITHIN_S
    while time.monotonic() < deadline:
        if not any(_alive(p) for p in pids):
            return
        time.sleep(0.05)
    left = [f"{p} {psutil.Process(p).cmdline()[:3]}" for p in pids if _alive(p)]
    pytest.fail(f"{what}: still running {_GONE_WITHIN_S} s after the owner was SIGKILLed: {left}")


def _server_env(kind: str, llama_server_bin: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LLAMA_SERVER_BIN", "LLM_NB_SERVER")}
    env["LLM_NB_SERVER"] = str(llama_server_bin) if kind == "native" else "prebuilt"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return env


@pytest.fixture(params=["prebuilt", "native"])
def server_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
def owner_env(server_kind: str, request: pytest.FixtureRequest) -> dict[str, str]:
    """The environment of an owner process that starts the ``server_kind`` server; only the
    native variant needs (and waits for) the native build."""
    binary = request.getfixturevalue("llama_server_bin") if server_kind == "native" else None
    request.getfixturevalue("smollm2_gguf")
    return _server_env(server_kind, binary)


def _owner_script(body: str) -> str:
    return textwrap.dedent(
        """
        import json, sys, threading, time
        from llm_nb._embedded import default_server
        from llm_nb._embedded.process.live import running_pids
        """
    ) + textwrap.dedent(body)


def _run_owner(script: str, env: dict[str, str]) -> tuple[subprocess.Popen[str], list[int]]:
    """Start a Python process running script, which prints the server's pids as JSON."""
    owner = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert owner.stdout is not None
    line = owner.stdout.readline()
    if not line:
        owner.wait(30)
        assert owner.stderr is not None
        pytest.fail(f"owner exited {owner.returncode}: {owner.stderr.read()[-2000:]}")
    pids: list[int] = json.loads(line)
    assert pids and all(_alive(p) for p in pids)
    return owner, pids


def _kill(owner: subprocess.Popen[str]) -> None:
    owner.send_signal(signal.SIGKILL)
    owner.wait(10)
    assert owner.stdout is not None and owner.stderr is not None
    owner.stdout.close()
    owner.stderr.close()


def test_server_dies_with_a_sigkilled_python_process(
    server_kind: str, owner_env: dict[str, str]
) -> None:
    env = owner_env
    owner, pids = _run_owner(
        _owner_script(
            """
            default_server(lambda _: None)
            print(json.dumps(running_pids()), flush=True)
            time.sleep(600)
            """
        ),
        env,
    )
    # the prebuilt server is one process; the native one is its watchdog plus llama-server
    assert len(pids) == (1 if server_kind == "prebuilt" else 2)
    _kill(owner)
    _assert_gone(pids, f"{server_kind} server of a plain Python process")


def test_server_started_from_a_finished_thread_lives_until_its_process_dies(
    server_kind: str, owner_env: dict[str, str]
) -> None:
    """The parent-death signal follows the thread that forked; a server started from a worker
    thread must outlive that thread and still die with the process."""
    env = owner_env
    owner, pids = _run_owner(
        _owner_script(
            """
            t = threading.Thread(target=default_server, args=(lambda _: None,))
            t.start()
            t.join()
            time.sleep(1.0)  # a signal tied to the thread would have fired by now
            print(json.dumps(running_pids()), flush=True)
            time.sleep(600)
            """
        ),
        env,
    )
    assert all(_alive(p) for p in pids)
    _kill(owner)
    _assert_gone(pids, f"{server_kind} server started from a thread")


def test_native_server_dies_with_its_watchdog(llama_server_bin: Path, smollm2_gguf: Path) -> None:
    """If the watchdog between llm_nb and a native llama-server is itself killed, the kernel's
    parent-death signal ends the server."""
    server = LlamaServer(native_program(llama_server_bin), model=smollm2_gguf, parallel=1)
    with server:
        assert server.pid is not None
        children = psutil.Process(server.pid).children()
        assert len(children) == 1 and _alive(children[0].pid)
        os.kill(server.pid, signal.SIGKILL)
        _assert_gone([children[0].pid], "native server whose watchdog was killed")


def test_native_router_children_die_with_the_owner(
    llama_server_bin: Path, smollm2_gguf: Path, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "tiny.gguf").symlink_to(smollm2_gguf.resolve())
    (tmp_path / "hf").mkdir()
    env = _server_env("native", llama_server_bin)
    env["LLAMA_CACHE"] = str(tmp_path / "hf")
    owner, pids = _run_owner(
        _owner_script(
            f"""
            import urllib.request
            from pathlib import Path
            from llm_nb._embedded import LlamaServer, router_program
            s = LlamaServer(router_program(), models_dir=Path({str(models)!r})).start()
            req = urllib.request.Request(
                s.url + "/models/load", data=b'{{"model": "tiny"}}',
                headers={{"Content-Type": "application/json"}})
            urllib.request.urlopen(req, timeout=60).close()
            for _ in range(600):
                with urllib.request.urlopen(s.url + "/models", timeout=10) as r:
                    if json.load(r)["data"][0]["status"]["value"] == "loaded":
                        break
                time.sleep(0.1)
            print(json.dumps(running_pids()), flush=True)
            time.sleep(600)
            """
        ),
        env,
    )
    assert len(pids) == 3  # watchdog, router, the model's child server
    _kill(owner)
    _assert_gone(pids, "native router and its model server")


def test_native_build_dies_with_a_sigkilled_owner(tmp_path: Path) -> None:
    """A build of the native server (cmake and what it runs) stops when the process that asked
    for it is killed; here the configure step of a stand-in source tree runs `sleep`.
    Needs the build tools, like the native server tests."""
    src = tmp_path / "src" / "pkg-1" / "llama.cpp"
    src.mkdir(parents=True)
    (src / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.14)\nproject(standin NONE)\n"
        "execute_process(COMMAND sleep 300)\n"
    )
    sdist = tmp_path / "standin.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        tar.add(tmp_path / "src" / "pkg-1", arcname="pkg-1")
    env = _server_env("prebuilt", None)
    env |= {
        "LLM_NB_SERVER": "native",
        "LLM_NB_CACHE_DIR": str(tmp_path / "cache"),
        "LLM_NB_LLAMA_SDIST": str(sdist),
    }
    owner = subprocess.Popen(
        [sys.executable, "-c", "from llm_nb._embedded import server_program; server_program()"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            tree = psutil.Process(owner.pid).children(recursive=True)
            if any(p.name() == "sleep" for p in tree):
                break
            assert owner.poll() is None, f"the build ended early (exit {owner.returncode})"
            assert time.monotonic() < deadline, "configure never reached its `sleep`"
            time.sleep(0.1)
        pids = [p.pid for p in tree]
    finally:
        owner.kill()
        owner.wait(10)
    _assert_gone(pids, "native build of a SIGKILLed process")


def test_server_dies_with_a_sigkilled_kernel(
    server_kind: str,
    owner_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A kernel that answered through ``local`` and was then killed hard (as a front end's
    "kill kernel" or the OOM killer does) leaves no server behind."""
    for key, value in owner_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("LLAMA_SERVER_BIN", raising=False)
    monkeypatch.delenv("LLM_NB_LOCAL_URL", raising=False)
    code = (
        "import json, os, llm_nb\n"
        "from llm_nb._embedded.process.live import running_pids\n"
        "r = llm_nb.chat('local', 'Say hello', max_tokens=4)\n"
        "print(json.dumps({'kernel': os.getpid(), 'servers': running_pids(), 'ok': bool(r.text)}))"
    )
    with started_kernel(tmp_path_factory, "llm_nb orphans") as (_km, kc):
        msg_id = kc.execute(code)
        out = [
            m["content"]["text"]
            for m in iopub_until_idle(kc, msg_id, timeout=180)
            if m["msg_type"] == "stream" and m["content"]["name"] == "stdout"
        ]
        assert out, "the cell printed nothing"
        facts = json.loads("".join(out))
        assert facts["ok"] and facts["servers"]
        assert all(_alive(p) for p in facts["servers"])
        os.kill(facts["kernel"], signal.SIGKILL)
        _assert_gone(facts["servers"], f"{server_kind} server of a SIGKILLed kernel")


def test_server_answers_while_its_owner_lives(server_kind: str, owner_env: dict[str, str]) -> None:
    """The lifeline does not end a server early: its owner idles for a while, it still answers."""
    env = owner_env
    owner, pids = _run_owner(
        _owner_script(
            """
            s = default_server(lambda _: None)
            print(json.dumps(running_pids()), flush=True)
            print(s.url, flush=True)
            time.sleep(600)
            """
        ),
        env,
    )
    assert owner.stdout is not None
    url = owner.stdout.readline().strip()
    time.sleep(2.0)
    with urllib.request.urlopen(f"{url}/health", timeout=10) as resp:
        assert resp.status == 200
    _kill(owner)
    _assert_gone(pids, f"{server_kind} server")


def test_a_forked_child_does_not_keep_the_server_of_a_sigkilled_owner() -> None:
    """A child forked from the owner (a multiprocessing 'fork' worker) inherits the owner's
    memory; it must not inherit the lifeline too, or the server outlives the owner as long as
    that child runs."""
    owner = subprocess.Popen(
        [sys.executable, "-c", _FORKING_OWNER],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
        env=_server_env("prebuilt", None),
    )
    assert owner.stdout is not None
    server, forked = json.loads(owner.stdout.readline())
    try:
        assert _alive(server) and _alive(forked)
        owner.kill()
        owner.wait(10)
        _assert_gone([server], "lifeline child while a forked child of its owner runs")
        assert _alive(forked), "the forked child should still be running"
    finally:
        owner.stdout.close()
        for pid in (server, forked):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


_FORKING_OWNER = textwrap.dedent(
    """
    import json, os, subprocess, sys, time
    from llm_nb._embedded.lifetime import exit_when_owner_dies, spawn_owned
    child = ("import time; from llm_nb._embedded.lifetime import exit_when_owner_dies; "
             "exit_when_owner_dies(); time.sleep(120)")
    p = spawn_owned([sys.executable, "-c", child], stdout=subprocess.DEVNULL)
    forked = os.fork()
    if forked == 0:
        time.sleep(120)
        os._exit(0)
    print(json.dumps([p.pid, forked]), flush=True)
    time.sleep(120)
    """
)


def test_a_forked_child_exiting_normally_leaves_its_parents_server_running(
    tmp_path: Path,
) -> None:
    """A forked child inherits the exit handler that stops llm_nb's servers; when it exits
    normally, the servers its parent started must keep running (they are not the child's)."""
    fake = write_fake_llama_server(tmp_path / "fake-llama-server")
    script = textwrap.dedent(
        f"""
        import os, sys, time
        from pathlib import Path
        from llm_nb._embedded import LlamaServer
        s = LlamaServer(Path({str(fake)!r}), model=Path(os.devnull)).start(timeout=60)
        pid = os.fork()
        if pid == 0:
            sys.exit(0)  # runs the exit handlers it inherited
        os.waitpid(pid, 0)
        time.sleep(0.5)
        print("alive" if s.is_running() else "killed", flush=True)
        s.stop()
        print("stopped" if not s.is_running() else "running", flush=True)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=_server_env("prebuilt", None),
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["alive", "stopped"]
