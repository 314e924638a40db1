"""Where each named object lives, and how this agent reaches the other hosts' agents.

Agents on different hosts usually can't reach each other (hosts behind NAT, in other
networks, on other sites); the notebook's client reaches every host over its own SSH
connection. So the client *relays*: for each other host it asks this host's sshd for a
remote forward (a port on this host's loopback whose connections the client carries
to that host's agent) and tells this agent about it with ``ReplicaRoutes``, together
with this host's own name and the home host of every Dict, Queue and Volume it knows.

With that, a container's call for a Dict or Queue whose home is another host is relayed
to that home (``relay``), a replica volume syncs from and commits to its home
(``replicas.py``), and the call that reached the home is served there, never relayed
again. Routes live only in memory (they carry the other agents' tokens) and only while
a client keeps them up: with none, a call for an object of another host fails at once
with an error naming the home and why (never a silent local copy).
"""

from __future__ import annotations

import logging

import grpc

from nbmodal_wire import MESSAGE_SIZE_OPTIONS, TOKEN_METADATA_KEY, pb
from nbmodal_wire.proto.agent_pb2_grpc import AgentStub
from remote_agent.request_errors import CONFLICT
from remote_agent.storage import StoreError

log = logging.getLogger(__name__)

# Metadata on a relayed call: the agent that gets it serves it itself (no loop between two agents
# whose idea of a home differs).
RELAYED_KEY = "x-nbmodal-relayed"
# How long a relayed call that doesn't wait for an item may take (a link declared dead fails sooner).
RELAY_DEADLINE_S = 60.0
KINDS = ("dict", "queue", "volume")


class HomeUnreachable(StoreError):
    """An object's home host is not reachable from here now."""

    def __init__(self, message: str) -> None:
        super().__init__(CONFLICT, message)


class StoreRoutes:
    """This host's name, the homes of named objects, and a channel to each other host's agent."""

    def __init__(self) -> None:
        self.self_name = ""
        self._homes: dict[tuple[str, str], str] = {}
        self._routes: dict[str, pb.ReplicaRoute] = {}
        self._channels: dict[str, tuple[tuple[int, str], grpc.aio.Channel, AgentStub]] = {}

    async def update(self, request: pb.ReplicaRoutesRequest) -> None:
        if request.self_name:  # a full update (one that only forgets names leaves the routes as they are)
            self.self_name = request.self_name
            self._routes = {route.host: route for route in request.routes}
        for home in request.homes:
            self._homes[(home.kind, home.name)] = home.host
        for gone in request.forget:
            self._homes.pop((gone.kind, gone.name), None)
        for host in list(self._channels):
            route = self._routes.get(host)
            key, channel, _ = self._channels[host]
            if route is None or (route.port, route.token) != key:
                del self._channels[host]
                await channel.close()

    def home_of(self, kind: str, name: str) -> str:
        """The host (by the client's name for it) where the object lives; "" when it is this host's own
        or unknown (a name no client has told this agent about is this host's)."""
        host = self._homes.get((kind, name), "")
        return "" if host == self.self_name else host

    def elsewhere(self, kind: str, name: str, metadata) -> str:
        """The other host a call for this object must go to; "" to serve it here (also for relayed calls)."""
        if any(key == RELAYED_KEY for key, _ in metadata or ()):
            return ""
        return self.home_of(kind, name)

    def known_homes(self) -> dict[tuple[str, str], str]:
        return dict(self._homes)

    def peer(self, host: str, what: str) -> tuple[AgentStub, tuple]:
        """A stub of ``host``'s agent and the metadata its calls carry; ``HomeUnreachable`` without a route."""
        route = self._routes.get(host)
        if route is None:
            raise HomeUnreachable(
                f"{what} lives on host {host!r}, and host {self.self_name or 'this host'!r} can't reach it now: "
                f"hosts reach each other only through a notebook (or nbmodal command) connected to both, and "
                f"none is. Nothing was changed; connect to both hosts (any call to {host!r} does) and retry.")
        key = (route.port, route.token)
        known = self._channels.get(host)
        if known is None or known[0] != key:
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{route.port}", options=MESSAGE_SIZE_OPTIONS)
            known = self._channels[host] = (key, channel, AgentStub(channel))
        return known[2], ((TOKEN_METADATA_KEY, route.token), (RELAYED_KEY, self.self_name or "?"))

    async def relay(self, host: str, method: str, request, what: str, deadline: float | None = RELAY_DEADLINE_S,
                    context=None):
        """One unary call (``DictCall``, ``QueueCall``, ``VolumeCall``) served by ``host``'s agent.

        The home's refusals (not found, invalid...) come back with their own status and words; a home
        that can't be reached raises ``HomeUnreachable`` naming it."""
        stub, metadata = self.peer(host, what)
        try:
            return await getattr(stub, method)(request, metadata=metadata, timeout=deadline)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                              grpc.StatusCode.UNAUTHENTICATED):
                raise HomeUnreachable(
                    f"{what} lives on host {host!r}, which host {self.self_name or 'this host'!r} can't reach "
                    f"now ({exc.code().name}: {exc.details()}). The call may not have been applied there; "
                    f"nothing was stored here.") from None
            if context is None:
                raise
            await context.abort(exc.code(), exc.details())

    async def close(self) -> None:
        for _, channel, _ in self._channels.values():
            await channel.close()
        self._channels.clear()


def queue_deadline(request: pb.QueueRequest) -> float | None:
    """A relayed queue call's deadline: a blocking one waits as long as it asked (for ever: no deadline)."""
    if request.op in (pb.PUT, pb.GET) and request.block:
        return None if request.timeout_s == 0 else request.timeout_s + RELAY_DEADLINE_S
    return RELAY_DEADLINE_S
