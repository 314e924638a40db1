"""GPU hosts over SSH, against real sshd servers in network namespaces (tests/sshhosts.py).

alpha and beta are offline hosts (no package index): their first use ships wheels.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading

import pytest

import nbmodal
from kernels import kernel
from nbmodal import commands, hosts
from nbmodal._cli.hosts import host_doctor_all, host_list
from nbmodal._runtime import connection as connections
from nbmodal._runtime.ssh import run_on_hosts
from nbmodal.hosts import HostError
from nbmodal_wire import pb
from nbmodal_wire.pids import pid_alive
from waiting import wait_for

pytestmark = pytest.mark.ssh


@pytest.fixture(scope="module")
def configured(ssh_hosts):
    """alpha and beta added with the test's ssh config; removed afterwards."""
    for host in ssh_hosts:
        commands.host_add(host.name, host.name, str(host.config_path))
    yield ssh_hosts
    for host in ssh_hosts:
        connections.forget(host.name)
        if host.name in hosts.load_hosts():
            hosts.remove_host(host.name)


def _wait_until_running(host: str, function_name: str, events: int = 1) -> str:
    """The id of the run of ``function_name`` running on ``host`` once it has ``events`` events
    (RunStarted and its output so far); fails if none does within a minute."""
    client = connections.get_client(host)

    def running() -> str | None:
        return next((run.run_id for run in client.list_runs(50) if run.label.endswith(f"{function_name}()")
                     and run.state == pb.RUNNING and run.last_seq >= events), None)

    return wait_for(running, 60, f"a run of {function_name} to be running on {host} with {events} events")


def _wait_until_link_is_dead(host: str) -> None:
    """Until the client has declared the host's SSH transport dead (its keepalive deadline passed)."""
    conn = connections.connection(host)
    wait_for(lambda: conn.ssh is None or not conn.ssh.alive, 60, f"the cut link to {host} to be declared dead")


def _remote(host: str):
    @nbmodal.App("ssh-tests").function(host=host)
    def where():
        import os
        import socket

        return os.environ["HOME"], socket.gethostname(), os.getpid()

    return where


def test_bootstrap_into_an_empty_home_on_an_offline_host(configured):
    alpha = configured.alpha
    assert not list(alpha.home.glob(".nbmodal/*"))  # `host add` only checked the host
    home, _, _ = _remote("alpha").remote()
    assert home == str(alpha.home)
    venvs = [p.name for p in (alpha.home / ".nbmodal").iterdir() if p.name.startswith("venv-")]
    assert venvs == [f"venv-{nbmodal.__version__}-py{sys.version_info[0]}.{sys.version_info[1]}"]
    assert (alpha.home / ".nbmodal" / "wheels").is_dir()  # offline: wheels were shipped
    agent_json = alpha.home / ".nbmodal" / "agent" / "agent.json"
    assert stat.S_IMODE(agent_json.stat().st_mode) == 0o600
    token = json.loads(agent_json.read_text())["token"]
    logs = (alpha.home / ".nbmodal" / "agent" / "agent.log").read_text()
    assert token not in logs
    # The agent listens on the host's loopback only.
    assert json.loads(agent_json.read_text())["host"] == "127.0.0.1"


def test_online_host_installs_from_the_package_index(online_ssh_host):
    commands.host_add("online", "online", str(online_ssh_host.config_path))
    try:
        home, _, _ = _remote("online").remote()
        assert home == str(online_ssh_host.home)
        assert not (online_ssh_host.home / ".nbmodal" / "wheels").exists()  # nothing shipped
    finally:
        connections.forget("online")
        hosts.remove_host("online")


def test_cells_run_on_each_host_from_a_notebook(configured, tmp_path):
    with kernel(tmp_path) as k:
        for host in configured:  # the notebook adds its hosts itself
            added = k.execute(f"%nbmodal host add {host.name} {host.name} --ssh-config {host.config_path}")
            assert f"host '{host.name}' added" in added["stdout"], added
        k.execute("base = 10")
        a = k.execute("%%remote host=alpha\nimport os\nalpha_home = os.environ['HOME']\nalpha_sum = base + 1")
        b = k.execute("%%remote host=beta\nimport os\nbeta_home = os.environ['HOME']\nprint('on beta')")
        assert a["error"] is None and b["error"] is None, (a, b)
        assert b["stdout"] == "on beta\n"
        out = k.execute("print(alpha_home, beta_home, alpha_sum)")["stdout"].split()
        assert out == [str(configured.alpha.home), str(configured.beta.home), "11"]
        listing = k.execute("%nbmodal host ls")["stdout"]
        assert "alpha" in listing and "beta" in listing
        bad = k.execute("%%remote host=gamma\n1")
        assert "UsageError: %%remote: no host named 'gamma' is configured" in bad["stderr"], bad


