"""Multi-node gangs: time from the call (a cell's start) to every rank's code running, for 2 nodes on two
SSH hosts and on a two-node Slurm allocation, all on this machine.

Uses the test suite's own fixtures: two real sshd hosts in network namespaces joined by a route
(tests/sshhosts.py, as tests/test_cluster_ssh.py does) and a real two-node Slurm cluster
(tests/slurmpair.py) with its login host. Each gang's ranks print the wall-clock time their code began
(one machine: one clock); the figure is the later of the two minus the moment ``.remote()`` was called.
``gang_assembled_s`` is when the client, asking the agents, saw every rank's container ready (the go is
sent then; measured from the gang's start, just after placement). Every gang starts fresh containers (a
gang's are never reused), so each run is a cold start of the gang; the hosts' agents are installed and
warm before the first.
Run as root: .venv/bin/python bench/bench_cluster.py [--runs 5] [--skip-slurm]
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--skip-slurm", action="store_true")
    args = parser.parse_args()
    os.environ["NBMODAL_HOME"] = tempfile.mkdtemp(prefix="nbm-bench-cluster-")
    atexit.register(shutil.rmtree, os.environ["NBMODAL_HOME"], ignore_errors=True)
    from sshhosts import SshClient, cleanup_stale

    import nbmodal
    from nbmodal import commands
    from nbmodal._runtime import connection as connections

    def gang_on(host: str | None):
        @nbmodal.App("bench-cluster").function(host=host, timeout=120)
        @nbmodal.clustered(size=2)
        def stamp() -> float:
            import time as _time

            began = _time.time()
            print(f"began {began}", flush=True)
            return began

        return stamp

    import logging

    assembled: list[float] = []  # when the client saw every rank ready and sent the go (its own log line)

    class Assembled(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.msg.startswith("gang %s assembled in"):
                assembled.append(float(record.args[1]))  # type: ignore[index]

    gang_log = logging.getLogger("nbmodal._runtime.gang")
    gang_log.setLevel(logging.INFO)
    gang_log.addHandler(Assembled())

    def measure(function) -> dict:
        samples, totals = [], []
        assembled.clear()
        for _ in range(args.runs + 1):  # the first warms the hosts' image and agent paths
            started = time.time()
            with contextlib.redirect_stdout(sys.stderr):  # rank 0's output: stdout is the JSON only
                function.remote()
            total = time.time() - started
            run = nbmodal.last_cluster_run()
            assert run is not None
            began = [float(run.logs(rank).split("began ")[1].split()[0]) for rank in range(run.size)]
            samples.append(max(began) - started)
            totals.append(total)
        samples, totals, ready = samples[1:], totals[1:], assembled[1:]
        return {"all_ranks_running_s_median": round(statistics.median(samples), 3),
                "all_ranks_running_s": [round(s, 3) for s in samples],
                "gang_assembled_s_median": round(statistics.median(ready), 3) if ready else None,
                "call_total_s_median": round(statistics.median(totals), 3)}

    results: dict[str, dict] = {}
    cleanup_stale()
    forward = Path("/proc/sys/net/ipv4/ip_forward")
    forwarding = forward.read_text()
    with SshClient.session() as ssh, contextlib.ExitStack() as stack:
        hosts = [ssh.start_host(stack, name, offline=True, index=index) for index, name in enumerate(("n1", "n2"))]
        forward.write_text("1")
        stack.callback(forward.write_text, forwarding)
        for host in hosts:
            gateway = host.address.rsplit(".", 1)[0] + ".1"
            subprocess.run(["ip", "netns", "exec", host.namespace, "ip", "route", "add", "10.233.0.0/16", "via",
                            gateway], check=True)
            commands.host_add(host.name, host.name, str(host.config_path))
            connections.connection(host.name).client()  # installed before the clock starts
        results["ssh_2_hosts"] = measure(gang_on(None))
        for host in hosts:
            connections.forget(host.name)

        if not args.skip_slurm:
            from slurmpair import TwoNodeSlurm

            with TwoNodeSlurm.session() as cluster:
                login = ssh.start_host(stack, "login", offline=False)
                commands.host_add("pair", "login", str(login.config_path),
                                  slurm={"partition": "gpu", "time": "00:10:00", "callback_host": cluster.gateway,
                                         "slurm_env": f"SLURM_CONF={cluster.conf}"})
                connections.connection("pair").client()
                results["slurm_2_nodes"] = measure(gang_on("pair"))
                connections.forget("pair")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
