"""Which container holds which GPU: whole cards, never one card to two containers."""

from __future__ import annotations

from remote_agent.gpus import Gpu, GpuOption, Inventory, describe, gpu_matches


class GpuUnavailable(Exception):
    """No option of a request can ever be met on this host."""


class GpuAllocator:
    def __init__(self, inventory: Inventory) -> None:
        self.inventory = inventory
        self.gpus = inventory.read()  # the cards; their figures are re-read for telemetry
        self.holders: dict[int, str] = {}  # GPU index -> container id

    def check_satisfiable(self, options: list[GpuOption], request: str) -> None:
        for option in options:
            if sum(gpu_matches(option, gpu) for gpu in self.gpus) >= option.count:
                return
        raise GpuUnavailable(f"gpu={request!r} can never be met on this host: it has {describe(self.gpus)}")

    def try_allocate(self, options: list[GpuOption], holder: str) -> list[Gpu] | None:
        """Free cards for the first option that fits now, marked as the holder's; else None."""
        for option in options:
            free = [gpu for gpu in self.gpus if gpu.index not in self.holders and gpu_matches(option, gpu)]
            if len(free) >= option.count:
                taken = free[: option.count]
                for gpu in taken:
                    self.holders[gpu.index] = holder
                return taken
        return None

    def held_by(self, holder: str) -> list[int]:
        return sorted(index for index, who in self.holders.items() if who == holder)

    def release(self, holder: str) -> bool:
        """Free the holder's cards; True if it had any."""
        held = self.held_by(holder)
        for index in held:
            del self.holders[index]
        return bool(held)

    def could_use(self, options: list[GpuOption], indices: list[int]) -> bool:
        """Whether freeing these cards would help a request (to evict an idle holder)."""
        cards = [gpu for gpu in self.gpus if gpu.index in indices]
        return any(gpu_matches(option, gpu) for option in options for gpu in cards)
