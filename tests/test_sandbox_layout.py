"""The container sandbox: bubblewrap's view of the host (sandbox.outer_argv) and the
worker's own mounts inside it (worker/mounts.enter), checked with a real bwrap."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from remote_agent import sandbox
from nbmodal_wire.frames import FrameSocket
from nbmodal_wire import pb
from remote_agent.worker import mounts

REPO = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.agent,
              pytest.mark.skipif(not sandbox.sandbox_available(), reason="bubblewrap can't sandbox here")]


def run_sandboxed(argv_prefix: list[str], code: str, **env: str) -> dict:
    """Run ``code`` under the sandbox; it leaves its findings in the dict ``out``, returned here."""
    script = "import json, os, sys\nout = {}\n" + textwrap.dedent(code) + "\nprint(json.dumps(out))\n"
    done = subprocess.run(argv_prefix + [sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO), **env}, cwd=REPO)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


CHECKS = """
def writable(path):
    try:
        with open(path, "w") as f:
            f.write("x")
        os.remove(path)
        return True
    except OSError as exc:
        return exc.strerror
"""


@pytest.fixture()
def state(tmp_path: Path) -> Path:
    """An agent state dir: a secret, a blob dir the sandbox shows writable, an images dir shown read-only."""
    state = tmp_path / "state"
    (state / "blobs").mkdir(parents=True)
    (state / "images").mkdir()
    (state / "secret.txt").write_text("token")
    (state / "images" / "layer.txt").write_text("image file")
    return state


def outer(state: Path) -> list[str]:
    return sandbox.outer_argv([str(state)], [(str(state / "blobs"), True), (str(state / "images"), False)])


def test_outer_argv_is_a_sandbox(state: Path) -> None:
    host_tmp_file = Path("/tmp") / f"nbmodal-host-{uuid.uuid4().hex}"
    host_tmp_file.write_text("host")
    try:
        out = run_sandboxed(outer(state), CHECKS + f"""
out["usr"] = writable("/usr/nbmodal-probe")
out["host_tmp_file"] = os.path.exists({str(host_tmp_file)!r})
out["tmp"] = writable("/tmp/probe")
out["secret"] = os.path.exists({str(state / "secret.txt")!r})
with open({str(state / "blobs" / "from-sandbox")!r}, "w") as f:
    f.write("blob")
out["image"] = open({str(state / "images" / "layer.txt")!r}).read()
out["image_writable"] = writable({str(state / "images" / "new.txt")!r})
out["resolv"] = open("/etc/resolv.conf").read() if os.path.exists("/etc/resolv.conf") else None
out["dev_null"] = open("/dev/null", "w").write("x") == 1
out["shm"] = writable("/dev/shm/probe")
out["pid_seen"] = os.path.exists(f"/proc/{os.getppid()}")
""")
    finally:
        host_tmp_file.unlink()
    assert out["usr"] == "Read-only file system"
    assert out["host_tmp_file"] is False and out["tmp"] is True  # /tmp is private
    assert out["secret"] is False  # the state dir is hidden...
    assert (state / "blobs" / "from-sandbox").read_text() == "blob"  # ...but for the dirs shown
    assert out["image"] == "image file" and out["image_writable"] == "Read-only file system"
    if os.path.exists("/etc/resolv.conf"):
        assert out["resolv"] == Path("/etc/resolv.conf").read_text()  # name resolution still works
    assert out["dev_null"] is True and out["shm"] is True and out["pid_seen"] is True


def test_user_dirs_are_writable_system_dirs_not(tmp_path: Path) -> None:
    argv = sandbox.outer_argv([], [])
    writable_top = [a for flag, a in zip(argv, argv[1:]) if flag == "--bind"]
    read_only_top = [a for flag, a in zip(argv, argv[1:]) if flag == "--ro-bind"]
    for path in ("/usr", "/etc", "/var", "/opt"):
        if os.path.isdir(path) and not os.path.islink(path):
            assert path in read_only_top
    for path in ("/home", "/root", "/mnt"):
        if os.path.isdir(path) and not os.path.islink(path):
            assert path in writable_top
    assert argv[-1] == "--" and "--die-with-parent" not in argv and "--unshare-net" not in argv


def test_enter_makes_the_layout_and_drops_capabilities(state: Path, tmp_path: Path) -> None:
    volume = state / "blobs" / "volume"  # reachable: under a shown dir
    volume.mkdir()
    (volume / "weights.bin").write_text("w")
    layout = {"sandboxed": True, "private_tmp": True, "gpu_devices": None,
              "binds": [[str(volume), "/ckpt", True], [str(state / "images"), "/image", False]]}
    out = run_sandboxed(outer(state), CHECKS + f"""
import ctypes, errno
with open("/tmp/before-enter", "w") as f:
    f.write("zygote's")
from remote_agent.worker import mounts
mounts.enter({layout!r})
out["ckpt"] = open("/ckpt/weights.bin").read()
out["ckpt_writable"] = writable("/ckpt/new")
with open("/ckpt/kept", "w") as f:
    f.write("k")
