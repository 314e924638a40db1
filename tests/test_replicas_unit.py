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
    monkeypatch.setenv(volume_links.MODE_ENV, "shared")  # "auto" would copy it to the node instead
    with pytest.raises(MountError, match="doesn't see the login node's .* on a shared filesystem"):
        volume_links.link_from_env()
    assert not mount.exists()
    monkeypatch.setenv(volume_links.ENV, f'[["{volumes / "ckpt"}", "{mount}", "the agent\'s"]]')
    volume_links.link_from_env()  # "auto" (the default): seen, so linked
    assert mount.resolve() == (volumes / "ckpt").resolve()


class _Home:
    """A home's VolumeDownload, in process: ``content`` from the asked offset in 3-byte chunks, then its
    file record (whose SHA-256 is ``claimed``, the content's own unless told)."""

    def __init__(self, content: bytes, claimed: str = "") -> None:
        self.content = content
        self.claimed = claimed or hashlib.sha256(content).hexdigest()
        self.offsets: list[int] = []

    async def VolumeDownload(self, request: pb.VolumeRequest, metadata=()):  # noqa: N802 — the gRPC name
        self.offsets.append(request.offset)
        for start in range(request.offset, len(self.content), 3):
            yield pb.VolumeChunk(data=self.content[start:start + 3])
        yield pb.VolumeChunk(file=pb.VolumeFile(path=request.path, size=len(self.content), sha256=self.claimed))


def _replica(tmp_path):
    from remote_agent.replicas import Replicas

    volumes = VolumeStore(tmp_path / "replica")
    volumes.create("ckpt")

    async def in_io_thread(fn, *args):
        return fn(*args)

    return Replicas(volumes, VolumeVersions(volumes), StoreRoutes(), in_io_thread)


def test_a_replicas_download_resumes_from_what_arrived_and_is_checked_before_it_replaces_anything(tmp_path):
    replica = _replica(tmp_path)
    content = b"the new weights, version 2"
    change = pb.VolumeChange(path="/w.bin", sha256=hashlib.sha256(content).hexdigest(), size=len(content))
    target = replica.volumes.root / "ckpt" / "w.bin"
    target.write_bytes(b"version 1")
    # A cut left the first 10 bytes: only the rest moves.
    replica.volumes.partial_path("ckpt", change.sha256).write_bytes(content[:10])
    home = _Home(content)
    assert asyncio.run(replica._download(home, (), "ckpt", change)) == (change.sha256, len(content))
    assert home.offsets == [10] and target.read_bytes() == content
    assert not replica.volumes.partial_path("ckpt", change.sha256).exists()
    # A damaged prefix: the checksum fails, the download starts over once, and succeeds.
    replica.volumes.partial_path("ckpt", change.sha256).write_bytes(b"XXXXXXXX")
    target.write_bytes(b"version 1")
    home = _Home(content)
    asyncio.run(replica._download(home, (), "ckpt", change))
    assert home.offsets == [8, 0] and target.read_bytes() == content
    # Content that arrives damaged every time replaces nothing.
    target.write_bytes(b"version 1")
    home = _Home(b"flipped bits in transit!!!", claimed=change.sha256)
    with pytest.raises(StoreError, match="arrived damaged .* nothing was replaced"):
        asyncio.run(replica._download(home, (), "ckpt", change))
    assert target.read_bytes() == b"version 1"


class _HomeVolume:
    """A home's manifest and downloads by path (``relay`` and ``peer`` as StoreRoutes has them)."""

    def __init__(self, version: int, files: dict[str, bytes]) -> None:
        self.version, self.files, self.downloads = version, files, []
        self.active = self.most_at_once = 0

    async def relay(self, host, method, request, what, deadline=None, context=None):
        assert (host, method, request.op) == ("alpha", "VolumeCall", pb.VOLUME_MANIFEST)
        return pb.VolumeReply(version=self.version, manifest=[
            pb.VolumeChange(path=p, sha256=hashlib.sha256(d).hexdigest(), size=len(d)) for p, d in self.files.items()])

    def peer(self, host, what):
        return self, ()

    async def VolumeDownload(self, request: pb.VolumeRequest, metadata=()):  # noqa: N802 — the gRPC name
        self.downloads.append(request.path)
        self.active += 1
        self.most_at_once = max(self.most_at_once, self.active)
        data = self.files[request.path]
        for start in range(request.offset, len(data), 4):
            await asyncio.sleep(0)  # let the other streams run between chunks
            yield pb.VolumeChunk(data=data[start:start + 4])
        self.active -= 1
        yield pb.VolumeChunk(file=pb.VolumeFile(path=request.path, size=len(data),
                                                sha256=hashlib.sha256(data).hexdigest()))


