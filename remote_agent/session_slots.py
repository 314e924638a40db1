"""Sessions: named containers that keep their namespace from one run to the next.

A session's runs take turns (one at a time, in order) on the session's own
container, which is never shared with other runs, never scaled down, and lives
until the session is stopped. A run whose spec differs from the container's
replaces it (the namespace is lost).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from nbmodal_wire import pb
from remote_agent.warm_pool import spec_key

if TYPE_CHECKING:
    from remote_agent.containers import Container

Notify = Callable[[str], None]


@dataclass
class SessionSlot:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # held by the session's run in progress
    container: Container | None = None
    created: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.time)
    names: list[str] = field(default_factory=list)  # what its namespace holds, as its last run reported


class Sessions:
    """The agent's sessions by name."""

    def __init__(self, start: Callable[[pb.ContainerSpec, str, Notify | None], Awaitable[Container]]) -> None:
        self._start = start  # a new container for (spec, session name), admitted and started
        self.slots: dict[str, SessionSlot] = {}

    async def acquire(self, spec: pb.ContainerSpec, session: str,
                      notify: Notify | None = None) -> tuple[Container, bool]:
        """The session's container for one run (its turn held until release); True if started for it."""
        slot = self.slots.setdefault(session, SessionSlot())
        await slot.lock.acquire()
        try:
            container = slot.container
            if container is not None and container.alive and spec_key(container.spec) == spec_key(spec):
                return container, False
            if container is not None:
                container.kill()
                await container.wait_exited()  # its cards, if any, are free again
            slot.container = await self._start(spec, session, notify)
            return slot.container, True
        except BaseException:
            slot.lock.release()
            raise

    def release(self, container: Container) -> None:
        """The session's run is over: the next one may take its turn."""
        slot = self.slots.get(container.session)
        if slot is not None and slot.lock.locked():
            slot.last_used = time.time()
            slot.lock.release()

    async def stop(self, name: str) -> bool:
        """End a session and its container; False if there is none of that name."""
        slot = self.slots.pop(name, None)
        if slot is None:
            return False
        if slot.container is not None:
            slot.container.kill()
            await slot.container.wait_exited()
        return True