def test_one_ssh_connection_carries_every_call(configured):
    where = _remote("beta")
    where.remote()
    before = _sshd_sessions(configured.beta)
    for _ in range(20):
        where.remote()
    assert _sshd_sessions(configured.beta) == before


def _sshd_sessions(host) -> int:
    return host.sshd_log.read_text().count("Accepted publickey")


def test_placement_prefers_a_warm_container_and_skips_unreachable_hosts(configured):
    where = _remote(None)
    _remote("alpha").remote(), _remote("beta").remote()
    # alpha loses its warm containers; beta keeps one.
    configured.alpha.run("pkill -f remote_agent.worker")
    alpha = connections.get_client("alpha")
    wait_for(lambda: not any(c.state == pb.CONTAINER_IDLE for c in alpha.list_containers()), 30,
             "alpha's agent to see its warm containers gone")
    assert where.remote()[0] == str(configured.beta.home)
    configured.beta.cut()
    try:
        connections.forget("beta")
        assert where.remote()[0] == str(configured.alpha.home)
    finally:
        configured.beta.restore()


def test_cut_link_mid_stream_resumes_without_loss_or_duplicates(configured, capsys):
    @nbmodal.App("ssh-tests").function(host="alpha")
    def count(n):
        import time

        for i in range(n):
            print(f"line {i}", flush=True)
            time.sleep(0.01)
        return n

    _remote("alpha").remote()  # installed and connected before the cut
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("n", count.remote(1500)))
    thread.start()
    _wait_until_running("alpha", "count", events=10)
    configured.alpha.cut()
    _wait_until_link_is_dead("alpha")  # so that the stream must resume, not merely stall
    configured.alpha.restore()
    thread.join(timeout=90)
    assert result.get("n") == 1500
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("line ")]
    assert lines == [f"line {i}" for i in range(1500)]


def test_a_long_drop_fails_the_cell_clearly_and_the_run_can_be_attached_later(configured, monkeypatch, capsys):
    @nbmodal.App("ssh-tests").function(host="alpha")
    def count_slowly(n):
        import time

        for i in range(n):
            print(f"beat {i}", flush=True)
            time.sleep(0.02)
        return n

    _remote("alpha").remote()
    monkeypatch.setenv("NBMODAL_RECONNECT_TIMEOUT", "2")
    call = {}

    def run():
        try:
            count_slowly.remote(400)
        except nbmodal.AgentLostError as exc:
            call["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    _wait_until_running("alpha", "count_slowly", events=10)
    configured.alpha.cut()
    thread.join(timeout=60)
    configured.alpha.restore()
    error = call["error"]
    assert "lost the connection to host 'alpha' for 2 s" in str(error) and "%nbmodal attach" in str(error)
    run_id = [r for r, host in connections.run_hosts.items() if host == "alpha"][-1]
    before = [line for line in capsys.readouterr().out.splitlines() if line.startswith("beat ")]
    assert commands.attach(run_id, commands.plain_sink()) == 400
    replayed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("beat ")]
    assert replayed == [f"beat {i}" for i in range(400)]  # attach replays from the start
    assert before == replayed[:len(before)]


def test_killing_the_agent_fails_the_run_clearly_and_the_next_call_starts_a_new_agent(configured):
    beta = configured.beta
    where = _remote("beta")
    where.remote()
    agent_pid = json.loads((beta.home / ".nbmodal" / "agent" / "agent.json").read_text())["pid"]

    @nbmodal.App("ssh-tests").function(host="beta")
    def slow():
        import time

        time.sleep(30)

    def kill_the_agent_once_it_runs_slow() -> None:
        _wait_until_running("beta", "slow")
        beta.run(f"kill -9 {agent_pid}")

    killer = threading.Thread(target=kill_the_agent_once_it_runs_slow)
    killer.start()
    with pytest.raises(nbmodal.NbmodalError, match="agent on beta stopped"):
        slow.remote()
    killer.join(timeout=60)
    assert where.remote()[0] == str(beta.home)
    assert json.loads((beta.home / ".nbmodal" / "agent" / "agent.json").read_text())["pid"] != agent_pid


