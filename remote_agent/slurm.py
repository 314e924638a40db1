"""Slurm's side of containers as Slurm jobs: sbatch, squeue, scancel, sinfo and the dial-back port.

An agent whose state dir holds ``slurm.json`` (written by ``nbmodal host add … --slurm``) starts its
containers with ``sbatch`` instead of as local processes. The job runs ``python -m remote_agent.worker
--connect HOST:PORT``: the worker dials the agent's container listener and introduces itself with its
own token, then speaks the same frames as a local container. Slurm does the scheduling and the GPUs
(``gpu="H100:2"`` becomes ``--gres=gpu:h100:2``); while a job waits, the run hears Slurm's state and
reason; an interrupt is ``scancel --signal=INT``, a kill ``scancel``. A warm job serves the next run of
its spec until the scale-down window retires it, which ends the job and frees its allocation.

The same port carries a running job's calls to the agent's API (which listens on loopback only): a
connection that opens with ``grpc TOKEN`` (a live job's token) is piped to the agent's gRPC port
(``remote_agent/worker/agent_tunnel.py`` is the job's end); the agent checks the token on every call.

The launcher built on these is remote_agent/launchers/slurm.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import re
import shlex
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from nbmodal_wire import pb
from remote_agent.gpus import parse_gpu_request
from remote_agent.launchers import LaunchRefused

log = logging.getLogger(__name__)

CONFIG_FILE = "slurm.json"
TUNNEL_PREFIX = "grpc "  # a dial-back line "grpc TOKEN": a job's tunnel to the agent's API, not its worker
POLL_S = 1.0
DEFAULT_COMMAND_TIMEOUT_S = 30.0  # one Slurm command; a slurmctld that went away never answers
# Pending reasons that mean the job can never start as asked: fail at once with Slurm's words.
HOPELESS_REASONS = ("PartitionTimeLimit", "PartitionNodeLimit", "BadConstraints", "InvalidAccount", "InvalidQOS",
                    "AccountNotAllowed", "QOSMaxWallDurationPerJobLimit", "PartitionDown", "ReqNodeNotAvail",
                    "AssocMaxWallDurationPerJobLimit", "QOSMaxGRESPerJob", "MaxGRESPerAccount")
ENDED = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "PREEMPTED", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL",
         "DEADLINE", "REVOKED")


class SlurmError(LaunchRefused):
    """Slurm refused or ended a container's job; the message is Slurm's, with the host."""

    type_name = "nbmodal.SlurmError"


@dataclass
class SlurmConfig:
    partition: str = ""
    account: str = ""
    qos: str = ""
    time: str = "01:00:00"                  # a job's walltime: how long a warm container may live
    sbatch_flags: list[str] = field(default_factory=list)
    gres_types: dict[str, str] = field(default_factory=dict)  # nbmodal GPU name -> the cluster's GRES type
    callback_host: str = ""                # the address compute nodes reach the agent at (default: hostname)
    env: dict[str, str] = field(default_factory=dict)  # for sbatch/squeue/scancel (e.g. SLURM_CONF)
    # Volumes in jobs: "shared" (linked from the shared filesystem), "copy" (a node-local copy, synced from
    # and committed to the agent's), "auto" (linked where the job sees the agent's state dir, else copied).
    job_volumes: str = "auto"

    @classmethod
    def load(cls, state_dir: Path) -> SlurmConfig | None:
        path = state_dir / CONFIG_FILE
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def command_env(self) -> dict[str, str]:
        return {**os.environ, **self.env}


def gres_for(gpu: str, config: SlurmConfig) -> str:
    """``gpu="H100:2"`` as Slurm GRES: ``gpu:h100:2`` (types mapped case-insensitively, or by the host's table).

    Slurm takes one GRES type per job, so of a list of fallbacks the first is asked for.
    """
    options = parse_gpu_request(gpu)
    if not options:
        return ""
    first = options[0]
    if first.type == "ANY":
        return f"gpu:{first.count}"
    table = {k.lower(): v for k, v in config.gres_types.items()}
    gres_type = table.get(first.type.lower(), first.type.lower())
    return f"gpu:{gres_type}:{first.count}"


def sbatch_argv(spec: pb.ContainerSpec, config: SlurmConfig, job_name: str) -> list[str]:
    """The sbatch command line for a container of ``spec`` (its script comes on stdin)."""
    argv = ["sbatch", "--parsable", f"--job-name={job_name}", "--output=/dev/null", "--export=ALL",
            f"--time={config.time}"]
    if config.partition:
        argv.append(f"--partition={config.partition}")
    if config.account:
        argv.append(f"--account={config.account}")
    if config.qos:
        argv.append(f"--qos={config.qos}")
    if spec.gpu:
        argv.append(f"--gres={gres_for(spec.gpu, config)}")
    if spec.cpu:
        argv.append(f"--cpus-per-task={math.ceil(spec.cpu)}")
    if spec.memory_mib:
        argv.append(f"--mem={spec.memory_mib}M")
    return argv + list(config.sbatch_flags)


class ContainerListener:
    """The TCP port Slurm jobs dial back to; each connection is matched to its container by token."""

    def __init__(self, config: SlurmConfig) -> None:
        self.config = config
        self._waiting: dict[str, asyncio.Future] = {}
        self._live: set[str] = set()  # tokens of jobs that dialed back and haven't ended: they may tunnel
        self._tunnels: set[asyncio.Task] = set()
        self._server: asyncio.AbstractServer | None = None
        self.port = 0
        self.agent_port = 0  # the agent's gRPC port on this node's loopback (what a job's tunnel reaches)

    async def start(self) -> None:
        # Compute nodes are other machines: listen beyond loopback. A connection that doesn't open
        # with a waiting container's token is closed at once.
        self._server = await asyncio.start_server(self._accept, host="0.0.0.0", port=0)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def address(self) -> str:
        import socket

        return f"{self.config.callback_host or socket.getfqdn()}:{self.port}"

    def expect(self, token: str) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self._waiting[token] = future
        return future

    def forget(self, token: str) -> None:
        self._waiting.pop(token, None)
        self._live.discard(token)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 10)
        except (asyncio.TimeoutError, ConnectionError):
            writer.close()
            return
        text = line.strip().decode(errors="replace")
        if text.startswith(TUNNEL_PREFIX):  # a running job's connection to the agent's API (agent_tunnel.py)
            await self._tunnel(text[len(TUNNEL_PREFIX):], reader, writer)
            return
        future = self._waiting.pop(text, None)
        if future is None or future.done():
            writer.close()
            return
        self._live.add(text)
        future.set_result((reader, writer))

    async def _tunnel(self, token: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Carry a job's gRPC connection to the agent's loopback port: only for a live job's token (the agent
        still checks the token on every call, and opens only a container's calls to it)."""
        if token not in self._live or not self.agent_port:
            writer.close()
            return
        try:
            agent_reader, agent_writer = await asyncio.open_connection("127.0.0.1", self.agent_port)
        except OSError as exc:
            log.warning("a job's tunnel to the agent's port %d failed: %s", self.agent_port, exc)
            writer.close()
            return
        task = asyncio.current_task()
        if task is not None:
            self._tunnels.add(task)
        try:
            await asyncio.gather(_pump(reader, agent_writer), _pump(agent_reader, writer))
        finally:
            if task is not None:
                self._tunnels.discard(task)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tunnels):
            task.cancel()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy bytes one way until either side closes; then close the writing side."""
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


class SlurmJob:
    """A container's batch job, standing in for its process (pid, returncode, wait, signals)."""

    def __init__(self, job_id: str, config: SlurmConfig) -> None:
        self.job_id = job_id
        self.config = config
        self.pid = 0
        self.returncode: int | None = None
        self.final_state = ""
        self.reason = ""

    @classmethod
    async def submit(cls, spec: pb.ContainerSpec, config: SlurmConfig, env: dict[str, str], python: str,
                     worker_args: list[str], job_name: str) -> SlurmJob:
        script = f"#!/bin/bash\nexec {shlex.quote(python)} -u -m remote_agent.worker {shlex.join(worker_args)}\n"
        argv = sbatch_argv(spec, config, job_name)
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**env, **config.env})
        out, err = await _communicate(process, argv, script.encode())
        if process.returncode != 0:
            raise SlurmError(f"sbatch refused the job: {err.decode(errors='replace').strip() or out.decode().strip()}")
        job_id = out.decode().strip().split(";")[0]
        log.info("submitted job %s: %s", job_id, " ".join(argv[2:]))
        return cls(job_id, config)

    async def state(self) -> tuple[str, str]:
        """(state, reason) as squeue says, or from scontrol once the job left the queue."""
        out = await _output(["squeue", "-h", "-j", self.job_id, "-o", "%T|%r"], self.config)
        if out.strip():
            state, _, reason = out.strip().partition("|")
            return state, reason
        out = await _output(["scontrol", "show", "job", self.job_id, "-o"], self.config)
        job_state = re.search(r"JobState=(\S+)", out)
        job_reason = re.search(r"Reason=(\S+)", out)
        return (job_state.group(1) if job_state else "GONE"), (job_reason.group(1) if job_reason else "")

    async def wait_until_connected(self, connected: asyncio.Future, notify: Callable[[str], None] | None) -> None:
        """Wait for the job to dial back, telling the run Slurm's state and reason while it waits."""
        told = ""
        while not connected.done():
            state, reason = await self.state()
            if state in ENDED or state == "GONE":
                self.final_state, self.reason = state, reason
                raise SlurmError(f"job {self.job_id} ended before its container started: {state}"
                                 + (f" ({reason})" if reason and reason != "None" else ""))
            if state == "PENDING" and reason in HOPELESS_REASONS:
                await self.cancel()
                raise SlurmError(f"job {self.job_id} can't start as asked: PENDING ({reason}); it was cancelled")
            text = f"Slurm job {self.job_id}: {state}" + (f" ({reason})" if reason and reason != "None" else "")
            if notify is not None and text != told:
                notify(text)
                told = text
            try:
                await asyncio.wait_for(asyncio.shield(connected), POLL_S)
            except asyncio.TimeoutError:
                pass

    async def cancel(self, signum: int | None = None) -> None:
        argv = ["scancel", self.job_id]
        if signum is not None:  # to the job's process (the batch script execs the worker)
            argv[1:1] = [f"--signal={signal.Signals(signum).name.removeprefix('SIG')}", "--batch"]
        try:
            await _output(argv, self.config)
        except SlurmError as exc:  # a cancel is best effort: the job's walltime still ends it
            log.warning("job %s may still be queued or running: %s", self.job_id, exc)

    async def wait(self) -> int:
        while self.returncode is None:
            try:
                state, reason = await self.state()
            except SlurmError as exc:  # Slurm doesn't answer now: the job is where it was, ask again
                log.warning("job %s: %s", self.job_id, exc)
                await asyncio.sleep(POLL_S)
                continue
            if state in ENDED or state == "GONE":
                self.final_state, self.reason = state, reason
                self.returncode = 0 if state == "COMPLETED" else 1
            else:
                await asyncio.sleep(POLL_S)
        return self.returncode

    def description(self) -> str:
        reason = f", {self.reason}" if self.reason and self.reason != "None" else ""
        return f"Slurm job {self.job_id} ended: {self.final_state or 'unknown'}{reason}"


