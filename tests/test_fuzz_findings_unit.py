"""What the seeded fuzz found with FUZZ_N=200 (tests/test_fuzz_agent.py), each now a clear refusal:

- VOLUME_DELETE of a volume named '..' passed the name rule (letters, digits, '-', '_', '.') and
  ``rmtree(volumes/..)`` deleted the agent's whole state dir; '.' and '..' are no names now, and a volume
  name starting with '.' (the store's own ``.partial``) is refused;
- an image id with a NUL byte (SandboxCreate's ``spec.image``) raised ValueError, and one with '/' was a path;
- a 10 KiB container id (ContainerLogs) raised "File name too long".
"""

from __future__ import annotations

import pytest

from nbmodal_wire.names import InvalidNameError, check_name
from remote_agent.container_exec import log_path
from remote_agent.images import ImageNotFound, ImageStore, runtime_sources
from remote_agent.request_errors import RequestError
from remote_agent.storage import StoreError
from remote_agent.volumes import VolumeStore

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("name", [".", ".."])
def test_dot_and_dot_dot_are_no_names(name):
    for kind in ("Dict", "Queue", "volume", "secret"):
        with pytest.raises(InvalidNameError, match="names a directory"):
            check_name(kind, name)
    check_name("Dict", "v1.2")  # a dot inside a name is fine


@pytest.mark.parametrize("name", ["..", ".", ".partial", ".hidden"])
def test_no_volume_operation_reaches_outside_the_volume_store(tmp_path, name):
    state_dir = tmp_path / "agent"
    (state_dir / "volumes" / ".partial").mkdir(parents=True)
    (state_dir / "storage.db").write_text("the agent's data")
    store = VolumeStore(state_dir / "volumes")
    store.create("x")
    for operation in (store.delete, store.volume_dir, store.create, lambda n: store.rename(n, "y"),
                      lambda n: store.rename("x", n)):
        with pytest.raises(StoreError, match="is not allowed"):
            operation(name)
    assert (state_dir / "storage.db").read_text() == "the agent's data"
    assert (state_dir / "volumes" / ".partial").is_dir()


@pytest.mark.parametrize("image_id", ["nul\0byte", "../../agent", "a" * 10_240, ".hidden"])
def test_an_image_id_that_is_no_id_is_not_found_never_a_path(tmp_path, image_id):
    store = ImageStore(tmp_path / "images", runtime_sources())
    with pytest.raises(ImageNotFound, match="is not an image id"):
        store.get(image_id)


def test_a_container_id_too_long_for_a_file_name_is_refused(tmp_path):
    with pytest.raises(RequestError, match="is not a container id"):
        log_path(tmp_path, "a" * 10_240)


@pytest.mark.unit
@pytest.mark.parametrize("digest", ["x" * 10_240, "../../agent.json", "a\0b", "A" * 64, ""])
def test_image_file_digests_that_are_no_sha256_are_refused(tmp_path, digest):
    store = ImageStore(tmp_path / "images", runtime_sources())
    with pytest.raises(RequestError, match="is not a SHA-256 digest"):
        store.missing_files([digest])
    assert store.missing_files(["0" * 64]) == ["0" * 64]  # a well-formed digest of a file it lacks
