"""Blob files on the same machine: recycled through the pool only once nobody maps them (nbmodal_wire/blobs.py)."""

from __future__ import annotations

import errno
import gc
import os
import pickle
import socket
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from blobvalues import MIB, random_array, write_value

from nbmodal_wire import blobs
from remote_agent.blobstore import BlobStore

pytestmark = pytest.mark.unit



@pytest.fixture(autouse=True)
def _whole_blob_files(monkeypatch):
    monkeypatch.setenv("NBMODAL_ARENA", "0")  # these are the files values fall back to (see test_shared_arena_unit)


def _pool(blob_dir) -> dict[int, str]:
    pool = blob_dir / blobs.POOL_DIR
    return {p.stat().st_ino: p.name for p in pool.iterdir()} if pool.exists() else {}


def test_a_consumed_blob_is_reused_once_unmapped_and_never_while_mapped(tmp_path):
    first_value = random_array(1)
    first = blobs.read_blob(write_value(tmp_path, first_value), delete=True)
    assert np.array_equal(first, first_value)
    assert len(_pool(tmp_path)) == 1 and not list(tmp_path.glob("b-*"))  # recycled, still mapped by `first`

    # the pool file is mapped: written fresh, the mapped one dropped
    second_path = write_value(tmp_path, random_array(2))
    assert np.array_equal(first, first_value), "a writer changed a value a reader still maps"
    assert _pool(tmp_path) == {}
    second = blobs.read_blob(second_path, delete=True)
    (reusable,) = _pool(tmp_path)
    del second
    gc.collect()

    third_path = write_value(tmp_path, random_array(3))
    assert third_path.stat().st_ino == reusable  # unmapped: overwritten in place
    assert np.array_equal(blobs.read_blob(third_path), random_array(3))
    assert not list(tmp_path.glob("*.partial"))


def test_a_smaller_blob_over_a_larger_pool_file_has_its_own_size(tmp_path):
    blobs.recycle(write_value(tmp_path, random_array(1)))
    small = np.arange((9 * MIB) // 8, dtype=np.float64)
    (pooled,) = _pool(tmp_path)
    path = write_value(tmp_path, small)
    assert path.stat().st_ino == pooled and _pool(tmp_path) == {}
    assert path.stat().st_size < 10 * MIB
    assert np.array_equal(blobs.read_blob(path), small)


def test_without_file_leases_blobs_are_written_fresh(tmp_path, monkeypatch):
    blobs.recycle(write_value(tmp_path, random_array(1)))
    def no_leases(fd, cmd, arg=0):
        raise OSError(errno.EINVAL, "leases not supported")

    monkeypatch.setattr(blobs.fcntl, "fcntl", no_leases)
    path = write_value(tmp_path, random_array(2))
    assert _pool(tmp_path) == {}  # unverifiable, so not kept either
    assert np.array_equal(blobs.read_blob(path), random_array(2))


def test_the_pool_can_be_turned_off_and_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setenv("NBMODAL_BLOB_POOL", "0")
    blobs.recycle(write_value(tmp_path, random_array(1)))
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setenv("NBMODAL_BLOB_POOL", "1")
    written = [write_value(tmp_path, random_array(seed)) for seed in range(blobs.POOL_MAX_FILES + 2)]
    for path in written:
        blobs.recycle(path)
    assert len(_pool(tmp_path)) == blobs.POOL_MAX_FILES
    blobs.recycle(write_value(tmp_path, b"x" * (2 * MIB)))  # small: deleted, not kept
    assert not list(tmp_path.glob("b-*")) and len(_pool(tmp_path)) == blobs.POOL_MAX_FILES


def test_a_new_agent_starts_with_an_empty_pool(tmp_path):
    (tmp_path / "blobs").mkdir()
    blobs.recycle(write_value(tmp_path / "blobs", random_array(1)))
    assert len(_pool(tmp_path / "blobs")) == 1
    BlobStore(tmp_path / "blobs").remove_stale()
    assert _pool(tmp_path / "blobs") == {} and (tmp_path / "blobs" / blobs.POOL_DIR).is_dir()


def test_a_small_value_with_buffers_is_pickled_once_inline():
    calls = []

    def dumps(value, buffer_callback=None):
        calls.append(buffer_callback)
        return pickle.dumps(value, protocol=5, buffer_callback=buffer_callback)

    small = np.arange(1000.0)
    encoded = blobs.encode(small, dumps)
    assert len(calls) == 1 and not encoded.is_blob
    assert np.array_equal(pickle.loads(encoded.inline), small)
    large = blobs.encode(np.arange((2 * MIB) // 8, dtype=np.float64), dumps)
    assert large.is_blob and len(large.buffers) == 1 and len(large.data) < 1000


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_half_written_blobs_of_dead_writers_on_this_host_are_removed(tmp_path):
    host = socket.gethostname()
    dead = tmp_path / f"{blobs.new_blob_id()}.partial-{_dead_pid()}@{host}"
    live = tmp_path / f"{blobs.new_blob_id()}.partial-{os.getpid()}@{host}"
    elsewhere = tmp_path / f"{blobs.new_blob_id()}.partial-{_dead_pid()}@another-node"  # a shared filesystem
    finished = tmp_path / blobs.new_blob_id()
    for path in (dead, live, elsewhere, finished):
        path.write_bytes(b"x")
    assert blobs.remove_orphans(tmp_path) == 1
    assert sorted(tmp_path.iterdir()) == sorted([live, elsewhere, finished])


def test_nothing_is_recycled_on_a_shared_filesystem(tmp_path, monkeypatch):
    assert blobs.filesystem_type(tmp_path) in blobs.LOCAL_FILESYSTEMS  # this machine's /tmp
    monkeypatch.setattr(blobs, "filesystem_type", lambda directory: "nfs4")
    blobs.recycle(write_value(tmp_path, random_array(1)))
    assert list(tmp_path.iterdir()) == []  # deleted: another node's mapping would not stop a lease


def _first_buffer_offset(path: Path) -> int:
    content = memoryview(path.read_bytes())
    (header_length,) = struct.unpack_from("<Q", content, 0)
    data_length, _ = pickle.loads(content[8:8 + header_length])
    return 8 + header_length + data_length


def test_an_arrays_memory_starts_on_a_page_and_a_large_ones_on_a_huge_page(tmp_path):
    small = write_value(tmp_path, random_array(1))
    assert _first_buffer_offset(small) % blobs.PAGE_ALIGN == 0
    value = blobs.read_blob(small)
    assert value.ctypes.data % blobs.PAGE_ALIGN == 0 and value.flags.aligned
    assert np.array_equal(value, random_array(1))
    large_value = np.arange(blobs.LARGE_ALIGN_FROM // 8, dtype=np.float64)
    large = write_value(tmp_path, {"weights": large_value, "step": 3})
    assert _first_buffer_offset(large) % blobs.LARGE_ALIGN == 0
    decoded = blobs.read_blob(large)
    assert decoded["step"] == 3 and np.array_equal(decoded["weights"], large_value)
