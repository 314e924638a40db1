"""A Slurm job's commit into the login node's replica (remote_agent/job_copies.py): staged content and content
already in the volume are put in place, removals remove, the manifest is the copy as it is now."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest

from nbmodal_wire import pb
from remote_agent import job_copies
from remote_agent.storage import StoreError
from remote_agent.volume_versions import VolumeVersions
from remote_agent.volumes import VolumeStore

pytestmark = pytest.mark.unit


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def replica(tmp_path) -> VolumeVersions:
    versions = VolumeVersions(VolumeStore(tmp_path / "volumes"))
    versions.make_replica("ckpt", "gpu1")
    folder = versions.volumes.volume_dir("ckpt")
    (folder / "kept.txt").write_bytes(b"kept")
    (folder / "old.txt").write_bytes(b"old")
    (folder / "gone.txt").write_bytes(b"gone")
    return versions


def test_a_jobs_changes_are_placed_from_staged_content_or_content_already_there(replica):
    volumes = replica.volumes
    volumes.partial_path("ckpt", _sha(b"new")).write_bytes(b"new")  # what the job uploaded, staged
    changes = [pb.VolumeChange(path="/a/new.txt", sha256=_sha(b"new"), size=3),
               pb.VolumeChange(path="/b/new-too.txt", sha256=_sha(b"new"), size=3),  # same content twice
               pb.VolumeChange(path="/old.txt", sha256=_sha(b"kept"), size=4),     # content already here
               pb.VolumeChange(path="/gone.txt", deleted=True)]
    job_copies.place(replica, "ckpt", changes)
    folder = volumes.volume_dir("ckpt")
    assert (folder / "a/new.txt").read_bytes() == (folder / "b/new-too.txt").read_bytes() == b"new"
    assert (folder / "old.txt").read_bytes() == b"kept" and (folder / "kept.txt").read_bytes() == b"kept"
    assert not (folder / "gone.txt").exists()
    assert not list((volumes.partials / "ckpt").iterdir())  # nothing left staged
    version, manifest = job_copies.manifest_now(replica, "ckpt")
    assert {c.path: c.sha256 for c in manifest} == {"/a/new.txt": _sha(b"new"), "/b/new-too.txt": _sha(b"new"),
                                                      "/kept.txt": _sha(b"kept"), "/old.txt": _sha(b"kept")}


def test_a_change_whose_content_never_arrived_is_refused_and_nothing_moves(replica):
    with pytest.raises(StoreError, match="was not uploaded"):
        job_copies.place(replica, "ckpt", [pb.VolumeChange(path="/gone.txt", deleted=True),
                                           pb.VolumeChange(path="/x.txt", sha256=_sha(b"lost"), size=4)])
    assert (replica.volumes.volume_dir("ckpt") / "gone.txt").exists()
    with pytest.raises(StoreError, match="not a SHA-256"):
        job_copies.place(replica, "ckpt", [pb.VolumeChange(path="/x.txt", sha256="../../etc/passwd", size=4)])


@pytest.mark.unit
def test_the_worker_hooks_read_the_copies_variable_without_importing_its_module():
    from nbmodal_wire import node_copies
    from remote_agent.worker import node_volumes

    assert node_volumes.COPIES_ENV == node_copies.ENV
    # A container's start imports the hooks; without node-local copies it must not pay for grpc or node_copies.
    probe = ("import sys, remote_agent.worker.main, remote_agent.worker.node_volumes as v; v.before_run(); "
             "v.after_run(); print('grpc' in sys.modules, 'nbmodal_wire.node_copies' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != node_copies.ENV}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True).stdout
    assert out.split() == ["False", "False"]
