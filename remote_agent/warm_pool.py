"""The warm pool: idle containers kept by spec for the next run, and how many of them stay.

An idle container serves the next run with an equal spec. It is retired once
it has been idle for its scale-down window, unless that would leave its spec
below ``min_containers`` or (while the spec is in use) below
``buffer_containers`` idle ones; specs that ask for standing containers get
them started in the background. Containers that reserve GPUs, cores or memory
are never started speculatively: they start when a run is admitted
(remote_agent/admission.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from nbmodal_wire import pb

if TYPE_CHECKING:
    from remote_agent.containers import Container

log = logging.getLogger(__name__)

REAP_INTERVAL_S = 1.0


def spec_key(spec: pb.ContainerSpec) -> bytes:
    """Containers with equal keys are interchangeable."""
    return spec.SerializeToString(deterministic=True)


class WarmPool:
    """Idle containers by spec, containers being warmed up, and the scale-down and standing rules."""

    def __init__(self, scaledown_window_s: float,
                 start: Callable[[pb.ContainerSpec, str], Coroutine[Any, Any, Container]],
                 release: Callable[[Container], None], containers: Callable[[], Iterable[Container]],
                 reserves: Callable[[pb.ContainerSpec], bool], clock: Callable[[], float] = time.time) -> None:
        self.scaledown_window_s = scaledown_window_s
        self._start = start            # a new container of a spec (with the id its slot is held for), started
        self._release = release        # a container that has nothing to do now (the pool's release)
        self._containers = containers  # every container of the pool (sessions' too)
        self._reserves = reserves      # whether a spec's containers hold reserved resources
        self.clock = clock
        self._idle: dict[bytes, list[Container]] = {}
        self._starting: dict[bytes, list[asyncio.Task]] = {}
        self._standing: dict[bytes, pb.ContainerSpec] = {}  # specs with min/buffer containers
        # A container id holding a free container slot for a speculative start (container_slots.py), or None
        # when every slot is taken or a run waits for one: prewarming never makes a run wait.
        self.take_slot: Callable[[], str | None] = lambda: ""
        self.slot_unused: Callable[[str], None] = lambda holder: None  # a start cancelled before it began

    # -- idle containers ---------------------------------------------------

    def put(self, container: Container) -> None:
        """A container that has finished its run waits here for the next one of its spec."""
        container.idle_since = self.clock()
        self._idle.setdefault(spec_key(container.spec), []).append(container)

    def take(self, spec: pb.ContainerSpec) -> Container | None:
        """The most recently used live idle container of the spec, out of the pool; None if there is none."""
        idle = self._idle.get(spec_key(spec), [])
        while idle:
            container = idle.pop()
            if container.alive:
                return container
        return None

    def take_starting(self, spec: pb.ContainerSpec) -> asyncio.Task | None:
        """A warm-up of the spec already under way, handed over to the caller; None if there is none."""
        starting = self._starting.get(spec_key(spec))
        return starting.pop(0) if starting else None

    def remove(self, container: Container) -> bool:
        """Take a container out of the idle pool (True if it was there)."""
        idle = self._idle.get(spec_key(container.spec))
        if idle and container in idle:
            idle.remove(container)
            return True
        return False

    def is_idle(self, container: Container) -> bool:
        return container in self._idle.get(spec_key(container.spec), [])

    def idle_containers(self) -> Iterator[Container]:
        for containers in list(self._idle.values()):
            yield from list(containers)

    def reclaim_idle(self, stopping: set[str]) -> Container | None:
        """The least recently used idle container that may stop to free a container slot (container_slots.py),
        out of the pool; never one that keeps its spec at ``min_containers`` (those in ``stopping`` are
        already going, so they don't count toward it). None if there is none."""
        for container in sorted(self.idle_containers(), key=lambda c: c.idle_since):
            key = spec_key(container.spec)
            going = sum(1 for c in self._containers() if c.id in stopping and spec_key(c.spec) == key)
            if self._count(container.spec) - going > container.spec.min_containers:
                self.remove(container)
                return container
        return None

    # -- warming up --------------------------------------------------------

    def prewarm(self, spec: pb.ContainerSpec) -> None:
        """Start a container in the background for the next run with this spec (if a container slot is free)."""
        holder = self.take_slot()
        if holder is None:
            log.debug("not prewarming: every container slot is taken or awaited")
            return
        key = spec_key(spec)
        task = asyncio.create_task(self._start(spec, holder))
        self._starting.setdefault(key, []).append(task)

        def settle(t: asyncio.Task) -> None:
            if t.cancelled():
                self.slot_unused(holder)
            if task in self._starting.get(key, []):
                self._starting[key].remove(task)
                if not t.cancelled() and t.exception() is None:
                    self._release(t.result())
            if not t.cancelled() and t.exception() is not None:
                log.warning("prewarming a container failed: %s", t.exception())

        task.add_done_callback(settle)

    def note_spec(self, spec: pb.ContainerSpec) -> None:
        """Remember a spec that asks for standing containers, and start them now."""
        if spec.min_containers or spec.buffer_containers:
            self._standing[spec_key(spec)] = spec
            self.keep_minimums()

    def forget_spec(self, spec: pb.ContainerSpec) -> None:
        """No more standing containers for a spec (its deployed app stopped or changed); idle ones retire
        with their scale-down window as any other's do."""
        self._standing.pop(spec_key(spec), None)

    def keep_minimums(self) -> None:
        """Start containers for specs below min_containers, or (in use) short of their idle buffer."""
        for key, spec in self._standing.items():
            missing = spec.min_containers - self._count(spec)
            if self._in_use(spec):
                missing = max(missing, spec.buffer_containers - self._count(spec, idle_only=True)
                              - len(self._starting.get(key, [])))
            for _ in range(max(0, missing)):
                if self._reserves(spec):
                    break  # reserved containers start when a run gets the resources, never speculatively
                self.prewarm(spec)

    # -- scaling down ------------------------------------------------------

    def scale_down(self) -> None:
        """Retire idle containers past their scale-down window (keeping minimums and buffers), then top up."""
        now = self.clock()
        for containers in self._idle.values():
            for container in list(containers):
                spec = container.spec
                window = spec.scaledown_window_s or self.scaledown_window_s
                buffer = spec.buffer_containers if self._in_use(spec) else 0
                if (now - container.idle_since >= window and self._count(spec) > spec.min_containers
                        and self._count(spec, idle_only=True) > buffer):
                    log.info("scaling down idle container %s", container.id)
                    containers.remove(container)
                    container.retire()
        self.keep_minimums()

    async def reap_forever(self, interval_s: float = REAP_INTERVAL_S) -> None:
        while True:
            await asyncio.sleep(interval_s)
            self.scale_down()

    def cancel_warmups(self) -> None:
        for tasks in self._starting.values():
            for task in tasks:
                task.cancel()

    def _count(self, spec: pb.ContainerSpec, idle_only: bool = False) -> int:
        key = spec_key(spec)
        if idle_only:
            return len(self._idle.get(key, []))
        return sum(1 for c in self._containers() if spec_key(c.spec) == key and not c.session) + \
            len(self._starting.get(key, []))

    def _in_use(self, spec: pb.ContainerSpec) -> bool:
        key = spec_key(spec)
        return any(c.run is not None and spec_key(c.spec) == key for c in self._containers())
