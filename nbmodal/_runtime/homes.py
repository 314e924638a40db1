"""Where each named Dict, Queue and Volume lives: its home host, as this client records it.

``~/.nbmodal/homes.json`` maps kind ("dict", "queue", "volume") -> name -> host. A name
is recorded when this client creates or finds it on a host (``host=`` or the default
host), and learnt from the agents (the objects whose home they are) each time the client
tells an agent its routes (``store_relay.py``). A recorded name is always reached at its
home: with that host away, calls fail with the host's error rather than touching a copy
elsewhere.

    >>> from nbmodal._runtime import homes
    >>> homes.record("dict", "results", "gpu1"); homes.home_of("dict", "results")
    'gpu1'
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable

from nbmodal.config import nbmodal_home

KINDS = ("dict", "queue", "volume")
_lock = threading.Lock()
# Bumped on every change this process makes.
generation = 0
_cached: tuple[tuple, dict[str, dict[str, str]]] | None = None


def _path():
    return nbmodal_home() / "homes.json"


def load() -> dict[str, dict[str, str]]:
    """kind -> name -> host (a copy)."""
    return {kind: dict(names) for kind, names in _current().items()}


def _current() -> dict[str, dict[str, str]]:
    """The registry, read again only when its file changed (every Dict and Queue call asks)."""
    global _cached
    path = _path()
    try:
        info = path.stat()
        key: tuple = (str(path), info.st_mtime_ns, info.st_size)
    except FileNotFoundError:
        key = (str(path), None, None)
    if _cached is None or _cached[0] != key:
        try:
            recorded = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            recorded = {}
        _cached = (key, {kind: dict(recorded.get(kind, {})) for kind in KINDS})
    return _cached[1]


def home_of(kind: str, name: str) -> str | None:
    """The recorded home host of an object, or None."""
    return _current()[kind].get(name)


def record(kind: str, name: str, host: str) -> None:
    """Remember (or move) an object's home."""

    def put(homes: dict[str, dict[str, str]]) -> bool:
        if homes[kind].get(name) == host:
            return False
        homes[kind][name] = host
        return True

    _change(put)


def forget(kind: str, name: str) -> None:
    _change(lambda homes: homes[kind].pop(name, None) is not None)


def learn(found: list[tuple[str, str, str]]) -> None:
    """(kind, name, host) of objects agents say are theirs; a name recorded elsewhere keeps its home."""

    def add(homes: dict[str, dict[str, str]]) -> bool:
        new = [(kind, name, host) for kind, name, host in found if kind in homes and name not in homes[kind]]
        for kind, name, host in new:
            homes[kind][name] = host
        return bool(new)

    _change(add)


def forget_host(host: str) -> None:
    """A host removed from the config: its objects' homes with it."""

    def drop(homes: dict[str, dict[str, str]]) -> bool:
        gone = [(kind, name) for kind, names in homes.items() for name, h in names.items() if h == host]
        for kind, name in gone:
            del homes[kind][name]
        return bool(gone)

    _change(drop)


def _change(mutate: Callable[[dict[str, dict[str, str]]], bool]) -> None:
    """Apply ``mutate`` to the registry and save it, if it says it changed something."""
    global generation
    with _lock:
        homes = load()
        if not mutate(homes):
            return
        path = _path()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(homes, indent=1, sort_keys=True))
        os.replace(tmp, path)
        generation += 1
