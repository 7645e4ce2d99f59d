"""Fixtures of the widget tests: the served model, no default model left behind, the loop that
plays the kernel's, a dead host, and a real kernel."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

from llm_nb._embedded.process.server import free_port
from llm_nb._session import registry
from llm_nb._widgets import _defaults
from llm_nb._wire.retry import RetryPolicy
from llm_nb.providers.llamacpp import LlamaCppProvider
from tests.kernels import started_kernel
from tests.widgets.drive import KernelSession, forget, host_of


@pytest.fixture
def model(llama_server: Any) -> str:
    return f"llamacpp:smollm2@{host_of(llama_server.url)}"


@pytest.fixture(autouse=True)
def fresh_default() -> Iterator[None]:
    """Each test starts and ends with no chosen default model."""
    yield
    _defaults._chosen = None
    sh = InteractiveShell.instance() if InteractiveShell.initialized() else None
    if sh is not None:
        sh.config.LLMMagics.pop("default_model", None)
        magics = sh.magics_manager.registry.get("LLMMagics")
        if magics is not None:
            magics.default_model = ""


@pytest.fixture
async def kernel_loop() -> AsyncIterator[asyncio.AbstractEventLoop]:
    """This test's loop plays the kernel's; its connections are closed afterwards."""
    yield asyncio.get_running_loop()
    for p in registry().providers():
        await p.aclose()


@pytest.fixture
def dead_host() -> Iterator[str]:
    """A registered llama-server host where nothing listens (no retries: fails at once)."""
    host = f"127.0.0.1:{free_port()}"
    registry().add(LlamaCppProvider(f"http://{host}", retry=RetryPolicy(max_retries=0)))
    yield host
    forget(host)


@pytest.fixture(scope="module")
def kernel(llama_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KernelSession]:
    with started_kernel(tmp_path_factory, "llm_nb widgets") as (km, kc):
        yield KernelSession(km, kc)
