"""Slurm hosts: warm round trip through a warm Slurm job vs a plain SSH host, and the first run on an
idle cluster vs `srun hostname`, all on this machine in one run.

Uses the test suite's own fixtures: a real single-node Slurm (tests/slurmcluster.py) and two real sshd
login hosts (tests/sshhosts.py), one added as a plain SSH host, one with --slurm.
Run as root: .venv/bin/python bench/bench_slurm.py [--calls 200] [--cold 5]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--cold", type=int, default=5)
    args = parser.parse_args()
    os.environ["NBMODAL_HOME"] = tempfile.mkdtemp(prefix="nbm-bench-slurm-")
    import nbmodal
    from nbmodal import commands
    from nbmodal._runtime import connection as connections
    from slurmcluster import SlurmCluster
    from sshhosts import SshClient, cleanup_stale

    cleanup_stale()
    with SlurmCluster.session() as cluster, SshClient.session() as ssh, contextlib.ExitStack() as stack:
        plain = ssh.start_host(stack, "plain", offline=False)
        login = ssh.start_host(stack, "login", offline=False)
        commands.host_add("plain", "plain", str(plain.config_path))
        commands.host_add("slurm", "login", str(login.config_path),
                          slurm={"partition": "gpu", "time": "00:10:00", "callback_host": "127.0.0.1",
                                 "slurm_env": f"SLURM_CONF={cluster.conf}"})
        app = nbmodal.App("bench-slurm")

        def echo(x: int) -> int:
            return x

        on_ssh = app.function(host="plain", scaledown_window=600)(echo)
        on_slurm = app.function(host="slurm", scaledown_window=600, name="echo_slurm")(echo)

        def warm_p50(function) -> float:
            for i in range(20):
                function.remote(i)
            samples = []
            for i in range(args.calls):
                started = time.perf_counter()
                function.remote(i)
                samples.append((time.perf_counter() - started) * 1000)
            return statistics.median(samples)

        ssh_ms, slurm_ms = warm_p50(on_ssh), warm_p50(on_slurm)

        # First run on an idle cluster: a new spec each time, so a new job (scale-down 1 s lets it go).
        cold, srun = [], []
        for i in range(args.cold):
            first = app.function(host="slurm", scaledown_window=1, name=f"cold{i}", cpu=1 + (i % 2))(echo)
            started = time.perf_counter()
            first.remote(i)
            cold.append(time.perf_counter() - started)
            started = time.perf_counter()
            cluster.run(["srun", "-N1", "hostname"], check=True)
            srun.append(time.perf_counter() - started)
            time.sleep(3)
        connections.forget("plain")
        connections.forget("slurm")
    cold_s, srun_s = statistics.median(cold), statistics.median(srun)
    print("| measure | nbmodal | peer (same run) | ratio |\n|---|---|---|---|")
    print(f"| warm round trip, p50 of {args.calls} | Slurm job {slurm_ms:.2f} ms | plain SSH host {ssh_ms:.2f} ms "
          f"| {slurm_ms / ssh_ms:.2f}× |")
    print(f"| first run on an idle cluster, median of {args.cold} | {cold_s:.2f} s | `srun hostname` {srun_s:.3f} s "
          f"| {cold_s / srun_s:.1f}× |")


if __name__ == "__main__":
    main()
