"""What a ``gpu=`` request means, on both sides of the wire.

Request syntax, as Modal accepts it: ``"any"``, ``"H100"``, ``"H100:2"``,
``"A100-80GB"``, ``"a100-40gb:4"`` (case-insensitive), and fallbacks in
order of preference, ``"H100,A100-80GB"``. The client checks a request
before it travels and places runs with ``gpu_matches``; the agent allocates
with the same rules.

    >>> parse_gpu_request("h100:2,any")
    [GpuOption(type='H100', count=2), GpuOption(type='ANY', count=1)]
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

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


def describe(gpus: list[Gpu]) -> str:
    """'1× NVIDIA H100 80GB HBM3, 2× NVIDIA A10G' (or 'no GPUs')."""
    counts: dict[str, int] = {}
    for gpu in gpus:
        counts[gpu.name] = counts.get(gpu.name, 0) + 1
    return ", ".join(f"{n}× {name}" for name, n in counts.items()) or "no GPUs"
