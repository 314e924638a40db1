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
import re
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

# Modal's GPU type names, with the memory NVML reports for the card (GiB) and
# a representative NVML name (used by the fake inventory).
KNOWN_TYPES: dict[str, tuple[str, int]] = {
    "T4": ("Tesla T4", 15),
    "L4": ("NVIDIA L4", 22),
    "A10G": ("NVIDIA A10G", 22),
    "A10": ("NVIDIA A10", 22),
    "L40S": ("NVIDIA L40S", 45),
    "A100": ("NVIDIA A100-SXM4-40GB", 40),
    "A100-40GB": ("NVIDIA A100-SXM4-40GB", 40),
    "A100-80GB": ("NVIDIA A100-SXM4-80GB", 80),
    "H100": ("NVIDIA H100 80GB HBM3", 80),
    "H100-80GB": ("NVIDIA H100 80GB HBM3", 80),
    "H200": ("NVIDIA H200", 141),
    "B200": ("NVIDIA B200", 180),
}
_MEMORY_SUFFIX = re.compile(r"^(?P<family>[A-Z0-9]+?)-(?P<gib>\d+)GB$")


class GpuRequestError(ValueError):
    """A ``gpu=`` value that doesn't parse or names an unknown type."""


@dataclass(frozen=True)
class GpuOption:
    type: str    # "ANY", "H100", "A100-80GB"
    count: int

    def __str__(self) -> str:
        name = "any" if self.type == "ANY" else self.type
        return name if self.count == 1 else f"{name}:{self.count}"


def parse_gpu_request(text: str) -> list[GpuOption]:
    """``"H100:2,A100-80GB"`` → options in order of preference; empty text → []."""
    options = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, _, count_text = part.partition(":")
        name = name.strip().upper()
        try:
            count = int(count_text) if count_text else 1
        except ValueError:
            raise GpuRequestError(f"gpu={text!r}: the count in {part!r} must be a whole number") from None
        if count < 1:
            raise GpuRequestError(f"gpu={text!r}: the count in {part!r} must be at least 1")
        if name != "ANY" and name not in KNOWN_TYPES:
            raise GpuRequestError(f"gpu={text!r}: unknown GPU type {name!r}; known types: any, "
                                  + ", ".join(KNOWN_TYPES))
        options.append(GpuOption(name, count))
    return options


@dataclass
class Gpu:
    index: int
    uuid: str
    name: str
    memory_total: int = 0    # bytes
    memory_used: int = 0
    utilization: int = 0     # percent
    temperature: int = 0     # Celsius
    power_w: float = 0.0
    processes: list[tuple[int, int]] = field(default_factory=list)  # (pid, bytes)


def gpu_matches(option: GpuOption, gpu: Gpu) -> bool:
    """Whether a card satisfies a type: NVML's "NVIDIA H100 80GB HBM3" is H100, H100-80GB and any."""
    if option.type == "ANY":
        return True
    words = re.split(r"[\s\-_]+", gpu.name.upper().replace("NVIDIA", "").replace("TESLA", ""))
    match = _MEMORY_SUFFIX.match(option.type)
    family = match.group("family") if match else option.type
    if family not in words:
        return False
    if match:  # a memory size is asked for: the card must have about that much
        gib = gpu.memory_total / 2**30
        return abs(gib - int(match.group("gib"))) <= 0.15 * int(match.group("gib"))
    return True


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
        gpus = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            gpu = Gpu(index=index, uuid=_text(nvml.nvmlDeviceGetUUID(handle)), name=_text(nvml.nvmlDeviceGetName(handle)))
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            gpu.memory_total, gpu.memory_used = int(memory.total), int(memory.used)
            gpu.utilization = _optional(lambda: nvml.nvmlDeviceGetUtilizationRates(handle).gpu, 0)
            gpu.temperature = _optional(lambda: nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU), 0)
            gpu.power_w = _optional(lambda: nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0, 0.0)
            gpu.processes = [(p.pid, int(p.usedGpuMemory or 0)) for p in
                             _optional(lambda: nvml.nvmlDeviceGetComputeRunningProcesses(handle), [])]
            gpus.append(gpu)
        return gpus


class FakeInventory(Inventory):
    """Declared GPUs for machines without one: ``"H100:2,A10G:1"``."""

    def __init__(self, declaration: str) -> None:
        self._gpus = []
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


def describe(gpus: list[Gpu]) -> str:
    """'1× NVIDIA H100 80GB HBM3, 2× NVIDIA A10G' (or 'no GPUs')."""
    counts: dict[str, int] = {}
    for gpu in gpus:
        counts[gpu.name] = counts.get(gpu.name, 0) + 1
    return ", ".join(f"{n}× {name}" for name, n in counts.items()) or "no GPUs"


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _optional(read, default):
    try:
        return read()
    except Exception:  # a card or driver that doesn't support one figure
        return default
