"""Volumes inside Slurm jobs (issue 18): the job links the login node's volume from the shared filesystem
(here the single-node cluster shares this machine's filesystem), writes in it, and the run's commit
makes the next version."""

from __future__ import annotations

import contextlib
import os

import pytest

import nbmodal
from nbmodal import commands, hosts
from nbmodal._runtime import connection as connections

pytestmark = pytest.mark.slurm

VOLUME = f"slurm-vol-{os.getpid()}"
MOUNT = f"/tmp/nbmt-{os.getpid()}-ckpt"  # a compute node's / isn't ours: mount where the user may link
app = nbmodal.App("slurm-volumes")


@pytest.fixture(scope="module")
def login(ssh_client, slurm_cluster):
    """A Slurm host "slurmvol": the agent on a login node over SSH, jobs in partition gpu."""
    with contextlib.ExitStack() as stack:
        host = ssh_client.start_host(stack, "loginv", offline=False)
        settings = {"partition": "gpu", "time": "00:05:00", "callback_host": "127.0.0.1",
                    "slurm_env": f"SLURM_CONF={slurm_cluster.conf}"}
        commands.host_add("slurmvol", "loginv", str(host.config_path), slurm=settings)
        stack.callback(hosts.remove_host, "slurmvol")
        stack.callback(connections.forget, "slurmvol")
        stack.callback(lambda: os.path.islink(MOUNT) and os.unlink(MOUNT))
        yield host


@app.function(host="slurmvol", volumes={MOUNT: VOLUME}, scaledown_window=2)
def step(n: int) -> dict:
    import json

    path = os.path.join(MOUNT, "state.json")
    before = json.load(open(path)) if os.path.exists(path) else {"steps": []}
    before["steps"].append(n)
    json.dump(before, open(path, "w"))
    return {"job": os.environ.get("SLURM_JOB_ID"), "steps": before["steps"]}


def test_a_slurm_job_mounts_a_volume_and_its_writes_are_committed(login):
    vol = nbmodal.Volume.from_name(VOLUME, create_if_missing=True, host="slurmvol")
    try:
        first = step.remote(1)
        assert first["job"] and first["steps"] == [1]
        assert b"".join(vol.read_file("/state.json")) == b'{"steps": [1]}'  # committed at the run's end
        assert step.remote(2)["steps"] == [1, 2]
        assert vol.versions()["slurmvol"]["version"] >= 2
    finally:
        nbmodal.Volume.delete(VOLUME, allow_missing=True)
