"""The client's relay between hosts: how one host's agent reaches another's, through this client.

Hosts often can't reach each other, but this client reaches each over SSH. For every
pair (host B, other host A) it asks B's sshd for a *remote forward*: a port on B's
loopback whose connections come back over B's SSH transport to this client, which
carries them to A's agent (through A's own forwarded port). It then tells B's agent
(``ReplicaRoutes``) its own name, that port and A's token for each A, and the home host
of every object this client knows; the reply names the objects whose home is B, which
this client records (``homes.py``).

So a container on B reaches a Dict or Queue of A, and B's replica of a volume syncs
from and commits to A, while a client connected to both keeps the routes up (a notebook
kernel, or any ``nbmodal`` command that runs something). ``ensure_routes`` runs before
every run placed on a host (``invocation.target_on``); with one host configured it does
nothing. A host that can't be reached is tried again after ``RETRY_DOWN_S``.
"""

from __future__ import annotations

import functools
import logging
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, cast

from nbmodal._runtime import homes
from nbmodal.hosts import load_hosts
from nbmodal_wire import pb

log = logging.getLogger(__name__)

# A host that couldn't be connected isn't tried again for this long (a run shouldn't wait on it each time).
RETRY_DOWN_S = 30.0


@dataclass
class _Routes:
    """What this client set up on one host: the transport its remote forwards live on, and their ports."""

    transport: Any = None
    ports: dict[str, int] = field(default_factory=dict)
    pushed: tuple = ()


_state: dict[str, _Routes] = {}
_down_until: dict[str, float] = {}
_lock = threading.RLock()


def ensure_routes(conn) -> None:
    """Make sure ``conn``'s agent reaches every other configured host's agent through this client."""
    from nbmodal._runtime.connection import HostConnection

    if not isinstance(conn, HostConnection):
        return
    # The other hosts this host may need: those already connected, and the homes of the names known here
    # (a configured host nothing lives on isn't connected, let alone bootstrapped, for this).
    homed = {host for names in homes.load().values() for host in names.values()}
    others = [name for name in load_hosts()
              if name != conn.name and (name in homed or _host(name).agent_route() is not None)]
    if not others:
        return
    client = conn.client()
    own = conn.agent_route()  # a restarted agent has a new token: it must be told its routes again
    with _lock:
        state = _state.setdefault(conn.name, _Routes())
        ssh = conn.ssh
        if ssh is None:
            return
        transport = ssh.live_transport
        if state.transport is not transport:  # a new transport: the old forwards went with the old one
            state.transport, state.ports, state.pushed = transport, {}, ()
        routes = []
        for other in others:
            route = _route_to(other)
            if route is None:
                continue
            if other not in state.ports:
                # paramiko keeps one handler per transport: it finds the other host by the forward's port.
                state.ports[other] = transport.request_port_forward(
                    "127.0.0.1", 0, handler=functools.partial(_carry, conn.name))
            routes.append(pb.ReplicaRoute(host=other, port=state.ports[other], token=route[1]))
        key = (own, tuple((r.host, r.port, r.token) for r in routes), homes.load())
        if key == state.pushed:
            return
        _push(conn.name, client, routes)
        state.pushed = (own, key[1], homes.load())  # what learning from the reply added counts as pushed


def push_homes() -> None:
    """After this client recorded or moved a home: the hosts it already relays for learn it now."""
    configured = load_hosts()
    with _lock:
        names = [name for name, state in _state.items()
                 if state.transport is not None and state.pushed and name in configured]
    for name in names:
        try:
            ensure_routes(_host(name))
        except Exception as exc:  # best effort: the next run placed there pushes them again
            log.info("homes not pushed to %s: %s", name, exc)


def forget_everywhere(kind: str, name: str) -> None:
    """An object deleted at its home: each host this client relays for forgets it (a volume: its replica too)."""
    gone = [pb.ReplicaHome(kind=kind, name=name)]
    configured = load_hosts()
    with _lock:
        names = [host for host, state in _state.items() if state.transport is not None and host in configured]
    for host in names:
        try:
            conn = _host(host)
            if conn.ssh is not None and conn.ssh.alive:
                conn.client().replica_routes(pb.ReplicaRoutesRequest(forget=gone))
        except Exception as exc:  # best effort: a replica left behind is removed by hand (`volume delete --host`)
            log.info("%s %s not forgotten on %s: %s", kind, name, host, exc)


def _route_to(other: str) -> tuple[int, str] | None:
    """(local forwarded port, token) of ``other``'s agent, connecting to it if needed; None if it is away."""
    conn = _host(other)
    route = conn.agent_route()
    if route is None and _down_until.get(other, 0.0) > time.monotonic():
        return None
    if route is None:
        try:
            conn.client()
        except Exception as exc:  # any reason the host is away: the route waits, the run goes on
            log.info("no route to %s: %s", other, exc)
            _down_until[other] = time.monotonic() + RETRY_DOWN_S
            return None
        route = conn.agent_route()
    _down_until.pop(other, None)
    return route


def _push(name: str, client, routes: list[pb.ReplicaRoute]) -> None:
    known, hosts = homes.load(), load_hosts()
    reply = client.replica_routes(pb.ReplicaRoutesRequest(
        self_name=name, routes=routes,
        # Only homes on SSH hosts: an agent can't reach this machine's own agent, so a name homed there
        # is left to each host's own store, as before.
        homes=[pb.ReplicaHome(kind=kind, name=obj, host=host) for kind, objs in known.items()
               for obj, host in objs.items() if host in hosts]))
    homes.learn([(h.kind, h.name, h.host) for h in reply.homes])
    log.debug("routes of %s: %s", name, [r.host for r in routes])


def _host(name: str):
    """The SSH host's connection (relays are between SSH hosts only)."""
    from nbmodal._runtime.connection import HostConnection, connection

    return cast(HostConnection, connection(name))


def _carry(host: str, channel, origin, server) -> None:
    """A connection from ``host``'s agent through one of its forwards (paramiko calls this in its transport
    thread); the forward's port says which other host it is for."""
    # No lock here: this is the transport's own thread, which ensure_routes may be waiting on.
    state = _state.get(host)
    ports = dict(state.ports) if state is not None else {}
    other = next((name for name, port in ports.items() if port == server[1]), None)
    if other is None:
        channel.close()
        return
    threading.Thread(target=_pump_to, args=(other, channel), name=f"relay-{other}", daemon=True).start()


def _pump_to(other: str, channel) -> None:
    route = _host(other).agent_route()
    if route is None:  # the other host is away: the caller sees a refused connection at once
        channel.close()
        return
    try:
        sock = socket.create_connection(("127.0.0.1", route[0]), timeout=10)
    except OSError:
        channel.close()
        return
    sock.settimeout(None)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    from nbmodal._runtime.tunnel import pump_between  # paramiko: never imported in containers

    pump_between(sock, channel)
