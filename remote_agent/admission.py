"""The admission queue: runs that reserve GPUs, cores or memory wait here, first come first served.

A waiting run is admitted with a warm container of its spec or with an
allocation of free resources (remote_agent/allocator.py keeps the accounts),
strictly in arrival order. Warm containers are a cache: an idle one that holds
what the head of the queue needs is stopped, and its resources go to the run
once it has exited. Each waiting run hears its place in the queue.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from nbmodal_wire import pb
from remote_agent.allocator import Allocation, Allocator, Request
from remote_agent.warm_pool import WarmPool

if TYPE_CHECKING:
    from remote_agent.containers import Container

log = logging.getLogger(__name__)

_waiter_ids = itertools.count(1)


@dataclass
class Grant:
    """What an admitted run gets: a warm container of its spec, or resources held by ``holder``."""

    container: Container | None = None
    allocation: Allocation | None = None
    holder: str = ""


@dataclass
class _Waiter:
    spec: pb.ContainerSpec
    request: Request
    session: str
    granted: asyncio.Future  # a Grant
    notify: Callable[[str], None] | None
    holder: str = field(default_factory=lambda: f"waiter-{next(_waiter_ids)}")
    _told: int = -1

    def tell_position(self, ahead: int) -> None:
        if self.notify is not None and ahead != self._told:
            self._told = ahead
            queue = f"{ahead} ahead" if ahead else "next in line"
            self.notify(f"waiting for {self.request.text} ({queue})")


class AdmissionQueue:
    """The fair queue in front of the allocator (see the module docstring)."""

    def __init__(self, allocator: Allocator, warm: WarmPool, release: Callable[[Container], None]) -> None:
        self.allocator = allocator
        self.warm = warm
        self._release = release  # a warm container granted to a run that has gone (the pool's release)
        self._waiters: list[_Waiter] = []

    def __len__(self) -> int:
        return len(self._waiters)

    async def admit(self, spec: pb.ContainerSpec, notify: Callable[[str], None] | None = None,
                    session: str = "") -> Grant:
        """Wait for the run's turn; raises Unsatisfiable at once for what this host can never give.

        A session's run is never given a warm container (a session's container is its own).
        """
        request = Request.of(spec)
        self.allocator.check_satisfiable(request)
        waiter = _Waiter(spec, request, session, asyncio.get_running_loop().create_future(), notify)
        self._waiters.append(waiter)
        self.serve()
        try:
            return await waiter.granted
        except BaseException:  # cancelled while waiting: give back whatever came meanwhile
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            if waiter.granted.done() and not waiter.granted.cancelled():
                grant = waiter.granted.result()
                if grant.container is not None:
                    self._release(grant.container)
                else:
                    self.allocator.release(grant.holder)
            self.serve()
            raise

    def give_back(self, grant: Grant) -> None:
        """An allocation its run could not use (its container failed to start): free it for the next."""
        self.allocator.release(grant.holder)
        self.serve()

    def serve(self) -> None:
        """Grant waiting requests in arrival order: a warm container of the spec, or free resources."""
        for waiter in list(self._waiters):
            if waiter.granted.done():
                continue
            container = None if waiter.session else self.warm.take(waiter.spec)
            if container is not None:
                self._waiters.remove(waiter)
                waiter.granted.set_result(Grant(container=container))
                continue
            allocation = self.allocator.try_allocate(waiter.request, waiter.holder)
            if allocation is not None:
                self._waiters.remove(waiter)
                waiter.granted.set_result(Grant(allocation=allocation, holder=waiter.holder))
        self._evict_for_head()
        for ahead, waiter in enumerate(self._waiters):
            waiter.tell_position(ahead)

    def _evict_for_head(self) -> None:
        """Warm containers are a cache: one holding what the head of the queue needs gives it up."""
        if not self._waiters:
            return
        head = self._waiters[0]
        for container in self.warm.idle_containers():
            if self.allocator.could_use(head.request, container.id):
                log.info("evicting idle container %s: a run waits for %s", container.id, head.request.text)
                self.warm.remove(container)
                container.kill()  # its resources are released when it has exited
                return
