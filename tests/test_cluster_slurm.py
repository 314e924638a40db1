"""Multi-node gangs on Slurm: one allocation of two nodes on a real two-node cluster (tests/slurmpair.py),
each node in its own network namespace; the ranks see each other at their nodes' addresses.

The login node is a test sshd in the root namespace; its agent submits the gang as one
``sbatch --nodes=2`` job whose tasks dial back to it over the cluster's bridge.
"""

from __future__ import annotations

import contextlib
import re

import pytest
from allreduce import all_reduce
from kernels import kernel
from slurmcluster import require_slurm
from slurmpair import TwoNodeSlurm
from waiting import wait_for

import nbmodal
from nbmodal import commands, hosts
from nbmodal._runtime import connection as connections

pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module")
def pair(ssh_client):
    """Slurm host "pair": the agent on a login node, its jobs on the two-node cluster."""
    require_slurm()
    with contextlib.ExitStack() as stack:
        cluster = stack.enter_context(TwoNodeSlurm.session())
        login = ssh_client.start_host(stack, "pairlogin", offline=False)
        settings = {"partition": "gpu", "time": "00:05:00", "callback_host": cluster.gateway,
                    "slurm_env": f"SLURM_CONF={cluster.conf}"}
        commands.host_add("pair", "pairlogin", str(login.config_path), slurm=settings)
        stack.callback(hosts.remove_host, "pair")
        stack.callback(connections.forget, "pair")
        yield cluster


def test_a_two_node_gang_is_one_allocation_whose_ranks_reach_each_other(pair):
    app = nbmodal.App("cluster-slurm")

    @app.function(host="pair", gpu="H100", timeout=60)
    @nbmodal.clustered(size=2)
    def reduce_step() -> dict:
        import os

        info = nbmodal.get_cluster_info()
        total = all_reduce([float(info.rank + 1)] * 4)
        print(f"rank {info.rank} on node {os.environ['SLURMD_NODENAME']}: {total}", flush=True)
        return {"job": os.environ["SLURM_JOB_ID"], "nodes": os.environ["SLURM_JOB_NUM_NODES"],
                "ips": info.container_ips, "master": os.environ["MASTER_ADDR"], "total": total,
                "gpus": os.environ.get("CUDA_VISIBLE_DEVICES", "")}

    result = reduce_step.remote()
    run = nbmodal.last_cluster_run()
    assert run is not None and run.hosts == ["pair", "pair"]
    assert result["nodes"] == "2" and result["total"] == [3.0] * 4
    assert sorted(result["ips"]) == sorted(pair.node_addresses.values())  # one rank per node, each its own address
    assert result["master"] == result["ips"][0]
    assert result["gpus"]  # each node's card
    rank1 = run.logs(rank=1)
    assert "[3.0, 3.0, 3.0, 3.0]" in rank1
    assert re.search(r"rank 1 on node n[01]", rank1)


def test_while_a_node_is_taken_the_gang_shows_slurms_pending_reason(pair):
    holder = pair.run("sbatch", "--parsable", "--nodelist=n1", "--gres=gpu:h100:1", "--wrap", "sleep 120")
    job = holder.stdout.strip().split(";")[0]
    assert job.isdigit(), holder.stderr
    try:
        wait_for(lambda: "RUNNING" in pair.run("squeue", "-h", "-j", job, "-o", "%T").stdout, 30,
                 "the job holding n1's card to run")
        with kernel() as k:
            msg_id = k.start("%%remote host=pair nodes=2 gpu=H100 timeout=60\nimport os\n"
                             "print('node', os.environ['SLURMD_NODENAME'])\n")
            # the one allocation of both nodes waits for n1, and the cell says so, in Slurm's words
            shown = k.collect(msg_id, timeout=60, until="0/2 ranks ready; rank 0 on pair: Slurm job")["stderr"]
            if "PENDING (Resources)" not in shown:
                k.collect(msg_id, timeout=30, until="PENDING (Resources)")
            pair.run("scancel", job)
            done = k.collect(msg_id, timeout=90)
            assert done["error"] is None, done
            assert re.search(r"node n[01]", done["stdout"]), done
    finally:
        pair.run("scancel", job)
