"""A real ipykernel for tests: this interpreter, this checkout's llm_nb, a scratch data dir."""

from __future__ import annotations

import json
import os
import queue
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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


def iopub_until_idle(
    kc: BlockingKernelClient, msg_id: str, timeout: float
) -> Iterator[dict[str, Any]]:
    """The IOPub messages of request ``msg_id``, up to and including its ``idle`` status;
    AssertionError (naming what came) if the kernel is not idle within ``timeout`` s."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        try:
            msg = kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"no idle within {timeout} s; got {seen}") from None
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        seen.append(msg)
        yield msg
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return
