"""The agent's side of the local volume fast path (remote_agent/volume_fast_path.py), in process."""

from __future__ import annotations

import os

import pytest

from nbmodal_wire.transfer_digest import StreamDigest, file_blake3
from remote_agent.storage import StoreError
from remote_agent.volume_fast_path import VolumeFastPath
from remote_agent.volumes import VolumeStore

pytestmark = pytest.mark.unit


async def _no_io(function, *args):
    return function(*args)


@pytest.fixture()
def fast(tmp_path):
    store = VolumeStore(tmp_path / "volumes")
    store.create("v")
    return VolumeFastPath(store, _no_io)


def _staged_copy(fast: VolumeFastPath, path: str, data: bytes) -> tuple[str, str]:
    staging = fast.stage("v", path).local_path
    with open(staging, "wb") as f:
        f.write(data)
    stream = StreamDigest()
    stream.update(data)
    return staging, stream.hexdigest()


def test_a_verified_copy_is_placed_and_its_digest_served(fast, tmp_path):
    staging, digest = _staged_copy(fast, "/a/b.bin", b"hello" * 1000)
    placed = fast.commit("v", "/a/b.bin", staging, digest, False)
    assert not placed.exists and placed.size == 5000 and placed.blake3 == digest
    real = tmp_path / "volumes" / "v" / "a" / "b.bin"
    assert real.read_bytes() == b"hello" * 1000 and not os.path.exists(staging)
    read = fast.read("v", "/a/b.bin")
    assert (read.local_path, read.blake3, read.size) == (str(real), file_blake3(real), 5000)
    again, _ = _staged_copy(fast, "/a/b.bin", b"hello" * 1000)
    assert fast.commit("v", "/a/b.bin", again, digest, False).exists  # same content: skipped
    assert fast.stage("v", "/a/b.bin").exists


def test_a_copy_that_is_not_its_source_is_refused_and_nothing_changes(fast, tmp_path):
    staging, digest = _staged_copy(fast, "/f", b"original")
    fast.commit("v", "/f", staging, digest, False)
    staging, digest = _staged_copy(fast, "/f", b"replacement")
    with open(staging, "r+b") as f:
        f.write(b"X")  # damaged between the copy and the commit
    with pytest.raises(StoreError, match="is not its source") as refused:
        fast.commit("v", "/f", staging, digest, True)
    assert refused.value.code == "corrupt"
    assert (tmp_path / "volumes" / "v" / "f").read_bytes() == b"original"
    assert [p.name for p in (tmp_path / "volumes" / ".partial" / "v").iterdir()] == []  # nothing left behind


def test_only_the_agents_own_staging_files_are_committed(fast, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.write_bytes(b"x")
    digest = file_blake3(outside)
    with pytest.raises(StoreError, match="not a staging file"):
        fast.commit("v", "/f", str(outside), digest, False)
    staging = fast.stage("v", "/f").local_path
    os.unlink(staging)
    os.symlink(outside, staging)
    with pytest.raises(StoreError, match="not a regular file"):
        fast.commit("v", "/f", staging, digest, False)
    staging, digest = _staged_copy(fast, "/f", b"data")
    with pytest.raises(StoreError, match="not a BLAKE3 hex digest"):
        fast.commit("v", "/f", staging, "abc", False)
    with pytest.raises(StoreError, match="is gone"):
        fast.commit("v", "/f", staging, digest, False)  # the refused commit removed it
    with pytest.raises(StoreError, match="outside the volume"):
        fast.stage("v", "../escape")
    with pytest.raises(StoreError, match="no file"):
        fast.read("v", "/missing")


def test_file_and_stream_digests_agree_also_for_an_empty_file(tmp_path):
    for data in (b"", os.urandom(3 << 20)):
        path = tmp_path / "f"
        path.write_bytes(data)
        stream = StreamDigest()
        stream.update(data[:1000])
        stream.update(data[1000:])
        assert file_blake3(path) == stream.hexdigest()