def test_a_sync_fetches_each_missing_content_once_several_at_a_time_and_keeps_what_is_here(tmp_path):
    from remote_agent.replicas import PARALLEL_DOWNLOADS
    from remote_agent.volume_versions import Copy

    replica = _replica(tmp_path)
    root = replica.volumes.root / "ckpt"
    (root / "kept.bin").write_bytes(b"already here")
    files = {f"/part-{i}.bin": f"content {i}".encode() * 3 for i in range(6)}
    files.update({"/copy-of-0.bin": files["/part-0.bin"], "/kept.bin": b"already here",
                  "/moved.bin": b"already here"})
    home = _HomeVolume(7, files)
    replica.routes = home  # type: ignore[assignment]
    copy = Copy(role="replica", home="alpha")
    assert asyncio.run(replica._pull("ckpt", copy, "alpha")) == 7
    assert sorted(home.downloads) == sorted(f"/part-{i}.bin" for i in range(6))  # each content once
    assert home.most_at_once == PARALLEL_DOWNLOADS
    for path, data in files.items():
        assert (root / path.lstrip("/")).read_bytes() == data, path
    assert copy.version == 7 and set(copy.files) == set(files)
    assert not any((replica.volumes.partials / "ckpt").iterdir())  # every download renamed into place


class _HomeStaging:
    """A home that stages uploaded content (VOLUME_STAT, VolumeUpload) and applies a commit (``relay``)."""

    self_name = "beta"  # the replica's host, as its routes know it

    def __init__(self) -> None:
        self.staged: dict[str, bytes] = {}
        self.applied: list[pb.VolumeRequest] = []
        self.active = self.most_at_once = 0

    def peer(self, host, what):
        return self, ()

    async def VolumeCall(self, request: pb.VolumeRequest, metadata=()):  # noqa: N802 — the gRPC name
        assert request.op == pb.VOLUME_STAT
        return pb.VolumeReply(file=pb.VolumeFile(exists=request.sha256 in self.staged))

    async def VolumeUpload(self, chunks, metadata=()):  # noqa: N802 — the gRPC name
        self.active += 1
        self.most_at_once = max(self.most_at_once, self.active)
        header, data = None, b""
        async for chunk in chunks:
            await asyncio.sleep(0)  # let the other streams run between chunks
            if chunk.HasField("file"):
                header = chunk.file
            else:
                data += chunk.data
        assert header is not None and header.stage and hashlib.sha256(data).hexdigest() == header.sha256
        self.staged[header.sha256] = data
        self.active -= 1
        return pb.VolumeReply()

    async def relay(self, host, method, request, what, deadline=None, context=None):
        assert (host, method, request.op) == ("alpha", "VolumeCall", pb.VOLUME_APPLY)
        self.applied.append(request)
        return pb.VolumeReply(version=request.base_version + 1)


def test_a_commit_uploads_each_changed_content_once_several_at_a_time_then_asks_the_home_to_apply(tmp_path):
    from remote_agent.replicas import PARALLEL_DOWNLOADS
    from remote_agent.volume_versions import Copy

    replica = _replica(tmp_path)
    root = replica.volumes.root / "ckpt"
    written = {f"shard-{i}.pt": f"weights {i}".encode() for i in range(6)}
    written["shard-0-again.pt"] = written["shard-0.pt"]
    for path, data in written.items():
        (root / path).write_bytes(data)
    home = _HomeStaging()
    replica.routes = home  # type: ignore[assignment]
    copy = Copy(role="replica", home="alpha", version=3)
    asyncio.run(replica._push("ckpt", copy, "alpha"))
    assert sorted(home.staged.values()) == sorted(set(written.values()))  # each content once
    assert home.most_at_once == PARALLEL_DOWNLOADS
    [apply] = home.applied
    assert apply.base_version == 3 and apply.from_host == "beta"
    assert sorted(c.path for c in apply.changes) == sorted("/" + p for p in written)
    assert set(copy.files) == {"/" + p for p in written} and not copy.pending
