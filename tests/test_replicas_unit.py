"""One object across hosts, in process: a home's versions, a replica's commit applied there (last commit
wins, the overwritten file recoverable), the routes' refusals, and the client's homes registry."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from nbmodal._runtime import homes
from nbmodal_wire import pb
from remote_agent.storage import StoreError
from remote_agent.store_routes import RELAYED_KEY, HomeUnreachable, StoreRoutes, queue_deadline
from remote_agent.volume_versions import VolumeVersions
from remote_agent.volumes import VolumeStore

pytestmark = pytest.mark.unit


@pytest.fixture()
def home(tmp_path) -> VolumeVersions:
    versions = VolumeVersions(VolumeStore(tmp_path / "volumes"))
    versions.volumes.create("ckpt")
    return versions


def _write(versions: VolumeVersions, path: str, data: bytes) -> None:
    real = versions.volumes.root / "ckpt" / path.lstrip("/")
    real.parent.mkdir(parents=True, exist_ok=True)
    real.write_bytes(data)


def _stage(versions: VolumeVersions, data: bytes) -> pb.VolumeChange:
    """What a replica's upload leaves at the home: the content under its SHA-256."""
    sha256 = hashlib.sha256(data).hexdigest()
    versions.volumes.partial_path("ckpt", sha256).write_bytes(data)
    return pb.VolumeChange(sha256=sha256, size=len(data))


def test_a_commit_makes_a_version_only_when_something_changed(home):
    assert home.commit_home("ckpt") == 0  # an empty volume: nothing to commit
    _write(home, "/a.txt", b"one")
    assert home.commit_home("ckpt") == 1
    assert home.commit_home("ckpt") == 1  # unchanged: no new version
    _write(home, "/a.txt", b"two")
    assert home.commit_home("ckpt") == 2
    version, files = home.manifest("ckpt")
    assert version == 2 and [(f.path, f.sha256) for f in files] == [("/a.txt", hashlib.sha256(b"two").hexdigest())]
    assert home.load("ckpt").log[-1]["paths"] == ["/a.txt"]


def test_a_scan_rehashes_only_files_whose_size_or_mtime_changed(home, monkeypatch):
    _write(home, "/big.bin", b"x" * 1000)
    _write(home, "/small.bin", b"y")
    home.commit_home("ckpt")
    hashed: list[str] = []
    checksum = home.volumes.checksum
    monkeypatch.setattr(home.volumes, "checksum", lambda real: hashed.append(real.name) or checksum(real))
    home.volumes._checksums.clear()
    _write(home, "/small.bin", b"yy")
    assert home.commit_home("ckpt") == 2
    assert hashed == ["small.bin"]


def test_a_replicas_commit_wins_per_file_and_what_it_replaced_is_recoverable(home):
    _write(home, "/f.txt", b"from the home")
    _write(home, "/other.txt", b"untouched")
    base = home.commit_home("ckpt")
    change = _stage(home, b"from beta")
    change.path = "/f.txt"
    version = home.apply("ckpt", base, [change], "beta")
    assert version == base + 1
    assert (home.volumes.root / "ckpt" / "f.txt").read_bytes() == b"from beta"
    assert (home.volumes.root / "ckpt" / "other.txt").read_bytes() == b"untouched"
    kept = home.overwritten("ckpt")
    assert [(o.path, o.host, o.version) for o in kept] == [("/f.txt", "beta", version)]
    home.recover("ckpt", "/f.txt", "/f.home.txt")
    assert (home.volumes.root / "ckpt" / "f.home.txt").read_bytes() == b"from the home"
    _write(home, "/third.txt", b"a later commit")
    home.commit_home("ckpt")
    assert home.overwritten("ckpt") == []  # kept until the next commit, not longer
    with pytest.raises(StoreError, match="overwrote no '/f.txt'"):
        home.recover("ckpt", "/f.txt")


def test_the_homes_own_uncommitted_writes_become_a_version_before_a_replicas_commit(home):
    base = home.commit_home("ckpt")
    _write(home, "/mine.txt", b"written at the home")
    change = _stage(home, b"theirs")
    change.path = "/theirs.txt"
    assert home.apply("ckpt", base, [change], "beta") == base + 2  # the home's writes, then beta's
    removed = pb.VolumeChange(path="/mine.txt", deleted=True)
    home.apply("ckpt", base + 2, [removed], "beta")
    assert not (home.volumes.root / "ckpt" / "mine.txt").exists()
    assert [o.path for o in home.overwritten("ckpt")] == ["/mine.txt"]  # a removal is recoverable too


