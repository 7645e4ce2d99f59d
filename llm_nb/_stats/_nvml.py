"""GPU readings through NVML (``pynvml``, from the optional ``nvidia-ml-py`` package).

:class:`Gpus` reads utilization, memory, power and the total-energy counter over **all**
devices: memory, power and energy are summed and utilization is averaged, because a model split
across GPUs loads all of them and the first device alone would under-report. Without a GPU,
without NVML, or for any value a driver does not report, a reading is NaN; nothing here raises.
"""

from __future__ import annotations

import functools
import importlib
import logging
import math
from typing import Any

log = logging.getLogger(__name__)

NAN = math.nan
#: "MB" means MiB (2**20 bytes) throughout, as ``nvidia-smi`` and ``free`` print them.
MIB = float(2**20)


class Gpus:
    """Opened NVML devices, read together. A field a device refuses once stays NaN."""

    _FIELDS = ("util", "mem", "power", "energy")

    def __init__(self, nvml: Any, handles: list[Any]) -> None:
        self.nvml = nvml
        self.handles = handles
        # Drivers answer NotSupported for power or energy on some boards; asking again every
        # tick would only raise again, and exceptions are the expensive path.
        self.supported = dict.fromkeys(self._FIELDS, True)

    def read(self) -> tuple[float, float, float, float]:
        nvml = self.nvml
        util = mem = power = energy = 0.0
        for h in self.handles:
            if self.supported["util"]:
                try:
                    util += nvml.nvmlDeviceGetUtilizationRates(h).gpu
                except Exception as exc:
                    self._refuse("util", exc)
            if self.supported["mem"]:
                try:
                    mem += nvml.nvmlDeviceGetMemoryInfo(h).used
                except Exception as exc:
                    self._refuse("mem", exc)
            if self.supported["power"]:
                try:
                    power += nvml.nvmlDeviceGetPowerUsage(h)
                except Exception as exc:
                    self._refuse("power", exc)
            if self.supported["energy"]:
                try:
                    energy += nvml.nvmlDeviceGetTotalEnergyConsumption(h)
                except Exception as exc:
                    self._refuse("energy", exc)
        ok = self.supported
        return (
            util / len(self.handles) if ok["util"] else NAN,
            mem / MIB if ok["mem"] else NAN,
            power / 1000.0 if ok["power"] else NAN,  # mW -> W
            energy if ok["energy"] else NAN,  # mJ, converted per window
        )

    def _refuse(self, field: str, exc: Exception) -> None:
        self.supported[field] = False
        log.debug("NVML does not report GPU %s here: %r", field, exc)


def open_nvml(nvml: Any | None) -> Gpus | None:
    """Initialize NVML (``pynvml`` unless a stand-in is given); None where there is no GPU."""
    try:
        if nvml is None:
            nvml = importlib.import_module("pynvml")
        nvml.nvmlInit()
        count = int(nvml.nvmlDeviceGetCount())
        handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
    # Optional telemetry: a missing package, library or driver (ImportError, NVMLError,
    # OSError from ctypes) all mean "no GPU columns", never a failed call.
    except Exception as exc:
        log.debug("no GPU sampling (NVML unavailable): %r", exc)
        return None
    return Gpus(nvml, handles) if handles else None


@functools.cache
def system_gpus() -> Gpus | None:
    """This machine's GPUs, opened once per process (nvmlInit loads the driver library, which
    takes tens of ms)."""
    return open_nvml(None)
