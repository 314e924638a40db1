"""Who holds what: whole GPUs, whole CPU cores and reserved memory, never one unit to two containers.

A container that asks for ``gpu=``, ``cpu=`` or ``memory=`` gets its cards,
its cores (it is pinned to them) and its share of the host's memory for as
long as it lives; one that asks for none shares whatever is left, as before.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from remote_agent.gpus import Gpu, GpuOption, Inventory, describe, gpu_matches, parse_gpu_request


class Unsatisfiable(Exception):
    """A request this host can never meet; ``kind`` is "gpu", "cpu" or "memory"."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class GpuUnsatisfiable(Unsatisfiable):
    """A GPU request this host can never meet."""

    def __init__(self, message: str) -> None:
        super().__init__("gpu", message)


@dataclass
class Request:
    options: list[GpuOption]
    cores: int
    memory_mib: int
    text: str  # as the user wrote it, for messages

    @classmethod
    def of(cls, spec) -> Request:
        parts = [f"gpu={spec.gpu}"] if spec.gpu else []
        parts += [f"cpu={spec.cpu:g}"] if spec.cpu else []
        parts += [f"memory={spec.memory_mib}"] if spec.memory_mib else []
        return cls(parse_gpu_request(spec.gpu), math.ceil(spec.cpu) if spec.cpu > 0 else 0, spec.memory_mib,
                   " ".join(parts))


@dataclass
class Allocation:
    gpus: list[Gpu] = field(default_factory=list)
    cores: list[int] = field(default_factory=list)
    memory_mib: int = 0


class Allocator:
    def __init__(self, inventory: Inventory, cores: list[int] | None = None, memory_mib: int | None = None) -> None:
        self.inventory = inventory
        self.gpus = inventory.read()  # the cards; their figures are re-read for telemetry
        self.cores = sorted(cores if cores is not None else os.sched_getaffinity(0))
        self.memory_mib = memory_mib if memory_mib is not None else _host_memory_mib()
        self.holders: dict[int, str] = {}       # GPU index -> holder
        self.core_holders: dict[int, str] = {}  # core -> holder
        self.memory_held: dict[str, int] = {}   # holder -> MiB

    def check_satisfiable(self, request: Request) -> None:
        if request.options and not any(sum(gpu_matches(option, gpu) for gpu in self.gpus) >= option.count
                                       for option in request.options):
            raise GpuUnsatisfiable(f"{request.text} can never be met on this host: it has {describe(self.gpus)}")
        if request.cores > len(self.cores):
            raise Unsatisfiable("cpu", f"{request.text} can never be met on this host: it has {len(self.cores)} "
                                       f"CPU cores for containers")
        if request.memory_mib > self.memory_mib:
            raise Unsatisfiable("memory", f"{request.text} can never be met on this host: it has "
                                          f"{self.memory_mib} MiB of memory")

    def try_allocate(self, request: Request, holder: str) -> Allocation | None:
        """Everything the request needs, marked as the holder's, if all of it is free now; else None."""
        if sum(self.memory_held.values()) + request.memory_mib > self.memory_mib:
            return None
        free_cores = [core for core in self.cores if core not in self.core_holders]
        if len(free_cores) < request.cores:
            return None
        cards: list[Gpu] = []
        if request.options:
            for option in request.options:
                free = [gpu for gpu in self.gpus if gpu.index not in self.holders and gpu_matches(option, gpu)]
                if len(free) >= option.count:
                    cards = free[: option.count]
                    break
            else:
                return None
        allocation = Allocation(cards, free_cores[: request.cores], request.memory_mib)
        self.transfer(allocation, holder)
        return allocation

    def transfer(self, allocation: Allocation, holder: str) -> None:
        """Mark an allocation as the holder's (a waiter's hold becomes its container's)."""
        for gpu in allocation.gpus:
            self.holders[gpu.index] = holder
        for core in allocation.cores:
            self.core_holders[core] = holder
        if allocation.memory_mib:
            self.memory_held[holder] = allocation.memory_mib

    def held_by(self, holder: str) -> list[int]:
        """The GPU indices a holder has."""
        return sorted(index for index, who in self.holders.items() if who == holder)

    def release(self, holder: str) -> bool:
        """Free the holder's cards, cores and memory; True if it had any."""
        had = False
        for table in (self.holders, self.core_holders):
            for key in [k for k, who in table.items() if who == holder]:
                del table[key]
                had = True
        return self.memory_held.pop(holder, 0) > 0 or had

    def could_use(self, request: Request, holder: str) -> bool:
        """Whether freeing the holder's resources would help a request (to evict an idle holder)."""
        cards = [gpu for gpu in self.gpus if self.holders.get(gpu.index) == holder]
        return (any(gpu_matches(option, gpu) for option in request.options for gpu in cards)
                or (request.cores > 0 and holder in self.core_holders.values())
                or (request.memory_mib > 0 and holder in self.memory_held))


def _host_memory_mib() -> int:
    try:
        with open("/proc/meminfo") as f:
            return next(int(line.split()[1]) // 1024 for line in f if line.startswith("MemTotal:"))
    except (OSError, StopIteration):
        return 0