def test_a_commit_whose_content_was_not_uploaded_is_refused_and_changes_nothing(home):
    _write(home, "/f.txt", b"kept")
    base = home.commit_home("ckpt")
    missing = pb.VolumeChange(path="/f.txt", sha256="0" * 64, size=3)
    with pytest.raises(StoreError, match="was not uploaded first"):
        home.apply("ckpt", base, [missing], "beta")
    assert (home.volumes.root / "ckpt" / "f.txt").read_bytes() == b"kept"
    assert home.manifest("ckpt")[0] == base


def test_a_replica_is_not_a_home(home):
    home.volumes.create("copy")
    home.save("copy", home.load("copy").__class__(role="replica", home="alpha"))
    with pytest.raises(StoreError, match="replica of host 'alpha'"):
        home.commit_home("copy")


def test_routes_name_the_home_and_never_relay_a_relayed_call():
    routes = StoreRoutes()
    asyncio.run(routes.update(pb.ReplicaRoutesRequest(
        self_name="beta", homes=[pb.ReplicaHome(kind="queue", name="jobs", host="alpha"),
                                 pb.ReplicaHome(kind="dict", name="mine", host="beta")])))
    assert routes.elsewhere("queue", "jobs", ()) == "alpha"
    assert routes.elsewhere("dict", "mine", ()) == ""  # beta's own
    assert routes.elsewhere("dict", "unknown", ()) == ""
    assert routes.elsewhere("queue", "jobs", ((RELAYED_KEY, "gamma"),)) == ""  # served where it arrived
    with pytest.raises(HomeUnreachable, match="queue 'jobs' lives on host 'alpha'.*'beta' can't reach it"):
        routes.peer("alpha", "queue 'jobs'")
    # An update that only forgets names keeps the routes and this host's name.
    asyncio.run(routes.update(pb.ReplicaRoutesRequest(forget=[pb.ReplicaHome(kind="queue", name="jobs")])))
    assert routes.self_name == "beta" and routes.elsewhere("queue", "jobs", ()) == ""


def test_a_relayed_queue_call_waits_as_long_as_it_asked():
    assert queue_deadline(pb.QueueRequest(op=pb.GET, block=True, timeout_s=0)) is None
    assert queue_deadline(pb.QueueRequest(op=pb.PUT, block=True, timeout_s=5)) == 65
    assert queue_deadline(pb.QueueRequest(op=pb.LEN)) == 60


def test_the_homes_registry(monkeypatch, tmp_path):
    monkeypatch.setenv("NBMODAL_HOME", str(tmp_path))
    assert homes.home_of("dict", "results") is None
    homes.record("dict", "results", "gpu1")
    before = homes.generation
    homes.record("dict", "results", "gpu1")
    assert homes.generation == before  # nothing changed: no push
    homes.learn([("dict", "results", "gpu2"), ("queue", "jobs", "gpu2")])
    assert homes.home_of("dict", "results") == "gpu1"  # recorded homes win over what agents say
    assert homes.home_of("queue", "jobs") == "gpu2"
    homes.forget("dict", "results")
    assert homes.home_of("dict", "results") is None
    homes.forget_host("gpu2")
    assert homes.load() == {"dict": {}, "queue": {}, "volume": {}}


def test_a_slurm_job_that_doesnt_see_the_login_nodes_volumes_says_how_to_fix_it(tmp_path, monkeypatch):
    from remote_agent.sandbox import MountError
    from remote_agent.worker import volume_links

    volumes = tmp_path / "volumes"
    (volumes / "ckpt").mkdir(parents=True)
    (volumes / volume_links.MARKER).write_text("the agent's")
    mount = tmp_path / "mnt"
    monkeypatch.setenv(volume_links.ENV, f'[["{volumes / "ckpt"}", "{mount}", "another agent\'s"]]')
    with pytest.raises(MountError, match="doesn't see the login node's .* on a shared filesystem"):
        volume_links.link_from_env()
    assert not mount.exists()
    monkeypatch.setenv(volume_links.ENV, f'[["{volumes / "ckpt"}", "{mount}", "the agent\'s"]]')
    volume_links.link_from_env()
    assert mount.resolve() == (volumes / "ckpt").resolve()
