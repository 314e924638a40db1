"""Volumes in a container on another node (a Slurm job): links to the volume on the shared filesystem,
or to a node-local copy of it where the node doesn't see the agent's state dir.

The agent on the login node keeps its volumes in its state dir, ``~/.nbmodal/agent/volumes/``;
on a cluster the home directories compute nodes see are the login node's (images rely on
that too). A job's ``NBMODAL_VOLUME_LINKS`` lists (volume dir, mount path, marker) for each
of its volumes: the job checks that the directory it sees is the agent's (the marker file the
agent wrote there has the same content) and makes the mount path a symlink to it. The agent
syncs replicas before the run and commits after it, as for any container of its host. Where the node
doesn't see it (or the host's ``job_volumes`` is "copy"), the mount path links a copy in the job's
temp dir, synced from the agent's and committed to it around each run (``nbmodal_wire/node_copies.py``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from remote_agent.sandbox import MountError, link_without_sandbox

ENV = "NBMODAL_VOLUME_LINKS"
MARKER = ".shared-marker"  # in the agent's volumes dir
MODE_ENV = "NBMODAL_JOB_VOLUMES"  # the host's job_volumes setting
SHARED, COPY, AUTO = "shared", "copy", "auto"
MODES = (AUTO, SHARED, COPY)


def link_from_env() -> None:
    """Make the job's volume links (raises MountError, saying how to fix it, when they can't be made).

    ``NBMODAL_JOB_VOLUMES`` says how: "shared" links the agent's directories (and fails where this node
    doesn't see them), "copy" links node-local copies synced from the agent, "auto" links the agent's
    directories where this node sees them and copies the others.
    """
    spec = os.environ.pop(ENV, "")
    mode = os.environ.pop(MODE_ENV, "") or AUTO
    if not spec:
        return
    if mode not in MODES:
        raise MountError(f"volumes in Slurm jobs: {mode!r} is not one of {', '.join(MODES)} (the host's job_volumes)")
    links = json.loads(spec)
    shared, copied, agent_key = [], [], ""
    for host_dir, path, marker in links:
        seen = mode != COPY and _sees(Path(host_dir).parent / MARKER, marker)
        if seen:
            shared.append((Path(host_dir), path))
        elif mode == COPY or mode == AUTO:
            copied.append((Path(host_dir).name, path))
            agent_key = f"{Path(host_dir).parent} {marker}"  # the agent's volumes: their copies on this node
        else:
            raise MountError(
                f"can't mount volume {Path(host_dir).name!r} at {path}: this node ({os.uname().nodename}) doesn't "
                f"see the login node's {Path(host_dir).parent} on a shared filesystem. Make ~/.nbmodal on the "
                f"login node a directory compute nodes see at the same path (e.g. `ln -s /shared/$USER/nbmodal "
                f"~/.nbmodal` before `nbmodal host add`), as the cluster's home directories usually are, or let "
                f"jobs copy volumes to their node (`nbmodal host add … --slurm --job-volumes auto`).")
    if copied:
        from nbmodal_wire import node_copies

        try:
            directories = node_copies.create(agent_key, sorted({name for name, _ in copied}))
        except (node_copies.NodeCopyError, OSError) as exc:
            raise MountError(f"can't copy volumes to this node ({os.uname().nodename}): {exc}") from None
        for name in sorted(directories):
            try:
                node_copies.sync(name)
            except node_copies.NodeCopyError as exc:
                raise MountError(f"can't copy volume {name!r} to this node ({os.uname().nodename}): {exc}") from None
        shared += [(Path(directories[name]), path) for name, path in copied]
    link_without_sandbox(shared)


def _sees(marker_path: Path, marker: str) -> bool:
    try:
        return marker_path.read_text() == marker
    except OSError:
        return False
