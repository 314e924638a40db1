"""The parts the agent's gRPC service delegates to, without a server: blobs, volume transfers,
queue wake-ups, host stats, and how a refusal reaches the notebook (``NotFoundError``, not ``KeyError``)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from types import SimpleNamespace

import grpc
import pytest

from nbmodal._runtime.client import translate_rpc_error
from nbmodal.exceptions import NotFoundError
from nbmodal_wire import pb
from remote_agent import request_errors
from remote_agent.blobstore import STALE_AFTER_S, BlobNotFound, BlobStore
from remote_agent.hoststats import host_stats, read_meminfo
from remote_agent.images import ImageBusy, ImageError, ImageNotFound
from remote_agent.service import STATUS_FOR
from remote_agent.storage import AsyncStorage, StoreError
from remote_agent.volume_transfer import VolumeTransfers
from remote_agent.volumes import CHUNK_BYTES, VolumeStore

pytestmark = pytest.mark.unit


async def _pieces(*pieces):
    for piece in pieces:
        yield piece


async def _collect(iterator) -> list:
    return [item async for item in iterator]


# -- blobs -------------------------------------------------------------------------


def test_a_blob_streams_in_and_out_and_can_be_removed_once_read(tmp_path):
    store = BlobStore(tmp_path / "blobs")
    blob_id, size = asyncio.run(store.put(_pieces(b"head", b"-", b"tail")))
    assert size == 9 and store.path(blob_id).read_bytes() == b"head-tail"
    assert b"".join(asyncio.run(_collect(store.get(blob_id)))) == b"head-tail"
    assert b"".join(asyncio.run(_collect(store.get(blob_id, delete=True)))) == b"head-tail"
    with pytest.raises(BlobNotFound, match=f"no blob '{blob_id}'") as missing:
        store.path(blob_id)
    assert missing.value.code == request_errors.NOT_FOUND
    assert not list(store.root.glob("*.partial"))


def test_a_blob_id_that_names_another_file_is_not_found(tmp_path):
    store = BlobStore(tmp_path / "blobs")
    (tmp_path / "secret").write_text("not a blob")
    for blob_id in ("../secret", "b-0123456789abcdef.partial", ""):
        with pytest.raises(BlobNotFound):
            store.path(blob_id)


def test_blobs_nobody_fetched_for_a_day_are_removed(tmp_path):
    store = BlobStore(tmp_path / "blobs")
    old_id, _ = asyncio.run(store.put(_pieces(b"old")))
    new_id, _ = asyncio.run(store.put(_pieces(b"new")))
    a_day_ago = time.time() - STALE_AFTER_S - 60
    os.utime(store.path(old_id), (a_day_ago, a_day_ago))
    assert store.remove_stale() == 1
    assert store.path(new_id).exists()
    with pytest.raises(BlobNotFound):
        store.path(old_id)


# -- volume transfers ----------------------------------------------------------------


def _upload(transfers: VolumeTransfers, path: str, content: bytes, offset: int = 0, sha256: str = "",
            pieces: int = 2) -> pb.VolumeFile:
    digest = sha256 or hashlib.sha256(content).hexdigest()
    rest = content[offset:]
    step = max(1, len(rest) // pieces)
    chunks = [pb.VolumeChunk(file=pb.VolumeFile(name="vol", path=path, sha256=digest, offset=offset))]
    chunks += [pb.VolumeChunk(data=rest[i:i + step]) for i in range(0, len(rest), step)]
    return asyncio.run(transfers.receive(_pieces(*chunks)))


@pytest.fixture()
def transfers(tmp_path) -> VolumeTransfers:
    volumes = VolumeStore(tmp_path / "volumes")
    volumes.create("vol")
    return VolumeTransfers(volumes, asyncio.to_thread)


def test_an_interrupted_upload_resumes_at_the_byte_it_stopped(transfers):
    content = os.urandom(3 * 1024 + 17)
    digest = hashlib.sha256(content).hexdigest()
    partial = transfers.volumes.partial_path("vol", digest)
    partial.write_bytes(content[:1000])  # what a cut-off upload left
    assert transfers.volumes.stat_for_upload("vol", "/data.bin", digest) == (False, 0, 1000, "")

    with pytest.raises(StoreError, match="resumes at byte 1000, not 0") as wrong_offset:
        _upload(transfers, "/data.bin", content, offset=0)
    assert wrong_offset.value.code == request_errors.CONFLICT

    done = _upload(transfers, "/data.bin", content, offset=1000)
    assert done.size == len(content) and done.sha256 == digest
    assert transfers.volumes.resolve("vol", "/data.bin").read_bytes() == content
    assert not partial.exists()
    assert transfers.volumes.stat_for_upload("vol", "/data.bin", digest)[0]  # there already: skipped next time


def test_an_upload_whose_checksum_differs_is_refused_and_never_visible(transfers):
    with pytest.raises(StoreError, match="checksum mismatch for '/bad.bin'") as mismatch:
        _upload(transfers, "/bad.bin", b"what arrived", sha256=hashlib.sha256(b"what was meant").hexdigest())
    assert mismatch.value.code == request_errors.CORRUPT
    assert not transfers.volumes.resolve("vol", "/bad.bin").exists()


def test_an_upload_must_name_its_file_and_stay_inside_the_volume(transfers):
    with pytest.raises(StoreError, match="names its file"):
        asyncio.run(transfers.receive(_pieces()))
    with pytest.raises(StoreError, match="outside the volume") as outside:
        _upload(transfers, "/../escape.bin", b"x")
    assert outside.value.code == request_errors.INVALID


def test_a_download_from_an_offset_ends_with_the_whole_files_checksum(transfers):
    content = os.urandom(2 * CHUNK_BYTES + 5)
    _upload(transfers, "/big.bin", content, pieces=3)
    chunks = asyncio.run(_collect(transfers.send("vol", "/big.bin", offset=CHUNK_BYTES)))
    *data, last = chunks
    assert b"".join(c.data for c in data) == content[CHUNK_BYTES:]
    assert last.file.size == len(content) and last.file.sha256 == hashlib.sha256(content).hexdigest()
    with pytest.raises(StoreError, match="no file '/nothing'") as missing:
        asyncio.run(_collect(transfers.send("vol", "/nothing")))
    assert missing.value.code == request_errors.NOT_FOUND


# -- queue wake-ups ------------------------------------------------------------------


async def _until_blocked(storage: AsyncStorage, queue: str) -> None:
    """Wait until a get or put of ``queue`` waits for a change (it checked first, on the storage thread)."""
    deadline = time.monotonic() + 10
    while not storage._changed.get(queue):
        assert time.monotonic() < deadline, f"nothing blocked on queue {queue!r}"
        await asyncio.sleep(0.001)


def test_deleting_a_queue_wakes_a_getter_blocked_on_it(tmp_path):
    async def scenario() -> None:
        storage = AsyncStorage(tmp_path / "storage.db")
        try:
            await storage.call("create", "queue", "jobs", False)
            getter = asyncio.ensure_future(storage.queue_get("jobs", "", 1, True, 0))  # waits for ever
            await _until_blocked(storage, "jobs")
            await storage.delete("queue", "jobs")
            with pytest.raises(StoreError, match="no queue named 'jobs'"):
                await asyncio.wait_for(getter, 10)
        finally:
            storage.close()

    asyncio.run(scenario())


def test_clearing_a_queue_wakes_a_putter_waiting_for_room(tmp_path, monkeypatch):
    monkeypatch.setattr("remote_agent.storage.QUEUE_PARTITION_MAX_ITEMS", 1)

    async def scenario() -> None:
        storage = AsyncStorage(tmp_path / "storage.db")
        try:
            await storage.call("create", "queue", "jobs", False)
            assert await storage.queue_put("jobs", "", [b"first"], False, 0)
            putter = asyncio.ensure_future(storage.queue_put("jobs", "", [b"second"], True, 0))
            await _until_blocked(storage, "jobs")
            assert not putter.done()
            await storage.queue_clear("jobs", "", False)
            assert await asyncio.wait_for(putter, 10)
            assert await storage.call("queue_get", "jobs", "", 5, False) == [b"second"]
        finally:
            storage.close()

    asyncio.run(scenario())


# -- host stats ----------------------------------------------------------------------


def test_meminfo_sizes_are_bytes_and_counts_stay_counts(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       16318412 kB\nMemAvailable:    8000000 kB\nHugePages_Total:       4\n"
                       "Broken:\n")
    assert read_meminfo(str(meminfo)) == {"MemTotal": 16318412 * 1024, "MemAvailable": 8000000 * 1024,
                                          "HugePages_Total": 4}
    assert read_meminfo(str(tmp_path / "absent")) == {}
    stats = host_stats()
    assert stats.cpus >= 1 and stats.load1 >= 0


# -- refusals on the wire -------------------------------------------------------------


def test_every_kind_of_refusal_has_a_status_and_each_store_says_its_kind():
    assert set(STATUS_FOR) == set(request_errors.CODES)
    assert StoreError(request_errors.NOT_FOUND, "gone").code == request_errors.NOT_FOUND
    assert ImageError("bad step").code == request_errors.INVALID
    assert ImageNotFound("no such image").code == request_errors.NOT_FOUND
    assert ImageBusy("building").code == request_errors.CONFLICT
    with pytest.raises(ValueError, match="unknown refusal code"):
        request_errors.RequestError("?", "teapot")


class _RpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def test_not_found_on_the_agent_is_a_not_found_error_never_a_key_error():
    client = SimpleNamespace(label="local agent", address=SimpleNamespace(pid=1, port=2, state_dir="/tmp"))
    error = translate_rpc_error(_RpcError(grpc.StatusCode.NOT_FOUND, "no dict named 'x' on this host"), client)
    assert isinstance(error, NotFoundError) and not isinstance(error, KeyError)
    assert str(error) == "no dict named 'x' on this host"  # no quotes, as a KeyError would add
    assert isinstance(translate_rpc_error(_RpcError(grpc.StatusCode.INVALID_ARGUMENT, "bad"), client), ValueError)
