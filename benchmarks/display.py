"""Display cost in a real kernel: a 10,000-token answer streamed through ``%%llm``.

An ipykernel is started with jupyter_client (this interpreter), ``%load_ext llm_nb`` is run,
and the same answer is fetched twice per case: through ``%%llm`` (live markdown display,
updated in place) and through a plain ``for _ in llm_nb.stream(...)`` loop in the kernel
(same stream, no display: the baseline). For each run: the kernel process's CPU time
(psutil, all threads, 10 ms resolution), wall time, and the IOPub messages the cell caused
(count and JSON bytes of ``display_data`` / ``update_display_data``). Two cases: the
firehose (all tokens at once) and a paced stream (``paced-<R>`` tokens per second), where the
number of updates should follow ``LLMMagics.throttle_s``, not the token rate.
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from ._common import ROOT, Row, Section, Sizes, child_env, firehose, have, prime

PROMPT = "Tell me a story."


class Kernel:
    """An ipykernel of this interpreter, with a blocking client."""

    def __init__(self) -> None:
        from jupyter_client.kernelspec import KernelSpecManager
        from jupyter_client.manager import KernelManager

        self._specs = tempfile.TemporaryDirectory(prefix="llm_nb-bench-kernel-")
        spec = Path(self._specs.name) / "llm_nb_bench"
        spec.mkdir()
        argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        spec.joinpath("kernel.json").write_text(
            json.dumps({"argv": argv, "display_name": "llm_nb bench", "language": "python"})
        )
        ksm = KernelSpecManager(kernel_dirs=[self._specs.name])
        self.km = KernelManager(kernel_name="llm_nb_bench", kernel_spec_manager=ksm)
        self.km.start_kernel(env=child_env(), cwd=str(ROOT))
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)
        import psutil

        pid = self.km.provisioner.pid if self.km.provisioner is not None else None
        self.process = psutil.Process(pid)

    def cpu_s(self) -> float:
        t = self.process.cpu_times()
        return float(t.user + t.system)

    def run(self, code: str, timeout: float = 300.0) -> dict[str, Any]:
        """Execute ``code``; the IOPub traffic it caused, its kernel CPU and wall time."""
        counts: Counter[str] = Counter()
        sizes: Counter[str] = Counter()
        c0, t0 = self.cpu_s(), time.perf_counter()
        msg_id = self.kc.execute(code)
        error = None
        stdout: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            msg = self.kc.get_iopub_msg(timeout=max(deadline - time.monotonic(), 0.1))
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind = msg["msg_type"]
            counts[kind] += 1
            sizes[kind] += len(json.dumps(msg["content"]))
            if kind == "stream":
                stdout.append(msg["content"]["text"])
            if kind == "error":
                error = f"{msg['content']['ename']}: {msg['content']['evalue']}"[:300]
            if kind == "status" and msg["content"]["execution_state"] == "idle":
                break
        wall, cpu = time.perf_counter() - t0, self.cpu_s() - c0
        return {
            "counts": dict(counts),
            "bytes": dict(sizes),
            "wall_s": wall,
            "cpu_s": cpu,
            "error": error,
            "stdout": "".join(stdout)[-2000:],
        }

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)
        self._specs.cleanup()


def _cells(model_id: str, tokens: int) -> tuple[str, str]:
    magic = f"%%llm {model_id} -n {tokens}\n{PROMPT}"
    plain = f"for _ in llm_nb.stream({model_id!r}, {PROMPT!r}, max_tokens={tokens}):\n    pass"
    return magic, plain


def measure(sizes: Sizes) -> Section:
    section = Section("display")
    if not (have("ipykernel") and have("jupyter_client") and have("psutil")):
        section.rows.append(_missing("ipykernel / jupyter_client / psutil not installed"))
        return section
    with firehose() as url:
        host = url.removeprefix("http://")
        prime(url, "sse", sizes.display_tokens)
        kernel = Kernel()
        try:
            setup = kernel.run("%load_ext llm_nb\nimport llm_nb")
            if setup["error"] or not _has_magic(kernel):
                section.rows.append(_missing(setup["error"] or "%%llm is not registered"))
                return section
            throttle = _throttle(kernel)
            warm_magic, warm_plain = _cells(f"openai:firehose@{host}", 50)
            kernel.run(warm_magic)
            kernel.run(warm_plain)
            rate = int(sizes.display_rate)
            for case, model in (
                ("firehose", "firehose"),
                (f"paced {rate} tokens/s", f"paced-{rate}"),
            ):
                magic, plain = _cells(f"openai:{model}@{host}", sizes.display_tokens)
                shown = kernel.run(magic)
                bare = kernel.run(plain)
                idle = kernel.run(f"import time; time.sleep({shown['wall_s']:.3f})")
                section.raw[case] = {"%%llm": shown, "plain stream": bare, "idle": idle}
                section.rows += _rows(case, sizes.display_tokens, shown, bare, idle, throttle)
        finally:
            kernel.close()
    return section


def _has_magic(kernel: Kernel) -> bool:
    probe = kernel.run("assert 'llm' in get_ipython().magics_manager.magics['cell']")
    return probe["error"] is None


def _throttle(kernel: Kernel) -> float:
    """``LLMMagics.throttle_s`` as the kernel has it."""
    result = kernel.run("print(get_ipython().find_cell_magic('llm').__self__.throttle_s)")
    try:
        return float(result["stdout"].strip())
    except ValueError:
        return 0.1


def _rows(
    case: str,
    tokens: int,
    shown: dict[str, Any],
    bare: dict[str, Any],
    idle: dict[str, Any],
    throttle: float,
) -> list[Row]:
    errors = "; ".join(
        f"{k}: {v['error']}" for k, v in (("%%llm", shown), ("plain", bare)) if v["error"]
    )
    counts, size = shown["counts"], shown["bytes"]
    updates = counts.get("update_display_data", 0)
    iopub_kb = (size.get("display_data", 0) + size.get("update_display_data", 0)) / 1024
    bound = math.floor(shown["wall_s"] / throttle) + 2
    label = f"%%llm, {tokens:,} tokens, {case}"
    return [
        Row(
            "display",
            f"kernel CPU: {label} vs the same stream without display",
            shown["cpu_s"] * 1e3,
            bare["cpu_s"] * 1e3,
            "llm_nb.stream loop in the kernel",
            "ms",
            target="(info)",
            note=f"wall {shown['wall_s']:.2f} s vs {bare['wall_s']:.2f} s; an idle kernel "
            f"over the same wall: {idle['cpu_s'] * 1e3:.0f} ms" + (f"; {errors}" if errors else ""),
        ),
        Row(
            "display",
            f"display updates: {label}",
            float(updates),
            float(bound),
            f"wall / throttle_s ({throttle:g} s) + 2",
            "messages",
            target="≤ bound",
            met=updates <= bound,
            note=f"{counts.get('display_data', 0)} display_data + {updates} "
            f"update_display_data, {iopub_kb:,.0f} KiB of IOPub JSON; "
            f"{counts.get('stream', 0)} stream messages",
        ),
    ]


def _missing(why: str) -> Row:
    return Row(
        "display",
        "%%llm display cost in a kernel",
        None,
        None,
        "",
        "",
        target="(info)",
        note=f"not available: {why}",
    )
