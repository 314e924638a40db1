"""A Slurm job's way to its agent's API: a port on the compute node's loopback carried to the login node.

The agent's gRPC API listens on the login node's loopback only; a job reaches the login node only at
the port it dials back to (``slurm.ContainerListener``). So the job opens a port on its own loopback
and carries each connection made to it over a new dial-back connection that opens with
``grpc TOKEN`` (its container token; the listener carries it on to the agent's port while the job
lives). ``NBMODAL_AGENT_PORT`` then names that local port, so everything a container says to its
agent (volume calls and node-local copies, Dicts, Queues, nested calls) works from another node as it
does on the agent's own. The agent still checks the container token on every call.
"""

from __future__ import annotations

import logging
import os
import socket
import threading

log = logging.getLogger(__name__)

TUNNEL_PREFIX = b"grpc "  # as remote_agent/slurm.py's TUNNEL_PREFIX
_BUFFER = 1 << 16


def start(address: str, token: str) -> int:
    """Listen on this node's loopback and carry each connection to the agent at ``address``; the port."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    port = server.getsockname()[1]
    host, _, agent_port = address.rpartition(":")
    threading.Thread(target=_serve, args=(server, (host, int(agent_port)), token), daemon=True,
                     name="agent-tunnel").start()
    return port


def _serve(server: socket.socket, address: tuple[str, int], token: str) -> None:
    while True:
        local, _ = server.accept()
        threading.Thread(target=_carry, args=(local, address, token), daemon=True, name="agent-tunnel-conn").start()


def _carry(local: socket.socket, address: tuple[str, int], token: str) -> None:
    try:
        remote = socket.create_connection(address, timeout=60)
        remote.settimeout(None)
        remote.sendall(TUNNEL_PREFIX + token.encode() + b"\n")
    except OSError as exc:
        log.warning("can't reach the agent at %s:%d for a call: %s", *address, exc)
        local.close()
        return
    for sock in (local, remote):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    back = threading.Thread(target=_pump, args=(remote, local), daemon=True, name="agent-tunnel-back")
    back.start()
    _pump(local, remote)
    back.join()
    local.close()
    remote.close()


def _pump(source: socket.socket, target: socket.socket) -> None:
    """Copy one way until the source closes; then say so to the target (half-close)."""
    try:
        while data := source.recv(_BUFFER):
            target.sendall(data)
    except OSError:
        pass
    finally:
        try:
            target.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def install(address: str) -> None:
    """Start the tunnel and point this container's agent calls at it."""
    os.environ["NBMODAL_AGENT_PORT"] = str(start(address, os.environ["NBMODAL_CONTAINER_TOKEN"]))
