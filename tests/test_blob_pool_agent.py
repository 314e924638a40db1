"""Large values on the local agent's machine go through blob files that are recycled, never left behind."""

from __future__ import annotations

import gc
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

import nbmodal
from nbmodal_wire import blobs, shared_arena

pytestmark = pytest.mark.agent

app = nbmodal.App("tests-blob-pool")


@app.function()
def echo(value):
    return value


@app.function()
def die_holding(value):
    os._exit(3 if value.sum() else 4)  # the container dies while it maps the argument's blob


def _blob_files(blob_dir):
    return {p.name for p in blob_dir.iterdir() if p.name not in (blobs.POOL_DIR, shared_arena.ARENA_DIR)}


def _pooled_inodes(blob_dir):
    pool = blob_dir / blobs.POOL_DIR
    return {p.stat().st_ino for p in pool.iterdir()} if pool.exists() else set()


def test_a_large_array_round_trip_reuses_pool_files_and_leaves_no_blob_behind(agent_address, nbmodal_home,
                                                                                monkeypatch):
    monkeypatch.setenv("NBMODAL_ARENA", "0")  # the argument as a blob file (what values fall back to)
    blob_dir = nbmodal_home / "agent" / "blobs"
    before = _blob_files(blob_dir)
    value = np.random.default_rng(0).random((24 << 20) // 8)

    out = echo.remote(value)
    assert np.array_equal(out, value)
    del out
    gc.collect()  # unmapped: its file may be reused
    assert _blob_files(blob_dir) == before
    first_pool = _pooled_inodes(blob_dir)
    assert 1 <= len(first_pool) <= blobs.POOL_MAX_FILES  # the argument's and the result's files, recycled

    out = echo.remote(value + 1)
    assert np.array_equal(out, value + 1)
    del out
    gc.collect()
    assert _blob_files(blob_dir) == before
    assert first_pool & _pooled_inodes(blob_dir), "the second round trip wrote only fresh files"


def test_a_container_that_dies_holding_a_blob_leaves_no_blob_behind(agent_address, nbmodal_home):
    blob_dir = nbmodal_home / "agent" / "blobs"
    before = _blob_files(blob_dir)
    with pytest.raises(Exception, match="(?i)died|exit"):
        die_holding.remote(np.ones((24 << 20) // 8))
    assert _blob_files(blob_dir) == before
    assert len(_pooled_inodes(blob_dir)) <= blobs.POOL_MAX_FILES


def test_a_dead_containers_half_written_blob_is_removed(agent_address, nbmodal_home):
    blob_dir = nbmodal_home / "agent" / "blobs"
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # a writer that is gone, as a container killed while writing its result
    orphan = blob_dir / f"{blobs.new_blob_id()}.partial-{child.pid}@{socket.gethostname()}"
    orphan.write_bytes(b"half")
    with pytest.raises(Exception, match="(?i)died|exit"):
        die_holding.remote(np.ones(4))
    assert not orphan.exists()
