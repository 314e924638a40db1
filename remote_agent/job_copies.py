"""The agent's side of a Slurm job's node-local volume copies (``VolumeRequest.job_copy``).

A Slurm job on a compute node that doesn't see the login node's state dir works on a copy of each
mounted volume on its node (``nbmodal_wire/node_copies.py``), synced from and committed to this
agent's copy of the volume, over the job's tunnel to this agent with its container token:

* **MANIFEST** (``job_copy``): this host's copy as it is now (path, SHA-256, size per file), whether it
  is the volume's home or a replica; the job fetches only the content its node copy lacks.
* **APPLY** (``job_copy``): the job's changed files, uploaded first as staged content
  (``VolumeFile.stage``), replace this host's (last commit wins, per file). At the home that is
  ``VolumeVersions.apply``: the next version, the replaced files kept for ``recover``. On a replica the
  files are put in place and the replica is committed on to its home, whose apply keeps what it replaced.
"""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING

from nbmodal_wire import pb
from remote_agent.request_errors import CONFLICT, INVALID
from remote_agent.storage import StoreError
from remote_agent.volume_versions import VolumeVersions

if TYPE_CHECKING:
    from remote_agent.agent import Agent


async def call(agent: Agent, request: pb.VolumeRequest) -> pb.VolumeReply:
    """Serve a job copy's MANIFEST or APPLY."""
    io, versions, name = agent.in_io_thread, agent.volume_versions, request.name
    await io(agent.volumes.volume_dir, name)  # NOT_FOUND with the names there are
    if request.op == pb.VOLUME_MANIFEST:
        version, files = await io(manifest_now, versions, name)
        return pb.VolumeReply(version=version, manifest=files)
    if request.op != pb.VOLUME_APPLY:
        raise StoreError(INVALID, f"a job copy of volume {name!r} asks only for MANIFEST or APPLY")
    changes = list(request.changes)
    self_name = agent.routes.self_name
    from_host = request.from_host or (f"{self_name} (a Slurm job)" if self_name else "a Slurm job")
    home = await io(agent.replicas.home_of, name)
    if not home:
        return pb.VolumeReply(version=await io(versions.apply, name, request.base_version, changes, from_host))
    async with agent.replicas.lock(name):  # not while a sync rewrites the replica
        await io(place, versions, name, changes)
    return pb.VolumeReply(version=await agent.replicas.commit(name))


def manifest_now(versions: VolumeVersions, name: str) -> tuple[int, list[pb.VolumeChange]]:
    """This host's copy now (its own uncommitted writes included) and its version."""
    with versions.lock(name):
        copy = versions.load(name)
        now = versions.scan(name, copy)
        versions.save(name, copy)  # the scan's hashes, so the next scan rehashes only what changed
    return copy.version, [pb.VolumeChange(path=p, sha256=v[0], size=v[1]) for p, v in sorted(now.items())]


def place(versions: VolumeVersions, name: str, changes: list[pb.VolumeChange]) -> None:
    """Put a job's changes into this host's replica (staged content, or content already in the volume)."""
    volumes = versions.volumes
    with versions.lock(name):
        copy = versions.load(name)
        now = versions.scan(name, copy)
        by_content = {v[0]: p for p, v in now.items()}
        staged_dir = volumes.partials / name
        # First every change's content staged (copied from elsewhere in the volume where it was not
        # uploaded), so that placing one file never removes the source of another.
        for change in changes:
            if change.deleted or volumes.partial_path(name, change.sha256).is_file():  # (checks the digest)
                continue
            if change.sha256 not in by_content:
                raise StoreError(CONFLICT, f"volume {name!r}: the content of {change.path!r} was not uploaded "
                                           f"before the job's commit; commit again")
            staged = volumes.partial_path(name, change.sha256)
            shutil.copy2(volumes.resolve(name, by_content[change.sha256]), staged)
        for change in changes:
            real = volumes.resolve(name, change.path)
            if change.deleted:
                if real.is_file() or real.is_symlink():
                    real.unlink()
                continue
            staged = staged_dir / change.sha256
            if now.get(change.path, [""])[0] == change.sha256:
                continue  # the same content is there already
            real.parent.mkdir(parents=True, exist_ok=True)
            if sum(1 for c in changes if c.sha256 == change.sha256 and not c.deleted) > 1:
                shutil.copy2(staged, real)  # the same content at several paths: keep it staged for the others
            else:
                os.replace(staged, real)
            volumes.remember_checksum(real, change.sha256)
        for change in changes:
            if not change.deleted:
                (staged_dir / change.sha256).unlink(missing_ok=True)
        versions.save(name, copy)
