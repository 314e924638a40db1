"""Pieces of the ssh bulk path for volume files (nbmodal/_runtime/volume_ssh_bulk.py) and the agent's side
of it (remote_agent/volume_fast_path.py), in process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from waiting import wait_for

from nbmodal._runtime import volume_ssh_bulk
from nbmodal.exceptions import AgentError
from nbmodal.hosts import Host
from nbmodal_wire.transfer_digest import StreamDigest
from remote_agent import volume_fast_path
from remote_agent.storage import StoreError
from remote_agent.volume_fast_path import VolumeFastPath
from remote_agent.volumes import VolumeStore

pytestmark = pytest.mark.unit


async def _no_io(function, *args):
    return function(*args)


def _digest(data: bytes) -> str:
    stream = StreamDigest()
    stream.update(data)
    return stream.hexdigest()


def test_a_replaced_large_file_is_freed_after_the_commit(tmp_path, monkeypatch):
    monkeypatch.setattr(volume_fast_path, "_SET_ASIDE_BYTES", 10)
    store = VolumeStore(tmp_path / "volumes")
    store.create("v")
    fast = VolumeFastPath(store, _no_io)
    for content in (b"old content", b"new content!"):
        staging = fast.stage("v", "/f.bin").local_path
        with open(staging, "wb") as f:
            f.write(content)
        fast.commit("v", "/f.bin", staging, _digest(content), True)
    assert (tmp_path / "volumes" / "v" / "f.bin").read_bytes() == b"new content!"
    partial = tmp_path / "volumes" / ".partial" / "v"
    wait_for(lambda: not os.listdir(partial), 10, "the replaced file's second name to be unlinked")


def test_an_agent_without_blake3_refuses_direct_transfers(tmp_path, monkeypatch):
    monkeypatch.setattr(volume_fast_path, "_HAS_BLAKE3", False)
    store = VolumeStore(tmp_path / "volumes")
    store.create("v")
    fast = VolumeFastPath(store, _no_io)
    with pytest.raises(StoreError, match="no blake3") as refused:
        fast.stage("v", "/f.bin")
    assert refused.value.code == "conflict"  # FAILED_PRECONDITION: the client falls back to gRPC
    assert not (tmp_path / "volumes" / ".partial" / "v").exists()  # refused before any staging file


def test_the_ssh_argv_follows_the_host_entry(tmp_path):
    argv = volume_ssh_bulk._base_argv("/usr/bin/ssh", Host("h", "me@gpu1:2222", ssh_config="/cfg"))
    assert argv[0] == "/usr/bin/ssh" and argv[-2:] == ("--", "me@gpu1")
    assert ("-F", "/cfg") == argv[argv.index("-F"):argv.index("-F") + 2]
    assert ("-p", "2222") == argv[argv.index("-p"):argv.index("-p") + 2]
    assert "BatchMode=yes" in argv and any(a.startswith("Ciphers=aes128-gcm@openssh.com,") for a in argv)
    plain = volume_ssh_bulk._base_argv("ssh", Host("h", "gpu1"))
    assert plain[-2:] == ("--", "gpu1") and "-F" not in plain and "-p" not in plain


def test_only_a_staging_file_of_the_agent_is_written():
    good = "/home/u/.nbmodal/agent/volumes/.partial/v/local-0123456789abcdef"
    assert volume_ssh_bulk._staging_path(good) == good
    for bad in ("/home/u/.bashrc", "relative/.partial/v/local-0123456789abcdef",
                "/home/u/.nbmodal/agent/volumes/v/local-0123456789abcdef",
                "/x/.partial/v/local-0123456789abcdef; rm -rf ~"):
        with pytest.raises(AgentError, match="not one; nothing was sent"):
            volume_ssh_bulk._staging_path(bad)


def test_small_files_other_connections_and_the_switch_keep_grpc(monkeypatch):
    class Local:
        name = "local"

    assert volume_ssh_bulk.bulk_route(Local(), 1 << 30) is None  # not an SSH host's connection

    class Ssh:
        host = Host("h", "gpu1")

    class Remote:
        name, ssh = "h", Ssh()

    assert volume_ssh_bulk.bulk_route(Remote(), volume_ssh_bulk.MIN_BYTES - 1) is None
    monkeypatch.setenv("NBMODAL_SSH_BULK", "0")
    assert volume_ssh_bulk.bulk_route(Remote(), 1 << 30) is None


def test_a_download_writes_into_plain_files_directly_and_pipes_otherwise(tmp_path):
    with open(tmp_path / "a", "wb") as f:
        assert volume_ssh_bulk._plain_file(f) == f.fileno()
    with open(tmp_path / "a", "ab") as f:  # appending: the offset does not say where the child wrote
        assert volume_ssh_bulk._plain_file(f) is None
    with open(tmp_path / "a", "rb") as f:
        assert volume_ssh_bulk._plain_file(f) is None


def test_following_a_writer_hashes_what_it_wrote(tmp_path):
    data = os.urandom(3 * volume_ssh_bulk.READ_BYTES + 5)
    (tmp_path / "src").write_bytes(data)
    with open(tmp_path / "dst", "wb") as f:
        f.write(b"x" * 7)
        f.flush()
        start = os.lseek(f.fileno(), 0, os.SEEK_CUR)
        child = subprocess.Popen([sys.executable, "-c", "import shutil,sys; shutil.copyfileobj("
                                  "open(sys.argv[1],'rb'), sys.stdout.buffer, 1 << 16)", str(tmp_path / "src")],
                                 stdout=f)
        reader = volume_ssh_bulk._reader_of(f.fileno())
        assert reader is not None
        digest, seen = StreamDigest(), []
        try:
            hashed = volume_ssh_bulk._follow(child, f.fileno(), reader, start, digest, seen.append)
        finally:
            os.close(reader)
    assert child.returncode == 0 and hashed == len(data) and digest.hexdigest() == _digest(data)
    assert seen[-1] == len(data) and seen == sorted(seen)


@pytest.mark.parametrize("python", [True, False], ids=["python3", "dd"])
def test_the_receiver_writes_only_into_the_existing_staging_file(tmp_path, python):
    bin_dir = tmp_path / "bin"  # a PATH with or without python3, and the tools the receiver may use
    bin_dir.mkdir()
    for tool in ("dd", *(["python3"] if python else [])):
        (bin_dir / tool).symlink_to(sys.executable if tool == "python3" else subprocess.check_output(
            ["sh", "-c", f"command -v {tool}"], text=True).strip())
    env = {"PATH": str(bin_dir)}
    data = os.urandom(3 << 20)
    (tmp_path / "src").write_bytes(data)
    staging = tmp_path / "it's $(x) staged"
    staging.touch()

    def receive(target) -> int:
        with open(tmp_path / "src", "rb") as source:  # through a pipe, as from sshd
            cat = subprocess.Popen(["cat"], stdin=source, stdout=subprocess.PIPE)
            done = subprocess.run(["/bin/sh", "-c", volume_ssh_bulk._receiver(str(target))], stdin=cat.stdout, env=env,
                                  capture_output=True)
            cat.stdout.close()
            cat.wait()
        return done.returncode

    assert receive(staging) == 0 and staging.read_bytes() == data
    assert receive(tmp_path / "missing") != 0 and not (tmp_path / "missing").exists()  # never created
    (tmp_path / "elsewhere").write_bytes(b"keep")
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    assert receive(tmp_path / "link") != 0 and (tmp_path / "elsewhere").read_bytes() == b"keep"  # not followed


@pytest.mark.parametrize("python", [True, False], ids=["python3", "cat"])
def test_the_sender_writes_the_file_to_stdout(tmp_path, python):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("cat", *(["python3"] if python else [])):
        (bin_dir / tool).symlink_to(sys.executable if tool == "python3" else subprocess.check_output(
            ["/bin/sh", "-c", f"command -v {tool}"], text=True).strip())
    data = os.urandom((3 << 20) + 1)
    source = tmp_path / "it's a $(x) file"
    source.write_bytes(data)
    done = subprocess.run(["/bin/sh", "-c", volume_ssh_bulk._sender(str(source)) + " | cat"],
                          env={"PATH": str(bin_dir)}, capture_output=True)
    assert done.returncode == 0 and done.stdout == data