def test_doctor_reports_each_check(configured):
    report = commands.host_doctor("alpha")
    for check in ("ssh config", "reachability", "host key", "authentication", "python", "disk", "agent", "latency"):
        assert f"[ok] {check}" in report, report
    assert "agent round trip" in report


# -- bad input -----------------------------------------------------------------


def _config_with(tmp_path, host, **overrides) -> str:
    options = {"HostName": host.address, "Port": host.port, "User": host.user, "IdentityFile": host.key_path,
               "UserKnownHostsFile": host.known_hosts_path, "IdentitiesOnly": "yes"}
    options.update(overrides)
    path = tmp_path / "ssh_config"
    path.write_text(f"Host {host.name}\n" + "".join(f"  {k} {v}\n" for k, v in options.items()))
    return str(path)


def test_wrong_key_and_wrong_user_are_refused_by_name(configured, tmp_path):
    other_key = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other_key)], check=True)
    with pytest.raises(HostError, match="refused every key tried.*other_key"):
        commands.host_add("alpha", "alpha", _config_with(tmp_path, configured.alpha, IdentityFile=other_key))
    with pytest.raises(HostError, match="nobody-here@.*refused every key"):
        commands.host_add("alpha", "alpha", _config_with(tmp_path, configured.alpha, User="nobody-here"))


def test_unreachable_host_and_unknown_names(configured, tmp_path):
    with pytest.raises(HostError, match="host 'nowhere': can't reach 127.0.0.1:1"):
        commands.host_add("nowhere", "someone@127.0.0.1:1")
    configured.beta.cut()
    try:
        with pytest.raises(HostError, match="can't reach|handshake"):
            commands.host_add("beta2", "beta", str(configured.config_path))
    finally:
        configured.beta.restore()
    with pytest.raises(HostError, match="no host named 'nope' is configured"):
        nbmodal.App("x").function(host="nope")(lambda: 1).remote()
    assert "nowhere" not in hosts.load_hosts()


def test_unknown_host_key_is_refused_with_its_fingerprint_and_a_changed_one_always(configured, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    config = _config_with(tmp_path, configured.alpha, UserKnownHostsFile=empty)
    with pytest.raises(HostError, match=r"not in known_hosts; its ssh-ed25519 key fingerprint is SHA256:\S+.*"
                                        r"--accept-new-host-key"):
        commands.host_add("fresh", "alpha", config)
    assert commands.host_add("fresh", "alpha", config, accept_new_host_key=True).startswith("host 'fresh' added")
    assert configured.alpha.address in empty.read_text()
    hosts.remove_host("fresh")
    # A changed key: known_hosts holds a different key for the address.
    other = tmp_path / "other_host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    empty.write_text(f"{configured.alpha.address} {' '.join(other.with_suffix('.pub').read_text().split()[:2])}\n")
    with pytest.raises(HostError, match="host key of .* CHANGED"):
        commands.host_add("fresh", "alpha", config, accept_new_host_key=True)


def test_missing_or_old_python_and_a_full_disk(configured, tmp_path):
    alpha = configured.alpha
    config = str(configured.config_path)
    with pytest.raises(HostError, match="configured Python /nonexistent/python3 does not exist"):
        commands.host_add("alpha-nopy", "alpha", config, python="/nonexistent/python3")
    old = alpha.home / "old-python"
    old.write_text("#!/bin/sh\necho 3.8 x86_64\n")
    old.chmod(0o755)
    with pytest.raises(HostError, match="is Python 3.8; the agent needs Python >= 3.10"):
        commands.host_add("alpha-old", "alpha", config, python=str(old))


def test_full_disk_fails_cleanly_and_the_next_try_succeeds(ssh_client, tmp_path):
    # A fresh host whose ~/.nbmodal sits on a 1 MiB filesystem (in the root
    # namespace, where the test's mount is visible to sshd's sessions).
    import contextlib

    with contextlib.ExitStack() as stack:
        host = ssh_client.start_host(stack, "gamma", offline=False)
        state = host.home / ".nbmodal"
        state.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(state)], check=True)
        stack.callback(subprocess.run, ["umount", "-l", str(state)])
        subprocess.run(["chown", f"{host.user}:{host.user}", str(state)], check=True)
        commands.host_add("gamma", "gamma", str(host.config_path))
        try:
            with pytest.raises(HostError, match="MiB free under ~/.nbmodal; the agent needs about"):
                _remote("gamma").remote()
            assert not [p for p in state.iterdir() if p.name.startswith("venv-")]  # nothing half-installed
            subprocess.run(["umount", "-l", str(state)], check=True)
            subprocess.run(["chown", f"{host.user}:{host.user}", str(state)], check=True)
            connections.forget("gamma")
            assert _remote("gamma").remote()[0] == str(host.home)
        finally:
            connections.forget("gamma")
            hosts.remove_host("gamma")


