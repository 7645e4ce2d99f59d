"""Which server runs (llm_nb/_embedded/binary/program.py, prebuilt.py): LLM_NB_SERVER chooses
the prebuilt server (xllamacpp, the default), the native build or a path; what the prebuilt
one accepts and how it says why it cannot run. The processes themselves: test_server.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from llm_nb import InvalidOptionError
from llm_nb._embedded.binary import program
from llm_nb._embedded.binary.build import (
    cached_llama_server_path,
)
from llm_nb._embedded.binary.program import (
    RouterNeedsNativeError,
    native_program,
    prebuilt_program,
    router_program,
    server_program,
)
from llm_nb._embedded.cache import BuildError
from llm_nb._embedded.process.server import LlamaServer, LlamaServerError
from tests.fake_llama_server import fake_executable


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
    fake = fake_executable(tmp_path / "bin" / "llama-server")
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
    built = fake_executable(cached_llama_server_path())
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
