"""Volumes in Slurm jobs without a shared filesystem (issue 18). A job that doesn't see the login node's
state dir works on a node-local copy (in the node's temp dir, never the agent's state dir), synced from
the agent over the job's tunnel before each run and committed back at the run's end: on the two-node
cluster whose nodes have a tmpfs over the agent's volumes dir (job_volumes "auto" finds it can't see it;
"shared" fails saying how to fix it), and on the single-node cluster with job_volumes "copy" (a replica's
copy commits on to the home; a commit after another writer's wins and the other is kept for recover).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest
from slurmcluster import require_slurm
from slurmpair import TwoNodeSlurm

import nbmodal
from nbmodal import commands, hosts
from nbmodal._runtime import connection as connections
from nbmodal_wire import pb

pytestmark = pytest.mark.slurm

VOLUME = f"slurm-copy-{os.getpid()}"
MOUNT = f"/tmp/nbmt-{os.getpid()}-copy"
REPLICA, REPLICA_MOUNT = f"slurm-copyrep-{os.getpid()}", f"/tmp/nbmt-{os.getpid()}-copyrep"
HIDDEN, HIDDEN_MOUNT = f"slurm-hidden-{os.getpid()}", f"/tmp/nbmt-{os.getpid()}-hidden"
app = nbmodal.App("slurm-volume-copies")


@pytest.fixture(scope="module")
def login(ssh_client, slurm_cluster):
    """A Slurm host "slurmcopy" whose jobs copy volumes to their node (as where compute nodes don't see
    the login node's state dir)."""
    with contextlib.ExitStack() as stack:
        host = ssh_client.start_host(stack, "loginc", offline=False)
        stack.callback(_remove_node_copies, host.user)
        settings = {"partition": "gpu", "time": "00:05:00", "callback_host": "127.0.0.1",
                    "slurm_env": f"SLURM_CONF={slurm_cluster.conf}", "job_volumes": "copy"}
        commands.host_add("slurmcopy", "loginc", str(host.config_path), slurm=settings)
        stack.callback(hosts.remove_host, "slurmcopy")
        stack.callback(connections.forget, "slurmcopy")
        stack.callback(lambda: os.path.islink(MOUNT) and os.unlink(MOUNT))
        stack.callback(lambda: os.path.islink(REPLICA_MOUNT) and os.unlink(REPLICA_MOUNT))
        stack.callback(nbmodal.Volume.delete, VOLUME, allow_missing=True)
        yield host


@pytest.fixture(scope="module")
def hidden(ssh_client):
    """Slurm host "nodecopy" (job_volumes left "auto") on the two-node cluster, whose nodes don't see the
    login node's volumes: a tmpfs over its agent's volumes dir in the nodes' mount namespace."""
    require_slurm()
    with contextlib.ExitStack() as stack:
        cluster = stack.enter_context(TwoNodeSlurm.session(private_mounts=True))
        host = ssh_client.start_host(stack, "copylogin", offline=False)
        stack.callback(_remove_node_copies, host.user)
        settings = {"partition": "gpu", "time": "00:05:00", "callback_host": cluster.gateway,
                    "slurm_env": f"SLURM_CONF={cluster.conf}"}
        commands.host_add("nodecopy", "copylogin", str(host.config_path), slurm=settings)
        stack.callback(hosts.remove_host, "nodecopy")
        stack.callback(connections.forget, "nodecopy")
        # The same cluster as a host that says its volumes are shared (they aren't: jobs must fail, saying so).
        shared = ssh_client.start_host(stack, "sharedlogin", offline=False)
        commands.host_add("nodeshared", "sharedlogin", str(shared.config_path),
                          slurm={**settings, "job_volumes": "shared"})
        stack.callback(hosts.remove_host, "nodeshared")
        stack.callback(connections.forget, "nodeshared")
        stack.callback(lambda: os.path.islink(HIDDEN_MOUNT) and os.unlink(HIDDEN_MOUNT))
        vol = nbmodal.Volume.from_name(HIDDEN, create_if_missing=True, host="nodecopy")  # starts the agent
        stack.callback(nbmodal.Volume.delete, HIDDEN, allow_missing=True)
        stack.callback(nbmodal.Dict.delete, HIDDEN, allow_missing=True)
        nbmodal.Volume.from_name(HIDDEN, create_if_missing=True, host="nodeshared")
        stack.callback(nbmodal.Volume.delete, HIDDEN, allow_missing=True, host="nodeshared")
        for login in (host, shared):
            volumes = login.home / ".nbmodal" / "agent" / "volumes"
            assert (volumes / HIDDEN).is_dir()
            cluster.hide(volumes)
        yield vol


def _read(path: str) -> str | None:
    return open(path).read() if os.path.exists(path) else None


def _visit(mount: str, write: dict[str, str]) -> dict:
    """What the job sees of the volume, then its writes (committed when the run ends)."""
    import json

    seen = {name: _read(os.path.join(mount, name)) for name in ("notebook.txt", "job.txt", "later.txt")}
    for name, text in write.items():
        with open(os.path.join(mount, name), "w") as f:
            f.write(text)
    return {"job": os.environ.get("SLURM_JOB_ID"), "node": os.environ.get("SLURMD_NODENAME"),
            "real": os.path.realpath(mount), "seen": seen,
            "copies": json.loads(os.environ.get("NBMODAL_NODE_COPIES", "{}"))}


@app.function(host="slurmcopy", volumes={MOUNT: VOLUME}, scaledown_window=30)
def on_node(write: dict[str, str]) -> dict:
    return _visit(MOUNT, write)


@app.function(host="nodeshared", volumes={HIDDEN_MOUNT: HIDDEN})
def on_node_said_shared() -> str:
    return "ran"


@app.function(host="nodecopy", volumes={HIDDEN_MOUNT: HIDDEN}, scaledown_window=30)
def on_other_node(write: dict[str, str]) -> dict:
    nbmodal.Dict.from_name(HIDDEN, create_if_missing=True)["from"] = os.environ.get("SLURMD_NODENAME")
    return _visit(HIDDEN_MOUNT, write)


@app.function(host="slurmcopy", volumes={MOUNT: VOLUME}, scaledown_window=2)
def on_node_too(write: dict[str, str]) -> dict:
    return _visit(MOUNT, write)


@app.function(host="slurmcopy", volumes={REPLICA_MOUNT: REPLICA}, scaledown_window=2)
def on_node_with_a_replica(write: dict[str, str]) -> dict:
    return _visit(REPLICA_MOUNT, write)


@app.function(host="slurmcopy", volumes={MOUNT: VOLUME}, scaledown_window=30)
def overwrite_after_another_commit() -> str:
    """Another writer commits both.txt at the agent while this job has it; the job's commit comes last."""
    import io

    vol = nbmodal.Volume.from_name(VOLUME)
    with vol.batch_upload(force=True) as batch:  # through the job's tunnel to its agent
        batch.put_file(io.BytesIO(b"other writer"), "/both.txt")
    with open(os.path.join(MOUNT, "both.txt"), "w") as f:
        f.write("job")
    vol.commit()  # explicit: the node copy's changes go to the agent now
    return open(os.path.join(MOUNT, "both.txt")).read()


def _text(vol: nbmodal.Volume, path: str) -> bytes:
    return b"".join(vol.read_file(path))


def _copies_dir(user: str) -> Path:
    """Where jobs of ``user`` keep volume copies on a node (this machine is every node here)."""
    return Path(tempfile.gettempdir()) / f"nbmodal-{pwd.getpwnam(user).pw_uid}-volumes"


def _remove_node_copies(user: str) -> None:
    """The copies the module's last jobs left: Slurm ends a retired job with scancel, before it can."""
    shutil.rmtree(_copies_dir(user), ignore_errors=True)


def _stale_copy(user: str) -> Path:
    """What a job killed by scancel leaves on its node: copies whose only user is a process that is gone."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    account = pwd.getpwnam(user)
    base = _copies_dir(user)
    stale = base / "0123456789abcdef"
    (stale / "jobs").mkdir(parents=True)
    (stale / "jobs" / f"{socket.gethostname()}-{gone.pid}").touch()
    for path in (base, stale, stale / "jobs", stale / "jobs" / f"{socket.gethostname()}-{gone.pid}"):
        os.chown(path, account.pw_uid, account.pw_gid)
    base.chmod(0o700)
    return stale


def test_a_job_without_the_shared_state_dir_works_on_a_node_copy_synced_before_and_committed_after(login, tmp_path):
    vol = nbmodal.Volume.from_name(VOLUME, create_if_missing=True, host="slurmcopy")
    stale = _stale_copy(login.user)
    (tmp_path / "notebook.txt").write_text("from the notebook")
    with vol.batch_upload() as batch:
        batch.put_file(tmp_path / "notebook.txt", "/notebook.txt")

    first = on_node.remote({"job.txt": "from the job"})
    assert first["job"]
    # The mount is the job's own copy on its node, not the agent's directory on the shared filesystem.
    assert list(first["copies"]) == [VOLUME] and first["real"] == os.path.realpath(first["copies"][VOLUME])
    assert first["real"].startswith(f"{_copies_dir(login.user)}/"), first["real"]
    assert first["seen"]["notebook.txt"] == "from the notebook" and first["seen"]["job.txt"] is None
    assert _text(vol, "/job.txt") == b"from the job"  # committed back at the run's end
    assert not stale.exists()  # an ended job's copies on the node are removed by the next job there

    # A later run (the warm job, or a new one) syncs before its code starts: it sees both writes.
    (tmp_path / "later.txt").write_text("written between runs")
    with vol.batch_upload() as batch:
        batch.put_file(tmp_path / "later.txt", "/later.txt")
    second = on_node.remote({})
    assert second["seen"]["job.txt"] == "from the job" and second["seen"]["later.txt"] == "written between runs"
    # Another job at the same mount path on the same node while the first is warm: they share the node's copy.
    other = on_node_too.remote({})
    assert other["job"] != first["job"] and other["real"] == first["real"]
    assert other["seen"]["later.txt"] == "written between runs"


def test_a_node_copy_commit_after_another_commit_wins_and_the_other_is_recoverable(login):
    vol = nbmodal.Volume.from_name(VOLUME, create_if_missing=True, host="slurmcopy")
    assert overwrite_after_another_commit.remote() == "job"
    assert _text(vol, "/both.txt") == b"job"  # the last commit wins
    overwritten = vol.versions()["slurmcopy"]["overwritten"]
    assert [o["path"] for o in overwritten] == ["/both.txt"], overwritten
    vol._call(pb.VOLUME_RECOVER, path="/both.txt", new_name="/both-other.txt")  # `nbmodal volume recover`
    assert _text(vol, "/both-other.txt") == b"other writer"


def test_a_job_on_a_node_that_cannot_see_the_state_dir_copies_its_volume_there(hidden, tmp_path):
    (tmp_path / "notebook.txt").write_text("from the notebook")
    with hidden.batch_upload() as batch:
        batch.put_file(tmp_path / "notebook.txt", "/notebook.txt")
    # "auto": the job doesn't find the agent's marker (its node has another filesystem there), so it copies.
    first = on_other_node.remote({"job.txt": "from the other node"})
    assert first["node"] in ("n0", "n1") and list(first["copies"]) == [HIDDEN]
    assert first["real"] == os.path.realpath(first["copies"][HIDDEN]) and "/.nbmodal/" not in first["real"]
    assert first["seen"]["notebook.txt"] == "from the notebook"
    assert _text(hidden, "/job.txt") == b"from the other node"
    # The job's Dict call went to the login node's agent through the job's tunnel.
    assert nbmodal.Dict.from_name(HIDDEN, host="nodecopy")["from"] == first["node"]
    (tmp_path / "later.txt").write_text("written between runs")
    with hidden.batch_upload() as batch:
        batch.put_file(tmp_path / "later.txt", "/later.txt")
    second = on_other_node.remote({})
    assert second["seen"]["job.txt"] == "from the other node" and second["seen"]["later.txt"] == "written between runs"


def test_a_host_whose_jobs_should_share_the_state_dir_fails_saying_how_to_fix_it(hidden):
    with pytest.raises(Exception, match="doesn't see the login node's") as failure:  # nbmodal.MountError
        on_node_said_shared.remote()
    assert "--job-volumes auto" in str(failure.value) and "MountError" in repr(failure.value), repr(failure.value)


def test_a_node_copy_of_the_login_nodes_replica_commits_on_to_the_volumes_home(login, ssh_client, tmp_path):
    with contextlib.ExitStack() as stack:
        other = ssh_client.start_host(stack, "homec", offline=False)
        commands.host_add("homec", "homec", str(other.config_path))
        stack.callback(hosts.remove_host, "homec")
        stack.callback(connections.forget, "homec")
        vol = nbmodal.Volume.from_name(REPLICA, create_if_missing=True, host="homec")  # its home: homec
        stack.callback(nbmodal.Volume.delete, REPLICA, allow_missing=True)
        (tmp_path / "notebook.txt").write_text("at the home")
        with vol.batch_upload() as batch:
            batch.put_file(tmp_path / "notebook.txt", "/notebook.txt")
        # home -> the login node's replica (before the run) -> the job's node copy; and back after it.
        result = on_node_with_a_replica.remote({"job.txt": "from the job"})
        assert list(result["copies"]) == [REPLICA] and "/.nbmodal/" not in result["real"]
        assert result["seen"]["notebook.txt"] == "at the home"
        assert _text(vol, "/job.txt") == b"from the job"  # read at the home
        copies = vol.versions()
        assert copies["slurmcopy"]["role"] == "replica" and copies["slurmcopy"]["version"] == copies["homec"]["version"]
