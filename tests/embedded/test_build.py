"""The native llama-server build (llm_nb/_embedded/binary/build.py) and its cache: where a
build is kept (per build options and CPU), how a binary is found, the build run once however
many ask at once, and clear errors when build tools are missing or the build fails; the
built binary runs and uses no instruction this CPU may lack."""

from __future__ import annotations

import io
import platform
import re
import shutil
import subprocess
import tarfile
import threading
import time
from pathlib import Path

import pytest

from llm_nb._embedded.binary import build
from llm_nb._embedded.binary.build import (
    BuildToolsMissingError,
    build_step,
    cached_llama_server_path,
    cpu_fingerprint,
    ensure_llama_server,
    find_llama_server,
)
from llm_nb._embedded.cache import BuildError, cache_dir
from tests.fake_llama_server import fake_executable


def _tarball(path: Path, files: dict[str, str]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


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
    fake = fake_executable(tmp_path / "bin" / "my-llama-server")
    monkeypatch.setenv("LLAMA_SERVER_BIN", str(fake))
    assert find_llama_server() == fake
    assert ensure_llama_server(lambda _: None) == fake  # no build when the env names a binary


def test_find_llama_server_env_must_exist(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LLAMA_SERVER_BIN", str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="LLAMA_SERVER_BIN"):
        find_llama_server()


def test_find_llama_server_order(isolated_cache: Path, tmp_path: Path) -> None:
    assert find_llama_server() is None
    on_path = fake_executable(tmp_path / "empty-path" / "llama-server")
    assert find_llama_server() == on_path
    cached = fake_executable(cached_llama_server_path())
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
        fake_executable(target)

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
