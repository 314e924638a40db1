"""Modal's Sandbox API on the real local agent: exec streams and stdin, the entrypoint and its return code,
timeouts, terminate, files (and paths that escape), block_network, list/from_id/tags, and the errors of
an ended sandbox or a command that doesn't exist."""

from __future__ import annotations

import os
import socket
import sys

import pytest
from waiting import wait_for

import nbmodal
from nbmodal.exception import SandboxTerminatedError, SandboxTimeoutError
from nbmodal.sandbox import SandboxError, SandboxPathError
from remote_agent.sandbox import sandbox_available

pytestmark = pytest.mark.agent

# Whether the local agent's containers run in bubblewrap (then a sandbox has its own root, /tmp and network).
BUBBLEWRAP = sandbox_available() and os.environ.get("NBMODAL_SANDBOX", "1") != "0"


@pytest.fixture()
def sb(agent_address):
    sandbox = nbmodal.Sandbox.create(timeout=120)
    yield sandbox
    sandbox.terminate()


def _containers_of(sandbox) -> list:
    client = nbmodal._runtime.connection.get_client()
    return [c for c in client.list_containers() if c.sandbox_id == sandbox.object_id]


def test_exec_streams_in_order_with_stdin_echo_and_its_exit_code(sb):
    p = sb.exec("sh", "-c", "echo one; read a; echo two-$a >&2; cat; exit 3")
    out, err = iter(p.stdout), iter(p.stderr)
    assert next(out) == "one\n"
    assert p.poll() is None and p.returncode is None  # it waits for its stdin
    p.stdin.write("A\n")
    p.stdin.drain()
    assert next(err) == "two-A\n"
    p.stdin.write(b"echoed by cat\n")
    p.stdin.write_eof()
    assert next(out) == "echoed by cat\n"
    assert p.wait() == 3 and p.returncode == 3 and p.poll() == 3
    assert list(out) == [] and p.stderr.read() == ""
    binary = sb.exec("printf", "\\x00\\x01", text=False)
    assert binary.stdout.read() == b"\x00\x01" and binary.wait() == 0


def test_a_command_that_does_not_exist_exits_127_and_says_so(sb):
    p = sb.exec("no-such-command-here", "x")
    assert p.wait() == 127
    assert "no-such-command-here" in p.error


def test_the_entrypoint_gives_the_sandbox_its_streams_stdin_and_return_code(agent_address):
    sandbox = nbmodal.Sandbox.create("sh", "-c", "read x; echo got-$x; echo warned >&2; exit 5", timeout=60)
    assert sandbox.returncode is None
    sandbox.stdin.write("hi\n")
    sandbox.stdin.write_eof()
    sandbox.wait()  # it finished by itself: no error
    assert sandbox.returncode == 5 and sandbox.poll() == 5
    assert sandbox.stdout.read() == "got-hi\n" and sandbox.stderr.read() == "warned\n"
    assert not _containers_of(sandbox)  # its container is gone (what it held released)


def test_timeout_and_idle_timeout_end_it(agent_address):
    timed = nbmodal.Sandbox.create(timeout=1)
    with pytest.raises(SandboxTimeoutError, match="timeout=1s"):
        timed.wait()
    assert timed.returncode == 124
    idle = nbmodal.Sandbox.create(idle_timeout=2, timeout=60)
    assert idle.exec("sleep", "3").wait() == 0  # a running exec keeps it up past its idle_timeout
    assert idle.poll() is None
    with pytest.raises(SandboxTimeoutError, match="idle_timeout=2s"):
        idle.wait()
    assert idle.returncode == 124


def test_terminate_ends_it_its_processes_and_its_container(agent_address):
    sandbox = nbmodal.Sandbox.create(cpu=1, timeout=120)
    assert [c.kind for c in _containers_of(sandbox)] == ["sandbox"]
    p = sandbox.exec("sleep", "100")
    sandbox.terminate()
    with pytest.raises(SandboxTerminatedError, match="terminate"):
        sandbox.wait()
    assert sandbox.returncode == 137
    assert p.wait() == 137 and "ended" in p.error
    wait_for(lambda: not _containers_of(sandbox), 30, "the sandbox's container to go")
    with pytest.raises(SandboxError, match=f"{sandbox.object_id}.*has ended.*terminated"):
        sandbox.exec("ls")


def test_files_open_ls_mkdir_rm_and_paths_that_escape(sb, agent_address):
    with sb.open("notes.txt", "w") as f:
        f.write("hello\n")
    with sb.open("notes.txt", "a") as f:
        f.write("more\n")
    assert sb.open("notes.txt").read() == "hello\nmore\n"
    assert sb.exec("cat", "notes.txt").stdout.read() == "hello\nmore\n"  # the sandbox's own commands see it
    with sb.open("data.bin", "wb") as f:
        f.write(b"\x00\xff")
    assert sb.open("data.bin", "rb").read() == b"\x00\xff"
    if BUBBLEWRAP:  # its own /tmp and root (without bubblewrap those are the host's, and refused)
        with sb.open("/tmp/t.txt", "w") as f:
            f.write("tmp")
        sb.mkdir("/work-area/x", parents=True)
        assert "t.txt" in sb.ls("/tmp") and sb.ls("/work-area") == ["x"]
        sb.rm("/work-area", recursive=True)
    sb.mkdir("deep/a/b", parents=True)
    sb.mkdir("sub")
    sb.rm("data.bin")
    assert sb.ls(".") == ["deep", "notes.txt", "sub"] and sb.ls("deep/a") == ["b"]
    with pytest.raises(FileNotFoundError):
        sb.open("missing.txt")
    with pytest.raises(FileExistsError):
        sb.mkdir("sub")
    sb.rm("notes.txt")
    sb.rm("deep", recursive=True)
    assert sb.ls(".") == ["sub"]
    with pytest.raises(SandboxPathError, match="outside the sandbox's own files"):
        sb.open("../../etc/passwd").read()
    with pytest.raises(SandboxPathError):
        sb.ls("/tmp/../root")
    # A symlink out of its own directories is refused: to the host's files...
    assert sb.exec("ln", "-s", "/etc", "etc-link").wait() == 0
    with pytest.raises(SandboxPathError, match="resolves to /etc/passwd"):
        sb.open("etc-link/passwd").read()
    # ... and to the agent's state (here under /tmp, which in a sandbox is its own, empty of it): never its files.
    assert sb.exec("ln", "-s", str(agent_address.state_dir), "state").wait() == 0
    with pytest.raises((SandboxPathError, FileNotFoundError)):
        sb.open("state/agent.json").read()


