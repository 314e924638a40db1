"""What the resource modules share: which agents to ask, and how a listing prints."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence
from typing import Any

from nbmodal._runtime.client import AgentClient
from nbmodal._runtime.connection import connection, existing_client
from nbmodal.exceptions import AgentLostError
from nbmodal.hosts import LOCAL, HostError, load_hosts
from nbmodal.output import StreamSink

log = logging.getLogger(__name__)

HOST_HELP = "only this host"


def add_host_listing(commands: argparse._SubParsersAction, name: str, help: str,
                     handler: Callable[..., Any]) -> argparse.ArgumentParser:
    """A verb that lists something of every reachable host, or with ``--host`` of one."""
    parser = commands.add_parser(name, help=help)
    parser.add_argument("--host", help=HOST_HELP)
    parser.set_defaults(handler=handler)
    return parser


def reachable(host: str | None) -> list[tuple[str, AgentClient]]:
    """(name, client) of the given host, or of the local agent (if running) and every configured host."""
    if host:
        return [(host, connection(host).client())]
    found = []
    local = existing_client()
    if local is not None:
        found.append((LOCAL, local))
    for name in load_hosts():
        try:
            found.append((name, connection(name).client()))
        except (HostError, AgentLostError) as exc:
            log.warning("host %s is unreachable: %s", name, exc)
    if not found:
        found.append((LOCAL, connection(LOCAL).client()))
    return found


def table(rows: Sequence[tuple[str, ...]]) -> str:
    """Rows as left-aligned columns; the first row is the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def plain_sink() -> StreamSink:
    """A run's output as plain text on this process's stdout/stderr (the terminal's sink)."""
    return StreamSink(rich=False)
