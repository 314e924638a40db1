"""Durable Dicts and Queues on a host: SQLite in WAL mode, synchronous writes.

A put acknowledged to a caller has been committed with ``synchronous=FULL``,
so it survives ``kill -9`` of the agent. Keys and values arrive pickled
(cloudpickle, by the client); keys are compared by their pickled bytes.
All database work runs on one thread, in order; blocking queue operations
wait on the event loop, woken by the operations that change their queue.
"""

from __future__ import annotations

import asyncio
import errno
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from nbmodal_wire import names
from remote_agent import request_errors
from remote_agent.request_errors import RequestError

DICT_KEY_MAX = 64 * 1024
DICT_VALUE_MAX = 16 * 1024 * 1024
QUEUE_ITEM_MAX = 1024 * 1024
QUEUE_PARTITION_MAX_ITEMS = 100_000
EPHEMERAL_MAX_AGE_S = 24 * 3600


class StoreError(RequestError):
    """Bad input or a missing store, volume or file; ``code`` is one of ``request_errors.CODES``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code)


def check_name(kind: str, name: str) -> None:
    try:
        names.check_name(kind, name)
    except names.InvalidNameError as exc:
        raise StoreError("invalid", str(exc)) from None


def _human(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 1024:.1f} KiB" if n >= 1024 else f"{n} bytes"


class Storage:
    """The synchronous store; every method runs on the storage thread."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript("""
            CREATE TABLE IF NOT EXISTS stores (kind TEXT, name TEXT, created REAL, ephemeral INTEGER,
                                               PRIMARY KEY (kind, name));
            CREATE TABLE IF NOT EXISTS dict_items (dict TEXT, key BLOB, value BLOB, PRIMARY KEY (dict, key));
            CREATE TABLE IF NOT EXISTS queue_items (id INTEGER PRIMARY KEY AUTOINCREMENT, queue TEXT,
                                                    partition TEXT, value BLOB);
            CREATE INDEX IF NOT EXISTS queue_order ON queue_items (queue, partition, id);
        """)
        cutoff = time.time() - EPHEMERAL_MAX_AGE_S
        for kind, name in self.db.execute("SELECT kind, name FROM stores WHERE ephemeral AND created < ?",
                                          (cutoff,)).fetchall():
            self.delete(kind, name)

    # -- named stores ------------------------------------------------------------

    def create(self, kind: str, name: str, ephemeral: bool = False) -> bool:
        check_name(kind, name)
        cursor = self.db.execute("INSERT OR IGNORE INTO stores VALUES (?, ?, ?, ?)",
                                 (kind, name, time.time(), int(ephemeral)))
        return cursor.rowcount == 1

    def lookup(self, kind: str, name: str) -> None:
        check_name(kind, name)
        if self.db.execute("SELECT 1 FROM stores WHERE kind=? AND name=?", (kind, name)).fetchone() is None:
            existing = [row[0] for row in self.db.execute("SELECT name FROM stores WHERE kind=? ORDER BY name",
                                                          (kind,))]
            raise StoreError("not_found", f"no {kind} named {name!r} on this host (existing: "
                                          f"{', '.join(existing) or 'none'}); pass create_if_missing=True to make it")

    def delete(self, kind: str, name: str) -> None:
        self.lookup(kind, name)
        with self._transaction():
            self.db.execute("DELETE FROM stores WHERE kind=? AND name=?", (kind, name))
            table, column = ("dict_items", "dict") if kind == "dict" else ("queue_items", "queue")
            self.db.execute(f"DELETE FROM {table} WHERE {column}=?", (name,))

    def list_stores(self, kind: str) -> list[tuple[str, int, float, bool]]:
        table, column = ("dict_items", "dict") if kind == "dict" else ("queue_items", "queue")
        return [(n, length, created, bool(eph)) for n, created, eph, length in self.db.execute(
            f"SELECT name, created, ephemeral, (SELECT COUNT(*) FROM {table} WHERE {column}=stores.name) "
            f"FROM stores WHERE kind=? ORDER BY name", (kind,))]

    # -- dicts -------------------------------------------------------------------

    def dict_len(self, name: str) -> int:
        self.lookup("dict", name)
        return self.db.execute("SELECT COUNT(*) FROM dict_items WHERE dict=?", (name,)).fetchone()[0]

    def dict_clear(self, name: str) -> None:
        self.lookup("dict", name)
        self.db.execute("DELETE FROM dict_items WHERE dict=?", (name,))

    def dict_get(self, name: str, key: bytes) -> bytes | None:
        self.lookup("dict", name)
        row = self.db.execute("SELECT value FROM dict_items WHERE dict=? AND key=?", (name, key)).fetchone()
        return row[0] if row else None

    def dict_put(self, name: str, keys: list[bytes], values: list[bytes], skip_if_exists: bool) -> bool:
        """Store pairs at once; with ``skip_if_exists``, a present key stops it all (returns False)."""
        self.lookup("dict", name)
        if len(keys) != len(values):
            raise StoreError("invalid", "a put needs one value per key")
        for key, value in zip(keys, values):
            if len(key) > DICT_KEY_MAX:
                raise StoreError("invalid", f"a key of {_human(len(key))} pickled is over the "
                                            f"{_human(DICT_KEY_MAX)} limit for Dict keys")
            if len(value) > DICT_VALUE_MAX:
                raise StoreError("invalid", f"a value of {_human(len(value))} pickled is over the "
                                            f"{_human(DICT_VALUE_MAX)} limit for Dict values; store large data "
                                            f"in a Volume and keep its path in the Dict")
        with self._transaction():
            if skip_if_exists and any(self.db.execute("SELECT 1 FROM dict_items WHERE dict=? AND key=?",
                                                      (name, key)).fetchone() for key in keys):
                return False
            self.db.executemany("INSERT OR REPLACE INTO dict_items VALUES (?, ?, ?)",
                                [(name, k, v) for k, v in zip(keys, values)])
        return True

    def dict_pop(self, name: str, key: bytes) -> bytes | None:
        with self._transaction():
            value = self.dict_get(name, key)
            self.db.execute("DELETE FROM dict_items WHERE dict=? AND key=?", (name, key))
        return value

    def dict_items(self, name: str) -> list[tuple[bytes, bytes]]:
        self.lookup("dict", name)
        return self.db.execute("SELECT key, value FROM dict_items WHERE dict=? ORDER BY rowid", (name,)).fetchall()

    # -- queues ------------------------------------------------------------------

    def queue_len(self, name: str, partition: str, total: bool) -> int:
        self.lookup("queue", name)
        if total:
            return self.db.execute("SELECT COUNT(*) FROM queue_items WHERE queue=?", (name,)).fetchone()[0]
        return self.db.execute("SELECT COUNT(*) FROM queue_items WHERE queue=? AND partition=?",
                               (name, partition)).fetchone()[0]

    def queue_clear(self, name: str, partition: str, total: bool) -> None:
        self.lookup("queue", name)
        if total:
            self.db.execute("DELETE FROM queue_items WHERE queue=?", (name,))
        else:
            self.db.execute("DELETE FROM queue_items WHERE queue=? AND partition=?", (name, partition))

    def queue_put(self, name: str, partition: str, values: list[bytes]) -> bool:
        """Append all values, or none: False when the partition has no room for them."""
        _check_partition(partition)
        for value in values:
            if len(value) > QUEUE_ITEM_MAX:
                raise StoreError("invalid", f"a queue item of {_human(len(value))} pickled is over the "
                                            f"{_human(QUEUE_ITEM_MAX)} limit; store large data in a Volume and "
                                            f"put its path on the Queue")
        if len(values) > QUEUE_PARTITION_MAX_ITEMS:
            raise StoreError("invalid", f"{len(values)} items at once is over the partition limit of "
                                        f"{QUEUE_PARTITION_MAX_ITEMS}")
        with self._transaction():
            if self.queue_len(name, partition, total=False) + len(values) > QUEUE_PARTITION_MAX_ITEMS:
                return False
            self.db.executemany("INSERT INTO queue_items (queue, partition, value) VALUES (?, ?, ?)",
                                [(name, partition, v) for v in values])
        return True

    def queue_get(self, name: str, partition: str, count: int, remove: bool = True) -> list[bytes]:
        _check_partition(partition)
        self.lookup("queue", name)
        with self._transaction():
            rows = self.db.execute("SELECT id, value FROM queue_items WHERE queue=? AND partition=? ORDER BY id "
                                   "LIMIT ?", (name, partition, max(count, 1))).fetchall()
            if remove and rows:
                self.db.executemany("DELETE FROM queue_items WHERE id=?", [(row[0],) for row in rows])
        return [row[1] for row in rows]

    def _transaction(self):
        return _Transaction(self.db)


def disk_full(exc: BaseException) -> bool:
    """Whether an error is a full disk: ENOSPC from the OS, SQLITE_FULL from SQLite."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return isinstance(exc, sqlite3.OperationalError) and "full" in str(exc)


