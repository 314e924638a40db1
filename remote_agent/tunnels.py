"""Ports served from containers: ``nbmodal.forward(port)`` and web endpoints, as the agent records them.

Containers share the host's network, so a server a container starts on port P
listens on the host's loopback at P. A container says so (``TUNNEL_OPEN``,
with its own token); the agent records the tunnel with the container and the
run it belongs to, and lists it for the clients that reach it: the Jupyter
proxy (``nbmodal/server/proxy.py``), ``nbmodal forward`` and the sidebar.

A tunnel is *live* while it is open, its container is alive and its run has
not finished; liveness is judged when asked, so nothing needs to tell this
registry that a container died. Ended tunnels are kept for a while, so that a
URL whose container has gone can say which run served it.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from nbmodal_wire import pb
from remote_agent import request_errors
from remote_agent.request_errors import RequestError

log = logging.getLogger(__name__)

# Ended tunnels remembered (oldest forgotten first): enough for the 502 page of a recent URL.
MAX_ENDED = 200
# An endpoint's name is a URL path segment.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")
KINDS = frozenset({"forward", "web_server", "asgi_app", "wsgi_app", "fastapi_endpoint", "sandbox"})


@dataclass
class Tunnel:
    info: pb.TunnelInfo
    closed: bool = False
    ended: str = ""  # why it ended, once it has
    created: float = field(default_factory=time.time)


class TunnelRegistry:
    """Every tunnel of this agent. ``runs`` is the agent's RunRegistry, ``containers`` a callable listing
    the pool's containers, ``callers`` the nested-call chain of a run (``RunScopes.callers``)."""

    def __init__(self, runs, containers, callers) -> None:
        self._runs = runs
        self._containers = containers
        self._callers = callers
        self._tunnels: OrderedDict[str, Tunnel] = OrderedDict()

    def call(self, request: pb.TunnelRequest, container) -> pb.TunnelReply:
        """One TunnelCall; ``container`` is the calling container (None for the agent's token)."""
        if request.op == pb.TUNNEL_OPEN:
            return pb.TunnelReply(tunnel=self.open(container, request))
        if request.op == pb.TUNNEL_CLOSE:
            return pb.TunnelReply(tunnel=self.close(container, request.tunnel_id))
        if request.op == pb.TUNNEL_LIST:
            infos = self.list()
            if container is not None:  # a container's token sees its own tunnels only
                infos = [info for info in infos if info.container_id == container.id]
            return pb.TunnelReply(tunnels=infos)
        raise RequestError(f"unknown tunnel operation {request.op}", request_errors.INVALID)

    def open(self, container, request: pb.TunnelRequest) -> pb.TunnelInfo:
        if container is None:
            raise RequestError("only code in a container opens tunnels (nbmodal.forward, web endpoints)",
                               request_errors.INVALID)
        run = container.run
        if run is None:
            raise RequestError(f"container {container.id} runs nothing: a tunnel belongs to a run in progress",
                               request_errors.CONFLICT)
        if not 0 < request.port < 65536:
            raise RequestError(f"port {request.port} is not a TCP port (1-65535)", request_errors.INVALID)
        kind = request.kind or "forward"
        if kind not in KINDS:
            raise RequestError(f"unknown tunnel kind {kind!r}; one of {sorted(KINDS)}", request_errors.INVALID)
        tunnel_id = "t-" + secrets.token_hex(4)
        name = request.name or tunnel_id
        if not NAME.fullmatch(name):
            raise RequestError(f"endpoint name {name!r} must be 1-80 letters, digits, '.', '_' or '-', "
                               f"starting with a letter or digit", request_errors.INVALID)
        web = self._web_access(run.id)
        info = pb.TunnelInfo(
            tunnel_id=tunnel_id, name=name, port=request.port, run_id=run.id, container_id=container.id,
            kind=kind, label=request.label, created=time.time(), live=True, host=web.host,
            url=f"{web.proxy_base}{name}/" if web.proxy_base else "",
            run_label=run.info.label)
        self._tunnels[tunnel_id] = Tunnel(info)
        log.info("tunnel %s: port %d of container %s (run %s) as %r", tunnel_id, request.port, container.id,
                 run.id, name)
        return info

    def close(self, container, tunnel_id: str) -> pb.TunnelInfo:
        tunnel = self._tunnels.get(tunnel_id)
        if tunnel is None:
            raise RequestError(f"no tunnel {tunnel_id!r} on this agent", request_errors.NOT_FOUND)
        if container is not None and tunnel.info.container_id != container.id:
            raise RequestError(f"tunnel {tunnel_id} belongs to another container", request_errors.INVALID)
        tunnel.closed = True
        self._check(tunnel)
        return self._snapshot(tunnel)

    def list(self) -> list[pb.TunnelInfo]:
        """Live tunnels first (newest first), then recently ended ones."""
        for tunnel in self._tunnels.values():
            self._check(tunnel)
        self._forget_old()
        tunnels = sorted(self._tunnels.values(), key=lambda t: (not t.info.live, -t.created))
        return [self._snapshot(t) for t in tunnels]

    def _check(self, tunnel: Tunnel) -> None:
        """Mark a tunnel ended once its reason exists (closed, container gone, run finished)."""
        if tunnel.ended:
            return
        info = tunnel.info
        run = self._runs.get(info.run_id)
        container = next((c for c in self._containers() if c.id == info.container_id), None)
        if tunnel.closed:
            tunnel.ended = "closed by its container"
        elif container is None or not container.alive:
            tunnel.ended = f"its container {info.container_id} has ended"
        elif run is None or run.done:
            state = pb.RunState.Name(run.info.state) if run is not None else "gone"
            tunnel.ended = f"run {info.run_id} has ended ({state})"
        if tunnel.ended:
            info.live = False
            info.ended = tunnel.ended
            log.info("tunnel %s (%s) ended: %s", info.tunnel_id, info.name, tunnel.ended)

    def _forget_old(self) -> None:
        ended = [key for key, t in self._tunnels.items() if t.ended]
        for key in ended[:max(0, len(ended) - MAX_ENDED)]:
            del self._tunnels[key]

    def _web_access(self, run_id: str) -> pb.WebAccess:
        """The run's WebAccess, or that of the nearest run that called it (a nested call's request, made
        in a container, knows no browser)."""
        for rid in self._callers(run_id):
            run = self._runs.get(rid)
            if run is not None and run.request is not None and run.request.HasField("web"):
                return run.request.web
        return pb.WebAccess()

    @staticmethod
    def _snapshot(tunnel: Tunnel) -> pb.TunnelInfo:
        info = pb.TunnelInfo()
        info.CopyFrom(tunnel.info)
        return info
