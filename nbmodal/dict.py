"""``nbmodal.Dict``: a durable key-value store on a host, named as in Modal.

    d = nbmodal.Dict.from_name("results", create_if_missing=True)
    d["lr=0.1"] = 0.93
    d.get("lr=0.1")          # 0.93, also from inside remote cells and functions

Keys are any hashable picklable values, compared by their pickled bytes (so
``1`` and ``1.0`` are different keys); values are any picklable values up to
16 MiB pickled. A put that returned has been written durably on the host.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from nbmodal import serialization
from nbmodal._runtime.named import NamedObject
from nbmodal_wire import pb

_MISSING = object()


class Dict(NamedObject[pb.StoreOp]):
    """A named Dict on a host; get one with ``Dict.from_name`` or ``Dict.ephemeral``."""

    _CREATE, _LOOKUP, _DELETE = pb.CREATE, pb.LOOKUP, pb.DELETE

    # -- reading and writing ---------------------------------------------------------

    def get(self, key: Any, default: Any = None) -> Any:
        reply = self._call(pb.GET, keys=[_key(key)])
        return serialization.loads(reply.values[0]) if reply.found else default

    def __getitem__(self, key: Any) -> Any:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def put(self, key: Any, value: Any, *, skip_if_exists: bool = False) -> bool:
        """Store a value; with ``skip_if_exists``, keep an existing one. True if stored."""
        reply = self._call(pb.PUT, keys=[_key(key)], values=[serialization.dumps(value)],
                           skip_if_exists=skip_if_exists)
        return not reply.found

    def __setitem__(self, key: Any, value: Any) -> None:
        self.put(key, value)

    def update(self, other: Any = (), /, **kwargs: Any) -> None:
        """Store several pairs in one durable write."""
        pairs = list(other.items() if hasattr(other, "items") else other) + list(kwargs.items())
        if pairs:
            self._call(pb.PUT, keys=[_key(k) for k, _ in pairs], values=[serialization.dumps(v) for _, v in pairs])

    def pop(self, key: Any, default: Any = _MISSING) -> Any:
        reply = self._call(pb.POP, keys=[_key(key)])
        if reply.found:
            return serialization.loads(reply.values[0])
        if default is _MISSING:
            raise KeyError(key)
        return default

    def __delitem__(self, key: Any) -> None:
        self.pop(key)

    def contains(self, key: Any) -> bool:
        return self._call(pb.CONTAINS, keys=[_key(key)]).found

    __contains__ = contains

    def len(self) -> int:
        return self._call(pb.LEN).length

    __len__ = len

    def keys(self) -> list[Any]:
        return [serialization.loads(k) for k in self._call(pb.ITEMS, keys_only=True).keys]

    def values(self) -> list[Any]:
        return [serialization.loads(v) for v in self._call(pb.ITEMS).values]

    def items(self) -> list[tuple[Any, Any]]:
        reply = self._call(pb.ITEMS)
        return [(serialization.loads(k), serialization.loads(v)) for k, v in zip(reply.keys, reply.values)]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.keys())

    def clear(self) -> None:
        self._call(pb.CLEAR)

    def _send(self, client, op: pb.StoreOp, fields: dict[str, Any]) -> pb.DictReply:
        return client.dict_call(pb.DictRequest(op=op, name=self.name, **fields))


def _key(key: Any) -> bytes:
    try:
        hash(key)
    except TypeError:
        raise TypeError(f"Dict keys must be hashable, like dict keys; got a {type(key).__name__}") from None
    return serialization.dumps(key)
