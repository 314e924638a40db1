"""The local volume fast path on the real local agent: direct copies checked with BLAKE3, and the fallback."""

from __future__ import annotations

import errno
import hashlib
import os

import pytest

from nbmodal._runtime import volume_local
from nbmodal._runtime.connection import storage_connection
from nbmodal._runtime.local_agent import read_agent_json
from nbmodal.exceptions import AgentError
from nbmodal.volume import file_sha256, upload_file
from nbmodal_wire import pb

pytestmark = pytest.mark.agent


def _no_grpc_transfers(monkeypatch) -> None:
    client = storage_connection().client()

    def refuse(*args, **kwargs):
        raise AssertionError("the file went through gRPC, not the local fast path")

    monkeypatch.setattr(client, "volume_upload", refuse)
    monkeypatch.setattr(client, "volume_download", refuse)


def test_a_put_through_the_fast_path_lands_with_the_right_digests(vol, tmp_path, monkeypatch):
    _no_grpc_transfers(monkeypatch)
    source = tmp_path / "data.bin"
    source.write_bytes(os.urandom((9 << 20) + 17))  # more than one read buffer, not a multiple of it
    sha = file_sha256(source)
    assert upload_file(vol, source, "/sub/data.bin") is True
    assert upload_file(vol, source, "/sub/data.bin") is False  # that content is there already: skipped
    client = storage_connection().client()
    state = client.volume_call(pb.VolumeRequest(op=pb.VOLUME_STAT, name=vol.name, path="/sub/data.bin",
                                                sha256=sha)).file
    assert state.exists and state.sha256 == sha  # the agent's own SHA-256 of what landed (the content address)
    target = tmp_path / "back.bin"
    with open(target, "wb") as f:
        assert vol.read_file_into_fileobj("/sub/data.bin", f) == source.stat().st_size
    assert file_sha256(target) == sha
    assert hashlib.sha256(b"".join(vol.read_file("/sub/data.bin"))).hexdigest() == sha
    vol.commit()  # the version manifest takes the agent's SHA-256 of it
    partials = read_agent_json().state_dir / "volumes" / ".partial" / vol.name
    assert not list(partials.glob("local-*"))  # no staging file left behind


def test_a_copy_damaged_before_its_commit_is_refused_and_the_volume_is_unchanged(vol, tmp_path, monkeypatch):
    _no_grpc_transfers(monkeypatch)
    original = tmp_path / "v1.bin"
    original.write_bytes(b"version one" * 1000)
    upload_file(vol, original, "/model.bin")
    copy = volume_local._copy

    def copy_then_damage(source, target, progress):
        copy(source, target, progress)
        os.pwrite(target.fileno(), b"\xff", 5)  # a byte changes after the copy, before the commit

    monkeypatch.setattr(volume_local, "_copy", copy_then_damage)
    replacement = tmp_path / "v2.bin"
    replacement.write_bytes(b"version two" * 1000)
    with pytest.raises(AgentError, match="is not its source.*nothing was written to the volume"):
        upload_file(vol, replacement, "/model.bin", force=True)
    assert b"".join(vol.read_file("/model.bin")) == b"version one" * 1000
    assert [e.path for e in vol.listdir("/")] == ["/model.bin"]


def test_a_file_changed_while_read_directly_is_a_checksum_error(vol, tmp_path):
    source = tmp_path / "f.bin"
    source.write_bytes(b"a" * 4096)
    upload_file(vol, source, "/f.bin")
    chunks = volume_local.read_local(storage_connection().client(), vol.name, "/f.bin")
    assert chunks is not None
    real = read_agent_json().state_dir / "volumes" / vol.name / "f.bin"
    with open(real, "r+b") as f:  # a container rewrites it between the agent's digest and the read
        f.write(b"b")
    with pytest.raises(OSError, match="checksum mismatch reading '/f.bin'"):
        b"".join(chunks)


def test_with_the_fast_path_off_transfers_go_through_grpc(vol, tmp_path, monkeypatch):
    monkeypatch.setenv("NBMODAL_VOLUME_LOCAL", "0")

    def refuse(*args, **kwargs):
        raise AssertionError("the fast path ran although it is off")

    for name in ("upload_local", "read_local", "read_local_into"):
        monkeypatch.setattr(f"nbmodal.volume.{name}", refuse)
    source = tmp_path / "g.bin"
    source.write_bytes(os.urandom(5 << 20))
    assert upload_file(vol, source, "/g.bin") is True
    assert hashlib.sha256(b"".join(vol.read_file("/g.bin"))).hexdigest() == file_sha256(source)


def test_without_a_kernel_copy_the_buffered_copy_is_used_and_checked(vol, tmp_path, monkeypatch):
    _no_grpc_transfers(monkeypatch)

    def no_kernel_copy(*args):
        raise OSError(errno.EXDEV, "cross-device copy_file_range")

    monkeypatch.setattr(os, "copy_file_range", no_kernel_copy)
    source = tmp_path / "b.bin"
    source.write_bytes(os.urandom((8 << 20) + 5))
    assert upload_file(vol, source, "/b.bin") is True
    assert hashlib.sha256(b"".join(vol.read_file("/b.bin"))).hexdigest() == file_sha256(source)


def test_a_copy_that_fails_leaves_no_staging_file_and_no_file(vol, tmp_path, monkeypatch):
    def full_disk(source, target, progress):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(volume_local, "_copy", full_disk)
    source = tmp_path / "c.bin"
    source.write_bytes(b"c" * 100)
    with pytest.raises(OSError, match="No space left"):
        upload_file(vol, source, "/c.bin")
    partials = read_agent_json().state_dir / "volumes" / ".partial" / vol.name
    assert not list(partials.glob("local-*")) and vol.listdir("/") == []
