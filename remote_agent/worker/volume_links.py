"""Volumes in a container on another node (a Slurm job): links to the volume on the shared filesystem.

The agent on the login node keeps its volumes in its state dir, ``~/.nbmodal/agent/volumes/``;
on a cluster the home directories compute nodes see are the login node's (images rely on
that too). A job's ``NBMODAL_VOLUME_LINKS`` lists (volume dir, mount path, marker) for each
of its volumes: the job checks that the directory it sees is the agent's (the marker file the
agent wrote there has the same content) and makes the mount path a symlink to it. The agent
syncs replicas before the run and commits after it, as for any container of its host.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from remote_agent.sandbox import MountError, link_without_sandbox

ENV = "NBMODAL_VOLUME_LINKS"
MARKER = ".shared-marker"  # in the agent's volumes dir


def link_from_env() -> None:
    """Make the job's volume links (raises MountError, saying how to fix it, when they can't be made)."""
    spec = os.environ.pop(ENV, "")
    if not spec:
        return
    links = json.loads(spec)
    for host_dir, path, marker in links:
        marker_path = Path(host_dir).parent / MARKER
        try:
            seen = marker_path.read_text()
        except OSError:
            seen = ""
        if seen != marker:
            raise MountError(
                f"can't mount volume {Path(host_dir).name!r} at {path}: this node ({os.uname().nodename}) doesn't "
                f"see the login node's {Path(host_dir).parent} on a shared filesystem. Make ~/.nbmodal on the "
                f"login node a directory compute nodes see at the same path (e.g. `ln -s /shared/$USER/nbmodal "
                f"~/.nbmodal` before `nbmodal host add`), as the cluster's home directories usually are.")
    link_without_sandbox([(Path(host_dir), path) for host_dir, path, _ in links])
