"""The calls that make a named object one object across hosts, as the gRPC service hands them over.

``service.py`` asks here first: a call for a Dict or Queue whose home is another host is
relayed there; a volume call is served by the replica machinery when the volume is a
replica here (commit, reload), by the home's versions when it lives here (manifest,
apply, versions, recover), or relayed to the home when this host has no copy of it.
Anything else (``None``) is served by the service as before. ``ReplicaRoutes`` (the
client's routes and homes) is ``update_routes``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from nbmodal_wire import pb
from remote_agent import job_copies
from remote_agent.request_errors import NOT_FOUND
from remote_agent.storage import StoreError
from remote_agent.store_routes import RELAY_DEADLINE_S, RELAYED_KEY, queue_deadline

if TYPE_CHECKING:
    from remote_agent.agent import Agent

# Volume calls a host without a copy passes to the home (a container naming a volume it hasn't mounted).
_RELAYED_WITHOUT_COPY = frozenset({
    pb.VOLUME_CREATE, pb.VOLUME_LOOKUP, pb.VOLUME_DELETE, pb.VOLUME_RENAME, pb.VOLUME_LISTDIR, pb.VOLUME_REMOVE,
    pb.VOLUME_COPY, pb.VOLUME_STAT, pb.VOLUME_COMMIT, pb.VOLUME_MANIFEST, pb.VOLUME_RECOVER})
# Volume calls a replica passes to its home: they change the volume's name or existence, or the home's versions.
_RELAYED_FROM_REPLICA = frozenset({pb.VOLUME_CREATE, pb.VOLUME_DELETE, pb.VOLUME_RENAME, pb.VOLUME_RECOVER,
                                   pb.VOLUME_APPLY})


def _relayed(metadata) -> bool:
    return any(key == RELAYED_KEY for key, _ in metadata or ())


async def store_call(agent: Agent, kind: str, request, context):
    """A Dict's or Queue's call relayed to its home host; None when it is served here."""
    if request.op == pb.LIST:
        return None
    home = agent.routes.elsewhere(kind, request.name, context.invocation_metadata())
    if not home:
        return None
    deadline = queue_deadline(request) if kind == "queue" else RELAY_DEADLINE_S
    method = "QueueCall" if kind == "queue" else "DictCall"
    return await agent.routes.relay(home, method, request, f"{kind} {request.name!r}", deadline, context)


async def volume_call(agent: Agent, request: pb.VolumeRequest, context) -> pb.VolumeReply | None:
    """A volume call that versions, replicas or the home serve; None for the service's own handling."""
    io, versions, replicas, routes = agent.in_io_thread, agent.volume_versions, agent.replicas, agent.routes
    op, name = request.op, request.name
    if op == pb.VOLUME_LIST:
        listed = await io(agent.volumes.list_volumes)
        infos = []
        for volume, used, created in listed:
            info = await io(replicas.copy_info, volume)
            info.length, info.created = used, created
            infos.append(info)
        return pb.VolumeReply(stores=infos)
    if request.job_copy:  # a Slurm job's node-local copy syncs from and commits to this host's copy
        return await job_copies.call(agent, request)
    relayed = _relayed(context.invocation_metadata())
    home = "" if relayed else await io(replicas.home_of, name)
    what = f"volume {name!r}"
    if home:
        if not await io(versions.exists, name):
            if op == pb.VOLUME_VERSIONS:
                raise StoreError(NOT_FOUND, f"no copy of volume {name!r} on this host (its home is {home!r})")
            if op in _RELAYED_WITHOUT_COPY:
                return await routes.relay(home, "VolumeCall", request, what, context=context)
            await replicas.sync(name, home)  # transfers need a copy here
            return None
        if op in _RELAYED_FROM_REPLICA:
            reply = await routes.relay(home, "VolumeCall", request, what, context=context)
            if op == pb.VOLUME_DELETE:
                await io(_delete_replica, agent, name)
            return reply
        if op == pb.VOLUME_COMMIT:
            return pb.VolumeReply(version=await replicas.commit(name))
        if op == pb.VOLUME_MANIFEST:  # reload(): the latest committed version, here
            return pb.VolumeReply(version=await replicas.sync(name, home))
        if op == pb.VOLUME_VERSIONS:
            return pb.VolumeReply(copy=await io(replicas.copy_info, name),
                                  version=(await io(versions.load, name)).version)
        return None  # listing, reading, writing: this host's replica
    if op == pb.VOLUME_COMMIT:
        version = await io(versions.commit_home, name, routes.self_name)
        await io(os.sync)
        return pb.VolumeReply(version=version)
    if op == pb.VOLUME_MANIFEST:
        version, files = await io(versions.manifest, name)
        return pb.VolumeReply(version=version, manifest=files)
    if op == pb.VOLUME_APPLY:
        version = await io(versions.apply, name, request.base_version, list(request.changes), request.from_host)
        return pb.VolumeReply(version=version)
    if op == pb.VOLUME_VERSIONS:
        await io(agent.volumes.volume_dir, name)
        info = await io(replicas.copy_info, name)
        return pb.VolumeReply(copy=info, version=info.version, overwritten=await io(versions.overwritten, name))
    if op == pb.VOLUME_RECOVER:
        return pb.VolumeReply(version=await io(versions.recover, name, request.path, request.new_name))
    if op == pb.VOLUME_DELETE:
        await io(_delete_replica, agent, name)
        return pb.VolumeReply()
    if op == pb.VOLUME_RENAME:
        await io(agent.volumes.rename, name, request.new_name)
        await io(versions.renamed, name, request.new_name)
        return pb.VolumeReply()
    return None


def _delete_replica(agent: Agent, name: str) -> None:
    agent.volumes.delete(name)
    agent.volume_versions.forget(name)


async def update_routes(agent: Agent, request: pb.ReplicaRoutesRequest) -> pb.ReplicaRoutesReply:
    """The client's routes and homes; the reply lists the objects whose home is this host."""
    await agent.routes.update(request)
    for gone in request.forget:  # a volume deleted at its home: this host's replica goes too
        if gone.kind == "volume" and await agent.in_io_thread(agent.replicas.home_of, gone.name):
            if await agent.in_io_thread(agent.volume_versions.exists, gone.name):
                await agent.in_io_thread(_delete_replica, agent, gone.name)
    own = [pb.ReplicaHome(kind=kind, name=row[0], host=agent.routes.self_name)
           for kind in ("dict", "queue") for row in await agent.storage.call("list_stores", kind) if not row[3]]
    for volume, *_ in await agent.in_io_thread(agent.volumes.list_volumes):
        if not await agent.in_io_thread(agent.replicas.home_of, volume):
            own.append(pb.ReplicaHome(kind="volume", name=volume, host=agent.routes.self_name))
    return pb.ReplicaRoutesReply(homes=own)