def test_upgrade_keeps_runs_in_flight(configured, tmp_path, monkeypatch):
    """An agent of another version is drained, not killed: its run finishes and can be attached."""
    import nbmodal_wire
    from nbmodal._runtime import bootstrap

    beta = configured.beta
    _remote("beta").remote()
    old_pid = json.loads((beta.home / ".nbmodal" / "agent" / "agent.json").read_text())["pid"]

    @nbmodal.App("ssh-tests").function(host="beta")
    def slow_square(x):
        import time

        print("started", flush=True)
        time.sleep(4)
        return x * x

    call = slow_square.spawn(7)
    wait_for(lambda: connections.get_client("beta").get_run(call.object_id).last_seq >= 2, 60,
             "the run to start on the old agent and print")
    # This client now runs a newer agent version.
    newer = nbmodal_wire.__version__ + ".post1"
    sources = bootstrap.agent_sources()
    init = sources["nbmodal_wire/__init__.py"].decode()
    sources["nbmodal_wire/__init__.py"] = init.replace(
        f'__version__ = "{nbmodal_wire.__version__}"', f'__version__ = "{newer}"').encode()
    monkeypatch.setattr(bootstrap, "agent_sources", lambda: sources)
    monkeypatch.setattr(nbmodal_wire, "__version__", newer)
    connections.forget("beta")
    home, _, _ = _remote("beta").remote()
    new_info = json.loads((beta.home / ".nbmodal" / "agent" / "agent.json").read_text())
    assert new_info["pid"] != old_pid and new_info["version"] == nbmodal_wire.__version__
    assert os.path.exists(f"/proc/{old_pid}")  # the old agent is still finishing its run
    assert call.get(timeout=30) == 49
    wait_for(lambda: not pid_alive(old_pid), 15, f"the old agent (pid {old_pid}) to drain and exit")
    connections.forget("beta")


def test_proxy_jump_through_another_host(configured, online_ssh_host, tmp_path):
    """ProxyJump from the ssh config: alpha reached through the online host."""
    alpha = configured.alpha
    config = tmp_path / "ssh_config"
    config.write_text(
        configured.config_path.read_text()
        + f"\nHost alpha-jump\n  HostName {alpha.address}\n  User {alpha.user}\n  IdentityFile {alpha.key_path}\n"
          f"  UserKnownHostsFile {alpha.known_hosts_path}\n  ProxyJump online\n")
    commands.host_add("alpha-jump", "alpha-jump", str(config))
    try:
        assert _remote("alpha-jump").remote()[0] == str(alpha.home)
        assert "via online" in commands.host_doctor("alpha-jump")
        # A group's connection goes through the jump host too.
        reply = run_on_hosts([hosts.get_host("alpha-jump")], "echo $HOME")["alpha-jump"]
        assert (reply.status, reply.stdout, reply.error) == (0, f"{alpha.home}\n", "")
    finally:
        connections.forget("alpha-jump")
        hosts.remove_host("alpha-jump")