async def cluster_gpus(config: SlurmConfig) -> list[pb.GpuInfo]:
    """The cluster's GPUs as sinfo reports them: one row per card, by partition and node, busy or free."""
    out = await _output(["sinfo", "-h", "-N", "-O", "NodeHost:|,Partition:|,Gres:|,GresUsed:|"], config)
    infos = []
    for line in out.splitlines():
        fields = [f.strip() for f in line.split("|")]
        if len(fields) < 4:
            continue
        node, partition, gres, used = fields[:4]
        busy = {gpu_type: count for gpu_type, count in parse_gres(used)}
        for gpu_type, count in parse_gres(gres):
            for index in range(count):
                infos.append(pb.GpuInfo(index=index, name=gpu_type.upper() or "GPU", partition=partition.rstrip("*"),
                                        node=node, in_use=index < busy.get(gpu_type, 0)))
    return infos


def parse_gres(text: str) -> list[tuple[str, int]]:
    """``gpu:h100:4(S:0),gpu:a100:2`` -> [("h100", 4), ("a100", 2)]; other GRES than gpu are left out."""
    found = []
    for item in re.split(r",(?![^(]*\))", text):
        item = re.sub(r"\(.*\)", "", item.strip())
        parts = item.split(":")
        if parts[0] != "gpu" or len(parts) < 2 or not parts[-1].isdigit():
            continue
        found.append((parts[1] if len(parts) == 3 else "", int(parts[-1])))
    return found


