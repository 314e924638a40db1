"""Large volume files to and from an SSH host through the system ssh (nbmodal/_runtime/volume_ssh_bulk.py),
on alpha: a real sshd in a network namespace (tests/sshhosts.py), its agent installed as for any host.
"""

from __future__ import annotations

import hashlib
import io
import os
import shlex
import stat
import subprocess

import pytest
from waiting import wait_for

import nbmodal
from nbmodal import commands, hosts
from nbmodal._runtime import connection as connections
from nbmodal._runtime import volume_ssh_bulk
from nbmodal.exceptions import AgentError
from nbmodal.volume import upload_file
from nbmodal_wire import pb

pytestmark = pytest.mark.ssh

BIG = (volume_ssh_bulk.MIN_BYTES * 3) + 4097  # over the threshold, not a multiple of any buffer
ODD_PATH = "/odd dir/it's a $(touch pwned);`x` file.bin"


@pytest.fixture(scope="module")
def alpha(ssh_hosts):
    host = ssh_hosts.alpha
    commands.host_add(host.name, host.name, str(host.config_path))
    yield host
    volume_ssh_bulk.stop_shared_logins()  # the host as it was: no ssh session of ours left on it
    connections.forget(host.name)
    if host.name in hosts.load_hosts():
        hosts.remove_host(host.name)


@pytest.fixture()
def vol(alpha):
    name = f"bulk-{os.urandom(3).hex()}"
    volume = nbmodal.Volume.from_name(name, create_if_missing=True, host=alpha.name)
    yield volume
    nbmodal.Volume.delete(name, host=alpha.name, allow_missing=True)


def _client(volume: nbmodal.Volume):
    return volume._connection().client()


def _count_grpc_transfers(monkeypatch, volume: nbmodal.Volume, refuse: bool = False) -> dict[str, int]:
    client, counts = _client(volume), {"upload": 0, "download": 0}
    for kind in counts:
        original = getattr(client, f"volume_{kind}")

        def counted(*args, kind=kind, original=original, **kwargs):
            if refuse:
                raise AssertionError(f"the file went through gRPC ({kind}), not the system ssh")
            counts[kind] += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(client, f"volume_{kind}", counted)
    return counts


def _partial_dir(host, volume: nbmodal.Volume):
    return host.home / ".nbmodal" / "agent" / "volumes" / ".partial" / volume.name


def _staging_files(host, volume: nbmodal.Volume) -> list[str]:
    folder = _partial_dir(host, volume)
    return sorted(os.listdir(folder)) if folder.exists() else []


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_large_file_goes_both_ways_through_ssh(alpha, vol, tmp_path, monkeypatch):
    _count_grpc_transfers(monkeypatch, vol, refuse=True)
    data = os.urandom(BIG)
    source = tmp_path / "big.bin"
    source.write_bytes(data)
    assert upload_file(vol, source, ODD_PATH) is True
    assert upload_file(vol, source, ODD_PATH) is False  # that content is there already: nothing sent
    assert not (alpha.home / "pwned").exists() and not (tmp_path / "pwned").exists()
    assert [(e.path, e.size) for e in vol.listdir("/odd dir")] == [(ODD_PATH, BIG)]
    assert _staging_files(alpha, vol) == []  # the staging file became the volume's file

    back = tmp_path / "back.bin"
    with open(back, "wb") as f:  # a plain file: ssh writes it itself, hashed behind it
        f.write(b"head")
        assert vol.read_file_into_fileobj(ODD_PATH, f) == BIG
        f.write(b"tail")  # the file object's position follows what the child wrote
    assert _sha(back.read_bytes()) == _sha(b"head" + data + b"tail")
    sink = io.BytesIO()  # no descriptor: the bytes come through a pipe
    assert vol.read_file_into_fileobj(ODD_PATH, sink) == BIG
    assert _sha(sink.getvalue()) == _sha(data)

    changed = bytearray(data)
    changed[12345] ^= 0xFF
    source.write_bytes(bytes(changed))
    assert upload_file(vol, source, ODD_PATH, force=True) is True  # replaces the old file
    sink = io.BytesIO()
    vol.read_file_into_fileobj(ODD_PATH, sink)
    assert _sha(sink.getvalue()) == _sha(bytes(changed))

    route = volume_ssh_bulk.bulk_route(vol._connection(), BIG)
    assert route is not None

    def shared_login_runs() -> bool:
        check = [*route.argv[:-2], "-O", "check", "--", route.argv[-1]]
        return subprocess.run(check, stdin=subprocess.DEVNULL, capture_output=True).returncode == 0

    assert shared_login_runs()  # the transfers shared one login
    volume_ssh_bulk.stop_shared_logins()  # as at exit: no ssh login outlives the notebook
    wait_for(lambda: not shared_login_runs(), 10, "the shared ssh login to end")


