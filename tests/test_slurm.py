"""Containers as Slurm jobs, through a login node reached over SSH, on a real single-node Slurm cluster.

The login node is this machine's test sshd (its own user and home, as on a cluster); the agent is
bootstrapped there like on any SSH host, and its containers are sbatch jobs on the cluster's node (four
fake H100s as GRES). Jobs dial back to the agent at 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import re
import time

import pytest

import nbmodal
from kernels import kernel
from nbmodal import commands, hosts
from nbmodal._runtime import connection as connections
from nbmodal_wire import pb

pytestmark = pytest.mark.slurm

app = nbmodal.App("slurm")


@pytest.fixture(scope="module")
def login(ssh_client, slurm_cluster):
    """A Slurm host "slurm": the agent on a login node over SSH, jobs in partition gpu."""
    with contextlib.ExitStack() as stack:
        host = ssh_client.start_host(stack, "login", offline=False)
        settings = {"partition": "gpu", "time": "00:05:00", "callback_host": "127.0.0.1",
                    "slurm_env": f"SLURM_CONF={slurm_cluster.conf}"}
        commands.host_add("slurm", "login", str(host.config_path), slurm=settings)
        stack.callback(hosts.remove_host, "slurm")
        stack.callback(connections.forget, "slurm")
        yield host


@app.function(host="slurm", gpu="H100", scaledown_window=60)
def where() -> dict:
    import os

    return {"job": os.environ.get("SLURM_JOB_ID"), "gpus": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
            "user": os.environ.get("USER") or os.getlogin()}


@app.function(host="slurm", gpu="H100:3", scaledown_window=1)
def hold_three(seconds: float) -> str:
    import os
    import time

    time.sleep(seconds)
    return os.environ["SLURM_JOB_ID"]


def test_a_remote_cell_with_gpu_runs_as_a_slurm_job(login, slurm_cluster, tmp_path):
    with kernel(tmp_path) as k:
        result = k.execute("%%remote host=slurm gpu=H100\nimport os\n"
                           "job, gpus = os.environ['SLURM_JOB_ID'], os.environ['CUDA_VISIBLE_DEVICES']")
        assert result["error"] is None, result
        job, gpus = k.execute("print(job, gpus)")["stdout"].split()
    assert job.isdigit() and len(gpus.split(",")) == 1  # Slurm gave it one card


def test_warm_job_reuse_then_scale_down(login, slurm_cluster):
    first, second = where.remote(), where.remote()
    assert first["job"] == second["job"]  # the warm job served the second call
    assert first["user"] == login.user
    # The cluster's cards as Slurm sees them, per partition and node: the warm job holds one.
    table = commands.gpus_table("slurm")
    cards = [line for line in table.splitlines() if f" gpu/{slurm_cluster.node}:" in line]
    assert len(cards) == 4 and all("H100" in line for line in cards), table
    assert any("a Slurm job" in line for line in cards), table

    @app.function(host="slurm", scaledown_window=1)
    def brief() -> str:
        import os

        return os.environ["SLURM_JOB_ID"]

    job = brief.remote()
    deadline = time.monotonic() + 30
    while slurm_cluster.job_state(int(job)) is not None:
        assert time.monotonic() < deadline, "the idle job outlived its 1 s scale-down window"
        time.sleep(0.5)


def test_a_second_three_gpu_run_waits_with_slurms_reason_and_an_interrupt_cancels_it(login, slurm_cluster, tmp_path):
    client = connections.get_client("slurm")
    for container in client.list_containers():  # warm jobs of earlier tests give their cards back
        if container.state == pb.CONTAINER_IDLE:
            client.stop_container(container.container_id)
    before = set(_jobs_by_id(slurm_cluster))
    holder = hold_three.spawn(25)
    deadline = time.monotonic() + 30
    # The holder's job runs (the warm jobs of earlier tests scale down and leave it room).
    while not any(state == "RUNNING" for job, (state, _) in _jobs_by_id(slurm_cluster).items() if job not in before):
        assert time.monotonic() < deadline, f"the first 3-GPU job never ran: {_jobs_by_id(slurm_cluster)}"
        time.sleep(0.3)
    with kernel(tmp_path) as k:
        msg = k.start("%%remote host=slurm gpu=H100:3\nprint('got them')")
        waiting = k.collect(msg, timeout=30, until=": PENDING (")
        text = waiting["stdout"] + waiting["stderr"]
        # Slurm's own reason: Resources, or Priority while a job ahead of it waits for the same cards
        shown = re.search(r"Slurm job (\d+): PENDING \((Resources|Priority)\)", text)
        assert shown, waiting
        ours = int(shown.group(1))
        assert _jobs_by_id(slurm_cluster)[ours][0] == "PENDING"
        k.interrupt()
        result = k.collect(msg, timeout=30)
        assert result["error"]["ename"] == "KeyboardInterrupt", result
        assert "scancel" in result["error"]["evalue"], result
    deadline = time.monotonic() + 15
    while slurm_cluster.job_state(ours) is not None:
        agent_log = (login.home / ".nbmodal" / "agent" / "agent.log").read_text()[-3000:]
        assert time.monotonic() < deadline, f"job {ours} was not cancelled: {_jobs_by_id(slurm_cluster)}\n{agent_log}"
        time.sleep(0.3)
    holder.cancel()


def test_map_fans_out_over_several_jobs(login, slurm_cluster):
    @app.function(host="slurm", max_containers=3, scaledown_window=1)
    def square(x: int) -> tuple[int, str]:
        import os
        import time

        time.sleep(0.5)
        return x * x, os.environ["SLURM_JOB_ID"]

    results = list(square.map(range(9)))
    assert [value for value, _ in results] == [x * x for x in range(9)]
    assert len({job for _, job in results}) >= 2


def test_unknown_partition_and_gpu_type_fail_at_once_with_slurms_message(login, ssh_client, slurm_cluster):
    @app.function(host="slurm", gpu="A100")  # the cluster has only H100s
    def on_a100() -> int:
        return 1

    started = time.monotonic()
    with pytest.raises(nbmodal.SlurmJobError, match="sbatch refused the job: .*node configuration is not available"):
        on_a100.remote()
    assert time.monotonic() - started < 15

    with contextlib.ExitStack() as stack:
        host = ssh_client.start_host(stack, "login-bad", offline=False)
        commands.host_add("slurm-bad", "login-bad", str(host.config_path),
                          slurm={"partition": "nope", "callback_host": "127.0.0.1",
                                 "slurm_env": f"SLURM_CONF={slurm_cluster.conf}"})
        stack.callback(hosts.remove_host, "slurm-bad")
        stack.callback(connections.forget, "slurm-bad")

        @app.function(host="slurm-bad")
        def anywhere() -> int:
            return 1

        with pytest.raises(nbmodal.SlurmJobError, match="(?i)invalid partition"):
            anywhere.remote()


def test_a_job_killed_at_its_walltime_ends_the_run_with_slurms_reason(login, ssh_client, slurm_cluster):
    with contextlib.ExitStack() as stack:
        host = ssh_client.start_host(stack, "login-short", offline=False)
        commands.host_add("slurm-short", "login-short", str(host.config_path),
                          slurm={"partition": "short", "time": "00:00:01", "callback_host": "127.0.0.1",
                                 "slurm_env": f"SLURM_CONF={slurm_cluster.conf}"})
        stack.callback(hosts.remove_host, "slurm-short")
        stack.callback(connections.forget, "slurm-short")

        @app.function(host="slurm-short")
        def forever() -> None:
            import time

            time.sleep(600)

        with pytest.raises(nbmodal.RunLostError, match="TIMEOUT"):
            forever.remote()  # Slurm counts whole minutes and checks every 30 s: 60-90 s


def _jobs_by_id(cluster) -> dict[int, tuple[str, str]]:
    out = cluster.run(["squeue", "-h", "-o", "%i %T %r"]).stdout
    return {int(i): (state, reason) for i, state, reason in (line.split(maxsplit=2) for line in out.splitlines())}

