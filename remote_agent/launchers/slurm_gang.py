"""The Slurm gang launcher: a multi-node gang's containers as ONE job of N nodes, one task per node.

A gang's ranks that all run on a Slurm host (``%%remote host=cluster nodes=2``,
remote_agent/gangs.py) must get their nodes together: N separate jobs could
start far apart in time, or one could never start while the others hold their
nodes. So this launcher gathers the launch requests of a gang (their
environment says the gang, rank and size: remote_agent/worker/cluster_net.py)
until all N have arrived on this agent, then submits one allocation:

    sbatch --nodes=N --ntasks-per-node=1 [--gres, --cpus-per-task, --mem: per node] <<script
    srun --kill-on-bad-exit=1 bash -c '<pick this task's token and container id by SLURM_PROCID>;
                                       exec python -u -m remote_agent.worker --connect AGENT'

Each task is one rank's container on its own node; it dials back with its own
token, as a single job's container does (remote_agent/launchers/slurm.py).
While the allocation waits, every rank hears Slurm's state and reason. The job
is the gang's: killing any member scancels it (the client stops every rank of a
gang anyway), and an interrupt is ``scancel --signal=INT`` to its tasks, sent
once for all the ranks that ask within a second. Requests that are not a gang's
(or a gang of one) are the plain Slurm launcher's.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
import signal
import time
from dataclasses import dataclass, field

from remote_agent.images import ImageStore
from remote_agent.launchers import ContainerProcess, LaunchRequest
from remote_agent.launchers.slurm import SlurmContainer, SlurmLauncher
from remote_agent.slurm import SlurmConfig, SlurmError, SlurmJob, _communicate, _output, sbatch_argv
from remote_agent.worker.cluster_net import CLUSTER_ID_ENV, GANG_RANK_ENV, GANG_SIZE_ENV

log = logging.getLogger(__name__)

# How long the first rank of a gang waits on this agent for the others' launch requests.
GATHER_TIMEOUT_S = 120.0
# Interrupts of one gang's job within this long are one signal (each rank's cancel asks for it).
INTERRUPT_DEBOUNCE_S = 1.0


def gang_script(python: str, agent_address: str) -> str:
    """The batch script of a gang's allocation: one worker per node, each with its rank's token and container
    id (``NBMODAL_GANG_TOKENS`` and ``NBMODAL_GANG_CONTAINER_IDS`` in the job's environment, by SLURM_PROCID)."""
    task = ("tokens=($NBMODAL_GANG_TOKENS); ids=($NBMODAL_GANG_CONTAINER_IDS); "
            "export NBMODAL_CONTAINER_TOKEN=${tokens[$SLURM_PROCID]} NBMODAL_CONTAINER_ID=${ids[$SLURM_PROCID]}; "
            f"exec {shlex.quote(python)} -u -m remote_agent.worker --connect {shlex.quote(agent_address)}")
    return f"#!/bin/bash\nexec srun --kill-on-bad-exit=1 --export=ALL bash -c {shlex.quote(task)}\n"


def gang_sbatch_argv(request: LaunchRequest, config: SlurmConfig, size: int, job_name: str) -> list[str]:
    """sbatch for the allocation: the spec's GPUs, cores and memory on each of ``size`` nodes."""
    return sbatch_argv(request.spec, config, job_name) + [f"--nodes={size}", "--ntasks-per-node=1"]


class GangJob(SlurmJob):
    """A gang's allocation: an interrupt goes to every node's task (not the batch shell that runs srun)."""

    _last_interrupt = 0.0

    async def cancel(self, signum: int | None = None) -> None:
        if signum is None:
            await _output(["scancel", self.job_id], self.config)
            return
        now = time.monotonic()
        if now - self._last_interrupt < INTERRUPT_DEBOUNCE_S:
            return
        self._last_interrupt = now
        await _output(["scancel", f"--signal={signal.Signals(signum).name.removeprefix('SIG')}", self.job_id],
                      self.config)


@dataclass
class _Gathering:
    size: int
    requests: dict[int, LaunchRequest] = field(default_factory=dict)
    job: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class SlurmGangLauncher(SlurmLauncher):
    """The Slurm launcher, with a gang's containers started as one allocation (see the module docstring)."""

    def __init__(self, config: SlurmConfig, images: ImageStore) -> None:
        super().__init__(config, images)
        self._gathering: dict[str, _Gathering] = {}

    async def launch(self, request: LaunchRequest) -> ContainerProcess:
        gang = request.env.get(CLUSTER_ID_ENV, "")
        size = int(request.env.get(GANG_SIZE_ENV, "1") or 1)
        if not gang or size <= 1:
            return await super().launch(request)
        self.note_agent_port(request)
        rank = int(request.env.get(GANG_RANK_ENV, "0"))
        gathering = self._gathering.setdefault(gang, _Gathering(size))
        gathering.requests[rank] = request
        connected = self.listener.expect(request.token)
        if len(gathering.requests) == size:
            del self._gathering[gang]
            asyncio.get_running_loop().create_task(self._submit(gang, gathering))
        try:
            job = await asyncio.wait_for(asyncio.shield(gathering.job), GATHER_TIMEOUT_S)
        except asyncio.TimeoutError:
            self._give_up(gang, gathering, request)
            raise SlurmError(f"only {len(gathering.requests)} of the {size} ranks of gang {gang} reached this "
                             f"agent within {GATHER_TIMEOUT_S:g} s; no allocation was asked for") from None
        except BaseException:
            self._give_up(gang, gathering, request)
            raise
        return SlurmContainer(job, self.listener, request.token, connected)

    def _give_up(self, gang: str, gathering: _Gathering, request: LaunchRequest) -> None:
        """A rank stops waiting (cancelled, timed out): it leaves the gathering; a submitted job is cancelled."""
        self.listener.forget(request.token)
        gathering.requests = {r: q for r, q in gathering.requests.items() if q is not request}
        if gathering.job.done() and not gathering.job.cancelled() and gathering.job.exception() is None:
            asyncio.get_running_loop().create_task(gathering.job.result().cancel())
        elif not gathering.requests:
            self._gathering.pop(gang, None)

    async def _submit(self, gang: str, gathering: _Gathering) -> None:
        ranks = [gathering.requests[rank] for rank in sorted(gathering.requests)]
        first = ranks[0]
        argv = gang_sbatch_argv(first, self.config, gathering.size, f"nbmodal-{gang}")
        script = gang_script(first.plan.python, self.listener.address)
        env = {**first.env, **self.config.env, "NBMODAL_GANG_TOKENS": " ".join(r.token for r in ranks),
               "NBMODAL_GANG_CONTAINER_IDS": " ".join(r.container_id for r in ranks)}
        try:
            process = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env=env)
            out, err = await _communicate(process, argv, script.encode())
            if process.returncode != 0:
                raise SlurmError(f"sbatch refused the gang's allocation of {gathering.size} nodes: "
                                 f"{err.decode(errors='replace').strip() or out.decode().strip()}")
        except BaseException as exc:
            if not gathering.job.done():
                gathering.job.set_exception(exc)
            return
        job_id = out.decode().strip().split(";")[0]
        log.info("gang %s: job %s, %d nodes: %s", gang, job_id, gathering.size, " ".join(argv[2:]))
        if not gathering.job.done():
            gathering.job.set_result(GangJob(job_id, self.config))
