"""``nbmodal forward RUN_OR_CONTAINER PORT``: a container's port as a port on this machine, until Ctrl-C.

The port rides the host's one SSH transport (a ``direct-tcpip`` channel per
connection, ``_runtime/port_forward.py``), as the agent's own gRPC does; on the
local agent the container's port is already on this machine (``--local-port``
relays it to another one). It ends by itself when the run or container ends.
"""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from nbmodal._cli.common import reachable
from nbmodal._runtime import port_forward
from nbmodal._runtime.client import AgentClient
from nbmodal.exceptions import NotFoundError
from nbmodal.hosts import LOCAL
from nbmodal_wire import pb

if TYPE_CHECKING:
    from nbmodal._cli import Console

_POLL_S = 1.0


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "forward", help="reach a port of a run's (or container's) host here: prints the URL, runs until Ctrl-C")
    parser.add_argument("target", metavar="RUN_OR_CONTAINER", help="a run id (r-…) or container id (c-…)")
    parser.add_argument("port", type=int, help="the port the container's server listens on")
    parser.add_argument("--local-port", type=int, default=0,
                        help="listen on this port here (default: the same port on the local agent, else a free one)")
    parser.add_argument("--host", help="the host the run or container is on (default: ask each)")
    parser.set_defaults(handler=_forward)


def _forward(args: argparse.Namespace, console: Console) -> None:
    if not 0 < args.port < 65536 or not 0 <= args.local_port < 65536:
        raise ValueError(f"ports are 1-65535 (got PORT {args.port}, --local-port {args.local_port})")
    host, client, container_id = locate(args.target, args.host)
    listen = port_forward.local_port(host, args.port, args.local_port)
    where = f"container {container_id} on {host}" if host != LOCAL else f"container {container_id} (local agent)"
    console.echo(f"http://127.0.0.1:{listen}/  ->  port {args.port} of {where}")
    if host == LOCAL and listen == args.port:
        console.echo("(the local agent's containers share this machine's network: the port is already here)")
        return
    console.echo("forwarding until Ctrl-C")
    try:
        while _alive(client, args.target, container_id):
            time.sleep(_POLL_S)
        console.echo(f"{args.target} has ended; forwarding stopped")
    except KeyboardInterrupt:
        console.echo("forwarding stopped")
    finally:
        port_forward.close(host, args.port, args.local_port)


def locate(target: str, host: str | None) -> tuple[str, AgentClient, str]:
    """(host, client, container id) of a run (its container) or a container, asking each host if needed."""
    for name, client in reachable(host):
        if target.startswith("r-"):
            try:
                run = client.get_run(target)
            except NotFoundError:
                continue
            if run.state not in (pb.PENDING, pb.RUNNING):
                raise ValueError(f"run {target} has ended ({pb.RunState.Name(run.state)}) on {name}: nothing of it "
                                 f"serves a port now")
            if not run.container_id:
                raise ValueError(f"run {target} on {name} has no container yet (it waits); try again once it runs")
            return name, client, run.container_id
        if any(c.container_id == target for c in client.list_containers()):
            return name, client, target
    where = f"host {host}" if host else "the local agent or any configured host"
    raise NotFoundError(f"no run or container {target!r} on {where} (see `nbmodal runs`, `nbmodal containers`)")


def _alive(client: AgentClient, target: str, container_id: str) -> bool:
    try:
        if target.startswith("r-"):
            return client.get_run(target).state in (pb.PENDING, pb.RUNNING)
        return any(c.container_id == container_id and c.state != pb.CONTAINER_EXITED
                   for c in client.list_containers())
    except Exception:  # a dropped link: the forward rides the reconnect; keep going
        return True
