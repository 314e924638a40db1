"""``nbmodal.Dict``: a durable key-value store on a host, named as in Modal.

    d = nbmodal.Dict.from_name("results", create_if_missing=True)
    d["lr=0.1"] = 0.93
    d.get("lr=0.1")          # 0.93, also from inside remote cells and functions

Keys are any hashable picklable values, compared by their pickled bytes (so
``1`` and ``1.0`` are different keys); values are any picklable values up to
16 MiB pickled. A put that returned has been written durably on the host.
Every method that talks to the host has an ``.aio`` twin, as in Modal::

    await d.put.aio("k", 1)
    async for key in d.keys.aio(): ...
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

from nbmodal import serialization
from nbmodal._aio import WithAio
from nbmodal._runtime.named import Ephemeral, NamedObject, warn_cloud_only
from nbmodal_wire import pb

_MISSING = object()


class Dict(NamedObject[pb.StoreOp]):
    """A named Dict on a host; get one with ``Dict.from_name`` or ``Dict.ephemeral``."""

    _CREATE, _LOOKUP, _DELETE = pb.CREATE, pb.LOOKUP, pb.DELETE
    _KIND = "dict"

    @classmethod
    def from_name(cls, name: str, data: dict | None = None, *, namespace: Any = None,
                  environment_name: str | None = None, create_if_missing: bool = False, client: Any = None,
                  host: str | None = None) -> Dict:
        """The Dict called ``name`` on ``host``; ``data`` (deprecated in Modal) is put into it.

        Example::

            results = nbmodal.Dict.from_name("results", create_if_missing=True)
        """
        obj = super().from_name(name, namespace=namespace, environment_name=environment_name,
                                create_if_missing=create_if_missing, client=client, host=host)
        if data:
            obj.update(data)
        return obj

    @classmethod
    def lookup(cls, name: str, data: dict | None = None, namespace: Any = None,  # type: ignore[override]
               client: Any = None, environment_name: str | None = None, create_if_missing: bool = False, *,
               host: str | None = None) -> Dict:
        """Modal's older spelling of ``from_name`` (deprecated there); the same here."""
        return cls.from_name(name, data, namespace=namespace, environment_name=environment_name,
                             create_if_missing=create_if_missing, client=client, host=host)

    @classmethod
    def ephemeral(cls, data: dict | None = None, *, client: Any = None,
                  environment_name: str | None = None, host: str | None = None,
                  _heartbeat_sleep: float = 0.0) -> Ephemeral:
        """A Dict for the ``with`` (or ``async with``) block only, holding ``data`` to start with.

        Example::

            with nbmodal.Dict.ephemeral({"seen": 0}) as scratch:
                scratch["seen"] += 1
        """
        warn_cloud_only(environment_name=environment_name, client=client)
        return Ephemeral(cls(f"ephemeral-{secrets.token_hex(6)}", host),
                         on_create=(lambda d: d.update(data)) if data else None)

    # -- reading and writing ---------------------------------------------------------

    @WithAio
    def get(self, key: Any, default: Any = None) -> Any:
        reply = self._call(pb.GET, keys=[_key(key)])
        return serialization.loads(reply.values[0]) if reply.found else default

    def __getitem__(self, key: Any) -> Any:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    @WithAio
    def put(self, key: Any, value: Any, *, skip_if_exists: bool = False) -> bool:
        """Store a value; with ``skip_if_exists``, keep an existing one. True if stored."""
        reply = self._call(pb.PUT, keys=[_key(key)], values=[serialization.dumps(value)],
                           skip_if_exists=skip_if_exists)
        return not reply.found

    def __setitem__(self, key: Any, value: Any) -> None:
        self.put(key, value)

    @WithAio
    def update(self, other: Any = (), /, **kwargs: Any) -> None:
        """Store several pairs in one durable write."""
        pairs = list(other.items() if hasattr(other, "items") else other) + list(kwargs.items())
        if pairs:
            self._call(pb.PUT, keys=[_key(k) for k, _ in pairs], values=[serialization.dumps(v) for _, v in pairs])

    @WithAio
    def pop(self, key: Any, default: Any = _MISSING) -> Any:
        reply = self._call(pb.POP, keys=[_key(key)])
        if reply.found:
            return serialization.loads(reply.values[0])
        if default is _MISSING:
            raise KeyError(key)
        return default

    def __delitem__(self, key: Any) -> None:
        self.pop(key)

    @WithAio
    def contains(self, key: Any) -> bool:
        return self._call(pb.CONTAINS, keys=[_key(key)]).found

    __contains__ = contains

    @WithAio
    def len(self) -> int:
        return self._call(pb.LEN).length

    __len__ = len

    @WithAio.iterating  # Modal's is an iterator: async for over .aio()
    def keys(self) -> list[Any]:
        return [serialization.loads(k) for k in self._call(pb.ITEMS, keys_only=True).keys]

    @WithAio.iterating  # Modal's is an iterator: async for over .aio()
    def values(self) -> list[Any]:
        return [serialization.loads(v) for v in self._call(pb.ITEMS).values]

    @WithAio.iterating  # Modal's is an iterator: async for over .aio()
    def items(self) -> list[tuple[Any, Any]]:
        reply = self._call(pb.ITEMS)
        return [(serialization.loads(k), serialization.loads(v)) for k, v in zip(reply.keys, reply.values)]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.keys())

    @WithAio
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
