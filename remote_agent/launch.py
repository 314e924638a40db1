"""What a container is started with: its Python, environment, working directory and mounts.

A ContainerSpec names an image (built by remote_agent/images.py), volumes and
local files; this turns it into a LaunchPlan: the interpreter of the image's
venv, the image's environment, and the bind mounts the worker makes in its own
mount namespace (remote_agent/worker/mounts.py) inside the agent-wide
bubblewrap sandbox (remote_agent/sandbox.py): volumes and the container's
working directory writable, image files read-only, a private /tmp, and only
the container's own GPU device nodes.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbmodal_wire import pb
from remote_agent import sandbox
from remote_agent.allocator import Allocation
from remote_agent.images import ImageStore
from remote_agent.sandbox import MountError

# Matplotlib in a container draws into the run's output (remote_agent/worker/mpl_backend.py).
MPL_BACKEND = "module://remote_agent.worker.mpl_backend"


@dataclass
class LaunchPlan:
    python: str
    image_id: str = ""
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None                 # in the container, once its mounts are made
    binds: list[tuple[str, str, bool]] = field(default_factory=list)  # (host path, container path, writable)
    sandboxed: bool = False
    private_tmp: bool = False
    outer_argv: list[str] = field(default_factory=list)  # bubblewrap around the worker (or its zygote)
    imports: str = ""
    preload: list[str] = field(default_factory=list)
    zygote: Any = None                     # remote_agent.zygote.Zygote to fork from, when there is one

    @property
    def zygote_key(self) -> tuple:
        return (self.python, self.image_id, tuple(self.preload), tuple(self.outer_argv))

    def layout(self, allocation: Allocation) -> dict[str, Any]:
        """What the worker's mounts.enter() makes of its mount namespace."""
        return {"sandboxed": self.sandboxed, "private_tmp": self.sandboxed and self.private_tmp,
                "binds": [[host, path, writable] for host, path, writable in self.binds],
                "gpu_devices": [gpu.index for gpu in allocation.gpus] if self.sandboxed else None,
                "workdir": self.cwd}


@dataclass
class SandboxConfig:
    """The agent-wide sandbox: the state dir hidden but for what containers need of it."""

    available: bool
    hidden: list[str]
    shown: list[tuple[str, bool]]

    def outer_argv(self, host_tmp: bool, network: bool = True) -> list[str]:
        return sandbox.outer_argv(self.hidden, self.shown, host_tmp, network) if self.available else []


def sandbox_config(state_dir: Path, blob_dir: Path, volumes_dir: Path, images: ImageStore, scratch_dir: Path,
                   use_sandbox: bool) -> SandboxConfig:
    shown: list[tuple[str, bool]] = [(str(blob_dir), True), (str(volumes_dir), True), (str(images.root), False),
                                     (str(scratch_dir), True)]
    # The agent user's SSH keys too: code in a container (a dependency of it) has no business with them.
    hidden = [str(state_dir.resolve()), *sandbox.credential_dirs()]
    return SandboxConfig(available=use_sandbox and sandbox.sandbox_available(), hidden=hidden, shown=shown)


def plan_container(spec: pb.ContainerSpec, container_id: str, images: ImageStore, volume_dir, config: SandboxConfig,
                   scratch_dir: Path) -> LaunchPlan:
    """The LaunchPlan for a container of ``spec`` (raises ImageError, StoreError or MountError)."""
    # An image's container gets a private /tmp; the default one sees the host's, like the notebook does.
    # A Sandbox's always has its own (remote_agent/sandboxes.py).
    private_tmp = bool(spec.image) or spec.sandbox
    if spec.block_network and not config.available:
        # Never run with the host's network what asked for none (the sandbox manager says so first).
        raise MountError("block_network=True needs bubblewrap's network namespace, which isn't available here")
    # block_network: a network namespace of its own (a separate zygote too: the key holds outer_argv).
    plan = LaunchPlan(python=sys.executable, sandboxed=config.available, private_tmp=private_tmp,
                      outer_argv=config.outer_argv(host_tmp=not private_tmp, network=not spec.block_network))
    image_paths: list[str] = []
    image = None
    if spec.image:
        image = images.get(spec.image)
        images.touch(image)
        plan.python, plan.image_id = image.python_executable, image.image_id
        plan.env.update(image.env)
        plan.imports, plan.preload = image.imports, list(image.preload)
        plan.cwd = image.workdir or None
        for path in image.paths:
            plan.binds.append((str(image.host_path(path)), path, False))
            image_paths.append(path)
    for mount in spec.local_mounts:
        plan.binds.append((str(images.local_mount_dir(mount)), mount.remote_path, False))
        image_paths.append(mount.remote_path)
    for volume in spec.volumes:
        plan.binds.append((str(volume_dir(volume.volume)), volume.path, True))
    if spec.workdir:
        plan.cwd = spec.workdir
    if plan.cwd and config.available and not any(_within(plan.cwd, path) for path in image_paths) \
            and not any(_within(plan.cwd, volume.path) for volume in spec.volumes):
        # A working directory of its own, writable, gone with the container.
        scratch = scratch_dir / container_id
        scratch.mkdir(parents=True, exist_ok=True)
        if image is not None and image.host_path(plan.cwd).is_dir():
            # What the image's `run` steps left in its workdir, as a copy the container may change.
            shutil.copytree(image.host_path(plan.cwd), scratch, symlinks=True, dirs_exist_ok=True)
        plan.binds.append((str(scratch), plan.cwd, True))
    return plan


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")

