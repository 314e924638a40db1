"""The host's GPUs: what NVML reports, and what a ``gpu=`` request means.

NVML sits behind one small interface (``Inventory.read()``). A host without
NVML or without GPUs has zero GPUs, never an error. ``NBMODAL_FAKE_GPUS``
declares a test double (``"H100:2,A10G:1"``) for machines without a GPU; the
allocation logic above it is the same.

Request syntax, as Modal accepts it: ``"any"``, ``"H100"``, ``"H100:2"``,
``"A100-80GB"``, ``"a100-40gb:4"`` (case-insensitive), and fallbacks in
order of preference, ``"H100,A100-80GB"``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from nbmodal_wire.gpu_request import (  # noqa: F401  (re-exported: the agent's GPU vocabulary)
    KNOWN_TYPES,
    Gpu,
    GpuOption,
    GpuRequestError,
    describe,
    gpu_matches,
    parse_gpu_request,
)

log = logging.getLogger(__name__)

class Inventory:
    """The host's GPUs with their current figures."""

    def read(self) -> list[Gpu]:
        raise NotImplementedError


class NvmlInventory(Inventory):
    """The real thing, through nvidia-ml-py. No NVML or no driver: no GPUs."""

    def __init__(self) -> None:
        self._nvml = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
        except ImportError:
            log.info("nvidia-ml-py is not installed: no GPUs")
        except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, …
            log.info("NVML unavailable (%s): no GPUs", exc)

    def read(self) -> list[Gpu]:
        nvml = self._nvml
        if nvml is None:
            return []
        return [_read_card(nvml, index) for index in range(nvml.nvmlDeviceGetCount())]


class FakeInventory(Inventory):
    """Declared GPUs for machines without one: ``"H100:2,A10G:1"``."""

    def __init__(self, declaration: str) -> None:
        self._gpus: list[Gpu] = []
        for option in parse_gpu_request(declaration):
            if option.type == "ANY":
                raise GpuRequestError(f"NBMODAL_FAKE_GPUS={declaration!r}: name a type, not 'any'")
            name, gib = KNOWN_TYPES[option.type]
            for _ in range(option.count):
                index = len(self._gpus)
                self._gpus.append(Gpu(index=index, uuid=f"GPU-fake{index:04d}-0000-0000-0000-000000000000",
                                      name=name, memory_total=gib * 2**30))

    def read(self) -> list[Gpu]:
        return [Gpu(**vars(gpu)) for gpu in self._gpus]


def host_inventory(state_dir: Path | None = None) -> Inventory:
    """NVML, unless a test double is declared: ``NBMODAL_FAKE_GPUS``, or a ``fake-gpus`` file in the state dir."""
    declaration = os.environ.get("NBMODAL_FAKE_GPUS", "").strip()
    fake_file = state_dir / "fake-gpus" if state_dir is not None else None
    if not declaration and fake_file is not None and fake_file.is_file():
        declaration = fake_file.read_text().strip()
    if declaration:
        log.warning("using declared fake GPUs %r (a test double), not NVML", declaration)
        return FakeInventory(declaration)
    return NvmlInventory()


def _read_card(nvml, index: int) -> Gpu:
    """One card's identity and current figures; a figure the card can't give reads as zero."""
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    gpu = Gpu(index=index, uuid=_text(nvml.nvmlDeviceGetUUID(handle)), name=_text(nvml.nvmlDeviceGetName(handle)))
    memory = nvml.nvmlDeviceGetMemoryInfo(handle)
    gpu.memory_total, gpu.memory_used = int(memory.total), int(memory.used)
    gpu.utilization = _optional(lambda: nvml.nvmlDeviceGetUtilizationRates(handle).gpu, 0)
    gpu.temperature = _optional(lambda: nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU), 0)
    gpu.power_w = _optional(lambda: nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0, 0.0)
    gpu.processes = [(p.pid, int(p.usedGpuMemory or 0)) for p in
                     _optional(lambda: nvml.nvmlDeviceGetComputeRunningProcesses(handle), [])]
    return gpu


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _optional(read, default):
    try:
        return read()
    except Exception:  # a card or driver that doesn't support one figure
        return default