def test_without_a_working_ssh_the_transfer_uses_grpc(alpha, vol, tmp_path, monkeypatch):
    counts = _count_grpc_transfers(monkeypatch, vol)
    data = os.urandom(BIG)
    source = tmp_path / "big.bin"
    source.write_bytes(data)
    empty = tmp_path / "no-ssh"
    empty.mkdir()
    failing = tmp_path / "failing-ssh"
    failing.mkdir()
    fake = failing / "ssh"  # an ssh that can't log in (a refused key, an unreachable host)
    fake.write_text("#!/bin/sh\necho 'Permission denied (publickey).' >&2\nexit 255\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    cases = [("PATH", str(empty)), ("PATH", f"{failing}:{os.environ['PATH']}"), ("NBMODAL_SSH_BULK", "0")]
    for done, (variable, value) in enumerate(cases, start=1):
        with monkeypatch.context() as patched:
            patched.setenv(variable, value)
            assert upload_file(vol, source, f"/f{done}.bin") is True
            sink = io.BytesIO()
            assert vol.read_file_into_fileobj(f"/f{done}.bin", sink) == BIG
        assert _sha(sink.getvalue()) == _sha(data)
        assert counts == {"upload": done, "download": done}, f"{variable}={value} did not go through gRPC"


def _corrupt_at_commit(monkeypatch, host, client, command: str) -> list[str]:
    """Run ``command`` (with {path}: the staging file) on the host as each commit is asked for: the bytes
    landed and are changed before the agent checks them. The staging files it changed, as a list."""
    original, changed = client.volume_call, []

    def corrupt_then_commit(request):
        if request.op == pb.VOLUME_LOCAL_COMMIT:
            host.run(command.format(path=shlex.quote(request.local_path)), check=True)
            changed.append(request.local_path)
        return original(request)

    monkeypatch.setattr(client, "volume_call", corrupt_then_commit)
    return changed


def test_staged_bytes_changed_before_the_commit_are_refused(alpha, vol, tmp_path, monkeypatch):
    first = os.urandom(BIG)
    source = tmp_path / "big.bin"
    source.write_bytes(first)
    assert upload_file(vol, source, "/model.bin") is True
    client = _client(vol)
    _count_grpc_transfers(monkeypatch, vol, refuse=True)
    source.write_bytes(os.urandom(BIG))
    for command, target in (("printf X | dd of={path} bs=1 seek=777 conv=notrunc status=none", "/model.bin"),
                            ("truncate -s -1 {path}", "/new.bin")):
        with monkeypatch.context() as patched:
            changed = _corrupt_at_commit(patched, alpha, client, command)
            with pytest.raises(AgentError, match="is not its source.*nothing was written to the volume"):
                upload_file(vol, source, target, force=True)
        assert changed, "the upload did not commit a staging file"
    sink = io.BytesIO()
    vol.read_file_into_fileobj("/model.bin", sink)
    assert _sha(sink.getvalue()) == _sha(first)  # the old content stays
    assert [e.path for e in vol.listdir("/")] == ["/model.bin"]  # nothing of the refused uploads is visible
    assert _staging_files(alpha, vol) == []  # and no staging file is left behind
