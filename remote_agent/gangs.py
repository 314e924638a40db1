"""Members of multi-node gangs on this agent: reserved and started, then held until the client says go.

A gang (``@nbmodal.clustered(size=N)``, ``%%remote nodes=N``) is N runs, one
per rank, on N hosts' agents (or N on one agent: a Slurm host, or one machine).
The client (nbmodal/_runtime/gang.py) starts them all; on each agent a member
run goes through two phases:

1. **Reserve.** It is admitted like any run that asks for GPUs, cores or
   memory (the fair queue: remote_agent/admission.py), its volumes' replicas
   are synced (remote_agent/replicas.py; its writes are committed when it ends,
   as any run's), and its own container is started (never a warm one, never
   kept afterwards: its environment is the gang's). Its container reports its addresses and a free port
   (remote_agent/worker/cluster_net.py). The member is then *ready* and holds
   what it reserved; ``ClusterStatus`` says so, or why it waits.
2. **Go.** Once every member is ready the client sends ``ClusterGo`` with the
   rank's environment (``MASTER_ADDR``, ``RANK``…), and the run's code starts
   with it. A ready member that hears no go within its assemble timeout fails,
   releasing what it held; a cancelled one (the client gave up: another member
   failed, or the user interrupted) releases it at once.

Nothing else in the agent knows about gangs: ``Agent._execute`` hands a run
with ``RunRequest.cluster`` to ``Gangs.execute``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from nbmodal_wire import blobs, pb
from remote_agent import request_errors
from remote_agent.container_slots import ENV as MAX_CONTAINERS_ENV
from remote_agent.container_slots import NoContainerSlot
from remote_agent.containers import Container, ContainerDied
from remote_agent.request_errors import RequestError
from remote_agent.sandbox import check_mount_path
from remote_agent.worker.cluster_net import CLUSTER_ID_ENV, GANG_RANK_ENV, GANG_SIZE_ENV

if TYPE_CHECKING:
    from remote_agent.agent import Agent
    from remote_agent.runs import Run

log = logging.getLogger(__name__)

# How long a ready member waits for the others (the client's go) when its request names no timeout.
DEFAULT_ASSEMBLE_TIMEOUT_S = 600.0


class ClusterError(Exception):
    type_name = "nbmodal.ClusterError"


@dataclass
class _Member:
    run: Run
    waiting: str = "starting its container"
    container: Container | None = None
    go: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class Gangs:
    """This agent's gang members (see the module docstring)."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self._members: dict[str, _Member] = {}

    async def execute(self, run: Run) -> None:
        """A member run, start to finish: reserve and start its container, wait for go, run, release."""
        request = run.request
        assert request is not None and request.HasField("cluster")
        cluster = request.cluster
        run.info.cluster_id, run.info.cluster_rank, run.info.cluster_size = (
            cluster.cluster_id, cluster.rank, cluster.size)
        member = _Member(run)
        self._members[run.id] = member
        try:
            finished = await self._run_member(member, request)
        finally:
            self._members.pop(run.id, None)
        run.finish(finished)
        log.info("gang %s rank %d (run %s) finished: %s", cluster.cluster_id, cluster.rank, run.id,
                 pb.RunState.Name(finished.state))

    async def _run_member(self, member: _Member, request: pb.RunRequest) -> pb.RunFinished:
        from remote_agent.agent import _error, no_container_result

        run = member.run

        def notify(text: str) -> None:
            member.waiting = text
            run.emit(notice=pb.Notice(text=f"rank {request.cluster.rank}: {text}"))

        spec = pb.ContainerSpec()
        spec.CopyFrom(request.spec)
        spec.env[CLUSTER_ID_ENV] = request.cluster.cluster_id  # the worker reports its addresses (cluster_net)
        here = request.cluster.ranks_here or 1  # the ranks this agent starts together
        limit = self.agent.pool.slots.limit
        if limit and here > limit:  # its ranks would hold every slot waiting for one more: refused, not left to hang
            return no_container_result(NoContainerSlot(
                f"this gang starts {here} containers on this host at once, but its agent keeps at most {limit} "
                f"live; raise {MAX_CONTAINERS_ENV} on the agent's host, or place fewer ranks here"))
        spec.env[GANG_RANK_ENV], spec.env[GANG_SIZE_ENV] = str(request.cluster.index_here), str(here)
        try:
            for mount in spec.volumes:
                mount.path = check_mount_path(mount.volume, mount.path)
            # As for any run (agent.py): a replica is brought to its home's latest version first.
            await self.agent.replicas.before_run(list(spec.volumes), notify)
            container = await self.agent.pool.start_dedicated(spec, notify)
        except asyncio.CancelledError:
            return pb.RunFinished(state=pb.CANCELLED, error=_error(
                "KeyboardInterrupt", "cancelled before its container started", pb.ERROR_CANCELLED))
        except Exception as exc:
            return no_container_result(exc)
        member.container = container
        member.waiting = ""
        try:
            return await self._after_ready(member, request, container)
        finally:
            run.container = None
            if container.alive:
                self.agent.pool.retire(container)  # the gang's environment is in it: never reused

    async def _after_ready(self, member: _Member, request: pb.RunRequest, container: Container) -> pb.RunFinished:
        from remote_agent.agent import _error

        run = member.run
        timeout = request.cluster.assemble_timeout_s or DEFAULT_ASSEMBLE_TIMEOUT_S
        exited = asyncio.ensure_future(container.wait_exited())  # its job or process ended while it waited
        try:
            await asyncio.wait({member.go, exited}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            return pb.RunFinished(state=pb.CANCELLED, error=_error(
                "KeyboardInterrupt", "cancelled while its gang assembled", pb.ERROR_CANCELLED))
        finally:
            exited.cancel()
        if not member.go.done():
            if container.alive:
                return pb.RunFinished(state=pb.FAILED, error=_error(
                    ClusterError.type_name, f"rank {request.cluster.rank} was ready, but the gang's other members "
                    f"were not within {timeout:g} s; what it reserved is released"))
            return pb.RunFinished(state=pb.LOST, error=_error(
                "nbmodal.ContainerDied", f"rank {request.cluster.rank}: {container.exit_description()} while its "
                f"gang assembled", pb.ERROR_CONTAINER_DIED))
        env = member.go.result()
        run.container = container
        run.info.container_id = container.id
        run.set_state(pb.RUNNING)
        payload_path = self.agent.blob_dir / request.payload_blob if request.payload_blob else None
        try:
            if payload_path is not None and not blobs.valid_blob_path(payload_path):
                return pb.RunFinished(state=pb.FAILED, error=_error(
                    "RuntimeError", f"the run's payload blob {request.payload_blob} is not on this agent"))
            return await container.execute(run, request, str(payload_path or ""), cluster_env=env)
        except ContainerDied as died:
            return self.agent._result_of_dead_container(run, request, container, died)
        finally:
            if payload_path is not None:
                blobs.recycle(payload_path)  # the container may still map it
            if request.spec.volumes:  # commit on exit, as for any run: the home's next version
                def notify(text: str) -> None:
                    run.emit(notice=pb.Notice(text=text))

                await self.agent.replicas.after_run(list(request.spec.volumes), notify)

    def status(self, run_ids: list[str]) -> list[pb.ClusterMemberStatus]:
        """Where each member stands: ready (with its container's addresses and free port), waiting, or done."""
        statuses = []
        for run_id in run_ids:
            member = self._members.get(run_id)
            status = pb.ClusterMemberStatus(run_id=run_id)
            if member is None:
                run = self.agent.runs.get(run_id)
                if run is None:
                    status.waiting = "not arrived yet"
                else:
                    status.done = run.done
                    status.waiting = "" if run.done else "arriving"
            elif member.container is not None:
                ready = member.container.ready_info
                status.ready = True
                status.addresses.extend(ready.cluster_addresses)
                status.free_port = ready.cluster_free_port
                status.host_name = ready.cluster_host_name
            else:
                status.waiting = member.waiting
            statuses.append(status)
        return statuses

    def go(self, run_id: str, env: dict[str, str]) -> None:
        """Start a ready member's code with the rank's environment."""
        member = self._members.get(run_id)
        if member is None:
            raise RequestError(f"run {run_id} is not a gang member waiting on this agent", request_errors.NOT_FOUND)
        if member.container is None:
            raise RequestError(f"run {run_id} is not ready yet: {member.waiting}", request_errors.CONFLICT)
        if not member.go.done():
            member.go.set_result(dict(env))
