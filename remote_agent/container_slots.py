"""A cap on the live containers of one agent, so that no flood of requests can start a thousand of them.

Every container holds a *slot* from just before it is launched until its process has exited: function and
cell containers, sessions', sandboxes', gang members', those forked from a zygote, and those taken back from
an earlier agent. Containers that reserve GPUs, cores or memory wait for those first (admission.py), then
for a slot; the many that reserve nothing are bounded only here.

**The limit**: ``NBMODAL_MAX_CONTAINERS`` in the agent's environment (0: no limit). By default it comes from
the host: 8 per CPU core and one per 512 MiB of memory, whichever is fewer, and at least 8. An idle worker
is ~30 MiB, one that imported numpy or torch 200–600 MiB, so 512 MiB each keeps a full host out of swap; and
a host with more containers than 8 per core has more of them runnable than it can run anyway (a 2-core,
24 GiB VM gets 16; a 16-core, 128 GiB GPU host 128).

**When every slot is held**, a run that needs a new container waits, in arrival order, and hears why
(``waiting for a container slot: 16 of 16 live``). Meanwhile idle warm containers are reclaimed, least
recently used first, except those that keep a spec at its ``min_containers`` (a deployed app's pin), and a
waiting run takes an idle container of its own spec as soon as one is there. Speculative starts (prewarming,
standing ``min_containers``/``buffer_containers``) only use a free slot and never make anyone wait.

**Nested calls can't deadlock**: a container waiting on a nested run (``f.remote()``/``f.map()`` from its
code, or attaching to a spawned call) can't give its slot back until that run ends. So while it waits it
*lends* its slot to nested runs: a nested run whose caller waits on it is admitted while fewer than
``limit`` live containers are not themselves waiting on a nested run. Every slot a nested run still waits
for is then held by a container that is running, starting or idle, which ends or is reclaimed. Lending
is bounded: with lent slots the agent holds at most twice its limit; a nested run that only that ceiling
stops is refused with an error naming the limit, rather than left to wait for slots held by its own callers.
A gang that would start more containers on this host at once than the limit is refused the same way
(remote_agent/gangs.py): its ranks would hold every slot while waiting for one more.
Example::

    slots = ContainerSlots(8, pool.warm.take, pool.release, pool.reclaim_idle)
    container = await slots.wait("c-1-7", spec, notify)   # None: the slot is held for "c-1-7"
    ...
    slots.release("c-1-7")                                # its process has exited
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nbmodal_wire import pb

if TYPE_CHECKING:
    from remote_agent.containers import Container

log = logging.getLogger(__name__)

ENV = "NBMODAL_MAX_CONTAINERS"
PER_CORE = 8
MIB_EACH = 512
FLOOR = 8


def default_limit(cpus: int | None = None, memory_mib: int | None = None) -> int:
    """The host's default cap: ``PER_CORE`` per core and one per ``MIB_EACH`` MiB, whichever is fewer (>= FLOOR)."""
    cpus = cpus if cpus is not None else len(os.sched_getaffinity(0))
    memory_mib = memory_mib if memory_mib is not None else _memory_mib()
    by_memory = memory_mib // MIB_EACH if memory_mib > 0 else PER_CORE * cpus
    return max(FLOOR, min(PER_CORE * cpus, by_memory))


def limit_setting(default: int | None = None) -> int:
    """The agent's cap on live containers: ``NBMODAL_MAX_CONTAINERS`` (0: none), else ``default``
    (None: ``default_limit()``, from this host)."""
    value = os.environ.get(ENV, "").strip()
    if value:
        try:
            return max(0, int(value))
        except ValueError:
            log.warning("%s=%r is not a whole number; using the default", ENV, value)
    return default_limit() if default is None else default


