"""The host layer's own parts around fabric, without a server: known_hosts strictness, the fabric
Connection built from ``ssh -G``'s answer, no silent second transport, and ``doctor --all``'s reading
of a host's reply. The real-server paths are in tests/test_ssh_hosts.py."""

from __future__ import annotations

import re
import sys

import pytest
from paramiko import ECDSAKey

from nbmodal._runtime import bootstrap
from nbmodal._runtime.ssh import HostReply, SSHConnection, SSHParams, _KnownHostsPolicy
from nbmodal.doctor import _quick_checks
from nbmodal.hosts import Host, HostError
from nbmodal_wire import __version__

pytestmark = pytest.mark.unit


def _params(tmp_path, port: int = 2222) -> SSHParams:
    return SSHParams(hostname="10.9.8.7", port=port, user="alice", identity_files=[],
                     known_hosts_files=[str(tmp_path / "known_hosts")])


def test_an_unknown_host_key_is_refused_unless_accepted_and_then_written(tmp_path):
    host, params, key = Host("gpu1", "gpu1"), _params(tmp_path), ECDSAKey.generate()
    with pytest.raises(HostError, match=rf"\[10.9.8.7\]:2222 is not in known_hosts; its ecdsa-sha2-nistp256 key "
                                        rf"fingerprint is {re.escape(key.fingerprint)}.*--accept-new-host-key"):
        _KnownHostsPolicy(host, params, accept_new=False).missing_host_key(None, "ignored", key)
    assert not (tmp_path / "known_hosts").exists()
    _KnownHostsPolicy(host, params, accept_new=True).missing_host_key(None, "ignored", key)
    assert (tmp_path / "known_hosts").read_text() == f"[10.9.8.7]:2222 {key.get_name()} {key.get_base64()}\n"
    _KnownHostsPolicy(host, params, accept_new=False).missing_host_key(None, "ignored", key)  # now known


def test_a_changed_host_key_is_always_refused(tmp_path):
    host, params, old, new = Host("gpu1", "gpu1"), _params(tmp_path, 22), ECDSAKey.generate(), ECDSAKey.generate()
    (tmp_path / "known_hosts").write_text(f"10.9.8.7 {old.get_name()} {old.get_base64()}\n")
    for accept_new in (False, True):
        with pytest.raises(HostError, match="host key of 10.9.8.7 CHANGED.*ssh-keygen -R 10.9.8.7"):
            _KnownHostsPolicy(host, params, accept_new).missing_host_key(None, "ignored", new)


def test_fabric_gets_ssh_g_s_answer_and_reads_no_ssh_config_itself(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text("Host *\n  User mallory\n  Port 2200\n  ProxyJump elsewhere\n")
    monkeypatch.setenv("HOME", str(home))
    ssh = SSHConnection(Host("gpu1", "gpu1"), _params(tmp_path))
    connection = ssh.connection
    assert (connection.host, connection.port, connection.user, connection.gateway) == ("10.9.8.7", 2222, "alice",
                                                                                       False)
    assert isinstance(connection.client._policy, _KnownHostsPolicy)
    assert len(connection.client.get_host_keys()) == 0  # every key goes through the policy


def test_a_connection_that_is_not_open_is_never_reopened_behind_the_callers_back(tmp_path):
    ssh = SSHConnection(Host("gpu1", "gpu1"), _params(tmp_path))
    for use in (lambda: ssh.run("true"), ssh.sftp, lambda: ssh.put(str(tmp_path), "/x"), lambda: ssh.open_forward(1)):
        with pytest.raises(HostError, match="host 'gpu1': the SSH connection is down"):
            use()
    assert ssh.transport is None


def _reply(stdout: str, status: int = 0) -> HostReply:
    return HostReply("gpu1", status, stdout, "")


def test_doctor_all_reads_a_host_with_a_running_agent_and_one_without():
    host = Host("gpu1", "alice@gpu1")
    df = "/dev/sda1 100000000 1000 99999000 1% /home/alice"
    mine = "%d.%d" % sys.version_info[:2]
    agent = ('{"host": "127.0.0.1", "port": 4000, "token": "t", "pid": 77, "version": "%s", "protocol_version": 1}'
             % __version__)
    checks = _quick_checks(host, _reply(f"/usr/bin/python{mine}\n{mine}\n{df}\n{agent}\nalive\n"))
    assert [(c.name, c.ok) for c in checks] == [("ssh", True), ("python", True), ("disk", True), ("agent", True)]
    assert f"version {__version__}, pid 77" in checks[-1].detail
    none = _quick_checks(host, _reply(f"/usr/bin/python3\n3.8\n{df}\n", status=1))
    assert [(c.name, c.ok) for c in none] == [("ssh", True), ("python", False), ("disk", True), ("agent", True)]
    assert "not running yet" in none[-1].detail and "3.8" in none[1].detail
    nopy = _quick_checks(host, _reply(f"\n\n{df}\n", status=1))
    assert nopy[1].name == "python" and not nopy[1].ok
    full = _quick_checks(host, _reply(f"/usr/bin/python3\n{mine}\n/dev/sda1 1 1 10 100% /\n", status=1))
    assert ("disk", False) in [(c.name, c.ok) for c in full]
    assert bootstrap.REMOTE_HOME in full[2].detail


def test_doctor_all_names_the_failed_step():
    host = Host("gpu1", "alice@gpu1")
    for error, step in [("host 'gpu1': [h]:22 is not in known_hosts; ...", "host key"),
                        ("host 'gpu1': alice@h refused every key tried (x)", "authentication"),
                        ("host 'gpu1': can't reach h:22 (timed out)", "reachability")]:
        assert [(c.name, c.ok, c.detail) for c in _quick_checks(host, HostReply("gpu1", error=error))] == \
            [(step, False, error)]
