"""``nbmodal.Secret``: environment variables for containers, named as in Modal.

A Secret is either *named* (stored on a host by ``nbmodal secret create``, looked up there by
``Secret.from_name`` when a run starts) or *inline* (``from_dict``, ``from_dotenv``,
``from_local_environ``: the values travel with each run, never written to its record). Either way its
values reach the container as environment variables only, and a value of 6 characters or more that the
code prints is shown as ``***``.

    @app.function(secrets=[nbmodal.Secret.from_name("hf", required_keys=["HF_TOKEN"])])
    def download():
        return os.environ["HF_TOKEN"][:3]

``repr()`` of a Secret shows where it comes from and its keys, never its values.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nbmodal._aio import WithAio as _WithAio
from nbmodal._dotenv import find_dotenv, read_dotenv
from nbmodal.exceptions import AlreadyExistsError, InvalidError, NotFoundError
from nbmodal_wire import pb
from nbmodal_wire.secret_rules import SecretRuleError, check_env_keys, check_secret_name


class Secret:
    """Environment variables for a function's, a class's, a cell's or a build step's containers.

    Example::

        hf = nbmodal.Secret.from_name("hf")                        # `nbmodal secret create hf HF_TOKEN=...`
        wandb = nbmodal.Secret.from_dict({"WANDB_MODE": "offline"})

        @app.function(secrets=[hf, wandb])
        def train(): ...
    """

    def __init__(self, *, name: str = "", values: Mapping[str, str] | None = None,
                 required_keys: Sequence[str] = (), source: str = "from_dict") -> None:
        self._name = name
        self._values = dict(values or {})
        self._required_keys = tuple(required_keys)
        self._source = source

    # -- the ways to make one ----------------------------------------------------------

    @staticmethod
    def from_dict(env_dict: Mapping[str, str | None] = {}) -> Secret:  # noqa: B006 - Modal's signature
        """Values given here (``None`` values are left out, as in Modal).

        Example::

            secret = nbmodal.Secret.from_dict({"WANDB_PROJECT": "sweeps"})
        """
        if not isinstance(env_dict, Mapping):
            raise InvalidError(f"Secret.from_dict takes a dict of names to values, not a {type(env_dict).__name__}")
        values = {key: value for key, value in env_dict.items() if value is not None}
        _check(values, "Secret.from_dict")
        return Secret(values=values, source="from_dict")

    @staticmethod
    def from_local_environ(env_keys: Sequence[str]) -> Secret:
        """These variables of this process's environment, read now.

        Example::

            secret = nbmodal.Secret.from_local_environ(env_keys=["HF_TOKEN"])
        """
        keys = [env_keys] if isinstance(env_keys, str) else list(env_keys)
        missing = [key for key in keys if key not in os.environ]
        if missing:
            raise InvalidError(f"Secret.from_local_environ: {', '.join(missing)} "
                               f"{'is' if len(missing) == 1 else 'are'} not set in this process's environment")
        values = {key: os.environ[key] for key in keys}
        _check(values, "Secret.from_local_environ")
        return Secret(values=values, source="from_local_environ")

    @staticmethod
    def from_dotenv(path: str | os.PathLike | None = None, *, filename: str = ".env", client: Any = None,
                    environment_name: str | None = None) -> Secret:
        """The variables of a ``.env`` file: ``filename`` in the current directory or one above it, or,
        with ``path`` (a directory, or a file such as ``__file__``), in that directory or one above it.
        As in Modal, no such file gives an empty Secret. A line that can't be read is an error naming
        its line number.

        Example::

            secret = nbmodal.Secret.from_dotenv(filename=".env.dev")
        """
        start = Path(path).expanduser().resolve() if path is not None else Path.cwd()
        found = find_dotenv(start, filename)
        values = read_dotenv(found) if found is not None else {}
        _check(values, f"Secret.from_dotenv ({found})")
        return Secret(values=values, source=f"from_dotenv({str(found or filename)!r})")

    @staticmethod
    def from_name(name: str, *, namespace: Any = None, environment_name: str | None = None,
                  required_keys: Sequence[str] = (), client: Any = None) -> Secret:
        """The named secret ``name``, read on the host a run goes to when the run starts; an unknown name
        fails the run with ``NotFoundError`` listing the secrets there, and so does a missing
        ``required_keys`` key (naming it).

        Example::

            hf = nbmodal.Secret.from_name("hf", required_keys=["HF_TOKEN"])
        """
        try:
            check_secret_name(name)
        except SecretRuleError as exc:
            raise InvalidError(str(exc)) from None
        return Secret(name=name, required_keys=[required_keys] if isinstance(required_keys, str)
                      else list(required_keys), source="from_name")

    @staticmethod
    def lookup(name: str, namespace: Any = None, client: Any = None, environment_name: str | None = None,
               required_keys: Sequence[str] = ()) -> Secret:
        """Modal's older spelling of ``from_name``."""
        return Secret.from_name(name, required_keys=required_keys)

    @_WithAio.static
    def create_deployed(deployment_name: str, env_dict: Mapping[str, str], namespace: Any = None,
                        client: Any = None, environment_name: str | None = None, overwrite: bool = False) -> str:
        """Store a named secret on the default host (see ``create_secret``); returns its name."""
        create_secret(deployment_name, dict(env_dict), force=overwrite)
        return deployment_name

    # -- what it is ----------------------------------------------------------------------

    @property
    def name(self) -> str | None:
        """The name of a named secret; ``None`` for inline values."""
        return self._name or None

    @property
    def keys(self) -> list[str]:
        """The variables it sets, where known here (a named secret's are on its host: ``nbmodal secret list``)."""
        return sorted(self._values) if not self._name else list(self._required_keys)

    @_WithAio
    def hydrate(self, client: Any = None) -> Secret:
        """Accepted for Modal code: a named secret is looked up when a run starts."""
        return self

    def to_proto(self) -> pb.SecretSource:
        """The wire form (values included for an inline secret: it travels with the run only)."""
        return pb.SecretSource(name=self._name, values=self._values, required_keys=list(self._required_keys))

    def describe(self) -> str:
        """Where it comes from and its keys, never its values (its repr, and names in image reprs)."""
        if self._name:
            required = f", required_keys={list(self._required_keys)}" if self._required_keys else ""
            return f"Secret.from_name({self._name!r}{required})"
        return f"Secret.{self._source} keys={sorted(self._values)}"

    def __repr__(self) -> str:
        return f"<nbmodal.{self.describe()}>"


