"""Sandbox parts in process: the file helper's path rules, the entrypoint's output buffer, block_network's
refusal without bubblewrap and its own bwrap (and zygote), the client's streams and files."""

from __future__ import annotations

import asyncio
import io
import os
from pathlib import Path

import pytest

from nbmodal.file_io import FileIO
from nbmodal.io_streams import StreamReader
from nbmodal_wire import pb
from remote_agent.launch import LaunchPlan, SandboxConfig
from remote_agent.request_errors import RequestError
from remote_agent.sandboxes import OutputBuffer, SandboxManager
from remote_agent.worker import sandbox_files
from remote_agent.worker.sandbox_files import Refused, resolve

pytestmark = pytest.mark.unit


def test_paths_resolve_within_the_sandboxs_own_directories(tmp_path):
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    roots = [str(work)]  # (tmp_path is under /tmp: a root of /tmp would hold the whole test)
    assert resolve("sub/x.txt", str(work), roots, None) == str(work / "sub" / "x.txt")
    assert resolve("/tmp/a", str(work), ["/tmp"], None) == "/tmp/a"
    with pytest.raises(Refused):
        resolve("../sibling", str(work), roots, None)
    with pytest.raises(Refused, match="outside the sandbox's own files"):
        resolve("../../etc/passwd", str(work), roots, None)
    with pytest.raises(Refused):
        resolve("/tmp/../etc", str(work), ["/tmp"], None)
    os.symlink("/etc", work / "out")
    with pytest.raises(Refused, match="resolves to /etc/hosts"):
        resolve("out/hosts", str(work), roots, None)
    # With a root of its own, a new top-level directory is the sandbox's; the host's ones are not.
    host_top = sorted(os.listdir("/"))
    assert resolve("/data-x/y", str(work), roots, host_top) == "/data-x/y"
    for path in ("/etc/passwd", "/proc/1", "/root/.nbmodal"):
        with pytest.raises(Refused):
            resolve(path, str(work), roots, host_top)


def test_the_file_helper_reads_writes_lists_and_reports_failures(tmp_path, capsys):
    request = {"workdir": str(tmp_path), "roots": [str(tmp_path)], "own_top": None}
    out = io.BytesIO()
    sandbox_files.run({**request, "op": "write", "path": "a.txt"}, io.BytesIO(b"data"), out)
    sandbox_files.run({**request, "op": "read", "path": "a.txt"}, io.BytesIO(), out)
    sandbox_files.run({**request, "op": "ls", "path": "."}, io.BytesIO(), out)
    assert out.getvalue() == b"dataa.txt\n"
    assert sandbox_files.main(["x", '{"op": "read", "path": "/etc/passwd", "roots": ["/nowhere"]}']) == 2
    assert '"type": "OutsideSandbox"' in capsys.readouterr().err


def test_the_output_buffer_serves_readers_from_any_offset_and_drops_the_oldest():
    async def main() -> None:
        buffer = OutputBuffer(kept=8)
        buffer.append(b"0123")
        follower = asyncio.create_task(_collect(buffer.read(0, follow=True)))
        await asyncio.sleep(0)
        buffer.append(b"456789")
        buffer.close()
        assert await follower == b"0123456789"
        assert await _collect(buffer.read(0, follow=False)) == b"23456789"  # 2 bytes dropped
        assert await _collect(buffer.read(7, follow=True)) == b"789"

    asyncio.run(main())


async def _collect(chunks) -> bytes:
    return b"".join([chunk async for chunk in chunks])


def test_block_network_is_refused_without_bubblewrap(tmp_path):
    async def main() -> None:
        manager = SandboxManager(pool=None, apply_secrets=lambda request: None, secret_env=lambda names: {},
                                 image_workdir=lambda image: "", own_root=False, scratch_dir=tmp_path)
        with pytest.raises(RequestError, match="block_network=True needs bubblewrap.*refused rather than run"):
            await manager.create(pb.SandboxCreateRequest(spec=pb.ContainerSpec(block_network=True)))
        with pytest.raises(RequestError, match="no sandbox 'sb-x'"):
            manager.get("sb-x")

    asyncio.run(main())


def test_block_network_gets_its_own_network_namespace_and_zygote():
    config = SandboxConfig(available=True, hidden=[], shown=[])
    networked, isolated = config.outer_argv(host_tmp=False), config.outer_argv(host_tmp=False, network=False)
    assert "--unshare-net" in isolated and "--unshare-net" not in networked
    plans = [LaunchPlan(python="py", image_id="im", outer_argv=argv) for argv in (networked, isolated)]
    assert plans[0].zygote_key != plans[1].zygote_key


def test_stream_reader_lines_and_read():
    reader: StreamReader = StreamReader(1)
    for piece in (b"one\ntw", b"o\nth", "r\u00e9e".encode()[:3], "r\u00e9e".encode()[3:]):
        reader._feed(piece)
    reader._close()
    assert list(reader) == ["one\n", "two\n", "thr\u00e9e"]
    raw: StreamReader = StreamReader(2, text=False)
    raw._feed(b"\x00\n")
    raw._close()
    assert raw.read() == b"\x00\n"


def test_file_io_modes(tmp_path):
    stored: dict[str, bytes] = {"f": b"abc"}

    def handle(mode: str) -> FileIO:
        return FileIO("f", mode, read=lambda: stored.get("f"), write=lambda data: stored.__setitem__("f", data))

    assert handle("r").read() == "abc"
    with handle("a") as f:
        f.write("def")
    assert stored["f"] == b"abcdef"
    with handle("r+b") as f:
        f.seek(1)
        f.write(b"X")
    assert stored["f"] == b"aXcdef"
    with pytest.raises(FileExistsError):
        handle("x")
    with pytest.raises(TypeError, match="takes bytes"):
        handle("wb").write("text")
    with pytest.raises(io.UnsupportedOperation):
        handle("r").write("no")
    with pytest.raises(ValueError, match="invalid mode"):
        handle("rw")
    stored.clear()
    with pytest.raises(FileNotFoundError):
        handle("r")
    handle("w").close()
    assert stored["f"] == b""
    assert Path(tmp_path).exists()
