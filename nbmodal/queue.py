"""``nbmodal.Queue``: a durable FIFO queue on a host, with partitions, named as in Modal.

    q = nbmodal.Queue.from_name("jobs", create_if_missing=True)
    q.put({"lr": 0.1})
    q.get(timeout=5)         # raises queue.Empty after 5 s with nothing, as the standard library does

Items are any picklable values up to 1 MiB pickled; a partition holds at most
100,000 items (a put beyond that blocks, or raises ``queue.Full``). A put
that returned has been written durably on the host. Every method that talks to
the host has an ``.aio`` twin, as in Modal::

    await q.put.aio({"lr": 0.1})
    async for job in q.iterate.aio(item_poll_timeout=5): ...
"""

from __future__ import annotations

import queue
from collections.abc import Iterator
from typing import Any

from nbmodal import serialization
from nbmodal._aio import WithAio
from nbmodal._runtime.named import NamedObject
from nbmodal_wire import pb

# Modal drops a partition's items this long after its last put; here items stay until taken.
DEFAULT_PARTITION_TTL_S = 24 * 3600


class Queue(NamedObject[pb.StoreOp]):
    """A named Queue on a host; get one with ``Queue.from_name`` or ``Queue.ephemeral``."""

    _CREATE, _LOOKUP, _DELETE = pb.CREATE, pb.LOOKUP, pb.DELETE
    _KIND = "queue"

    # -- putting -------------------------------------------------------------------

    @WithAio
    def put(self, v: Any, block: bool = True, timeout: float | None = None, *,
            partition: str | None = None, partition_ttl: int = DEFAULT_PARTITION_TTL_S) -> None:
        """Append one item; raises ``queue.Full`` when no room comes (as ``queue.Queue.put``).

        ``partition_ttl`` is accepted for Modal code: items here stay until they are taken.
        """
        self.put_many([v], block, timeout, partition=partition, partition_ttl=partition_ttl)

    @WithAio
    def put_many(self, vs: list[Any], block: bool = True, timeout: float | None = None, *,
                 partition: str | None = None, partition_ttl: int = DEFAULT_PARTITION_TTL_S) -> None:
        """Append items, all or none, in one durable write."""
        if partition_ttl != DEFAULT_PARTITION_TTL_S:
            from nbmodal._function_options import warn_no_effect

            warn_no_effect("partition_ttl", "items in a partition here stay until they are taken")
        values = list(vs)
        reply = self._call(pb.PUT, partition=partition or "", values=[serialization.dumps(v) for v in values],
                           **_waiting(block, timeout))
        if reply.full:
            raise queue.Full(f"queue {self.name!r} has no room for {len(values)} more item(s)")

    # -- getting -------------------------------------------------------------------

    @WithAio
    def get(self, block: bool = True, timeout: float | None = None, *, partition: str | None = None) -> Any:
        """Remove and return the next item; raises ``queue.Empty`` as ``queue.Queue.get`` does."""
        return self.get_many(1, block, timeout, partition=partition)[0]

    @WithAio
    def get_many(self, n_values: int, block: bool = True, timeout: float | None = None, *,
                 partition: str | None = None) -> list[Any]:
        """Remove and return up to ``n_values`` items (at least one, or ``queue.Empty``)."""
        reply = self._call(pb.GET, partition=partition or "", count=max(1, n_values), **_waiting(block, timeout))
        if reply.empty:
            raise queue.Empty()
        return [serialization.loads(v) for v in reply.values]

    @WithAio  # a generator: async for item in q.iterate.aio()
    def iterate(self, *, partition: str | None = None, item_poll_timeout: float = 0.0) -> Iterator[Any]:
        """Items as they come, until none arrives within ``item_poll_timeout`` seconds."""
        while True:
            try:
                yield self.get(block=item_poll_timeout > 0, timeout=item_poll_timeout or None, partition=partition)
            except queue.Empty:
                return

    @WithAio
    def peek(self, n_values: int = 10, *, partition: str | None = None) -> list[Any]:
        """The next items, without removing them."""
        return [serialization.loads(v)
                for v in self._call(pb.ITEMS, partition=partition or "", count=n_values).values]

    # -- size ----------------------------------------------------------------------

    @WithAio
    def len(self, *, partition: str | None = None, total: bool = False) -> int:
        """Items in a partition (the default one), or in all with ``total=True``."""
        return self._call(pb.LEN, partition=partition or "", total=total).length

    def __len__(self) -> int:
        return self.len()

    @WithAio
    def clear(self, *, partition: str | None = None, all: bool = False) -> None:
        self._call(pb.CLEAR, partition=partition or "", total=all)

    def _send(self, client, op: pb.StoreOp, fields: dict[str, Any]) -> pb.QueueReply:
        return client.queue_call(pb.QueueRequest(op=op, name=self.name, **fields))


def _waiting(block: bool, timeout: float | None) -> dict:
    """How the agent waits: not at all, up to ``timeout`` seconds, or (timeout None) for ever."""
    if timeout is not None and timeout < 0:
        raise ValueError("'timeout' must be a non-negative number")
    if not block:
        return {"block": False}
    return {"block": True, "timeout_s": timeout or 0.0} if timeout != 0 else {"block": False}
