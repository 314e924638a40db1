"""Sessions: ``sessions`` (or ``session list``) and ``session stop NAME``."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from nbmodal._cli.common import add_host_listing, reachable, table
from nbmodal._runtime.connection import session_hosts
from nbmodal.exceptions import NotFoundError

if TYPE_CHECKING:
    from nbmodal._cli import Console


def register(commands: argparse._SubParsersAction) -> None:
    add_host_listing(commands, "sessions", "live sessions", _list)
    session = commands.add_parser("session", help="sessions, as Modal spells it: list, stop NAME")
    verbs = session.add_subparsers(dest="verb", required=True)
    add_host_listing(verbs, "list", "live sessions", _list)
    stop_parser = verbs.add_parser("stop", help="end a session")
    stop_parser.add_argument("name")
    stop_parser.set_defaults(handler=_stop)


def _list(args: argparse.Namespace, console: Console) -> None:
    console.echo(sessions_table(args.host))


def _stop(args: argparse.Namespace, console: Console) -> None:
    console.echo(stop_session(args.name))


def sessions_table(host: str | None = None) -> str:
    """Every live session of each reachable host (or of ``host`` only)."""
    rows = [("SESSION", "HOST", "CONTAINER", "PID", "BUSY", "IDLE", "NAMES")]
    now = time.time()
    for name, client in reachable(host):
        for s in client.list_sessions():
            rows.append((s.name, name, s.container_id, str(s.pid), "yes" if s.busy else "no",
                         f"{now - s.last_used:.0f}s", ", ".join(s.names)[:60]))
    return table(rows) if len(rows) > 1 else "no sessions"


def stop_session(name: str) -> str:
    """End the session ``name`` on whichever host has it, and forget what this kernel knew of it."""
    from nbmodal.remote_cell import forget_session

    for _, client in reachable(session_hosts.get(name)):
        try:
            client.stop_session(name)
            break
        except NotFoundError:
            continue
    else:
        raise NotFoundError(f"no run or session named {name!r} (runs look like r-1a2b3c4d; see `nbmodal runs`, "
                            f"`nbmodal sessions`)")
    forget_session(name)
    return f"session {name!r} stopped"
