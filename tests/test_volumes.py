"""Volumes: the Modal API, mounts in containers, checked and resumable transfers, escapes refused."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import textwrap
import time

import pytest
from kernels import kernel

import nbmodal
from nbmodal._runtime.connection import storage_connection
from nbmodal._runtime.local_agent import read_agent_json
from nbmodal.volume import CHUNK_BYTES, file_sha256, upload_file
from nbmodal_wire import pb

pytestmark = pytest.mark.agent


def test_volume_api(vol, tmp_path):
    (tmp_path / "a.txt").write_text("alpha")
    (tmp_path / "tree" / "sub").mkdir(parents=True)
    (tmp_path / "tree" / "sub" / "b.txt").write_text("beta")
    with vol.batch_upload() as batch:
        batch.put_file(tmp_path / "a.txt", "/a.txt")
        batch.put_directory(tmp_path / "tree", "/tree")
    top = {e.path: e for e in vol.listdir("/")}
    assert set(top) == {"/a.txt", "/tree"} and top["/a.txt"].type == "file" and top["/a.txt"].size == 5
    assert top["/tree"].type == "directory" and top["/a.txt"].mtime > 0
    assert [e.path for e in vol.listdir("/", recursive=True)] == ["/a.txt", "/tree", "/tree/sub", "/tree/sub/b.txt"]
    assert b"".join(vol.read_file("/tree/sub/b.txt")) == b"beta"
    buffer = io.BytesIO()
    assert vol.read_file_into_fileobj("a.txt", buffer) == 5 and buffer.getvalue() == b"alpha"
    vol.copy_files(["/a.txt", "/tree/sub/b.txt"], "/copies/")
    assert sorted(e.path for e in vol.listdir("/copies")) == ["/copies/a.txt", "/copies/b.txt"]
    with pytest.raises(ValueError, match="non-empty directory: pass recursive=True"):
        vol.remove_file("/tree")
    vol.remove_file("/tree", recursive=True)
    with pytest.raises(nbmodal.NotFoundError, match="no file or directory '/tree'"):
        vol.listdir("/tree")
    vol.commit()
    vol.reload()
    new_name = vol.name + "-renamed"
    nbmodal.Volume.rename(vol.name, new_name)
    assert [e.path for e in nbmodal.Volume.from_name(new_name).listdir("/copies")] == ["/copies/a.txt",
                                                                                      "/copies/b.txt"]
    nbmodal.Volume.delete(new_name)
    with pytest.raises(nbmodal.NotFoundError, match=f"no volume named '{new_name}'"):
        nbmodal.Volume.from_name(new_name)
    with nbmodal.Volume.ephemeral() as scratch:
        scratch_name = scratch.name
        assert scratch.listdir() == []
    with pytest.raises(nbmodal.NotFoundError):
        nbmodal.Volume.from_name(scratch_name)


def test_mounted_in_containers_and_writes_visible_after_the_run_also_after_a_timeout(vol, tmp_path):
    with kernel(tmp_path) as k:
        wrote = k.execute(f"%%remote volumes={vol.name}:/ckpt\nopen('/ckpt/step1.txt', 'w').write('one')\n"
                          "import os\nseen = sorted(os.listdir('/ckpt'))")
        assert wrote["error"] is None, wrote
        timed_out = k.execute(textwrap.dedent(f"""
            %%remote volumes={vol.name}:/ckpt timeout=1
            import time
            with open('/ckpt/partial.txt', 'w') as f:
                f.write('saved before the timeout')
            time.sleep(30)
        """))
        assert timed_out["error"]["ename"] == "TimeoutError"
        bad = k.execute("%%remote volumes=ckpt:relative/path\n1")
        assert "mount path 'relative/path' must be an absolute path" in bad["stderr"]
        bad = k.execute(f"%%remote volumes={vol.name}:/usr/lib\n1")
        assert "can't mount over the system path /usr/lib" in bad["stderr"]
        unknown = k.execute("%%remote volumes=no-such-volume:/data\n1")
        assert "no volume named 'no-such-volume'" in unknown["error"]["evalue"]
    assert b"".join(vol.read_file("/step1.txt")) == b"one"
    assert b"".join(vol.read_file("/partial.txt")) == b"saved before the timeout"

    @nbmodal.App("volumes").function(volumes={"/data": vol})
    def read_back():
        import os

        return sorted(os.listdir("/data")), open("/data/step1.txt").read()

    assert read_back.remote() == (["partial.txt", "step1.txt"], "one")


def test_traversal_and_symlink_escapes_are_refused(vol, tmp_path):
    @nbmodal.App("volumes").function(volumes={"/v": vol})
    def plant_escape():
        import os

        os.symlink("/etc", "/v/escape")
        os.makedirs("/v/inner", exist_ok=True)
        os.symlink("/v/inner", "/v/inside-link")  # dangling outside the container: resolves out of the volume

    plant_escape.remote()
    (tmp_path / "f").write_text("x")
    for path in ("../outside", "/a/../../etc/passwd", "a\x00b"):
        with pytest.raises(ValueError, match=r"'\.\.' is not allowed|NUL byte"):
            vol.listdir(path)
        with pytest.raises(ValueError):
            upload_file(vol, tmp_path / "f", path)
    for path in ("/escape", "/escape/passwd"):
        with pytest.raises(ValueError, match="leads outside volume"):
            vol.listdir(path)
        with pytest.raises(ValueError, match="leads outside volume"):
            b"".join(vol.read_file(path))
    with pytest.raises(ValueError, match="leads outside volume"):
        upload_file(vol, tmp_path / "f", "/escape/planted")
    assert not os.path.exists("/etc/planted")


def test_bad_names_are_refused(tmp_path):
    for bad in ("", "has space", "a/b", "x" * 65):
        with pytest.raises(ValueError, match="use 1-64 characters"):
            nbmodal.Volume.from_name(bad, create_if_missing=True)


def test_a_gib_file_up_and_down_with_checksums_and_flat_agent_memory(vol, tmp_path):
    source = tmp_path / "big.bin"
    block = os.urandom(CHUNK_BYTES)
    with open(source, "wb") as f:
        for i in range(256):  # 1 GiB, each 4 MiB block different
            f.write(block[:-4] + i.to_bytes(4, "little"))
    before = _agent_rss_mib()
    assert upload_file(vol, source, "/big.bin") is True
    assert upload_file(vol, source, "/big.bin") is False  # the same content is already there: skipped
    target = tmp_path / "back.bin"
    with open(target, "wb") as f:
        assert vol.read_file_into_fileobj("/big.bin", f) == 2**30
    assert file_sha256(target) == file_sha256(source)
    assert _agent_rss_mib() - before < 100, "the agent held the file in memory"


def test_an_interrupted_upload_resumes(vol, tmp_path):
    source = tmp_path / "data.bin"
    source.write_bytes(os.urandom(5 * CHUNK_BYTES + 123))
    sha = file_sha256(source)
    client = storage_connection().client()

    partial = read_agent_json().state_dir / "volumes" / ".partial" / vol.name / sha

    def first_two_chunks_then_fail():
        yield pb.VolumeChunk(file=pb.VolumeFile(name=vol.name, path="/data.bin", size=source.stat().st_size,
                                                sha256=sha, offset=0))
        with open(source, "rb") as f:
            yield pb.VolumeChunk(data=f.read(CHUNK_BYTES))
            yield pb.VolumeChunk(data=f.read(CHUNK_BYTES))
        deadline = time.monotonic() + 20  # the link drops once the agent has written some of it
        while (not partial.exists() or partial.stat().st_size == 0) and time.monotonic() < deadline:
            time.sleep(0.01)
        raise ConnectionError("the link dropped")

    with pytest.raises(Exception):
        client.volume_upload(first_two_chunks_then_fail())
    state = client.volume_call(pb.VolumeRequest(op=pb.VOLUME_STAT, name=vol.name, path="/data.bin",
                                                sha256=sha)).file
    assert 0 < state.offset <= 2 * CHUNK_BYTES and not state.exists  # what arrived is kept, not visible
    assert vol.listdir() == []
    assert upload_file(vol, source, "/data.bin") is True
    assert hashlib.sha256(b"".join(vol.read_file("/data.bin"))).hexdigest() == sha


def test_volume_verbs_in_the_cli_and_the_magic(tmp_path):
    (tmp_path / "notes.txt").write_text("hello volume")

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "nbmodal.cli", "volume", *args], capture_output=True,
                              text=True, timeout=60, cwd=tmp_path)

    assert "ready" in cli("create", "cli-vol").stdout
    assert "uploaded" in cli("put", "cli-vol", "notes.txt", "/docs/").stdout
    assert "already there" in cli("put", "cli-vol", "notes.txt", "/docs/").stdout
    assert "/docs/notes.txt" in cli("ls", "cli-vol", "/docs").stdout
    assert "cli-vol" in cli("ls").stdout
    assert "downloaded" in cli("get", "cli-vol", "/docs/notes.txt", "copy.txt").stdout
    assert (tmp_path / "copy.txt").read_text() == "hello volume"
    with kernel(tmp_path) as k:
        assert "removed" in k.execute("%volume rm cli-vol /docs -r")["stdout"]
        assert "(empty)" in k.execute("%volume ls cli-vol")["stdout"]
        assert "deleted" in k.execute("%volume delete cli-vol")["stdout"]
    missing = cli("ls", "cli-vol")
    assert missing.returncode == 1 and "no volume named 'cli-vol'" in missing.stderr


def _agent_rss_mib() -> float:
    with open(f"/proc/{read_agent_json().pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def test_modal_keywords_and_aio_twins(tmp_path):
    import asyncio
    import warnings

    (tmp_path / "tree" / "sub").mkdir(parents=True)
    (tmp_path / "tree" / "top.txt").write_text("top")
    (tmp_path / "tree" / "sub" / "deep.txt").write_text("deep")

    async def use() -> tuple:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # version= and environment_name= warn once per process
            async with nbmodal.Volume.ephemeral(version=2, environment_name="main") as vol:
                async with vol.batch_upload() as batch:
                    batch.put_file(io.BytesIO(b"from a file object"), "/fileobj.txt", mode=0o644)
                    batch.put_directory(tmp_path / "tree", "/flat", recursive=False)
                listed = sorted([e.path async for e in vol.listdir.aio("/", recursive=True)])
                walked = sorted([e.path async for e in vol.iterdir.aio("/")])
                content = b"".join([chunk async for chunk in vol.read_file.aio("/fileobj.txt")])
                advanced: list[int] = []
                buffer = io.BytesIO()
                size = await vol.read_file_into_fileobj.aio("/fileobj.txt", buffer,
                                                            lambda advance=0, **_: advanced.append(advance))
                await vol.copy_files.aio(["/fileobj.txt"], "/copy.txt", recursive=False)
                await vol.remove_file.aio("/flat", recursive=True)
                await vol.commit.aio()
                await vol.reload.aio()
                after = sorted(e.path for e in vol.listdir("/"))
        return listed, walked, content, size, sum(advanced), after

    listed, walked, content, size, advanced, after = asyncio.run(use())
    assert listed == ["/fileobj.txt", "/flat", "/flat/top.txt"]  # recursive=False left sub/ out
    assert walked == listed and content == b"from a file object" and size == advanced == len(content)
    assert after == ["/copy.txt", "/fileobj.txt"]
    name = f"v-{os.urandom(3).hex()}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nbmodal.Volume.from_name(name, create_if_missing=True, version=2, environment_name="main")
        assert nbmodal.Volume.lookup(name).hydrate().name == name
    asyncio.run(nbmodal.Volume.rename.aio(name, name + "-b"))
    nbmodal.Volume.delete(name + "-b")
    nbmodal.Volume.delete(name + "-b", allow_missing=True)