def test_block_network_has_no_network_while_a_normal_sandbox_has(agent_address):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    connect = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=5); print('connected')"
    if not BUBBLEWRAP:
        with pytest.raises(nbmodal.exception.InvalidError, match="block_network=True needs bubblewrap"):
            nbmodal.Sandbox.create(block_network=True)
        return
    made = []
    try:
        normal = nbmodal.Sandbox.create(timeout=60)
        made.append(normal)
        blocked = nbmodal.Sandbox.create(block_network=True, timeout=60)
        made.append(blocked)
        reached = normal.exec(sys.executable, "-c", connect)
        assert reached.wait() == 0 and reached.stdout.read() == "connected\n"
        refused = blocked.exec(sys.executable, "-c", connect)
        assert refused.wait() == 1 and refused.stdout.read() == ""
        assert "ConnectionRefusedError" in refused.stderr.read()
        interfaces = blocked.exec("cat", "/proc/net/dev").stdout.read()
        assert "lo:" in interfaces and "eth0" not in interfaces
        with pytest.raises(nbmodal.exception.InvalidError, match="block_network"):
            nbmodal.Sandbox.create(block_network=True, encrypted_ports=[8000])
    finally:
        listener.close()
        for sandbox in made:
            sandbox.terminate()


def test_list_from_id_and_tags(sb):
    sb.set_tags({"team": "ml", "run": "7"})
    assert sb.get_tags() == {"team": "ml", "run": "7"}
    assert [s.object_id for s in nbmodal.Sandbox.list(tags={"team": "ml"})] == [sb.object_id]
    assert not list(nbmodal.Sandbox.list(tags={"team": "other"}))
    found = nbmodal.Sandbox.from_id(sb.object_id)
    assert found.object_id == sb.object_id and found.exec("true").wait() == 0
    with pytest.raises(nbmodal.exception.NotFoundError, match="sb-000000000000"):
        nbmodal.Sandbox.from_id("sb-000000000000")
    assert sb.tunnels() == {}


def test_sandboxes_of_an_app_end_with_its_run_block(agent_address):
    app = nbmodal.App("sandbox-app")
    with app.run():
        inside = nbmodal.Sandbox.create(app=app, timeout=120)
        assert [s.object_id for s in nbmodal.Sandbox.list(app_id="sandbox-app")] == [inside.object_id]
    inside.wait(raise_on_termination=False)
    assert inside.returncode == 137


def test_secrets_and_env_reach_the_sandbox_and_its_processes(agent_address):
    secret = nbmodal.Secret.from_dict({"SANDBOX_TOKEN": "token-value-123"})
    sandbox = nbmodal.Sandbox.create("sh", "-c", "echo $SANDBOX_TOKEN $GREETING", secrets=[secret],
                                     env={"GREETING": "hi"}, timeout=60)
    sandbox.wait()
    assert sandbox.stdout.read() == "token-value-123 hi\n"


def test_create_and_exec_have_aio_twins(agent_address):
    import asyncio

    async def main() -> tuple[int, str]:
        sandbox = await nbmodal.Sandbox.create.aio(timeout=60)
        try:
            p = await sandbox.exec.aio("sh", "-c", "echo async", secrets=[nbmodal.Secret.from_dict({"A": "b"})])
            lines = [line async for line in p.stdout]
            return await p.wait.aio(), "".join(lines)
        finally:
            await sandbox.terminate.aio()

    assert asyncio.run(main()) == (0, "async\n")


def test_sandbox_calls_need_the_agents_token(agent_address):
    import grpc

    from nbmodal_wire import TOKEN_METADATA_KEY, pb
    from nbmodal_wire.proto.agent_pb2_grpc import AgentStub

    with grpc.insecure_channel(f"{agent_address.host}:{agent_address.port}") as channel:
        stub = AgentStub(channel)
        for token in ("not-the-token", None):
            metadata = ((TOKEN_METADATA_KEY, token),) if token else ()
            with pytest.raises(grpc.RpcError) as refused:
                stub.SandboxCreate(pb.SandboxCreateRequest(argv=["true"]), metadata=metadata, timeout=30)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.RpcError) as refused:
                list(stub.SandboxExec(iter([pb.ExecInput(start=pb.ExecStart(container_id="sb-x", argv=["id"]))]),
                                      metadata=metadata, timeout=30))
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