def no_space_message(state_dir: Path, what_happened: str) -> str:
    """The words for a full state dir: ENOSPC named, where, and what to do."""
    return (f"the agent's state dir {state_dir} is full (ENOSPC: no space left on device); {what_happened}. "
            f"Free space there (old runs: runs/, images: `nbmodal image rm`, volumes) and try again")


def _check_partition(partition: str) -> None:
    if partition and not names.NAME.fullmatch(partition):
        raise StoreError("invalid", f"queue partition {partition!r} is not allowed: use {names.NAME_RULE}")


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self):
        if not self.db.in_transaction:
            self.db.execute("BEGIN IMMEDIATE")
            self._owner = True
        else:
            self._owner = False
        return self

    def __exit__(self, kind, value, tb) -> None:
        # SQLite may have rolled a failed transaction back itself (SQLITE_FULL does): nothing to end then.
        if self._owner and (not kind or self.db.in_transaction):
            self.db.execute("ROLLBACK" if kind else "COMMIT")


class AsyncStorage:
    """The store as the agent's event loop uses it: one storage thread, and queue waiters."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="storage")
        self.store = self._thread.submit(Storage, path).result()
        self._changed: dict[str, list[asyncio.Future]] = {}

    async def call(self, method: str, *args):
        """Run one ``Storage`` method on the storage thread (use the methods below for queue changes).

        A full disk refuses the change (StoreError ``no_space``); SQLite rolled it back, so the
        database is as it was, and the same call works once there is room again.
        """
        try:
            return await asyncio.get_running_loop().run_in_executor(self._thread, getattr(self.store, method), *args)
        except sqlite3.OperationalError as exc:
            if not disk_full(exc):
                raise
            message = no_space_message(self.path.parent, "nothing was changed")
            raise StoreError(request_errors.NO_SPACE, message) from None

    async def delete(self, kind: str, name: str) -> None:
        await self.call("delete", kind, name)
        if kind == "queue":
            self._notify(name)  # blocked getters learn it is gone

    async def queue_clear(self, name: str, partition: str, total: bool) -> None:
        await self.call("queue_clear", name, partition, total)
        self._notify(name)  # room for blocked puts

    def _notify(self, queue: str) -> None:
        """Wake blocked gets and puts of a queue after it changed."""
        for waiter in self._changed.pop(queue, []):
            if not waiter.done():
                waiter.set_result(None)

    async def _wait_for_change(self, queue: str, deadline: float | None) -> bool:
        """Wait until the queue changes; False if the deadline passes first."""
        waiter = asyncio.get_running_loop().create_future()
        self._changed.setdefault(queue, []).append(waiter)
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            await asyncio.wait_for(waiter, timeout)
            return True
        except asyncio.TimeoutError:
            return False

    async def queue_get(self, name: str, partition: str, count: int, block: bool, timeout_s: float) -> list[bytes]:
        deadline = time.monotonic() + timeout_s if block and timeout_s > 0 else None
        while True:
            values = await self.call("queue_get", name, partition, count)
            if values:
                self._notify(name)  # room for blocked puts
                return values
            if not block or (deadline is not None and time.monotonic() >= deadline):
                return []
            await self._wait_for_change(name, deadline)

    async def queue_put(self, name: str, partition: str, values: list[bytes], block: bool, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s if block and timeout_s > 0 else None
        while True:
            if await self.call("queue_put", name, partition, values):
                self._notify(name)
                return True
            if not block or (deadline is not None and time.monotonic() >= deadline):
                return False
            await self._wait_for_change(name, deadline)

    def close(self) -> None:
        self._thread.submit(self.store.db.close).result()
        self._thread.shutdown()