def _memory_mib() -> int:
    try:
        with open("/proc/meminfo") as f:
            return next(int(line.split()[1]) // 1024 for line in f if line.startswith("MemTotal:"))
    except (OSError, StopIteration, ValueError):
        return 0


class NoContainerSlot(Exception):
    """No container could be had within the cap: a wait that timed out, or a nested run past the ceiling."""


@dataclass(eq=False)
class _Waiter:
    holder: str  # the container id the slot will be held for
    spec: pb.ContainerSpec
    take_warm: bool  # may be given an idle container of its spec instead
    run_id: str
    granted: asyncio.Future  # None (a slot) or a warm Container
    notify: Callable[[str], None] | None
    _told: str = ""

    def tell(self, text: str) -> None:
        if self.notify is not None and text != self._told:
            self._told = text
            self.notify(text)


class ContainerSlots:
    """The slots of one agent: who holds them, who waits, what is lent (see the module docstring).

    ``take_warm(spec)`` hands over an idle container of a spec (or None), ``give_back_warm`` takes one back;
    ``reclaim_one(stopping)`` stops the least recently used idle container that may go (not one in
    ``stopping``, nor one a spec's ``min_containers`` keeps) and returns its id, or None.
    """

    def __init__(self, limit: int, take_warm: Callable[[pb.ContainerSpec], Container | None],
                 give_back_warm: Callable[[Container], None], reclaim_one: Callable[[set[str]], str | None]) -> None:
        self.limit = limit
        self._take_warm = take_warm
        self._give_back_warm = give_back_warm  # an idle container granted to a waiter that has gone
        self._reclaim_one = reclaim_one
        self.held: set[str] = set()
        self._waiters: list[_Waiter] = []
        self._reclaiming: set[str] = set()  # idle containers stopped for a waiter, not exited yet
        self._lenders: dict[str, int] = {}  # container id -> nested waits it is in
        self._awaited: dict[str, int] = {}  # run id -> containers waiting on it

    def __len__(self) -> int:
        return len(self.held)

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def status(self) -> str:
        """``16 of 16 live``, or ``3 live (no limit)``."""
        return f"{len(self.held)} of {self.limit} live" if self.limit else f"{len(self.held)} live (no limit)"

    # -- taking and giving back ---------------------------------------------

    def try_take(self, holder: str) -> bool:
        """A slot now for a speculative start (a prewarm): only a free one nobody waits for."""
        if self.limit and (self._waiters or len(self.held) >= self.limit):
            return False
        self.held.add(holder)
        return True

    def force(self, holder: str) -> None:
        """A container that exists already (taken back from an earlier agent) holds a slot whatever the count."""
        self.held.add(holder)

    async def wait(self, holder: str, spec: pb.ContainerSpec, notify: Callable[[str], None] | None = None,
                   run_id: str = "", take_warm: bool = False, timeout_s: float | None = None) -> Container | None:
        """Wait for a slot held for ``holder`` (None), or (``take_warm``) an idle container of ``spec``.

        Raises NoContainerSlot after ``timeout_s`` without one, or for a nested run only the ceiling stops.
        """
        waiter = _Waiter(holder, spec, take_warm, run_id, asyncio.get_running_loop().create_future(), notify)
        self._waiters.append(waiter)
        self.serve()
        try:
            return await asyncio.wait_for(asyncio.shield(waiter.granted), timeout_s)
        except BaseException as exc:  # cancelled, timed out or refused: give back whatever came meanwhile
            self._withdraw(waiter)
            if isinstance(exc, asyncio.TimeoutError):
                raise NoContainerSlot(f"no container slot freed within {round(timeout_s or 0, 1):g} s: {self.status()} "
                                      f"({ENV} on the agent's host sets the limit)") from None
            raise

    def _withdraw(self, waiter: _Waiter) -> None:
        if waiter in self._waiters:
            self._waiters.remove(waiter)
        granted = waiter.granted
        if granted.done() and not granted.cancelled() and granted.exception() is None:
            container = granted.result()
            if container is None:
                self.release(waiter.holder)
            else:
                self._give_back_warm(container)
        self.serve()

    def release(self, holder: str) -> None:
        """The slot's container has exited (or never started): the next waiter may have it."""
        self._reclaiming.discard(holder)
        if holder in self.held:
            self.held.discard(holder)
            self.serve()

    def container_idle(self) -> None:
        """A container went idle: a waiter of its spec may take it."""
        if self._waiters:
            self.serve()

    # -- lending while waiting on nested runs ---------------------------------

    @contextmanager
    def lent(self, caller: str, run_id: str) -> Iterator[None]:
        """While container ``caller`` waits on run ``run_id``, its slot is lent to that run (and its kin)."""
        if not caller:
            yield
            return
        self._lenders[caller] = self._lenders.get(caller, 0) + 1
        self._awaited[run_id] = self._awaited.get(run_id, 0) + 1
        self.serve()
        try:
            yield
        finally:
            for table, key in ((self._lenders, caller), (self._awaited, run_id)):
                table[key] -= 1
                if not table[key]:
                    del table[key]

    def _blocked(self) -> int:
        """Live containers waiting on a nested run."""
        return sum(1 for holder in self._lenders if holder in self.held)

    # -- granting -------------------------------------------------------------

    def serve(self) -> None:
        """Grant what can be granted, in arrival order; reclaim idle containers for the rest; tell them why."""
        if not self._waiters:
            return
        unserved: list[_Waiter] = []
        for waiter in list(self._waiters):
            if waiter.granted.done():
                self._waiters.remove(waiter)
                continue
            container = self._take_warm(waiter.spec) if waiter.take_warm else None
            if container is not None:
                self._grant(waiter, container)
                continue
            room = self._room_for(waiter)
            if room is True:
                self.held.add(waiter.holder)
                self._grant(waiter, None)
            elif room is False:
                unserved.append(waiter)
            else:  # only the ceiling stops a nested run: waiting could be for its own callers' slots
                self._waiters.remove(waiter)
                waiter.granted.set_exception(NoContainerSlot(room))
        self._reclaim_for(len(unserved))
        for ahead, waiter in enumerate(unserved):
            queue = f"{ahead} ahead" if ahead else "next in line"
            waiter.tell(f"waiting for a container slot: {self.status()} ({queue}; {ENV} sets the limit)")

    def _grant(self, waiter: _Waiter, container: Container | None) -> None:
        self._waiters.remove(waiter)
        waiter.granted.set_result(container)

    def _room_for(self, waiter: _Waiter) -> bool | str:
        """True: a slot for it now; False: it waits; a str: why a nested run is refused."""
        live = len(self.held)
        if not self.limit or live < self.limit:
            return True
        if waiter.run_id not in self._awaited:
            return False
        if live - self._blocked() >= self.limit:
            return False  # slots are held by containers that will end or be reclaimed: it waits
        if live < 2 * self.limit:
            return True  # a slot lent by a caller that waits on nested runs
        return (f"no container slot for a nested call: {self.status()}, and the containers waiting on nested "
                f"calls have lent as many again ({2 * self.limit} live in all), so it would wait for its own "
                f"callers. Raise {ENV} on the agent's host, or make fewer nested calls wait at once")

    def _reclaim_for(self, waiting: int) -> None:
        """Stop idle containers, least recently used first, so that ``waiting`` runs can get a slot."""
        needed = waiting - len(self._reclaiming)
        if needed <= 0:
            return
        while needed > 0:
            reclaimed = self._reclaim_one(self._reclaiming)
            if reclaimed is None:
                return
            log.info("reclaimed idle container %s: a run waits for a container slot (%s)", reclaimed, self.status())
            self._reclaiming.add(reclaimed)
            needed -= 1
