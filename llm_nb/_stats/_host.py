"""The facts of the host calls ran on: CPU, memory, OS, versions and GPUs, once per process.

"GB" means GiB (2**30 bytes), as ``free`` prints it.
"""

from __future__ import annotations

import functools
import logging
import os
import platform
import subprocess
import sys
from typing import Any

from ._nvml import open_nvml, system_gpus

log = logging.getLogger(__name__)


@functools.cache
def host_facts() -> dict[str, Any]:
    """The machine and software versions, once per process (treat the dict as read-only).

    Keys: cpu_model, cpu_cores_logical, cpu_cores_physical, ram_gb (GiB), os, arch, python,
    llm_nb, httpx (versions), gpu_name (distinct names joined by ", "), gpu_driver, gpu_count
    (None, None, 0 without a GPU). Unknown values are None.
    """
    return host_facts_from(None)


def host_facts_from(nvml: Any | None) -> dict[str, Any]:
    """:func:`host_facts`, with ``nvml`` standing in for the ``pynvml`` module unless None."""
    from importlib import metadata

    from .. import __version__

    try:
        import psutil  # type: ignore[import-untyped, unused-ignore]

        physical = psutil.cpu_count(logical=False)
        ram_gb: float | None = round(psutil.virtual_memory().total / 2**30, 1)
    except Exception as exc:  # psutil is a dependency, but a locked-down /proc can refuse
        log.debug("psutil host facts unavailable: %r", exc)
        physical, ram_gb = None, None
    try:
        httpx_version: str | None = metadata.version("httpx")
    except metadata.PackageNotFoundError:
        httpx_version = None
    facts: dict[str, Any] = {
        "cpu_model": _cpu_model(),
        "cpu_cores_logical": os.cpu_count(),
        "cpu_cores_physical": physical,
        "ram_gb": ram_gb,
        "os": platform.platform(),
        "arch": platform.machine() or None,
        "python": platform.python_version(),
        "llm_nb": __version__,
        "httpx": httpx_version,
        "gpu_name": None,
        "gpu_driver": None,
        "gpu_count": 0,
    }
    gpus = system_gpus() if nvml is None else open_nvml(nvml)
    if gpus is not None:
        try:
            names = [_text(gpus.nvml.nvmlDeviceGetName(h)) for h in gpus.handles]
            facts["gpu_name"] = ", ".join(dict.fromkeys(names))
            facts["gpu_driver"] = _text(gpus.nvml.nvmlSystemGetDriverVersion())
        except Exception as exc:
            log.debug("NVML device facts unavailable: %r", exc)
        facts["gpu_count"] = len(gpus.handles)
    return facts


def _text(value: Any) -> str:
    # nvidia-ml-py < 11.515 returns bytes, later versions str.
    return value.decode() if isinstance(value, bytes) else str(value)


def _cpu_model() -> str | None:
    """The CPU's marketing name, without spawning a process where the OS allows."""
    try:
        if sys.platform.startswith("linux"):
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                for line in f:
                    # x86 says "model name"; many ARM kernels only "Hardware" or "Model".
                    key, _, value = line.partition(":")
                    if key.strip() in ("model name", "Hardware", "Model") and value.strip():
                        return value.strip()
        elif sys.platform == "win32":
            import winreg

            with winreg.OpenKey(
                winreg.HKEY_LOCAL_MACHINE, r"HARDWARE\DESCRIPTION\System\CentralProcessor\0"
            ) as key:
                return str(winreg.QueryValueEx(key, "ProcessorNameString")[0]).strip()
        elif sys.platform == "darwin":
            # macOS has no file for it; one sysctl, once per process (host_facts is cached).
            out = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"],
                capture_output=True,
                text=True,
                timeout=2,
                check=False,
            ).stdout.strip()
            if out:
                return out
    except (OSError, subprocess.SubprocessError) as exc:
        log.debug("CPU model unavailable: %r", exc)
    return platform.processor() or None
