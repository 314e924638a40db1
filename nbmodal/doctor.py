"""``nbmodal host doctor NAME|--all``: what works on a host, and what to fix.

``doctor(NAME)`` walks one host step by step, down to the agent's round-trip
latency; ``doctor_all()`` checks every configured host at once (one command
on all of them through fabric's ThreadingGroup): SSH, Python, disk and agent.
"""

from __future__ import annotations

import shlex
import statistics
import sys
import time
from dataclasses import dataclass

from nbmodal.hosts import Host, HostError, get_host, load_hosts
from nbmodal_wire import __version__


@dataclass
class Check:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"[{'ok' if self.ok else 'FIX'}] {self.name}: {self.detail}"


def doctor(name: str) -> list[Check]:
    """Check a host step by step; stops at the first step everything else depends on."""
    from nbmodal._runtime import bootstrap
    from nbmodal._runtime.connection import connection
    from nbmodal._runtime.ssh import SSHConnection, resolve

    host = get_host(name)
    checks: list[Check] = []
    try:
        params = resolve(host)
    except HostError as exc:
        return [Check("ssh config", False, str(exc))]
    via = f" via {params.proxy_jump}" if params.proxy_jump else ""
    checks.append(Check("ssh config", True, f"{params.address}{via}"))
    try:
        ssh = SSHConnection.open(host)
    except HostError as exc:
        text = str(exc)
        step = "host key" if "host key" in text or "known_hosts" in text else \
            "authentication" if "refused every key" in text else "reachability"
        checks.append(Check(step, False, text))
        return checks
    try:
        checks.append(Check("reachability", True, f"{params.hostname}:{params.port} answers SSH"))
        assert ssh.transport is not None  # an open connection has its transport
        fingerprint = ssh.transport.get_remote_server_key().fingerprint
        checks.append(Check("host key", True, f"matches known_hosts ({fingerprint})"))
        checks.append(Check("authentication", True, ssh.auth_method))
        try:
            facts = bootstrap.probe(ssh)
        except HostError as exc:
            checks.append(Check("python", False, str(exc)))
            return checks
        mine = "%d.%d" % sys.version_info[:2]
        checks.append(Check("python", facts.python_version == mine,
                            f"{facts.python} is {facts.python_version}" + (
                                "" if facts.python_version == mine else
                                f"; this notebook runs {mine}: cells would be refused (install python{mine} there)")))
        free_mib = facts.free_bytes // (1024 * 1024)
        checks.append(Check("disk", facts.free_bytes >= bootstrap.MIN_FREE_BYTES,
                            f"{free_mib} MiB free under {bootstrap.REMOTE_HOME}"))
        agent = bootstrap.read_agent_json(ssh)
        if agent is None:
            checks.append(Check("agent", True, "not running yet: the first remote cell installs and starts it"))
            return checks
        same = agent.version == __version__
        checks.append(Check("agent", same, f"version {agent.version}, pid {agent.pid}" + (
            "" if same else f"; this client is {__version__}: the next run upgrades it")))
    finally:
        ssh.close()
    try:
        client = connection(name).client()
        samples = []
        for _ in range(20):
            started = time.perf_counter()
            client.list_sessions()
            samples.append((time.perf_counter() - started) * 1000)
        checks.append(Check("latency", True, f"agent round trip {statistics.median(samples):.2f} ms (median of 20)"))
    except Exception as exc:  # report, don't crash the doctor
        checks.append(Check("agent health", False, f"the agent doesn't answer: {exc}"))
    return checks


def doctor_all(timeout: float = 60.0) -> dict[str, list[Check]]:
    """Check every configured host at once: {host name: its checks}.

    One shell command runs on all hosts in parallel; it reports the Python the
    agent would use, the free disk and the running agent. ``doctor(NAME)`` goes
    further on one host (the agent's latency).

        for name, checks in doctor_all().items():
            print(name, all(check.ok for check in checks))
    """
    from nbmodal._runtime.ssh import run_on_hosts

    hosts = list(load_hosts().values())
    replies = run_on_hosts(hosts, _quick_check_script, timeout)
    return {host.name: _quick_checks(host, replies[host.name]) for host in hosts}


def _quick_check_script(host: Host) -> str:
    """Prints the agent's Python and its version, the free disk line, then the agent.json report."""
    from nbmodal._runtime import bootstrap

    configured = host.extra.get("python", "")
    candidates = shlex.quote(configured) if configured else "python%d.%d python3" % sys.version_info[:2]
    return (f"py=; for p in {candidates}; do if command -v $p >/dev/null 2>&1; then py=$(command -v $p); break; fi; "
            "done; echo \"$py\"; { [ -n \"$py\" ] && \"$py\" -c 'import sys; print(\"%d.%d\" % sys.version_info[:2])' "
            f"2>/dev/null; }} || echo; mkdir -p {bootstrap.REMOTE_HOME} && df -Pk {bootstrap.REMOTE_HOME} | tail -1; "
            + bootstrap.AGENT_JSON_COMMAND)


def _quick_checks(host: Host, reply) -> list[Check]:
    from nbmodal._runtime import bootstrap

    if reply.error:
        text = reply.error
        step = "host key" if "host key" in text or "known_hosts" in text else \
            "authentication" if "refused every key" in text else \
            "ssh config" if "can't resolve" in text else "reachability"
        return [Check(step, False, text)]
    checks = [Check("ssh", True, f"{host.target} answers, key and login accepted")]
    lines = reply.stdout.splitlines()
    if len(lines) < 3:
        return [*checks, Check("python", False, f"can't inspect the host: {(reply.stderr or reply.stdout).strip()}")]
    python, version, disk = lines[0].strip(), lines[1].strip(), lines[2].split()
    mine = "%d.%d" % sys.version_info[:2]
    if not python or not version:
        checks.append(Check("python", False, f"no usable {host.extra.get('python') or 'python3'} on the host; "
                                             f"install python{mine} there"))
    else:
        checks.append(Check("python", version == mine, f"{python} is {version}" + (
            "" if version == mine else f"; this notebook runs {mine}: cells would be refused")))
    free = int(disk[3]) * 1024 if len(disk) > 3 and disk[3].isdigit() else 0
    checks.append(Check("disk", free >= bootstrap.MIN_FREE_BYTES,
                        f"{free // (1024 * 1024)} MiB free under {bootstrap.REMOTE_HOME}"))
    try:
        agent = bootstrap.parse_agent_json(host.name, reply.status, "\n".join(lines[3:]))
    except HostError as exc:
        return [*checks, Check("agent", False, str(exc))]
    if agent is None:
        checks.append(Check("agent", True, "not running yet: the first remote cell installs and starts it"))
    else:
        same = agent.version == __version__
        checks.append(Check("agent", same, f"version {agent.version}, pid {agent.pid}" + (
            "" if same else f"; this client is {__version__}: the next run upgrades it")))
    return checks
