"""``nbmodal.Queue``: a durable FIFO queue on a host, with partitions, named as in Modal.

    q = nbmodal.Queue.from_name("jobs", create_if_missing=True)
    q.put({"lr": 0.1})
    q.get(timeout=5)         # raises queue.Empty after 5 s with nothing, as the standard library does

Items are any picklable values up to 1 MiB pickled; a partition holds at most
100,000 items (a put beyond that blocks, or raises ``queue.Full``). A put
that returned has been written durably on the host.
"""

from __future__ import annotations

import queue
from collections.abc import Iterator
from typing import Any

from nbmodal import serialization
from nbmodal._runtime.named import NamedObject
from nbmodal_wire import pb


class Queue(NamedObject[pb.StoreOp]):
    """A named Queue on a host; get one with ``Queue.from_name`` or ``Queue.ephemeral``."""

    _CREATE, _LOOKUP, _DELETE = pb.CREATE, pb.LOOKUP, pb.DELETE

    # -- putting -------------------------------------------------------------------

    def put(self, value: Any, block: bool = True, timeout: float | None = None, *,
            partition: str | None = None) -> None:
        """Append one item; raises ``queue.Full`` when no room comes (as ``queue.Queue.put``)."""
        self.put_many([value], block, timeout, partition=partition)

    def put_many(self, values: list[Any], block: bool = True, timeout: float | None = None, *,
                 partition: str | None = None) -> None:
        """Append items, all or none, in one durable write."""
        reply = self._call(pb.PUT, partition=partition or "", values=[serialization.dumps(v) for v in values],
                           **_waiting(block, timeout))
        if reply.full:
            raise queue.Full(f"queue {self.name!r} has no room for {len(values)} more item(s)")

    # -- getting -------------------------------------------------------------------

    def get(self, block: bool = True, timeout: float | None = None, *, partition: str | None = None) -> Any:
        """Remove and return the next item; raises ``queue.Empty`` as ``queue.Queue.get`` does."""
        return self.get_many(1, block, timeout, partition=partition)[0]

    def get_many(self, n_values: int, block: bool = True, timeout: float | None = None, *,
                 partition: str | None = None) -> list[Any]:
        """Remove and return up to ``n_values`` items (at least one, or ``queue.Empty``)."""
        reply = self._call(pb.GET, partition=partition or "", count=max(1, n_values), **_waiting(block, timeout))
        if reply.empty:
            raise queue.Empty()
        return [serialization.loads(v) for v in reply.values]

    def iterate(self, *, partition: str | None = None, item_poll_timeout: float = 0.0) -> Iterator[Any]:
        """Items as they come, until none arrives within ``item_poll_timeout`` seconds."""
        while True:
            try:
                yield self.get(block=item_poll_timeout > 0, timeout=item_poll_timeout or None, partition=partition)
            except queue.Empty:
                return

    def peek(self, n_values: int = 10, *, partition: str | None = None) -> list[Any]:
        """The next items, without removing them."""
        return [serialization.loads(v)
                for v in self._call(pb.ITEMS, partition=partition or "", count=n_values).values]

    # -- size ----------------------------------------------------------------------

    def len(self, *, partition: str | None = None, total: bool = False) -> int:
        """Items in a partition (the default one), or in all with ``total=True``."""
        return self._call(pb.LEN, partition=partition or "", total=total).length

    def __len__(self) -> int:
        return self.len()

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