def _check(values: dict[str, str], where: str) -> None:
    try:
        check_env_keys(values, where=where)
    except SecretRuleError as exc:
        raise InvalidError(str(exc)) from None


def secret_sources(secrets: Sequence[Any] | None, where: str) -> tuple[pb.SecretSource, ...]:
    """The wire form of a ``secrets=`` list; anything but a Secret is an error naming it."""
    if not secrets:
        return ()
    if isinstance(secrets, Secret):
        secrets = [secrets]
    for secret in secrets:
        if not isinstance(secret, Secret):
            raise InvalidError(f"{where}: secrets= takes nbmodal.Secret objects (Secret.from_name, from_dict…), "
                               f"not {type(secret).__name__} {secret!r:.40}")
    return tuple(secret.to_proto() for secret in secrets)


def merged(*lists: Sequence[Any] | None) -> list[Secret]:
    """``secrets=`` lists joined in order (an App's first, then a function's), each Secret once."""
    out: list[Secret] = []
    for secrets in lists:
        for secret in ([secrets] if isinstance(secrets, Secret) else list(secrets or ())):
            if not any(secret is seen for seen in out):
                out.append(secret)
    return out


# -- named secrets on the hosts -------------------------------------------------------------


def _connections(host: str | None, all_hosts: bool) -> list[tuple[str, Any]]:
    from nbmodal._runtime.connection import connection, storage_connection
    from nbmodal.hosts import LOCAL, load_hosts

    if all_hosts:
        return [(name, connection(name)) for name in (LOCAL, *load_hosts())]
    conn = storage_connection(host)
    return [(conn.name, conn)]


def create_secret(name: str, values: Mapping[str, str], *, host: str | None = None, all_hosts: bool = False,
                  force: bool = False) -> list[str]:
    """Store the named secret ``name`` on ``host`` (default: the local agent when no hosts are configured,
    else the first configured host) or on every host; returns where. A name that exists there is refused
    (``AlreadyExistsError``) unless ``force``.

    Example::

        nbmodal.secret.create_secret("hf", {"HF_TOKEN": "hf_..."}, host="gpu1")
    """
    try:
        check_secret_name(name)
        check_env_keys(dict(values), where=f"secret {name!r}")
    except SecretRuleError as exc:
        raise InvalidError(str(exc)) from None
    if not values:
        raise InvalidError(f"secret {name!r} needs at least one KEY=VALUE")
    done = []
    for where, conn in _connections(host, all_hosts):
        try:
            conn.client().secret_call(pb.SecretRequest(op=pb.SECRET_CREATE, name=name, values=dict(values),
                                                       force=force))
        except Exception as exc:
            if "already exists" in str(exc):
                raise AlreadyExistsError(f"{where}: a secret named {name!r} already exists; use --force "
                                         f"(force=True) to replace it") from None
            raise
        done.append(where)
    return done


def list_secrets(host: str | None = None, all_hosts: bool = False) -> list[tuple[str, pb.SecretInfo]]:
    """(host, info) of every named secret: names, keys and creation times, never values."""
    return [(where, info) for where, conn in _connections(host, all_hosts)
            for info in conn.client().secret_call(pb.SecretRequest(op=pb.SECRET_LIST)).secrets]


def delete_secret(name: str, *, host: str | None = None, all_hosts: bool = False) -> list[str]:
    """Delete the named secret ``name``; ``NotFoundError`` (listing those there) if a host lacks it."""
    done = []
    for where, conn in _connections(host, all_hosts):
        try:
            conn.client().secret_call(pb.SecretRequest(op=pb.SECRET_DELETE, name=name))
        except NotFoundError as exc:
            raise NotFoundError(f"{where}: {exc}") from None
        done.append(where)
    return done
