"""The SSH test hosts themselves work, checked with the real OpenSSH client."""

from __future__ import annotations

import os
import re
import subprocess
import time

import pytest

pytestmark = pytest.mark.ssh

# Also listed in conftest.py; a plugin loaded twice is registered once.
pytest_plugins = ["sshhosts"]


@pytest.fixture(scope="module")
def hosts(ssh_hosts, online_ssh_host):
    """alpha, beta and online by name."""
    return {"alpha": ssh_hosts.alpha, "beta": ssh_hosts.beta, "online": online_ssh_host}


@pytest.mark.parametrize("name", ["alpha", "beta", "online"])
def test_real_ssh_client_logs_in(ssh_hosts, hosts, name):
    host = hosts[name]
    argv = ["ssh", "-F", str(ssh_hosts.config_path), "-o", "BatchMode=yes", name,
            'python3 -c "import sys; print(sys.version_info[:2])"; id -un; pwd; echo $SSH_CONNECTION']
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    version, user, cwd, connection = proc.stdout.splitlines()
    assert re.fullmatch(r"\(3, \d+\)", version)
    assert (user, cwd) == (host.user, str(host.home))
    assert connection.split()[2:] == [host.address, str(host.port)]


def test_hosts_have_fresh_separate_users(ssh_hosts, hosts):
    assert len({host.user for host in hosts.values()}) == 3
    assert len({host.home for host in hosts.values()}) == 3
    public_key = ssh_hosts.key_path.with_suffix(".pub").read_text()
    for host in hosts.values():
        assert host.home.parent == ssh_hosts.config_path.parent  # created by this session
        assert host.home.owner() == host.user
        assert (host.home / ".ssh" / "authorized_keys").read_text() == public_key
        assert host.sshd_log.exists()
    for line in ssh_hosts.known_hosts_path.read_text().splitlines():
        assert re.fullmatch(r"(10\.233\.\d+\.2|\[127\.0\.0\.1\]:\d+) ssh-ed25519 \S+", line)


def test_cut_stops_traffic_and_restore_brings_it_back(ssh_hosts):
    alpha = ssh_hosts.alpha
    assert alpha.ssh("true", "-o", "ConnectTimeout=2").returncode == 0
    alpha.cut()
    try:
        proc = alpha.ssh("true", "-o", "ConnectTimeout=2")
        assert proc.returncode == 255 and "timed out" in proc.stderr
        # Packets for alpha are dropped on its veth, not sent out another route.
        route = subprocess.run(["ip", "route", "get", alpha.address], capture_output=True, text=True).stdout
        assert f" dev {alpha.veth} " in route
        assert ssh_hosts.beta.ssh("true", "-o", "ConnectTimeout=2").returncode == 0
    finally:
        alpha.restore()
    assert alpha.ssh("true", "-o", "ConnectTimeout=2").returncode == 0


def test_open_connection_survives_a_short_cut(ssh_hosts):
    alpha = ssh_hosts.alpha
    session = subprocess.Popen(alpha.ssh_argv('echo ready; read line; echo "got $line"'),
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert session.stdout.readline() == "ready\n"
        alpha.cut()
        try:
            session.stdin.write("hello\n")
            session.stdin.flush()
            time.sleep(0.5)  # the line is stuck in TCP retransmission meanwhile
        finally:
            alpha.restore()
        out, _ = session.communicate(timeout=20)
        assert out == "got hello\n"
    finally:
        session.kill()


def test_offline_hosts_cannot_reach_the_internet(ssh_hosts):
    check = "python3 -c \"import socket; socket.create_connection(('pypi.org', 443), timeout=3)\""
    for host in ssh_hosts:
        proc = host.ssh(check)  # through sshd: the session runs inside the namespace
        assert proc.returncode == 1
        assert re.search(r"gaierror|Network is unreachable|Temporary failure in name resolution", proc.stderr)
        routes = host.run("ip route").stdout
        assert "default" not in routes and host.address in routes


def test_run_and_kill_processes(ssh_hosts):
    beta = ssh_hosts.beta
    proc = beta.run("id -un; pwd; nohup sleep 300 >/dev/null 2>&1 & echo $!")
    user, cwd, pid = proc.stdout.split()
    assert (user, cwd) == (beta.user, str(beta.home))
    assert os.path.exists(f"/proc/{pid}")
    beta.kill_processes()
    assert not os.path.exists(f"/proc/{pid}") or "State:\tZ" in open(f"/proc/{pid}/status").read()
    assert beta.ssh("true").returncode == 0  # sshd itself (root) is unaffected
