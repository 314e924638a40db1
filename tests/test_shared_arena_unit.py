"""Large values through a writer's shared arena (nbmodal_wire/shared_arena.py): placed, leased, given back."""

from __future__ import annotations

import errno
import gc
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from blobvalues import MIB, random_array, write_value

from nbmodal_wire import blobs, shared_arena
from remote_agent.blobstore import BlobStore

pytestmark = pytest.mark.unit



@pytest.fixture(autouse=True)
def _small_arena(monkeypatch):
    monkeypatch.setenv("NBMODAL_ARENA", "1")
    monkeypatch.setenv("NBMODAL_ARENA_MAX_BYTES", str(256 * MIB))
    monkeypatch.setattr(shared_arena, "_writers", {})
    monkeypatch.setattr(shared_arena, "_reader", None)
    yield
    for writer in shared_arena._writers.values():
        writer.close()


def _segments(blob_dir: Path) -> list[str]:
    arena = blob_dir / shared_arena.ARENA_DIR
    return sorted(p.name for p in arena.iterdir()) if arena.exists() else []


def _in_arena(blob_dir: Path, value: np.ndarray) -> bool:
    """Whether ``value``'s memory is one of this process's (writer's) segments."""
    writer = shared_arena.writer_for(blob_dir)
    for segment in writer.segments:
        start = np.frombuffer(segment.map, dtype=np.uint8).ctypes.data
        if start <= value.ctypes.data < start + segment.size:
            return True
    return False


def _reader_segment_start(value: np.ndarray) -> int:
    for segment in shared_arena.reader().segments.values():
        start = np.frombuffer(segment.map, dtype=np.uint8).ctypes.data
        if start <= value.ctypes.data < start + segment.size:
            return value.ctypes.data - start
    raise AssertionError("not a view into a mapped segment")


def test_a_large_value_is_read_in_place_and_its_region_reused_once_released(tmp_path):
    path = write_value(tmp_path, random_array(1))
    assert path.stat().st_size < 4096  # the blob file holds only the pickle and the reference
    first = blobs.read_blob(path, delete=True)
    assert np.array_equal(first, random_array(1)) and first.flags.writeable
    offset = _reader_segment_start(first)
    assert offset % shared_arena.REGION_ALIGN == 0  # aligned: large folios, aligned arrays

    held = write_value(tmp_path, random_array(2))  # `first` still holds its region: the new value goes elsewhere
    assert np.array_equal(first, random_array(1)), "a writer overwrote a region a reader still holds"
    second = blobs.read_blob(held, delete=True)
    assert _reader_segment_start(second) != offset
    del first
    gc.collect()
    third = blobs.read_blob(write_value(tmp_path, random_array(3)), delete=True)
    assert _reader_segment_start(third) == offset  # given back: reused, no new memory
    assert np.array_equal(second, random_array(2)) and np.array_equal(third, random_array(3))
    assert len(_segments(tmp_path)) == 1


def test_a_receiver_may_mutate_its_value_and_the_writers_copy_is_untouched(tmp_path):
    source = random_array(1)
    value = blobs.read_blob(write_value(tmp_path, {"w": source, "step": 7}), delete=True)
    value["w"][:10] = -1.0
    assert value["step"] == 7 and value["w"][0] == -1.0 and source[0] != -1.0


def test_a_value_read_twice_is_held_until_both_copies_are_gone(tmp_path):
    path = write_value(tmp_path, random_array(1))
    one, two = blobs.read_blob(path), blobs.read_blob(path, delete=True)
    offset = _reader_segment_start(one)
    del one
    gc.collect()
    other = blobs.read_blob(write_value(tmp_path, random_array(2)), delete=True)
    assert _reader_segment_start(other) != offset and np.array_equal(two, random_array(1))


def test_a_segment_grows_to_fit_and_the_arena_stops_at_its_cap(tmp_path):
    held = [blobs.read_blob(write_value(tmp_path, random_array(seed, 40)), delete=True) for seed in range(3)]
    assert all(np.array_equal(v, random_array(i, 40)) for i, v in enumerate(held))
    writer = shared_arena.writer_for(tmp_path)
    assert writer.mapped <= 256 * MIB
    over = write_value(tmp_path, random_array(9, 100))  # no room under the cap while the others are held: a blob file
    assert over.stat().st_size > 100 * MIB
    assert np.array_equal(blobs.read_blob(over), random_array(9, 100))


@pytest.mark.parametrize("why", ["off", "small", "shared filesystem", "no arena dir", "disk full"])
def test_values_fall_back_to_whole_blob_files(tmp_path, monkeypatch, why):
    value = random_array(1, 16)
    if why == "off":
        monkeypatch.setenv("NBMODAL_ARENA", "0")
    elif why == "small":
        value = random_array(1, 4)  # over the inline limit, under the arena's threshold
    elif why == "shared filesystem":
        monkeypatch.setattr(blobs, "filesystem_type", lambda directory: "nfs4")
    elif why == "disk full":
        def no_space(fd, offset, length):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(shared_arena.os, "posix_fallocate", no_space)
    else:
        (tmp_path / shared_arena.ARENA_DIR).write_bytes(b"not a directory")
    path = write_value(tmp_path, value)
    assert path.stat().st_size >= value.nbytes
    assert np.array_equal(blobs.read_blob(path, delete=True), value)
    assert not (tmp_path / shared_arena.ARENA_DIR).is_dir() or _segments(tmp_path) == []  # none left half-made


