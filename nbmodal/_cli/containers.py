"""Containers: ``containers`` (or ``container list``), the running and warm containers of each host."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from nbmodal._cli.common import add_host_listing, reachable, table
from nbmodal_wire.states import container_state_word

if TYPE_CHECKING:
    from nbmodal._cli import Console


def register(commands: argparse._SubParsersAction) -> None:
    add_host_listing(commands, "containers", "running and warm containers", _list)
    container = commands.add_parser("container", help="containers, as Modal spells it: list")
    add_host_listing(container.add_subparsers(dest="verb", required=True), "list", "running and warm containers",
                     _list)


def _list(args: argparse.Namespace, console: Console) -> None:
    console.echo(containers_table(args.host))


def containers_table(host: str | None = None) -> str:
    """Every container of each reachable host (or of ``host`` only): state, session, run, age."""
    rows = [("CONTAINER", "HOST", "PID", "STATE", "SESSION", "RUN", "AGE")]
    now = time.time()
    for name, client in reachable(host):
        for c in client.list_containers():
            rows.append((c.container_id, name, str(c.pid), container_state_word(c.state), c.session or "-",
                         c.run_id or "-", f"{now - c.created:.0f}s"))
    return table(rows) if len(rows) > 1 else "no containers"