out["image"] = open("/image/layer.txt").read()
out["image_writable"] = writable("/image/new")
out["tmp"] = sorted(os.listdir("/tmp"))
out["tmp_writable"] = writable("/tmp/mine")
out["usr"] = writable("/usr/nbmodal-probe")
libc = ctypes.CDLL(None, use_errno=True)
out["unshare"] = libc.unshare(0x00020000) == 0 or errno.errorcode[ctypes.get_errno()]
out["mount"] = libc.mount(b"none", b"/ckpt", b"tmpfs", 0, None) == 0 or errno.errorcode[ctypes.get_errno()]
out["caps"] = [l.split()[1] for l in open("/proc/self/status") if l.startswith(("CapEff", "CapPrm", "CapBnd"))]
""")
    assert out["ckpt"] == "w" and out["ckpt_writable"] is True
    assert (volume / "kept").read_text() == "k"
    assert out["image"] == "image file" and out["image_writable"] == "Read-only file system"
    # A fresh /tmp: only the sandbox's own binds under it (the state dir lives under pytest's /tmp here,
    # and so may the agent's Python and sources).
    from remote_agent.sandbox import _runtime_paths

    shown_under_tmp = {Path(os.path.relpath(p, "/tmp")).parts[0] for p in [str(state), *_runtime_paths()]
                       if str(p).startswith("/tmp/")}
    assert out["tmp"] == sorted(shown_under_tmp) and out["tmp_writable"] is True
    assert out["usr"] == "Read-only file system"
    assert out["unshare"] == "EPERM" and out["mount"] == "EPERM"
    assert set(out["caps"]) == {"0000000000000000"}


def test_enter_refuses_a_mount_point_it_cannot_make(state: Path) -> None:
    layout = {"sandboxed": True, "binds": [[str(state / "blobs"), "/usr/share/nbmodal-volume", True]]}
    out = run_sandboxed(outer(state), f"""
from remote_agent.worker import mounts
from remote_agent.sandbox import MountError
try:
    mounts.enter({layout!r})
except MountError as exc:
    out["error"] = str(exc)
""")
    assert "/usr/share/nbmodal-volume" in out["error"] and "/data" in out["error"]


def test_enter_leaves_only_the_allocated_gpus(tmp_path: Path, state: Path) -> None:
    nodes = {}
    for name in ("nvidia0", "nvidia1", "nvidia2", "nvidiactl"):
        nodes[name] = tmp_path / name
        nodes[name].write_text(name)
    fake_devices = [arg for name, path in nodes.items() for arg in ("--ro-bind", str(path), f"/dev/{name}")]
    argv = outer(state)[:-1] + fake_devices + ["--"]  # stand-ins for the device nodes of a 3-GPU host
    out = run_sandboxed(argv, """
from remote_agent.worker import mounts
mounts.enter({"sandboxed": True, "gpu_devices": [1], "binds": []})
for name in ("nvidia0", "nvidia1", "nvidia2", "nvidiactl"):
    try:
        out[name] = open("/dev/" + name).read()
    except OSError as exc:
        out[name] = exc.strerror
out["scratch_left"] = os.path.exists("/tmp/denied")
""")
    assert out == {"nvidia0": "Permission denied", "nvidia1": "nvidia1", "nvidia2": "Permission denied",
                   "nvidiactl": "nvidiactl", "scratch_left": False}


def test_enter_without_the_sandbox_does_nothing() -> None:
    before = os.readlink("/proc/self/ns/mnt")
    mounts.enter({"sandboxed": False, "private_tmp": True, "binds": [["/nonexistent", "/ckpt", True]],
                  "gpu_devices": []})
    assert os.readlink("/proc/self/ns/mnt") == before and not os.path.exists("/ckpt")


def test_spawned_worker_applies_its_layout(state: Path) -> None:
    """python -m remote_agent.worker under the sandbox: NBMODAL_LAYOUT's mounts, then its workdir."""
    volume = state / "blobs" / "vol"
    volume.mkdir()
    layout = {"sandboxed": True, "private_tmp": True, "gpu_devices": None,
              "binds": [[str(volume), "/workspace", True]], "workdir": "/workspace"}
    parent, child = socket.socketpair()
    env = {**os.environ, "PYTHONPATH": str(REPO), "NBMODAL_LAYOUT": json.dumps(layout),
           "NBMODAL_OWN_PROCESS_GROUP": "1", "NBMODAL_BLOB_DIR": str(state / "blobs")}
    process = subprocess.Popen(outer(state) + [sys.executable, "-u", "-m", "remote_agent.worker", "--fd",
                                               str(child.fileno())],
                               pass_fds=(child.fileno(),), env=env, start_new_session=True)
    child.close()
    channel = FrameSocket(parent)
    try:
        parent.settimeout(30)
        assert channel.receive(pb.FromContainer).HasField("ready")
        code = "import os, sys\nprint(os.getcwd(), sys.path[0], os.environ.get('NBMODAL_LAYOUT'))\nopen('made', 'w')"
        channel.send(pb.ToContainer(execute=pb.Execute(run_id="r", kind=pb.CELL, code=code, filename="<cell>",
                                                       first_line=1)))
        output = b""
        while not (message := channel.receive(pb.FromContainer)).HasField("finished"):
            output += message.output.data
        assert message.finished.state == pb.SUCCEEDED, message.finished.error.traceback
        assert output.decode().split() == ["/workspace", "/workspace", "None"]
        assert (volume / "made").exists()
    finally:
        channel.close()
        process.wait(timeout=30)
