"""A shell and exec in a container that is a Slurm job (on the cluster's node, dialled back to the agent on
the login node): the process joins the job's container, its Slurm environment and GPUs included."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

import pytest

from nbmodal import commands, hosts
from nbmodal._runtime import connection as connections

pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module")
def slurm_host(ssh_client, slurm_cluster):
    """A Slurm host "slurm-exec": the agent on a login node over SSH, jobs in partition gpu."""
    with contextlib.ExitStack() as stack:
        host = ssh_client.start_host(stack, "execlogin", offline=False)
        settings = {"partition": "gpu", "time": "00:05:00", "callback_host": "127.0.0.1",
                    "slurm_env": f"SLURM_CONF={slurm_cluster.conf}"}
        commands.host_add("slurm-exec", "execlogin", str(host.config_path), slurm=settings)
        stack.callback(hosts.remove_host, "slurm-exec")
        stack.callback(connections.forget, "slurm-exec")
        yield "slurm-exec"


def test_shell_in_a_slurm_job_container(slurm_host):
    done = subprocess.run([sys.executable, "-m", "nbmodal.cli", "shell", "--host", slurm_host, "--gpu", "H100",
                           "--cmd", "echo job=$SLURM_JOB_ID gpus=$CUDA_VISIBLE_DEVICES; tty; exit 4"],
                          capture_output=True, input=b"", timeout=600, env=dict(os.environ))
    out = done.stdout.decode()
    assert done.returncode == 4, out + done.stderr.decode()
    assert "job=" in out and "job= " not in out and "gpus=" in out and "gpus= " not in out, out
    assert "/dev/pts/" in out, out
