"""What Dicts, Queues and Volumes share: a name on a host, found, made, deleted and pickled alike.

Their constructors take Modal's keywords: ``create_if_missing`` and ``allow_missing`` are honoured;
``environment_name``, ``client`` and ``namespace`` name things of Modal's cloud (an environment, an
API client, a workspace) and have no effect on one's own hosts, with one warning per process.
Each I/O method has an ``.aio`` twin (``nbmodal._aio``), and ``ephemeral()`` works with ``async with``.
"""

from __future__ import annotations

import abc
import secrets
from typing import Any, Generic, TypeVar

from nbmodal._aio import WithAio, call_in_thread
from nbmodal._runtime import homes
from nbmodal._runtime.connection import connection, in_container, storage_connection
from nbmodal.exceptions import NotFoundError
from nbmodal.hosts import HostError

# The operation enum of a kind's requests (pb.StoreOp for Dicts and Queues, pb.VolumeOp for Volumes).
Op = TypeVar("Op", bound=int)

# Why each of Modal's cloud-only keywords of these objects has no effect here.
_CLOUD_ONLY = {
    "environment_name": "Modal environments group objects in its cloud; here each host has its own objects",
    "client": "a Modal API client; here objects are reached through the host's agent",
    "namespace": "a Modal workspace namespace",
}


def warn_cloud_only(**keywords: Any) -> None:
    """One warning per process for each of Modal's cloud-only keywords set (not None)."""
    from nbmodal._function_options import warn_no_effect

    for keyword, value in keywords.items():
        if value is not None:
            warn_no_effect(keyword, _CLOUD_ONLY[keyword])


class NamedObject(abc.ABC, Generic[Op]):
    """Base of ``Dict``, ``Queue`` and ``Volume``: ``from_name``, ``ephemeral``, ``delete``."""

    _CREATE: Op
    _LOOKUP: Op
    _DELETE: Op
    _KIND: str  # "dict", "queue" or "volume": its entry in the homes registry (_runtime/homes.py)

    def __init__(self, name: str, host: str | None = None) -> None:
        self.name = name
        self.host = host

    @classmethod
    def from_name(cls, name: str, *, namespace: Any = None, environment_name: str | None = None,
                  create_if_missing: bool = False, client: Any = None, host: str | None = None):
        """The object called ``name`` on ``host`` (see the README for the default host).

        An unknown name without ``create_if_missing=True`` raises ``NotFoundError``.

        Example::

            results = nbmodal.Dict.from_name("results", create_if_missing=True)
        """
        warn_cloud_only(namespace=namespace, environment_name=environment_name, client=client)
        obj = cls(name, host)
        obj._call(cls._CREATE if create_if_missing else cls._LOOKUP)
        return obj

    @classmethod
    def lookup(cls, name: str, namespace: Any = None, client: Any = None, environment_name: str | None = None,
               create_if_missing: bool = False, *, host: str | None = None):
        """Modal's older spelling of ``from_name`` (deprecated there); the same here."""
        return cls.from_name(name, namespace=namespace, environment_name=environment_name,
                             create_if_missing=create_if_missing, client=client, host=host)

    @classmethod
    def ephemeral(cls, *, client: Any = None, environment_name: str | None = None, host: str | None = None,
                  _heartbeat_sleep: float = 0.0) -> Ephemeral:
        """One that exists for the ``with`` (or ``async with``) block only.

        Example::

            with nbmodal.Queue.ephemeral() as scratch:
                scratch.put(1)
        """
        warn_cloud_only(environment_name=environment_name, client=client)
        return Ephemeral(cls(f"ephemeral-{secrets.token_hex(6)}", host))

    @WithAio.on_class
    def delete(cls: Any, name: str, *, client: Any = None, environment_name: str | None = None,
               allow_missing: bool = False, host: str | None = None) -> None:
        """Delete the object called ``name`` and everything in it (``allow_missing``: no error if there is none)."""
        warn_cloud_only(environment_name=environment_name, client=client)
        try:
            cls(name, host)._call(cls._DELETE)
        except NotFoundError:
            if not allow_missing:
                raise

    def hydrate(self, client: Any = None):
        """Check that the object exists on its host (Modal's explicit lookup); returns it."""
        warn_cloud_only(client=client)
        self._call(self._LOOKUP)
        return self

    def _call(self, op: Op, **fields: Any):
        """One request to the agent of the object's home; a missing store raises ``NotFoundError``."""
        conn = self._connection()
        reply = self._send(conn.client(), op, fields)
        if not in_container():
            if op in (self._CREATE, self._LOOKUP):
                # Made here: this is its home. Found here: its home unless one was recorded (a host that
                # knows the home elsewhere relays to it, so finding it through that host says nothing new).
                if getattr(reply, "created", False) or homes.home_of(self._KIND, self.name) is None:
                    homes.record(self._KIND, self.name, conn.name)
                    _push_homes()
            elif op == self._DELETE and homes.home_of(self._KIND, self.name) is not None:
                homes.forget(self._KIND, self.name)
                _forget_everywhere(self._KIND, self.name)  # hosts this client relays for forget it too
        return reply

    def _connection(self):
        """Where the object lives: inside a container, the container's own agent (which relays to the home);
        in the notebook, ``host=``, else the home this client recorded for the name, else the default host."""
        if in_container() or self.host:
            return storage_connection(self.host)
        home = homes.home_of(self._KIND, self.name)
        if home:
            try:
                return connection(home)
            except HostError:  # its host was removed from the config (`host rm` forgets its homes too)
                pass
        return storage_connection(None)

    @abc.abstractmethod
    def _send(self, client, op: Op, fields: dict[str, Any]):
        """Send one request of this kind's message type."""

    def __reduce__(self):
        # Inside a container the object is its own host's object of that name.
        return type(self), (self.name, self.host)

    def __repr__(self) -> str:
        return f"<nbmodal.{type(self).__name__} {self.name!r}{f' on {self.host}' if self.host else ''}>"


def _push_homes() -> None:
    from nbmodal._runtime.store_relay import push_homes

    push_homes()


def _forget_everywhere(kind: str, name: str) -> None:
    from nbmodal._runtime.store_relay import forget_everywhere

    forget_everywhere(kind, name)


class Ephemeral:
    """``X.ephemeral()``: creates the object on entering ``with`` or ``async with``, deletes it on leaving."""

    def __init__(self, obj: NamedObject, on_create: Any = None) -> None:
        self.obj = obj
        self._on_create = on_create  # called with the new object (a Dict's initial data)

    def __enter__(self) -> Any:
        self.obj._call(self.obj._CREATE, ephemeral=True)
        if self._on_create is not None:
            try:
                self._on_create(self.obj)
            except BaseException:
                self.obj._call(self.obj._DELETE)  # no block ran: nothing else would delete it
                raise
        return self.obj

    def __exit__(self, *exc_info: Any) -> None:
        self.obj._call(self.obj._DELETE)

    async def __aenter__(self) -> Any:
        return await call_in_thread(self.__enter__)

    async def __aexit__(self, *exc_info: Any) -> None:
        await call_in_thread(self.__exit__, *exc_info)
