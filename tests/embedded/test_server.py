"""The server process (llm_nb/_embedded/process): LlamaServer's command line and checks before
it starts, then against both servers (native and prebuilt): health, props, chat and embeddings,
router mode, stopping (the whole process group, the port freed), the API key kept off the
command line, the default server shared, and no server outliving Python.

The build: test_build.py; the model: test_model.py; which server runs: test_program.py;
orphaned servers (an owner killed with SIGKILL): test_orphans.py."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import pytest

from llm_nb._embedded.binary import program
from llm_nb._embedded.binary.program import (
    ServerProgram,
    native_program,
    prebuilt_program,
    router_program,
    server_program,
)
from llm_nb._embedded.process import default
from llm_nb._embedded.process.default import default_server
from llm_nb._embedded.process.server import LlamaServer, LlamaServerError, free_port
from tests.fake_llama_server import write_fake_llama_server

#: The real-server tests below that use ``llama_server`` run against both servers.
LLAMA_SERVER_KINDS = ("native", "prebuilt")


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read() or b"null")


def _post(url: str, body: dict[str, Any]) -> tuple[int, Any]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read() or b"null")


def _port_is_free(port: int) -> bool:
    """A new server could listen there (SO_REUSEADDR, as llama-server binds: the closed
    server's connections may linger in TIME_WAIT, which does not block a listener)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still "exists"; it is dead for our purposes
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 1024 <= port <= 65535
    assert _port_is_free(port)


def test_constructor_validation(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        LlamaServer(tmp_path / "bin")
    with pytest.raises(ValueError, match="exactly one"):
        LlamaServer(tmp_path / "bin", model=tmp_path / "m", models_dir=tmp_path)


def test_missing_binary_is_a_clear_error(tmp_path: Path) -> None:
    s = LlamaServer(tmp_path / "no-such-llama-server", model=tmp_path / "m.gguf")
    with pytest.raises(LlamaServerError, match="no-such-llama-server"):
        s.start(timeout=5)
    assert not s.is_running()


def test_command_line_flags(tmp_path: Path) -> None:
    single = LlamaServer(tmp_path / "bin", model=tmp_path / "m.gguf", alias="smollm2", port=9999)
    cmd = single.command()
    assert cmd[:5] == [str(tmp_path / "bin"), "-m", str(tmp_path / "m.gguf"), "-a", "smollm2"]
    for flags in (["--host", "127.0.0.1"], ["--port", "9999"], ["-c", "2048"], ["-np", "1"]):
        i = cmd.index(flags[0])
        assert cmd[i : i + 2] == flags
    assert "--no-warmup" in cmd
    assert cmd[cmd.index("-ngl") + 1] == "0"
    router = LlamaServer(tmp_path / "bin", models_dir=tmp_path, models_max=1)
    rcmd = router.command()
    assert rcmd[1:5] == ["--models-dir", str(tmp_path), "--models-max", "1"]
    assert "-m" not in rcmd
    assert router.url == f"http://127.0.0.1:{router.port}"


def test_secret_not_in_repr_command_or_env_leak(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, canary_api_key: str
) -> None:
    s = LlamaServer(tmp_path / "bin", model=tmp_path / "m.gguf", api_key=canary_api_key)
    assert canary_api_key not in repr(s)
    assert canary_api_key not in str(s)
    assert "***" in repr(s)
    assert canary_api_key not in " ".join(s.command())
    assert s._environment()["LLAMA_API_KEY"] == canary_api_key
    # a key inherited from the user's shell must not silently protect (or configure) our server
    monkeypatch.setenv("LLAMA_API_KEY", "inherited")
    monkeypatch.setenv("LLAMA_ARG_EMBEDDINGS", "1")
    plain = LlamaServer(tmp_path / "bin", model=tmp_path / "m.gguf")
    env = plain._environment()
    assert "LLAMA_API_KEY" not in env
    assert "LLAMA_ARG_EMBEDDINGS" not in env


# -- against a real server ------------------------------------------------------------------


def test_health_ok(llama_server: LlamaServer) -> None:
    assert llama_server.is_running()
    assert _get(f"{llama_server.url}/health") == (200, {"status": "ok"})


def test_props_single_mode(llama_server: LlamaServer, smollm2_gguf: Path) -> None:
    status, props = _get(f"{llama_server.url}/props")
    assert status == 200
    assert props.get("role") != "router"
    assert props["model_alias"] == "smollm2"
    assert props["total_slots"] == 4
    assert props["default_generation_settings"]["n_ctx"] == 1024  # 4096 shared by 4 slots
    assert Path(props["model_path"]) == smollm2_gguf


def test_single_server_chats_and_embeds(llama_server: LlamaServer) -> None:
    status, chat = _post(
        f"{llama_server.url}/v1/chat/completions",
        {"messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 8},
    )
    assert status == 200, chat
    assert chat["model"] == "smollm2"
    assert chat["usage"]["completion_tokens"] > 0
    assert chat["choices"][0]["message"]["content"]
    status, emb = _post(f"{llama_server.url}/v1/embeddings", {"input": ["hello", "world"]})
    assert status == 200, emb
    assert len(emb["data"]) == 2
    assert len(emb["data"][0]["embedding"]) == 576  # SmolLM2-135M n_embd


def test_props_and_models_router_mode(llama_router: LlamaServer) -> None:
    assert _get(f"{llama_router.url}/health")[0] == 200
    status, props = _get(f"{llama_router.url}/props")
    assert status == 200
    assert props["role"] == "router"
    assert props["max_instances"] == 1
    status, models = _get(f"{llama_router.url}/models")
    assert status == 200
    assert sorted(m["id"] for m in models["data"]) == ["smollm2-a", "smollm2-b"]
    for m in models["data"]:
        assert m["status"]["value"] in {"unloaded", "loading", "loaded"}


@pytest.mark.slow
def test_router_lru_evicts_with_models_max_1(llama_router: LlamaServer) -> None:
    def states() -> dict[str, str]:
        return {
            m["id"]: m["status"]["value"] for m in _get(f"{llama_router.url}/models")[1]["data"]
        }

    for name, other in (("smollm2-a", "smollm2-b"), ("smollm2-b", "smollm2-a")):
        status, chat = _post(
            f"{llama_router.url}/v1/chat/completions",
            {"model": name, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4},
        )
        assert status == 200, chat
        assert chat["model"] == name
        now = states()
        assert now[name] == "loaded"
        assert now[other] == "unloaded"


@pytest.fixture(params=LLAMA_SERVER_KINDS)
def any_program(request: pytest.FixtureRequest) -> ServerProgram:
    """Each server program in turn: the native build, then the prebuilt one."""
    if request.param == "native":
        return native_program(request.getfixturevalue("llama_server_bin"))
    return prebuilt_program()


def test_stop_kills_process_and_frees_port(
    any_program: ServerProgram, smollm2_gguf: Path, tmp_path: Path
) -> None:
    s = LlamaServer(any_program, model=smollm2_gguf, log_path=tmp_path / "s.log")
    with s:
        pid = s.pid
        assert pid is not None
        pids = [pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))]
        assert len(pids) == (2 if any_program.kind == "native" else 1)
        assert _get(f"{s.url}/health")[0] == 200
        assert not _port_is_free(s.port)
    assert not s.is_running()
    assert s.process is not None
    assert s.process.returncode is not None
    assert not any(_pid_alive(p) for p in pids)
    assert _port_is_free(s.port)
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", s.port)):
        pass
    s.stop()  # idempotent
    assert "stopped" in repr(s)


def test_early_exit_error_includes_log_tail(any_program: ServerProgram, tmp_path: Path) -> None:
    missing = tmp_path / "does-not-exist.gguf"
    s = LlamaServer(any_program, model=missing, log_path=tmp_path / "s.log")
    with pytest.raises(LlamaServerError) as info:
        s.start(timeout=60)
    msg = str(info.value)
    assert "exited with code" in msg
    assert str(tmp_path / "s.log") in msg
    assert "last" in msg
    assert "does-not-exist.gguf" in msg.split("last", 1)[1]
    assert not s.is_running()


def test_api_key_via_env_not_cmdline(
    any_program: ServerProgram, smollm2_gguf: Path, tmp_path: Path, canary_api_key: str
) -> None:
    s = LlamaServer(
        any_program, model=smollm2_gguf, api_key=canary_api_key, log_path=tmp_path / "s.log"
    )
    with s:
        assert canary_api_key not in repr(s)
        assert s.pid is not None
        for proc in (psutil.Process(s.pid), *psutil.Process(s.pid).children()):
            assert canary_api_key not in " ".join(proc.cmdline())
        # the key really reached the server: unauthenticated calls are refused
        assert _get(f"{s.url}/v1/models")[0] == 401
        auth = {"Authorization": f"Bearer {canary_api_key}"}
        assert _get(f"{s.url}/v1/models", auth)[0] == 200
    assert canary_api_key not in (tmp_path / "s.log").read_text()


def test_prebuilt_takes_llama_server_options(smollm2_gguf: Path, tmp_path: Path) -> None:
    """The llama-server options the prebuilt child translates reach its server."""
    s = LlamaServer(
        prebuilt_program(),
        model=smollm2_gguf,
        log_path=tmp_path / "s.log",
        extra_args=[
            "-n", "3", "-fa", "off", "--no-jinja", "--reasoning-format", "none",
            "--cache-reuse", "0", "--slot-save-path", str(tmp_path), "--no-slots",
        ],
    )  # fmt: skip
    with s:
        status, chat = _post(
            f"{s.url}/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}]}
        )
        assert status == 200, chat
        assert chat["usage"]["completion_tokens"] == 3  # -n 3 caps an unbounded request
        assert _get(f"{s.url}/slots")[0] == 501  # --no-slots


def test_server_does_not_outlive_python(
    llama_server_bin: Path, smollm2_gguf: Path, tmp_path: Path
) -> None:
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from llm_nb._embedded.process.server import LlamaServer
        s = LlamaServer(Path({str(llama_server_bin)!r}), model=Path({str(smollm2_gguf)!r}))
        s.start()
        print(s.pid, flush=True)
        # exit without stop(): the atexit hook must take the server down
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    pid = int(out.stdout.split()[0])
    deadline = time.monotonic() + 10
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _pid_alive(pid)


def test_default_server_singleton(
    any_program: ServerProgram, smollm2_gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LLAMA_SERVER_BIN", raising=False)
    monkeypatch.setenv("LLM_NB_SERVER", any_program.kind)
    monkeypatch.setattr(program, "ensure_llama_server", lambda progress=None: any_program.path)
    monkeypatch.setenv("LLM_NB_MODEL", str(smollm2_gguf))
    monkeypatch.setattr(default, "_DEFAULT", None)
    first = default_server(lambda _: None)
    try:
        assert first.program == any_program
        assert default_server(lambda _: None) is first
        status, props = _get(f"{first.url}/props")
        assert status == 200
        assert props["model_alias"] == "smollm2"
        assert props["total_slots"] == 4
    finally:
        first.stop()
    second = default_server(lambda _: None)  # a dead default is replaced
    try:
        assert second is not first
        assert second.is_running()
    finally:
        second.stop()


def test_the_local_server_needs_posix() -> None:
    program.check_platform("posix")
    with pytest.raises(program.UnsupportedPlatformError) as info:
        program.check_platform("nt")
    msg = str(info.value)
    assert "\n" not in msg and "Linux or macOS" in msg and "LLM_NB_LOCAL_URL" in msg


def test_local_on_windows_says_so_before_anything_starts(
    isolated_cache: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    s = LlamaServer(native_program(tmp_path / "llama-server"), model=tmp_path / "m.gguf")
    monkeypatch.setenv("LLM_NB_SERVER", "native")  # would build, were the check missing
    raised = []
    with monkeypatch.context() as windows:  # os.name back before pytest makes any path
        windows.setattr(os, "name", "nt")
        for step in (server_program, router_program, s.start):
            try:
                step()
            except program.UnsupportedPlatformError as exc:
                raised.append(str(exc))
    assert len(raised) == 3 and all("LLM_NB_LOCAL_URL" in m for m in raised)
    assert s.log_path is None and s.pid is None  # no log opened, no process started
    assert not any(isolated_cache.rglob("*"))  # nothing built or fetched


def test_the_server_modules_import_without_posix_only_names() -> None:
    """Windows has no SIGKILL, killpg, getpgrp, fork or register_at_fork; importing llm_nb there
    must work (``local`` then fails with one line, see above)."""
    code = textwrap.dedent(
        """
        import os, signal
        del signal.SIGKILL, os.killpg, os.getpgrp, os.register_at_fork, os.fork
        import llm_nb, llm_nb._embedded
        from llm_nb._embedded import lifetime, watchdog
        from llm_nb._embedded.binary import build, prebuilt, program
        from llm_nb._embedded.process import default, live, server
        print("imported")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "imported"


def test_asking_whether_it_runs_never_reaps_the_server(tmp_path: Path) -> None:
    """The hardware sampler asks from its own thread while :meth:`stop` waits out the grace
    period: reaping the leader there would let stop skip the group's SIGKILL."""
    fake = write_fake_llama_server(tmp_path / "llama-server")
    s = LlamaServer(native_program(fake), model=tmp_path / "m.gguf").start(timeout=60)
    leader = s.pid
    assert leader is not None
    os.kill(leader, signal.SIGKILL)
    os.waitid(os.P_PID, leader, os.WEXITED | os.WNOWAIT)  # exited, still unreaped
    assert not s.is_running()
    # still a zombie: stop() reaps it, after signalling the group
    assert os.waitid(os.P_PID, leader, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    s.stop()
    with pytest.raises(ChildProcessError):
        os.waitid(os.P_PID, leader, os.WEXITED | os.WNOHANG | os.WNOWAIT)


def test_stop_kills_the_group_before_reaping_its_leader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the leader is reaped its pid, the group's id, may be reused by an unrelated
    process; the final SIGKILL to the group must come while the leader is still unreaped."""
    fake = write_fake_llama_server(tmp_path / "llama-server")
    s = LlamaServer(native_program(fake), model=tmp_path / "m.gguf").start(timeout=60)
    leader = s.pid
    assert leader is not None
    sent: list[tuple[int, bool]] = []
    killpg = os.killpg

    def recording_killpg(pgid: int, sig: int) -> None:
        if pgid == leader:
            try:
                os.waitid(os.P_PID, leader, os.WEXITED | os.WNOHANG | os.WNOWAIT)
                reaped = False
            except ChildProcessError:
                reaped = True
            sent.append((sig, reaped))
        killpg(pgid, sig)

    monkeypatch.setattr(os, "killpg", recording_killpg)
    s.stop()
    monkeypatch.undo()
    assert [sig for sig, _ in sent] == [signal.SIGTERM, signal.SIGKILL]
    assert not any(reaped for _, reaped in sent), sent
    assert not s.is_running()
