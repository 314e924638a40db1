"""The agent's core: accepts runs, places them on containers, cancels them.

The gRPC service (service.py) is a thin layer over this class.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from nbmodal_wire import blobs, pb
from remote_agent import request_errors, sandboxes, supervision
from remote_agent.allocator import Allocator, GpuUnsatisfiable, Unsatisfiable
from remote_agent.blobstore import BlobStore
from remote_agent.container_slots import NoContainerSlot
from remote_agent.containers import Container, ContainerDied, ContainerPool
from remote_agent.deployments import DeploymentStore
from remote_agent.gangs import Gangs
from remote_agent.gpus import GpuRequestError, describe, host_inventory
from remote_agent.images import ImageError, ImageStore, runtime_sources
from remote_agent.launch import sandbox_config
from remote_agent.launchers import Launcher, LaunchRefused
from remote_agent.launchers.local import LocalLauncher
from remote_agent.launchers.slurm_gang import SlurmGangLauncher
from remote_agent.replicas import Replicas
from remote_agent.request_errors import RequestError
from remote_agent.runs import RUN_ID, Run, RunRegistry
from remote_agent.sandbox import MountError, check_mount_path
from remote_agent.secrets import SecretEnvironments, SecretError, SecretStore
from remote_agent.slurm import SlurmConfig
from remote_agent.storage import AsyncStorage, StoreError
from remote_agent.store_routes import StoreRoutes
from remote_agent.supervision import Supervision
from remote_agent.volume_versions import VolumeVersions
from remote_agent.volumes import VolumeStore

log = logging.getLogger(__name__)

DEFAULT_CANCEL_GRACE_S = 10.0
CONTAINER_PYTHON = "%d.%d" % sys.version_info[:2]


class Draining(Exception):
    pass


def _error(type_name: str, message: str, kind: pb.ErrorKind = pb.ERROR_KIND_UNSPECIFIED) -> pb.ErrorInfo:
    return pb.ErrorInfo(type_name=type_name, message=message, traceback=f"{type_name}: {message}\n", kind=kind)


# How a run that got no container ends, by what stopped it: the first row whose exception type
# matches gives (state, error type as the notebook shows it, error kind the client maps by).
# A type name of None takes the exception's own ``type_name`` (a launcher's refusal names its backend).
_ExceptionTypes = type[Exception] | tuple[type[Exception], ...]
_NO_CONTAINER: tuple[tuple[_ExceptionTypes, pb.RunState, str | None, pb.ErrorKind], ...] = (
    (GpuUnsatisfiable, pb.FAILED, "nbmodal.GpuUnavailable", pb.ERROR_GPU_UNAVAILABLE),
    (Unsatisfiable, pb.FAILED, "nbmodal.ResourcesUnavailable", pb.ERROR_RESOURCES_UNAVAILABLE),
    (GpuRequestError, pb.FAILED, "nbmodal.GpuUnavailable", pb.ERROR_GPU_UNAVAILABLE),
    (ImageError, pb.FAILED, "nbmodal.ImageBuildError", pb.ERROR_IMAGE_BUILD),  # its image was removed meanwhile
    (LaunchRefused, pb.FAILED, None, pb.ERROR_LAUNCH_REFUSED),  # refused, or it can never start as asked
    (NoContainerSlot, pb.FAILED, "nbmodal.ResourcesUnavailable", pb.ERROR_RESOURCES_UNAVAILABLE),  # the cap
    ((StoreError, MountError), pb.FAILED, "nbmodal.MountError", pb.ERROR_MOUNT),  # an unknown volume, a bad path
    (SecretError, pb.FAILED, "nbmodal.NotFoundError", pb.ERROR_SECRET),  # an unknown secret, a missing key
)


def no_container_result(exc: Exception) -> pb.RunFinished:
    """The result of a run whose container could not be had, as _NO_CONTAINER says (else the agent's fault)."""
    for types, state, type_name, kind in _NO_CONTAINER:
        if isinstance(exc, types):
            type_name = type_name or str(getattr(exc, "type_name", type(exc).__name__))
            return pb.RunFinished(state=state, error=_error(type_name, str(exc), kind))
    return pb.RunFinished(state=pb.LOST, error=_error(
        "RuntimeError", f"could not start a container: {exc}", pb.ERROR_AGENT))


def choose_launcher(state_dir: Path, images: ImageStore, volume_dir, sandbox, scratch_dir: Path,
                    logs_dir: Path) -> Launcher:
    """How this agent starts containers, once: Slurm jobs where the host was added with --slurm, else here."""
    slurm = SlurmConfig.load(state_dir)
    if slurm is not None:
        launcher = SlurmGangLauncher(slurm, images)  # SlurmLauncher's jobs, and a gang's ranks as one allocation
        launcher.volume_dir = volume_dir  # volumes in jobs: linked from the shared filesystem
        return launcher
    return LocalLauncher(images, volume_dir, sandbox, scratch_dir, logs_dir,
                         use_zygotes=os.environ.get("NBMODAL_ZYGOTE", "1") != "0")


class Agent:
    def __init__(self, state_dir: Path, scaledown_window_s: float) -> None:
        self.state_dir = state_dir
        # Containers whose supervisors outlived an earlier agent: taken back before the runs load, so that
        # their runs are not marked LOST (remote_agent/supervision.py).
        self.supervision = Supervision(state_dir / "supervisors")
        self.adoptable = self.supervision.discover()
        self.runs = RunRegistry(state_dir / "runs", adopted=supervision.adopted_ids(self.adoptable))
        self.blob_dir = state_dir / "blobs"
        self.blob_dir.mkdir(exist_ok=True)
        BlobStore(self.blob_dir).remove_stale()
        self.storage = AsyncStorage(state_dir / "storage.db")
        self.volumes = VolumeStore(state_dir / "volumes")
        self.volume_io = ThreadPoolExecutor(max_workers=4, thread_name_prefix="volume-io")
        # One object across hosts: homes, routes to the other agents, replica volumes (replicas.py).
        self.routes = StoreRoutes()
        self.volume_versions = VolumeVersions(self.volumes)
        self.replicas = Replicas(self.volumes, self.volume_versions, self.routes, self.in_io_thread)
        self.secrets = SecretEnvironments(SecretStore(state_dir / "secrets"))
        self.images = ImageStore(state_dir / "images", runtime_sources())
        self.images.secrets = self.secrets.store  # build steps' secrets=
        self.allocator = Allocator(host_inventory(state_dir))
        log.info("GPUs: %s; %d CPU cores, %d MiB for containers", describe(self.allocator.gpus),
                 len(self.allocator.cores), self.allocator.memory_mib)
        scratch_dir = state_dir / "scratch"
        # Working dirs of containers of an earlier agent, except the adopted ones'.
        supervision.clear_scratch(scratch_dir, supervision.adopted_ids(self.adoptable))
        self.sandbox = sandbox_config(state_dir, self.blob_dir, self.volumes.root, self.images, scratch_dir,
                                      use_sandbox=os.environ.get("NBMODAL_SANDBOX", "1") != "0")
        self.launcher = choose_launcher(state_dir, self.images, self.volumes.volume_dir, self.sandbox, scratch_dir,
                                        state_dir / "containers")
        self.pool = ContainerPool(state_dir / "containers", self.blob_dir, scaledown_window_s, self.allocator,
                                  self.launcher)
        self.pool.secret_environments = self.secrets.for_spec  # what each container's environment adds
        if isinstance(self.launcher, LocalLauncher):  # a Slurm job's container is its own backend's
            self.pool.supervision = self.supervision
        supervision.reserve(self.allocator, self.adoptable)  # before any run can ask for the same cards
        self.restarting = False  # a restart (SIGHUP) keeps the running containers for the next agent
        self.sandboxes = sandboxes.for_agent(self)  # Sandbox.create: containers that run commands
        self.gangs = Gangs(self)  # members of multi-node gangs: reserved, then started together
        self.stopping = asyncio.Event()
        self.draining = False
        self._cancelled_before_arrival: OrderedDict[str, bool] = OrderedDict()
        self.deployments = DeploymentStore(state_dir / "deployments", self)

    async def start(self) -> None:
        self.pool.start_reaper()
        await self.launcher.start()
        adoptable, self.adoptable = self.adoptable, []
        await supervision.adopt(self, adoptable)
        if self.launcher.prewarms:
            # A warm container for the first run: no one waits for a cold start.
            self.pool.prewarm(pb.ContainerSpec())
        self.deployments.resume()  # deployed apps: their min_containers pools and schedules

    # -- runs ---------------------------------------------------------------

    def submit(self, request: pb.RunRequest) -> Run:
        if self.draining:
            raise Draining("this agent is handing over to a newer version; start the run again")
        deployed = request.deployed.app if request.HasField("deployed") else ""
        if deployed:  # a call by name: its payload gets the stored pickle (RequestError if not deployed)
            self.deployments.prepare(request)
        run = self.runs.create(request)
        run.emit(started=pb.RunStarted(run_id=run.id))
        if deployed:
            self.deployments.track(run, deployed, request.deployed.function)
        if self._cancelled_before_arrival.pop(run.id, None):
            run.finish(pb.RunFinished(state=pb.CANCELLED, error=_error(
                "KeyboardInterrupt", "cancelled before it reached the agent")))
            return run
        try:
            self.secrets.apply(request)  # before the spec is used anywhere: its digest makes it distinct
        except SecretError as exc:
            run.finish(no_container_result(exc))
            return run
        self.pool.note_spec(request.spec)
        run.task = asyncio.create_task(self._execute(run), name=f"run-{run.id}")
        log.debug("run %s accepted: %s", run.id, request.label[:80])
        return run

    async def _execute(self, run: Run) -> None:
        request = run.request
        assert request is not None  # only runs reloaded from an earlier agent have none, and they never execute
        if request.HasField("cluster"):  # a member of a multi-node gang: held until all are ready (gangs.py)
            await self.gangs.execute(run)
            return

        def notify(text: str) -> None:
            run.emit(notice=pb.Notice(text=text))

        try:
            for mount in request.spec.volumes:
                mount.path = check_mount_path(mount.volume, mount.path)
            await self.replicas.before_run(list(request.spec.volumes), notify)  # replicas at the latest version
            container, _ = await self.pool.acquire(request.spec, request.session, notify=notify, run_id=run.id)
        except asyncio.CancelledError:
            run.finish(pb.RunFinished(state=pb.CANCELLED, error=_error(
                "KeyboardInterrupt", f"cancelled before it started{self.launcher.cancelled_start_note}",
                pb.ERROR_CANCELLED)))
            return
        except Exception as exc:
            finished = no_container_result(exc)
            if finished.state == pb.LOST:
                log.exception("no container for run %s", run.id)
            run.finish(finished)
            return

        run.container = container
        run.info.container_id = container.id
        run.set_state(pb.RUNNING)
        payload_path = self.blob_dir / request.payload_blob if request.payload_blob else None
        try:
            if payload_path is not None and not blobs.valid_blob_path(payload_path):
                finished = pb.RunFinished(state=pb.FAILED, error=_error(
                    "RuntimeError", f"the run's payload blob {request.payload_blob} is not on this agent"))
            else:
                finished = await container.execute(run, request, str(payload_path or ""))
                if container.process is not None and container.process.process_limit_exceeded() is not None:
                    container.kill()  # its processes fill its limit: no later run could start one
                    await container.wait_exited()
                    raise ContainerDied(container)
        except ContainerDied as died:
            finished = self._result_of_dead_container(run, request, container, died)
            self.pool.replace(container)
            blobs.remove_orphans(self.blob_dir)  # a result it was writing when it died
        finally:
            run.container = None
            self.pool.release(container)
            if payload_path is not None:
                blobs.recycle(payload_path)  # the container may still map it
        if request.spec.volumes:  # commit on exit: a new version at the home, or a replica's writes sent there
            await self.replicas.after_run(list(request.spec.volumes), notify)
        if request.session and finished.session_names:
            slot = self.pool.sessions().get(request.session)
            if slot is not None:
                slot.names = list(finished.session_names)
        run.finish(finished)
        # After its followers have sent the result (their wake-ups are queued first): not on the call's path. A
        # success is a debug line: a warm loop makes thousands a second (the run's own record is in runs/).
        if finished.state != pb.SUCCEEDED:
            asyncio.get_running_loop().call_soon(log.info, "run %s finished: %s", run.id,
                                                 pb.RunState.Name(finished.state))
        else:
            log.debug("run %s finished: SUCCEEDED", run.id)

    @staticmethod
    def _result_of_dead_container(run: Run, request: pb.RunRequest, container: Container,
                                  died: ContainerDied) -> pb.RunFinished:
        lost_session = f" Session {request.session!r} lost its namespace." if request.session else ""
        forks = container.process.process_limit_exceeded() if container.process is not None else None
        if forks is not None:  # a fork bomb (remote_agent/process_limits.py)
            return pb.RunFinished(state=pb.FAILED, error=_error(
                "nbmodal.ProcessLimitExceeded", f"{forks.message()}.{lost_session}", pb.ERROR_PROCESS_LIMIT))
        exceeded = container.process.memory_limit_exceeded() if container.process is not None else None
        if exceeded is not None:  # before a cancel or timeout: it says why the container really ended
            return pb.RunFinished(state=pb.FAILED, error=_error(
                "nbmodal.MemoryLimitExceeded", f"{exceeded.message()}.{lost_session}", pb.ERROR_MEMORY_LIMIT))
        if run.cancel_requested:
            grace = request.cancel_grace_s or DEFAULT_CANCEL_GRACE_S
            return pb.RunFinished(state=pb.CANCELLED, error=_error(
                "KeyboardInterrupt",
                f"the run did not stop within {grace:g} s of the interrupt, so its container was killed "
                f"and replaced.{lost_session}"))
        if request.timeout_s > 0 and container.killed_by_agent:
            return pb.RunFinished(state=pb.TIMED_OUT, error=_error(
                "TimeoutError",
                f"the remote run exceeded its timeout of {request.timeout_s:g} s and its container "
                f"was killed.{lost_session}"))
        return pb.RunFinished(state=pb.LOST, error=_error(
            "nbmodal.ContainerDied", f"{died}; its log is {container.log_path}.{lost_session}",
            pb.ERROR_CONTAINER_DIED))

    def cancel_before_arrival(self, run_id: str) -> None:
        """Remember a cancel for a run id not seen yet: its submit may still be in flight."""
        if not RUN_ID.fullmatch(run_id):
            return
        self._cancelled_before_arrival[run_id] = True
        while len(self._cancelled_before_arrival) > 1024:
            self._cancelled_before_arrival.popitem(last=False)

    def cancel(self, run: Run, force: bool = False) -> None:
        if run.done:
            return
        run.cancel_requested = True
        container = run.container
        if container is None:
            # Only a run still waiting for its container is cancelled as a task; one past its
            # container is finishing and must get to report how it ended.
            if run.task is not None and run.info.state == pb.PENDING:
                run.task.cancel()
            return
        if force:
            container.kill()
            return
        container.interrupt()
        grace = (run.request.cancel_grace_s if run.request is not None else 0) or DEFAULT_CANCEL_GRACE_S
        asyncio.get_running_loop().call_later(grace, self._kill_if_still_running, run, container)

    @staticmethod
    def answer_input(run: Run, request_seq: int, text: str, eof: bool) -> None:
        """Send the answer to the stdin read (a debugger's prompt) that ``run``'s code waits in."""
        container = run.container
        if container is None or not container.alive:
            raise RequestError(f"run {run.id} is not waiting for input", request_errors.CONFLICT)
        container.send_input(run.answer_input(request_seq, text, eof))

    @staticmethod
    def _kill_if_still_running(run: Run, container: Container) -> None:
        if not run.done and run.container is container:
            log.warning("run %s ignored the interrupt; killing container %s", run.id, container.id)
            container.kill()

    async def stop_container(self, container_id: str) -> bool:
        """Stop one container: its run is cancelled at once, its session ends, an idle one retires."""
        container = next((c for c in self.pool.containers() if c.id == container_id), None)
        if container is None:
            return False
        if container.session:
            await self.pool.stop_session(container.session)
        elif container.run is not None:
            self.cancel(container.run, force=True)
        else:
            self.pool.retire(container)
        return True

    # -- sessions -----------------------------------------------------------

    async def fetch_value(self, session: str, name: str) -> pb.FetchValueReply:
        slot = self.pool.sessions().get(session)
        if slot is None or slot.container is None or not slot.container.alive:
            return pb.FetchValueReply(error=f"there is no session named {session!r} on this agent")
        async with slot.lock:
            return await slot.container.fetch_value(name)

    def session_infos(self) -> list[pb.SessionInfo]:
        infos = []
        for name, slot in self.pool.sessions().items():
            container = slot.container
            infos.append(pb.SessionInfo(
                name=name, container_id=container.id if container else "",
                pid=(container.worker_pid or container.pid) if container else 0,
                names=slot.names, created=slot.created, last_used=slot.last_used, busy=slot.lock.locked()))
        return infos

    def container_infos(self) -> list[pb.ContainerInfo]:
        infos = []
        for container in self.pool.containers():
            sandbox = self.sandboxes.of_container(container.id)
            if container.run is not None or (sandbox is not None and container.alive):
                state = pb.CONTAINER_BUSY
            elif self.pool.is_idle(container) or (container.session and container.alive):
                state = pb.CONTAINER_IDLE
            else:  # being started, or handed to a run that hasn't begun
                state = pb.CONTAINER_STARTING if container.alive or container.process is None else pb.CONTAINER_EXITED
            infos.append(pb.ContainerInfo(
                container_id=container.id, pid=container.worker_pid or container.pid, spec=container.spec, state=state,
                session=container.session, run_id=container.run.id if container.run else "",
                created=container.created, idle_since=container.idle_since,
                gpus=self.allocator.held_by(container.id)))
            if sandbox is not None:
                infos[-1].kind, infos[-1].sandbox_id = "sandbox", sandbox.id
                infos[-1].tags.update(sandbox.tags)
        return infos

    async def gpu_list(self) -> list[pb.GpuInfo]:
        """The GPUs `nbmodal gpus` shows: its launcher's (a cluster's, by partition and node), else this host's."""
        listed = await self.launcher.listed_gpus()
        return listed if listed is not None else self.gpu_infos()

    def gpu_infos(self) -> list[pb.GpuInfo]:
        containers = {c.id: c for c in self.pool.containers()}
        infos = []
        for gpu in self.allocator.inventory.read():
            info = pb.GpuInfo(index=gpu.index, uuid=gpu.uuid, name=gpu.name, memory_total=gpu.memory_total,
                              memory_used=gpu.memory_used, utilization=gpu.utilization,
                              temperature=gpu.temperature, power_w=gpu.power_w,
                              processes=[pb.GpuProcess(pid=pid, memory_used=used) for pid, used in gpu.processes])
            holder = containers.get(self.allocator.holders.get(gpu.index, ""))
            if holder is not None:
                info.container_id = holder.id
                info.session = holder.session
                info.run_id = holder.run.id if holder.run is not None else ""
            infos.append(info)
        return infos

    async def drain(self) -> None:
        """Take no new runs, finish the ones in flight, then stop (an upgrade took over)."""
        self.draining = True
        log.info("draining: no new runs; stopping once the runs in flight end")
        while any(not run.done for run in self.runs.list()):
            await asyncio.sleep(0.5)
        self.stopping.set()

    async def in_io_thread(self, function, *args):
        """Volume file work, off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self.volume_io, function, *args)

    async def shutdown(self) -> None:
        self.supervision.release_all(self.pool.containers())  # a stop ends the containers, as it always did
        for run in self.runs.list():
            if not run.done and run.task is not None:
                run.task.cancel()
        await self.sandboxes.shutdown()
        await self.pool.shutdown()
        self.runs.flush_all()
        blobs.clear_pool(self.blob_dir)  # recycled blob files are a cache of this agent's alone
