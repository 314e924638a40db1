"""The Slurm launcher: each container a batch job on a compute node that dials back to the agent.

Chosen when the agent's state dir holds ``slurm.json`` (see remote_agent/slurm.py
for sbatch, squeue, scancel and the dial-back port). Slurm schedules the job
and reserves its GPUs, cores and memory, so the agent reserves nothing; no
container is started speculatively (a warm job would hold a node); a run
cancelled while its job waits in Slurm's queue scancels the job.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from nbmodal_wire import pb
from remote_agent.images import ImageStore
from remote_agent.launch import LaunchPlan
from remote_agent.launchers import ContainerProcess, Launcher, LaunchRequest, Notify, Streams
from remote_agent.sandbox import MountError
from remote_agent.slurm import ContainerListener, SlurmConfig, SlurmJob, cluster_gpus
from remote_agent.worker import volume_links

log = logging.getLogger(__name__)


class SlurmContainer(ContainerProcess):
    """A container's batch job: its process is on another node, so Slurm signals it."""

    def __init__(self, job: SlurmJob, listener: ContainerListener, token: str, connected: asyncio.Future) -> None:
        self.job = job
        self._listener = listener
        self._token = token
        self._connected = connected
        self._scancels: set[asyncio.Task] = set()

    @property
    def pid(self) -> int:
        return self.job.pid

    @property
    def returncode(self) -> int | None:
        return self.job.returncode

    async def connect(self, notify: Notify | None) -> Streams:
        """Wait for the job to dial back, telling the run Slurm's state and reason while it waits."""
        try:
            await self.job.wait_until_connected(self._connected, notify)
        except BaseException:
            self._listener.forget(self._token)
            if self.job.returncode is None:
                await self.job.cancel()
            raise
        return self._connected.result()

    async def wait(self) -> int | None:
        try:
            return await self.job.wait()
        finally:
            self._listener.forget(self._token)  # an ended job's token opens no more tunnels

    def interrupt(self) -> None:
        self._scancel(signal.SIGINT)

    def kill(self) -> None:
        self._scancel(None)

    def _scancel(self, signum: int | None) -> None:
        task = asyncio.get_running_loop().create_task(self.job.cancel(signum))
        self._scancels.add(task)
        task.add_done_callback(self._scancels.discard)

    def exit_description(self, container_id: str) -> str:
        return f"container {container_id}: {self.job.description()}"


class SlurmLauncher(Launcher):
    """Containers as sbatch jobs of the host's partition (settings from its slurm.json)."""

    reserves_resources = False
    prewarms = False
    cancel_start_with_run = True
    cancelled_start_note = " (its Slurm job was cancelled with scancel)"
    processes_here = False  # a job's processes are on its node

    # -> the host dir of a volume (the agent sets it: jobs link it from the shared filesystem, or copy it)
    volume_dir: Callable[[str], Path] | None = None

    def __init__(self, config: SlurmConfig, images: ImageStore) -> None:
        self.config = config
        self.images = images
        self.listener = ContainerListener(config)

    async def start(self) -> None:
        await self.listener.start()
        log.info("containers run as Slurm jobs (%s); they dial back to %s",
                 self.config.partition or "default partition", self.listener.address)

    async def close(self) -> None:
        await self.listener.close()

    async def plan(self, spec: pb.ContainerSpec, container_id: str) -> LaunchPlan:
        """The image's Python from the shared filesystem; no sandbox or mounts of this host's (the job is
        on another node)."""
        if spec.local_mounts:
            raise MountError("add_local_* mounts aren't available in Slurm jobs yet; read and write "
                             "files on the cluster's shared filesystem instead")
        plan = LaunchPlan(python=sys.executable)
        if spec.volumes:  # linked from the shared filesystem, or node copies (remote_agent/worker/volume_links.py)
            plan.env[volume_links.ENV] = json.dumps(self._volume_links(spec))
            plan.env[volume_links.MODE_ENV] = self.config.job_volumes
        if spec.image:
            image = self.images.get(spec.image)
            self.images.touch(image)
            if image.paths:
                raise MountError("images with add_local_*(copy=True) files aren't available in Slurm jobs yet")
            plan.python, plan.image_id = image.python_executable, image.image_id
            plan.env.update(image.env)
            plan.imports = image.imports
        plan.cwd = spec.workdir or None
        return plan

    def _volume_links(self, spec: pb.ContainerSpec) -> list[tuple[str, str, str]]:
        if self.volume_dir is None:
            raise MountError("this agent's Slurm launcher was started without its volumes")
        links = []
        for mount in spec.volumes:
            host_dir = self.volume_dir(mount.volume)
            marker = host_dir.parent / volume_links.MARKER
            if not marker.exists():  # what a job checks to know it sees this very directory
                marker.write_text(secrets.token_hex(16))
            links.append((str(host_dir), mount.path, marker.read_text()))
        return links

    def note_agent_port(self, request: LaunchRequest) -> None:
        """Where a job's tunnel reaches the agent's API (the port its containers are told)."""
        self.listener.agent_port = int(request.env.get("NBMODAL_AGENT_PORT", "0") or 0) or self.listener.agent_port

    async def launch(self, request: LaunchRequest) -> ContainerProcess:
        self.note_agent_port(request)
        connected = self.listener.expect(request.token)
        args = ["--connect", self.listener.address] + (["--session"] if request.session else [])
        try:
            job = await SlurmJob.submit(request.spec, self.config, request.env, request.plan.python, args,
                                        f"nbmodal-{request.container_id}")
        except BaseException:
            self.listener.forget(request.token)
            raise
        return SlurmContainer(job, self.listener, request.token, connected)

    async def listed_gpus(self) -> list[pb.GpuInfo] | None:
        """The cluster's cards, as Slurm sees them."""
        return await cluster_gpus(self.config)