def test_doctor_all_and_host_ls_ask_every_host_at_once(configured):
    """fabric's ThreadingGroup runs one command on alpha and beta; a host that is down doesn't stop the other."""
    _remote("alpha").remote(), _remote("beta").remote()  # both agents run
    report = host_doctor_all()
    for name in ("alpha", "beta"):
        assert f"{name}:\n  [ok] ssh: {name} answers" in report, report
    assert report.count(f"[ok] agent: version {nbmodal.__version__}") == 2, report
    assert report.count("[ok] python:") == 2 and report.count("[ok] disk:") == 2, report
    listing = host_list()
    assert listing.count(f"ok, agent {nbmodal.__version__}") == 2, listing
    configured.beta.cut()
    try:
        replies = run_on_hosts([hosts.get_host("alpha"), hosts.get_host("beta")], "echo $HOME; exit 3")
    finally:
        configured.beta.restore()
    assert (replies["alpha"].status, replies["alpha"].stdout) == (3, f"{configured.alpha.home}\n")
    assert replies["alpha"].error == "" and not replies["alpha"].ok
    assert replies["beta"].error.startswith("host 'beta': "), replies["beta"]
    assert "can't reach" in replies["beta"].error or "handshake" in replies["beta"].error, replies["beta"]


def test_large_values_stream_through_the_tunnel_as_blobs(configured):
    @nbmodal.App("ssh-tests").function(host="alpha")
    def reverse(data):
        return data[::-1]

    data = os.urandom(32 * 1024 * 1024)  # over the inline limit (the host's bare venv has no numpy)
    assert reverse.remote(data) == data[::-1]
    blob_dir = configured.alpha.home / ".nbmodal" / "agent" / "blobs"
    # uploaded payload and downloaded result are both gone (at most recycled: blobs.POOL_DIR)
    assert [p.name for p in blob_dir.iterdir() if p.name not in (".pool", ".arena")] == []


def _restart_agent(host) -> None:
    host.stop_agent()
    connections.forget(host.name)  # the next call installs and starts it again


def test_gpu_runs_are_placed_on_a_host_with_the_cards(configured):
    declared = {configured.alpha: "A10G:1", configured.beta: "H100:1"}
    try:
        for host, declaration in declared.items():
            _remote(host.name).remote()  # installed and running
            fake = host.home / ".nbmodal" / "agent" / "fake-gpus"
            fake.write_text(declaration)
            fake.chmod(0o644)
            _restart_agent(host)

        def on_gpu(gpu):
            @nbmodal.App("ssh-tests").function(gpu=gpu)
            def where():
                import os

                return os.environ["HOME"], os.environ["CUDA_VISIBLE_DEVICES"]

            return where

        assert on_gpu("H100").remote()[0] == str(configured.beta.home)
        assert on_gpu("a10g").remote()[0] == str(configured.alpha.home)
        with pytest.raises(nbmodal.GpuUnavailableError) as info:
            on_gpu("T4").remote()
        assert "alpha: 1× NVIDIA A10G" in str(info.value) and "beta: 1× NVIDIA H100 80GB HBM3" in str(info.value)
        table = commands.gpus_table()
        assert "alpha" in table and "beta" in table and "NVIDIA H100 80GB HBM3" in table
    finally:
        for host in declared:
            (host.home / ".nbmodal" / "agent" / "fake-gpus").unlink(missing_ok=True)
            _restart_agent(host)


def test_dicts_and_queues_live_on_a_host_and_work_inside_its_containers(configured):
    results = nbmodal.Dict.from_name("sweep", create_if_missing=True, host="alpha")
    jobs = nbmodal.Queue.from_name("sweep-jobs", create_if_missing=True, host="alpha")
    jobs.put_many([1, 2, 3])

    @nbmodal.App("ssh-tests").function(host="alpha")
    def work():
        while True:
            try:
                n = jobs.get(block=False)
            except Exception:  # queue.Empty
                return len(results)
            results[n] = n * n

    assert work.remote() == 3
    assert dict(results.items()) == {1: 1, 2: 4, 3: 9}
    # One store per name, on its home host: beta keeps no store of its own (issue 18).
    assert "sweep" not in [s.name for s in connections.get_client("beta").dict_call(pb.DictRequest(op=pb.LIST)).stores]


def test_a_map_fans_out_across_both_hosts(configured):
    @nbmodal.App("ssh-tests").function(max_containers=4)
    def where(x):
        import os
        import time

        time.sleep(0.05)
        return x, os.environ["HOME"]

    results = list(where.map(range(40)))
    assert [x for x, _ in results] == list(range(40))
    assert {home for _, home in results} == {str(configured.alpha.home), str(configured.beta.home)}