_READER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from nbmodal_wire import blobs
    value = blobs.read_blob(Path(sys.argv[1]), delete=True)
    print(float(value[0]), flush=True)
    sys.stdin.read()  # holds the value until killed
""")


def test_a_dead_readers_regions_are_given_back(tmp_path):
    path = write_value(tmp_path, random_array(1))
    reader = subprocess.Popen([sys.executable, "-c", _READER, str(path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert float(reader.stdout.readline()) == random_array(1)[0]  # leased, and its blob file is gone
        writer = shared_arena.writer_for(tmp_path)
        (segment,) = writer.segments
        assert segment.live_regions(), "held by the reader"
        segment.reclaim(tmp_path)
        assert segment.live_regions(), "reclaimed while a live reader holds it"
    finally:
        reader.kill()
        reader.wait()
    segment.reclaim(tmp_path)
    assert segment.live_regions() == []  # the kernel dropped the dead reader's lock
    again = blobs.read_blob(write_value(tmp_path, random_array(2)), delete=True)
    assert np.array_equal(again, random_array(2)) and len(writer.segments) == 1


_WRITER = textwrap.dedent("""
    import os, pickle, sys
    from pathlib import Path
    import numpy as np
    from nbmodal_wire import blobs
    value = np.full((16 << 20) // 8, 3.0)
    blobs.write_blob(Path(sys.argv[1]), blobs.encode(value, lambda v, buffer_callback=None: pickle.dumps(
        v, protocol=5, buffer_callback=buffer_callback)))
    os._exit(0)  # no exit hooks: as a container the agent killed
""")


def test_a_gone_writers_segment_lives_until_its_last_value_is_released(tmp_path):
    path = tmp_path / blobs.new_blob_id()
    subprocess.run([sys.executable, "-c", _WRITER, str(path)], check=True)
    (segment,) = _segments(tmp_path)
    assert shared_arena.sweep(tmp_path) == 0 and _segments(tmp_path) == [segment]  # its value is unread
    value = blobs.read_blob(path, delete=True)
    assert value[0] == 3.0 and _segments(tmp_path) == [segment]
    del value
    gc.collect()
    assert _segments(tmp_path) == []  # the last reader out removed it


def test_a_writer_gives_back_idle_segments_and_removes_its_own_at_exit(tmp_path, monkeypatch):
    monkeypatch.setenv("NBMODAL_ARENA_IDLE_S", "0")
    value = blobs.read_blob(write_value(tmp_path, random_array(1)), delete=True)
    writer = shared_arena.writer_for(tmp_path)
    writer.trim()
    assert len(writer.segments) == 1  # still held
    del value
    gc.collect()
    writer.trim()
    assert writer.segments == [] and _segments(tmp_path) == []
    kept = write_value(tmp_path, random_array(2))
    writer.close()
    assert len(_segments(tmp_path)) == 1  # an unread value's segment stays for its reader
    assert np.array_equal(blobs.read_blob(kept, delete=True), random_array(2))


def test_a_value_whose_blob_file_went_unread_is_reclaimed_and_reports_itself_gone(tmp_path):
    path = write_value(tmp_path, random_array(1))
    content = path.read_bytes()
    path.unlink()  # removed without being read (a run that failed before its container read its argument)
    (segment,) = shared_arena.writer_for(tmp_path).segments
    segment.reclaim(tmp_path)
    assert segment.live_regions() == []
    with pytest.raises(shared_arena.ArenaGone):
        blobs.decode_blob_bytes(memoryview(content), tmp_path)


def test_a_client_on_another_machine_gets_the_whole_value(tmp_path):
    import asyncio

    value = {"w": random_array(1), "b": random_array(2, 9)}
    path = write_value(tmp_path, value)
    store = BlobStore(tmp_path)

    async def fetch() -> bytes:
        return b"".join([chunk async for chunk in store.get(path.name, delete=True)])

    content = asyncio.run(fetch())
    decoded = blobs.decode_blob_bytes(memoryview(content))  # no arena needed to read it
    assert np.array_equal(decoded["w"], value["w"]) and np.array_equal(decoded["b"], value["b"])
    assert not path.exists()
    gc.collect()
    (segment,) = shared_arena.writer_for(tmp_path).segments
    segment.reclaim(tmp_path)
    assert segment.live_regions() == []


def test_sweep_removes_ownerless_segments_nobody_holds_and_is_safe_on_others(tmp_path):
    owned = write_value(tmp_path, random_array(1))
    junk = tmp_path / shared_arena.ARENA_DIR / "s-0000000000000000"
    junk.write_bytes(b"")  # a writer died creating it
    assert shared_arena.sweep(tmp_path) == 1
    assert _segments(tmp_path) != [] and junk.name not in _segments(tmp_path)
    assert np.array_equal(blobs.read_blob(owned, delete=True), random_array(1))
    assert os.stat(tmp_path / shared_arena.ARENA_DIR).st_mode & 0o077 == 0  # private, as the blob dir is
