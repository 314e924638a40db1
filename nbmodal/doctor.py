"""``nbmodal host doctor NAME``: what works on a host, and what to fix."""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass

from nbmodal.hosts import HostError, get_host
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