async def _output(argv: list[str], config: SlurmConfig) -> str:
    process = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.STDOUT, env=config.command_env())
    out, _ = await _communicate(process, argv)
    return out.decode(errors="replace")


async def _communicate(process: asyncio.subprocess.Process, argv: list[str],
                       stdin: bytes | None = None) -> tuple[bytes, bytes]:
    """A Slurm command's output, or SlurmError once it has taken ``command_timeout_s()``.

    A command that never answers (slurmctld gone, a hung NFS mount) must not hold the agent: it is
    killed at the timeout, and when the caller is cancelled (the agent stopping).
    """
    timeout = command_timeout_s()
    try:
        return await asyncio.wait_for(process.communicate(stdin), timeout)
    except asyncio.TimeoutError:
        raise SlurmError(f"`{shlex.join(argv[:3])} …` did not answer within {timeout:g} s; is slurmctld "
                         f"reachable from this host? (NBMODAL_SLURM_COMMAND_TIMEOUT sets the limit)") from None
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            with contextlib.suppress(Exception):
                await asyncio.shield(process.wait())


def command_timeout_s() -> float:
    """How long one sbatch/squeue/scancel/scontrol/sinfo may take (``NBMODAL_SLURM_COMMAND_TIMEOUT``, s)."""
    try:
        return max(1.0, float(os.environ.get("NBMODAL_SLURM_COMMAND_TIMEOUT", DEFAULT_COMMAND_TIMEOUT_S)))
    except ValueError:
        return DEFAULT_COMMAND_TIMEOUT_S

