"""The embedded local agent: ``agent start|stop|restart|status``."""

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
    agent.add_argument("--force", action="store_true",
                       help="stop: kill the agent at once (SIGKILL), e.g. one stuck holding its state dir")
    agent.set_defaults(handler=_run)


def _run(args: argparse.Namespace, console: Console) -> None:
    if args.action == "stop":
        console.echo(agent_stop(force=args.force))
        return
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


def agent_restart() -> str:
    """Restart the local agent; the runs in flight keep running and the new agent takes them back."""
    forget(LOCAL)
    old, address = local_agent.restart_local_agent()
    was = f"agent (pid {old}) restarted" if old is not None else "no agent was running; started one"
    return f"{was}: pid {address.pid}, 127.0.0.1:{address.port}; runs in flight keep running"


def agent_stop(force: bool = False) -> str:
    forget(LOCAL)
    pid = local_agent.stop_local_agent(force=force)
    return "no agent was running" if pid is None else f"agent (pid {pid}) {'killed' if force else 'stopped'}"


_ACTIONS = {"start": agent_start, "stop": agent_stop, "status": agent_status, "restart": agent_restart}
