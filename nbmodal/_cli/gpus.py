"""GPUs: ``gpus``, every host's cards, their figures, and who holds each."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from nbmodal._cli.common import add_host_listing, reachable, table

if TYPE_CHECKING:
    from nbmodal._cli import Console


def register(commands: argparse._SubParsersAction) -> None:
    add_host_listing(commands, "gpus", "GPUs of every host: figures and who holds them", _list)


def _list(args: argparse.Namespace, console: Console) -> None:
    console.echo(gpus_table(args.host))


def gpus_table(host: str | None = None) -> str:
    """Every reachable host's GPUs: figures, and the run or session holding each."""
    rows = [("HOST", "GPU", "NAME", "UTIL", "MEMORY", "TEMP", "POWER", "HELD BY")]
    for name, client in reachable(host):
        for g in client.list_gpus():
            if g.partition:  # a Slurm cluster's card: no telemetry from the login node, only who holds it
                rows.append((name, f"{g.partition}/{g.node}:{g.index}", g.name, "-", "-", "-", "-",
                             "a Slurm job" if g.in_use else "-"))
                continue
            holder = (f"run {g.run_id}" if g.run_id else f"session {g.session}" if g.session
                      else f"container {g.container_id}" if g.container_id else "-")
            rows.append((name, str(g.index), g.name, f"{g.utilization}%",
                         f"{g.memory_used / 2**30:.1f}/{g.memory_total / 2**30:.0f} GiB", f"{g.temperature}C",
                         f"{g.power_w:.0f}W", holder))
    return table(rows) if len(rows) > 1 else "no GPUs on the local agent or any reachable host"
