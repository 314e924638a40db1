"""Named secrets on this host, and the environment a run's secrets give its container.

A named secret is one file, ``secrets/NAME.json`` in the agent's state dir: owner-only (the directory
0700, each file 0600), written whole to a temporary file and renamed into place, so a reader never sees
half a secret. ``list`` gives names, keys and creation times, never values.

A run's (or a build step's) secrets are ``pb.SecretSource``s: named ones read here, inline ones
(``Secret.from_dict``…) carrying their values. ``SecretEnvironments.apply`` merges them into the
environment its containers get, and stamps the run's spec with a keyed digest of it, so containers
with different secrets never share a warm container, while no value is in anything persisted or shown.

    store = SecretStore(state_dir / "secrets")
    store.create("hf", {"HF_TOKEN": "hf_abc123"})
    store.environment([pb.SecretSource(name="hf", required_keys=["HF_TOKEN"])])   # {"HF_TOKEN": "hf_abc123"}
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from collections.abc import Iterable
from pathlib import Path

from nbmodal_wire import pb
from nbmodal_wire.secret_rules import SecretRuleError, check_env_keys, check_secret_name
from remote_agent import request_errors
from remote_agent.request_errors import RequestError

log = logging.getLogger(__name__)


class SecretError(RequestError):
    """An unknown secret, a missing required key, a bad name or key, or a name clash."""

    type_name = "nbmodal.NotFoundError"


class SecretStore:
    """The named secrets of one agent, one owner-only file each."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(root, 0o700)  # also when it existed with looser bits
        for leftover in root.glob(".*.tmp"):  # a write an earlier agent didn't finish
            leftover.unlink(missing_ok=True)

    def _path(self, name: str) -> Path:
        try:
            check_secret_name(name)
        except SecretRuleError as exc:
            raise SecretError(str(exc), request_errors.INVALID) from None
        return self.root / f"{name}.json"

    def create(self, name: str, values: dict[str, str], force: bool = False) -> tuple[pb.SecretInfo, bool]:
        """Store ``values`` as the secret ``name``; a name that exists is refused unless ``force``.
        Returns its info and whether one was replaced."""
        path = self._path(name)
        try:
            check_env_keys(values, where=f"secret {name!r}")
        except SecretRuleError as exc:
            raise SecretError(str(exc), request_errors.INVALID) from None
        if not values:
            raise SecretError(f"secret {name!r} has no values: give at least one KEY=VALUE", request_errors.INVALID)
        existed = path.exists()
        if existed and not force:
            raise SecretError(f"a secret named {name!r} already exists on this host; use --force "
                              f"(force=True) to replace it", request_errors.CONFLICT)
        created = time.time()
        record = {"name": name, "created": created, "values": dict(values)}
        temporary = self.root / f".{name}.{secrets.token_hex(4)}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(record, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
        log.info("secret %s %s (keys: %s)", name, "replaced" if existed else "created", ", ".join(sorted(values)))
        return pb.SecretInfo(name=name, keys=sorted(values), created=created), existed

    def _read(self, name: str) -> dict:
        path = self._path(name)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SecretError(f"no secret named {name!r} on this host ({self._names_here()}); create it with "
                              f"`nbmodal secret create {name} KEY=VALUE`", request_errors.NOT_FOUND) from None
        except (OSError, ValueError) as exc:
            raise SecretError(f"secret {name!r} can't be read on this host: {type(exc).__name__}",
                              request_errors.CORRUPT) from None

    def get(self, name: str) -> dict[str, str]:
        return dict(self._read(name)["values"])

    def names(self) -> list[str]:
        return sorted(path.stem for path in self.root.glob("*.json"))

    def _names_here(self) -> str:
        names = self.names()
        return f"secrets here: {', '.join(names)}" if names else "there are no secrets here"

    def list(self) -> list[pb.SecretInfo]:
        infos = []
        for name in self.names():
            try:
                record = self._read(name)
            except SecretError:
                continue
            infos.append(pb.SecretInfo(name=name, keys=sorted(record["values"]), created=record["created"]))
        return infos

    def delete(self, name: str) -> None:
        path = self._path(name)
        try:
            path.unlink()
        except FileNotFoundError:
            raise SecretError(f"no secret named {name!r} on this host ({self._names_here()})",
                              request_errors.NOT_FOUND) from None
        log.info("secret %s deleted", name)

    def environment(self, sources: Iterable[pb.SecretSource]) -> dict[str, str]:
        """The environment variables ``sources`` give, in order (a later secret's key wins, as in Modal)."""
        env: dict[str, str] = {}
        for source in sources:
            if source.name:
                values = self.get(source.name)
                missing = [key for key in source.required_keys if key not in values]
                if missing:
                    raise SecretError(f"secret {source.name!r} is missing the required key(s) "
                                      f"{', '.join(missing)} (it has: {', '.join(sorted(values)) or 'none'})",
                                      request_errors.NOT_FOUND)
            else:
                values = dict(source.values)
                try:
                    check_env_keys(values, where="an inline secret")
                except SecretRuleError as exc:
                    raise SecretError(str(exc), request_errors.INVALID) from None
            env.update(values)
        return env


class SecretEnvironments:
    """The secret environments of this agent's containers, by the digest their specs carry (in memory only)."""

    def __init__(self, store: SecretStore) -> None:
        self.store = store
        self._key = secrets.token_bytes(32)  # digests can't be matched against guessed values elsewhere
        self._by_digest: dict[str, dict[str, str]] = {}

    def apply(self, request: pb.RunRequest) -> None:
        """Resolve the request's secrets, stamp its spec with their digest and drop them from the request.

        A digest a client sent is never trusted: the spec's is always the agent's own (or none)."""
        request.spec.secrets_digest = ""
        if not request.secrets:
            return
        env = self.store.environment(request.secrets)
        del request.secrets[:]  # nothing holds the values beyond this point but the environments here
        if not env:
            return
        digest = self.digest(env)
        self._by_digest[digest] = env
        request.spec.secrets_digest = digest

    def digest(self, env: dict[str, str]) -> str:
        text = json.dumps(sorted(env.items()))
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()[:32]

    def for_spec(self, spec: pb.ContainerSpec) -> dict[str, str]:
        """The environment of a container of ``spec`` (empty without secrets)."""
        return dict(self._by_digest.get(spec.secrets_digest, {})) if spec.secrets_digest else {}
