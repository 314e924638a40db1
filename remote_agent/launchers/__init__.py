"""Launchers: how a container is started, signalled and reserved, one backend per module.

The pool (remote_agent/containers.py) decides *when* a container starts and
which run it serves; a launcher decides *how*: what a container of a spec is
started with (its LaunchPlan), how its process comes to life and reaches the
agent, how it is interrupted and killed, and whether the agent reserves its
GPUs, cores and memory itself or the backend does. Backends:

- ``launchers.local``: a process on this host (forked from the image's zygote,
  or spawned, inside the bubblewrap sandbox when there is one);
- ``launchers.slurm``: a Slurm batch job on a compute node that dials back.

A new backend is a new module here with a Launcher subclass and its
ContainerProcess; nothing else branches on the backend. The agent talks to a
started container only through its ContainerProcess (pid, wait, interrupt,
kill, its two streams), so a small supervisor can later stand between the two.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nbmodal_wire import pb
from remote_agent.allocator import Allocation
from remote_agent.launch import LaunchPlan
from remote_agent.limits import MemoryLimitExceeded
from remote_agent.process_limits import ProcessLimitExceeded

Notify = Callable[[str], None]
Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class LaunchRefused(Exception):
    """The backend refused a container, or it can never start as asked; the message is the backend's.

    The run fails with ErrorKind ERROR_LAUNCH_REFUSED; ``type_name`` is the error's
    type as the notebook shows it.
    """

    type_name = "nbmodal.LaunchRefused"


@dataclass
class LaunchRequest:
    """Everything a launcher needs to start one container."""

    container_id: str
    spec: pb.ContainerSpec
    plan: LaunchPlan
    env: dict[str, str]         # the container's whole environment
    allocation: Allocation      # what the agent reserved for it (empty when the backend reserves)
    session: bool               # keeps its namespace between runs
    log_path: Path              # its stdout and stderr, where the backend can write them
    token: str                  # the container's own credential (a dial-back introduces itself with it)


class ContainerProcess(ABC):
    """A started container as the agent sees it: a pid, a way to wait for it, signals, and its streams."""

    worker_pid: int = 0  # as the worker reported it when ready (0 until then)

    @property
    @abstractmethod
    def pid(self) -> int:
        """The process the agent started (0 where it runs elsewhere)."""

    @property
    @abstractmethod
    def returncode(self) -> int | None:
        """None while it runs; negative: the signal that ended it."""

    @abstractmethod
    async def connect(self, notify: Notify | None) -> Streams:
        """The container's frame streams, once it has reached the agent; ``notify`` hears why it waits.

        Raises LaunchRefused (after cleaning up) if it can never get there.
        """

    @abstractmethod
    async def wait(self) -> int | None:
        """Wait for the container to end; its return code."""

    @abstractmethod
    def interrupt(self) -> None:
        """KeyboardInterrupt in the running code (and SIGINT to its children)."""

    @abstractmethod
    def kill(self) -> None:
        """End the container and everything it started, now."""

    @abstractmethod
    def exit_description(self, container_id: str) -> str:
        """How it ended, in words, starting with the container's name."""

    def memory_limit_exceeded(self) -> MemoryLimitExceeded | None:
        """Set when it was ended for going over its ``memory=(request, limit)`` limit (remote_agent/limits.py)."""
        return None  # a backend that enforces no limits itself never ends a container for one

    def process_limit_exceeded(self) -> ProcessLimitExceeded | None:
        """Set once it reached its process limit (remote_agent/process_limits.py): it is then killed."""
        return None  # a backend without a per-container process limit never reaches one


class Launcher(ABC):
    """One way of starting containers (see the module docstring)."""

    # Whether the agent reserves a container's GPUs, cores and memory itself (else the backend does).
    reserves_resources: bool = True
    # Whether the agent starts a warm default container at once (a backend where one would hold a
    # node says no).
    prewarms: bool = True
    # A run cancelled while its container starts: True cancels the start (a queued job is dropped),
    # False lets it finish, and the container joins the warm pool.
    cancel_start_with_run: bool = False
    # Appended to "cancelled before it started": what cancelling did in this backend.
    cancelled_start_note: str = ""
    # Whether its containers' processes are this host's, with the pids the agent sees (a Slurm job's are
    # another node's): processes exec'd into a killed container are then cleaned up by the agent.
    processes_here: bool = True

    async def start(self) -> None:
        """Get ready to launch (listen for dial-backs, …)."""
        return None  # an optional step: nothing to do unless the backend says otherwise

    async def close(self) -> None:
        """Stop what start() and launch() left running besides the containers themselves."""
        return None  # an optional step: nothing to do unless the backend says otherwise

    @abstractmethod
    async def plan(self, spec: pb.ContainerSpec, container_id: str) -> LaunchPlan:
        """What a container of ``spec`` is started with (raises ImageError, StoreError, MountError)."""

    @abstractmethod
    async def launch(self, request: LaunchRequest) -> ContainerProcess:
        """Start the container; its streams come from the process's connect()."""

    def forget(self, container_id: str) -> None:
        """The container has exited: remove what was made for it."""
        return None  # an optional step: nothing to do unless the backend says otherwise

    async def listed_gpus(self) -> list[pb.GpuInfo] | None:
        """The GPUs `nbmodal gpus` shows, or None for this host's own cards as the agent holds them."""
        return None
