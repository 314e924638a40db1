"""The embedded local agent: ``agent start|stop|status``."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from nbmodal._runtime import local_agent
from nbmodal._runtime.connection import existing_client, forget
from nbmodal.config import local_agent_dir
from nbmodal.hosts import LOCAL

if TYPE_CHECKING:
    from nbmodal._cli import Console


def register(commands: argparse._SubParsersAction) -> None:
    agent = commands.add_parser("agent", help="the embedded local agent")
    agent.add_argument("action", nargs="?", default="status", choices=sorted(_ACTIONS),
                       help="(default: status)")
    agent.set_defaults(handler=_run)


def _run(args: argparse.Namespace, console: Console) -> None:
    console.echo(_ACTIONS[args.action]())


def agent_status() -> str:
    client = existing_client()
    if client is None:
        return f"no agent running for {local_agent_dir()} (the first remote cell starts one)"
    h = client.hello
    return (f"agent {h.agent_version} running: pid {h.pid}, 127.0.0.1:{client.address.port}, python "
            f"{h.container_python}, state {h.state_dir}")


def agent_start() -> str:
    address = local_agent.ensure_local_agent()
    return f"agent running: pid {address.pid}, 127.0.0.1:{address.port}, state {address.state_dir}"


def agent_stop() -> str:
    forget(LOCAL)
    address = local_agent.stop_local_agent()
    return "no agent was running" if address is None else f"agent (pid {address.pid}) stopped"


_ACTIONS = {"start": agent_start, "stop": agent_stop, "status": agent_status}
