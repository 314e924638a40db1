"""A map over two SSH hosts against the same map on one; prints one JSON object.

Run by hand as root (it starts real sshd servers in network namespaces with
tests/sshhosts.py):

    .venv/bin/python bench/bench_fanout_hosts.py > fanout_hosts.json

This machine has 2 cores, so the two hosts are made into two 1-core machines:
each host's sshd (and so its agent and containers) is pinned to its own core
with ``taskset``. The function burns 50 ms of CPU; 40 inputs, median of 3.
``speedup`` is the one-host time over the two-host time.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
os.environ["NBMODAL_HOME"] = tempfile.mkdtemp(prefix="nbmodal-bench-hosts-")

INPUTS = 40


def burn(x):
    import time

    deadline = time.process_time() + 0.05
    while time.process_time() < deadline:
        pass
    return x


def main() -> None:
    import sshhosts

    import nbmodal
    from nbmodal import commands
    from nbmodal._runtime import connection as connections

    result: dict = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "loadavg_start": os.getloadavg(),
                    "inputs": INPUTS, "cpu_seconds_per_input": 0.05}
    sshhosts.cleanup_stale()
    with sshhosts.SshClient.session() as client, contextlib.ExitStack() as stack:
        hosts = [client.start_host(stack, name, offline=True, index=i) for i, name in enumerate(("alpha", "beta"))]
        for core, host in enumerate(hosts):
            for pid in subprocess.run(["pgrep", "-f", str(host.sshd_log.parent)], capture_output=True,
                                      text=True).stdout.split():
                subprocess.run(["taskset", "-a", "-p", "-c", str(core), pid], check=True, capture_output=True)
            commands.host_add(host.name, host.name, str(host.config_path))
        one = nbmodal.App("bench").function(host="alpha", max_containers=2)(burn)
        both = nbmodal.App("bench").function(max_containers=2)(burn)
        list(one.map(range(4)))  # install, start and warm both hosts
        list(both.map(range(8)))
        timings = {"one_host_s": [], "two_hosts_s": []}
        for _ in range(3):
            for key, function in (("one_host_s", one), ("two_hosts_s", both)):
                started = time.perf_counter()
                assert list(function.map(range(INPUTS))) == list(range(INPUTS))
                timings[key].append(time.perf_counter() - started)
        for key, samples in timings.items():
            result[key] = round(statistics.median(samples), 3)
            result[key + "_samples"] = [round(s, 3) for s in samples]
        result["speedup"] = round(result["one_host_s"] / result["two_hosts_s"], 2)
        for host in hosts:
            connections.forget(host.name)
    result["loadavg_end"] = os.getloadavg()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
