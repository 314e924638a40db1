"""Volumes inside Slurm jobs (issue 18): the job links the login node's volume from the shared filesystem
(here the single-node cluster shares this machine's filesystem), writes in it, and the run's commit
makes the next version; a volume whose home is another host is the login node's replica, synced before
the job's run and committed to its home after it."""

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
REPLICA, REPLICA_MOUNT = f"slurm-rep-{os.getpid()}", f"/tmp/nbmt-{os.getpid()}-rep"
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
        stack.callback(lambda: os.path.islink(REPLICA_MOUNT) and os.unlink(REPLICA_MOUNT))
        yield host


def _step(mount: str, n: int) -> dict:
    import json

    path = os.path.join(mount, "state.json")
    before = json.load(open(path)) if os.path.exists(path) else {"steps": []}
    before["steps"].append(n)
    json.dump(before, open(path, "w"))
    return {"job": os.environ.get("SLURM_JOB_ID"), "steps": before["steps"]}


@app.function(host="slurmvol", volumes={MOUNT: VOLUME}, scaledown_window=2)
def step(n: int) -> dict:
    return _step(MOUNT, n)


@app.function(host="slurmvol", volumes={REPLICA_MOUNT: REPLICA}, scaledown_window=2)
def step_on_replica(n: int) -> dict:
    return _step(REPLICA_MOUNT, n)


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


def test_a_slurm_job_mounts_a_replica_of_another_hosts_volume_synced_before_and_committed_after(login, ssh_client,
                                                                                                tmp_path):
    with contextlib.ExitStack() as stack:
        other = ssh_client.start_host(stack, "homev", offline=False)
        commands.host_add("homev", "homev", str(other.config_path))
        stack.callback(hosts.remove_host, "homev")
        stack.callback(connections.forget, "homev")
        vol = nbmodal.Volume.from_name(REPLICA, create_if_missing=True, host="homev")  # its home: homev
        stack.callback(nbmodal.Volume.delete, REPLICA, allow_missing=True)
        (tmp_path / "state.json").write_text('{"steps": [0]}')
        with vol.batch_upload() as batch:
            batch.put_file(tmp_path / "state.json", "/state.json")
        # The login node's agent syncs its replica before the job's run; the job's write is committed after.
        result = step_on_replica.remote(1)
        assert result["job"] and result["steps"] == [0, 1]
        assert b"".join(vol.read_file("/state.json")) == b'{"steps": [0, 1]}'  # read at the home
        copies = vol.versions()
        assert copies["slurmvol"]["role"] == "replica" and copies["slurmvol"]["version"] == copies["homev"]["version"]
