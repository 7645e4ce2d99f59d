"""The notebooks in this folder run as tests: nbval (options in pyproject.toml) executes every
code cell in a kernel of its own per notebook, against the real llama-server.

What this adds to nbval:

* Every notebook cell gets the ``server`` and ``slow`` markers, so ``pytest -m "not server"``
  leaves the notebooks out, and tests/conftest.py builds llama-server before the tests start.
* Before a notebook's kernel starts, the test session's own local server (llm_nb's
  ``default_server()``, the binary the other server tests use) is started or reused, and its
  URL goes to the kernel as ``LLM_NB_LOCAL_URL``, as ``python -m llm_nb notebook`` does. So
  ``local`` in the notebooks uses that one server rather than one per kernel, which nbval
  would leave running: it kills kernels at the end, so their exit handlers never run.
* Kernels get a fake ``LLAMA_API_KEY`` (sent to the keyless local servers, which ignore it)
  and every cell's output is searched for it: no notebook may print a key.
* Kernels import llm_nb from this checkout (the repository root goes first on their
  ``PYTHONPATH``, as ``pythonpath = ["."]`` does for the tests) and write their call records
  to a throwaway ``LLM_NB_DATA_DIR``, like the other tests.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Generator
from typing import Any

import pytest

#: Fake secret handed to the kernels; must never appear in a cell's output.
CANARY_API_KEY = "nb-canary-key-6d1e0b9a2f7c4835e1"


def _is_notebook_cell(item: pytest.Item) -> bool:
    return item.path.suffix == ".ipynb"


@pytest.hookimpl(tryfirst=True)  # before -m deselection looks at the markers
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _is_notebook_cell(item):
            item.add_marker(pytest.mark.server)
            item.add_marker(pytest.mark.slow)


_data_dir: str | None = None


def _kernel_environment(root: str) -> dict[str, str]:
    global _data_dir
    from llm_nb._embedded import default_server

    path = os.environ.get("PYTHONPATH")
    env = {
        "LLM_NB_LOCAL_URL": os.environ.get("LLM_NB_LOCAL_URL") or default_server().url,
        "LLAMA_API_KEY": CANARY_API_KEY,
        "PYTHONPATH": os.pathsep.join([root, path]) if path else root,
    }
    if "LLM_NB_DATA_DIR" not in os.environ:  # tests/conftest.py sets it when it is loaded
        _data_dir = _data_dir or tempfile.mkdtemp(prefix="llm_nb-notebook-data-")
        env["LLM_NB_DATA_DIR"] = _data_dir
    return env


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, Any, Any]:
    # nbval starts a notebook's kernel while setting up its first cell; the kernel inherits
    # this process's environment then. It is restored after, so other tests never see it.
    if not _is_notebook_cell(item):
        return (yield)
    env = _kernel_environment(str(item.config.rootpath))
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        return (yield)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    try:
        return (yield)
    finally:
        outputs = getattr(item, "test_outputs", None) if _is_notebook_cell(item) else None
        if outputs and CANARY_API_KEY in json.dumps(outputs, default=str):
            raise AssertionError(f"{item.nodeid} printed an API key (the test canary)")
