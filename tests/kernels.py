"""A real ipykernel for tests: this interpreter, this checkout's llm_nb, a scratch data dir."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

REPO = Path(__file__).resolve().parents[1]


@contextmanager
def started_kernel(
    tmp_path_factory: pytest.TempPathFactory, display_name: str
) -> Iterator[tuple[KernelManager, BlockingKernelClient]]:
    """A kernel ready for cells, with its blocking client; shut down on the way out."""
    specs = tmp_path_factory.mktemp("kernels")
    (specs / "llmnb").mkdir()
    # This interpreter, explicitly: a "python3" spec may name whatever python is on PATH.
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec = {"argv": argv, "display_name": display_name, "language": "python"}
    (specs / "llmnb" / "kernel.json").write_text(json.dumps(spec))
    km = KernelManager(
        kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(specs)]), kernel_name="llmnb"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "LLM_NB_DATA_DIR": str(tmp_path_factory.mktemp("llm_nb-data")),
    }
    km.start_kernel(env=env)
    kc = km.blocking_client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        yield km, kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
