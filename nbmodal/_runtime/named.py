"""What Dicts, Queues and Volumes share: a name on a host, found, made, deleted and pickled alike."""

from __future__ import annotations

import abc
import contextlib
import secrets
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

from nbmodal._runtime.connection import storage_connection

# The operation enum of a kind's requests (pb.StoreOp for Dicts and Queues, pb.VolumeOp for Volumes).
Op = TypeVar("Op", bound=int)


class NamedObject(abc.ABC, Generic[Op]):
    """Base of ``Dict``, ``Queue`` and ``Volume``: ``from_name``, ``ephemeral``, ``delete``."""

    _CREATE: Op
    _LOOKUP: Op
    _DELETE: Op

    def __init__(self, name: str, host: str | None = None) -> None:
        self.name = name
        self.host = host

    @classmethod
    def from_name(cls, name: str, *, create_if_missing: bool = False, host: str | None = None):
        """The object called ``name`` on ``host`` (see the README for the default host).

        Example::

            results = nbmodal.Dict.from_name("results", create_if_missing=True)
        """
        obj = cls(name, host)
        obj._call(cls._CREATE if create_if_missing else cls._LOOKUP)
        return obj

    @classmethod
    @contextlib.contextmanager
    def ephemeral(cls, host: str | None = None) -> Iterator[Any]:
        """One that exists for the ``with`` block only.

        Example::

            with nbmodal.Queue.ephemeral() as scratch:
                scratch.put(1)
        """
        obj = cls(f"ephemeral-{secrets.token_hex(6)}", host)
        obj._call(cls._CREATE, ephemeral=True)
        try:
            yield obj
        finally:
            obj._call(cls._DELETE)

    @classmethod
    def delete(cls, name: str, *, host: str | None = None) -> None:
        """Delete the object called ``name`` and everything in it."""
        cls(name, host)._call(cls._DELETE)

    def _call(self, op: Op, **fields: Any):
        """One request to the host's agent; a missing store raises ``NotFoundError``."""
        return self._send(storage_connection(self.host).client(), op, fields)

    @abc.abstractmethod
    def _send(self, client, op: Op, fields: dict[str, Any]):
        """Send one request of this kind's message type."""

    def __reduce__(self):
        # Inside a container the object is its own host's object of that name.
        return type(self), (self.name, self.host)

    def __repr__(self) -> str:
        return f"<nbmodal.{type(self).__name__} {self.name!r}{f' on {self.host}' if self.host else ''}>"
