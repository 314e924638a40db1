"""How busy the agent's host is: load, cores and memory, for the sidebar and ``nbmodal hosts``."""

from __future__ import annotations

import logging
import os

from nbmodal_wire import pb

log = logging.getLogger(__name__)

MEMINFO = "/proc/meminfo"


def host_stats() -> pb.HostStatsReply:
    """Load average over a minute, CPU count, and total and available memory in bytes (0 where unknown)."""
    memory = read_meminfo()
    return pb.HostStatsReply(load1=os.getloadavg()[0], cpus=os.cpu_count() or 0,
                             memory_total=memory.get("MemTotal", 0), memory_available=memory.get("MemAvailable", 0))


def read_meminfo(path: str = MEMINFO) -> dict[str, int]:
    """``/proc/meminfo`` as bytes per field; empty where there is none (not Linux)."""
    memory: dict[str, int] = {}
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(":")
                fields = value.split()
                if fields and fields[0].isdigit():
                    # Sizes are in kB (kibibytes); a few fields (HugePages_*) are counts without a unit.
                    memory[key] = int(fields[0]) * (1024 if fields[1:] == ["kB"] else 1)
    except OSError as exc:
        log.debug("no memory figures: %s", exc)
    return memory
