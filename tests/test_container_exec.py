"""Processes inside a running container (ContainerExec) on the real local agent: streams, stdin, exit codes,
signals, timeouts, joining a busy container, ended containers, container tokens, and container logs."""

from __future__ import annotations

import itertools
import os
import re
import signal
import uuid

import grpc
import pytest
from waiting import wait_for

import nbmodal
from nbmodal._runtime.client import AgentClient
from nbmodal._runtime.container_exec import STDERR, STDOUT, ExecProcess
from nbmodal_wire import TOKEN_METADATA_KEY, pb
from nbmodal_wire.proto.agent_pb2_grpc import AgentStub

pytestmark = pytest.mark.agent

_sessions = itertools.count()


@pytest.fixture()
def client(agent_address):
    client = AgentClient(agent_address)
    yield client
    client.close()


def session_container(client: AgentClient, code: str = "pass") -> tuple[str, str]:
    """A new session whose container has run ``code``: (session, container id)."""
    session = f"exec-{next(_sessions)}"
    events = list(client.run(pb.RunRequest(kind=pb.CELL, label="setup", code=code, session=session)))
    assert events[-1].finished.state == pb.SUCCEEDED, events[-1]
    container = next(c for c in client.list_containers() if c.session == session)
    return session, container.container_id


@pytest.fixture()
def container(client):
    session, container_id = session_container(client)
    yield container_id
    client.stop_session(session)


def test_output_streams_in_order_with_stdin_and_the_exit_code(client, container):
    # Each `read` waits for the test's next line, so the order of stdout and stderr is the process's own.
    process = ExecProcess(client, container, ["sh", "-c", "echo one; read a; echo two-$a >&2; read b; "
                                                          "echo three-$b; cat; exit 3"])
    assert process.pid > 0 and process.exec_id
    seen = []
    chunks = process.output()
    for reply, expected in ((b"A\n", (STDOUT, b"one\n")), (b"B\n", (STDERR, b"two-A\n")),
                            (b"payload\n", (STDOUT, b"three-B\n"))):
        seen.append(next(chunks))
        assert seen[-1] == expected
        process.write(reply)
    echoed = next(chunks)
    assert echoed == (STDOUT, b"payload\n")  # cat echoes stdin as it comes
    process.write_eof()  # cat ends at the end of its input, and the shell exits
    assert list(chunks) == []
    assert process.exit == nbmodal._runtime.container_exec.ExecExit(code=3)
    assert process.returncode == 3


def test_output_far_beyond_the_flow_control_window_arrives_whole_and_in_order(client, container):
    # 20 MB: twenty times the container's window of unacknowledged output, so it is sent as the client takes it.
    data = bytes(range(256)) * 78125
    process = ExecProcess(client, container, ["sh", "-c", "python -c 'import sys; sys.stdout.buffer.write("
                                                          "bytes(range(256)) * 78125)'; echo done >&2"])
    received = bytearray()
    errors = bytearray()
    for stream, chunk in process.output():
        (received if stream == STDOUT else errors).extend(chunk)
    assert process.exit.code == 0, (process.exit, bytes(errors))
    assert len(received) == len(data) and received == data
    assert errors == b"done\n"


def test_exec_joins_a_busy_container_and_sees_its_run(client):
    # The run waits for a file in the container's private /tmp: only a process in the same container can
    # make it, and the run goes on when it does.
    session, container_id = session_container(client)
    go_on = f"/tmp/nbmodal-exec-test-{uuid.uuid4().hex}"  # in the container's /tmp (private under bubblewrap)
    try:
        info = client.submit(pb.RunRequest(kind=pb.CELL, label="busy", session=session, detach=True, code=(
            "import os, time\nprint('pid', os.getpid(), flush=True)\n"
            f"while not os.path.exists({go_on!r}):\n    time.sleep(0.02)\nos.remove({go_on!r})\nprint('went on')")))
        busy = wait_for(lambda: next((c for c in client.list_containers() if c.container_id == container_id
                                      and c.state == pb.CONTAINER_BUSY), None), 60, "the run to be busy")
        shown = ExecProcess(client, container_id, ["sh", "-c", f"ls /proc; tr '\\0' ' ' < /proc/{busy.pid}/cmdline;"
                                                              f" echo; echo $NBMODAL_CONTAINER_ID; touch {go_on}"])
        out = b"".join(data for stream, data in shown.output() if stream == STDOUT).decode()
        assert shown.exit.code == 0, shown.exit
        assert str(busy.pid) in out.split()  # the run's process is there
        assert "remote_agent" in out  # ... and it is the container's worker
        assert container_id in out.splitlines()  # the container's own environment
        events = list(client.attach(info.run_id))
        assert events[-1].finished.state == pb.SUCCEEDED
        assert b"went on" in b"".join(e.output.data for e in events if e.HasField("output"))
    finally:
        client.stop_session(session)


def test_a_missing_command_or_directory_is_127_naming_it(client, container):
    missing = ExecProcess(client, container, ["no-such-command-xyz", "--flag"]).wait()
    assert missing.code == 127 and "no-such-command-xyz" in missing.error
    nowhere = ExecProcess(client, container, ["ls"], workdir="/no/such/dir").wait()
    assert nowhere.code == 127 and "/no/such/dir" in nowhere.error
    env = ExecProcess(client, container, ["sh", "-c", "pwd; echo $GREETING"], workdir="/", env={"GREETING": "hi"})
    assert b"".join(d for _, d in env.output()) == b"/\nhi\n"


def test_named_secrets_are_resolved_on_the_agent_into_the_environment(client, container):
    client.secret_call(pb.SecretRequest(op=pb.SECRET_CREATE, name="exec-test", values={"TOKEN": "s3cret"},
                                        force=True))
    shown = ExecProcess(client, container, ["sh", "-c", "echo $TOKEN $OTHER"], secrets=["exec-test"],
                        env={"OTHER": "plain"})
    assert b"".join(d for _, d in shown.output()) == b"s3cret plain\n"
    with pytest.raises(nbmodal.NotFoundError, match="no-such-secret"):
        ExecProcess(client, container, ["true"], secrets=["no-such-secret"])


def test_timeout_and_signals_end_the_process(client, container):
    timed = ExecProcess(client, container, ["sleep", "60"], timeout=0.5).wait()
    assert timed.code == 137 and timed.signal == signal.SIGKILL and "timed out after 0.5s" in timed.error
    # A signal reaches the whole group: the shell and its child.
    process = ExecProcess(client, container, ["sh", "-c", "echo ready; sleep 60; echo not-reached"])
    assert next(process.output()) == (STDOUT, b"ready\n")
    process.signal(signal.SIGTERM)
    ended = process.wait()
    assert ended.code == 128 + signal.SIGTERM and ended.signal == signal.SIGTERM


def test_a_closed_stream_kills_its_process_and_its_shells_jobs(client, container):
    process = ExecProcess(client, container, ["sleep", "300"])
    # An interactive shell puts a background job in a process group of its own: it must die too.
    shell = ExecProcess(client, container, ["sh", "-c", "exec bash --norc -i 2>&1"], pty=True)
    shell.write(b"sleep 301 & echo job=$!\n")
    text = ""
    chunks = shell.output()
    while not re.search(r"job=(\d+)\r?\n", text):
        text += next(chunks)[1].decode()
    job = re.search(r"job=(\d+)", text).group(1)
    process.close()
    shell.close()

    def gone(pid: int | str) -> bool:
        return ExecProcess(client, container, ["kill", "-0", str(pid)]).wait().code != 0

    wait_for(lambda: gone(process.pid), 30, f"exec'd process {process.pid} to be killed with its stream")
    wait_for(lambda: gone(job), 30, f"the shell's background job {job} to be killed with the shell's stream")


def test_an_ended_or_unknown_container_is_a_clear_error(client):
    session, container_id = session_container(client)
    client.stop_session(session)
    wait_for(lambda: all(c.container_id != container_id for c in client.list_containers()), 30,
             "the session's container to end")
    with pytest.raises(nbmodal.NotFoundError, match=f"no running container '{container_id}'"):
        ExecProcess(client, container_id, ["true"])
    with pytest.raises(nbmodal.NotFoundError, match="no running container 'c-unknown'"):
        ExecProcess(client, "c-unknown", ["true"])


def test_a_killed_container_ends_its_exec_streams_and_what_they_left_running(client):
    # A shell's background job outlives nothing: the container is killed outright (a forced cancel of its
    # run), its worker can't clean up, and the agent kills what the exec left behind.
    session, container_id = session_container(client)
    shell = ExecProcess(client, container_id, ["sh", "-c", "exec bash --norc -i 2>&1"], pty=True)
    shell.write(b"sleep 303 & echo job=$!\n")
    text = ""
    chunks = shell.output()
    while not re.search(r"job=(\d+)\r?\n", text):
        text += next(chunks)[1].decode()
    job = int(re.search(r"job=(\d+)", text).group(1))
    info = client.submit(pb.RunRequest(kind=pb.CELL, label="busy", session=session, detach=True,
                                       code="import time\ntime.sleep(300)"))
    wait_for(lambda: client.get_run(info.run_id).state == pb.RUNNING, 60, "the run to start")
    client.cancel(info.run_id, force=True)
    ended = shell.wait()
    assert ended.code == 137 and "container ended" in ended.error, ended
    wait_for(lambda: not os.path.exists(f"/proc/{job}") or _zombie(job), 30,
             f"the shell's job {job} to be killed with its container")
    client.stop_session(session)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_a_container_token_cannot_exec(client, agent_address):
    # A run prints its container's own token; with it, ContainerExec is refused (even into its own container).
    session, container_id = session_container(client)
    try:
        events = list(client.run(pb.RunRequest(kind=pb.CELL, label="t", session=session,
                                               code="import os\nprint(os.environ['NBMODAL_CONTAINER_TOKEN'])")))
        token = b"".join(e.output.data for e in events if e.HasField("output")).decode().strip()
        assert token
        channel = grpc.insecure_channel(f"127.0.0.1:{agent_address.port}")
        stub = AgentStub(channel)
        start = pb.ExecInput(start=pb.ExecStart(container_id=container_id, argv=["id"]))
        with pytest.raises(grpc.RpcError) as refused:
            list(stub.ContainerExec(iter([start]), metadata=((TOKEN_METADATA_KEY, token),), timeout=10))
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as refused_logs:
            list(stub.ContainerLogs(pb.ExecLogsRequest(container_id=container_id),
                                    metadata=((TOKEN_METADATA_KEY, token),), timeout=10))
        assert refused_logs.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # A wrong token on a client-streaming call is refused as cleanly (the refusal matches its kind of call).
        with pytest.raises(grpc.RpcError) as refused_upload:
            stub.PutBlob(iter([pb.BlobChunk(data=b"x")]), metadata=((TOKEN_METADATA_KEY, "wrong"),), timeout=10)
        assert refused_upload.value.code() == grpc.StatusCode.UNAUTHENTICATED
        channel.close()
    finally:
        client.stop_session(session)


def test_container_logs_and_follow_until_it_ends(client):
    session, container_id = session_container(client)
    log = b"".join(chunk.data for chunk in client.container_logs(container_id)).decode()
    assert "container: ready (pid" in log
    followed = client.container_logs(container_id, follow=True)
    chunks = iter(followed)
    assert b"ready (pid" in next(chunks).data
    # A line logged later (code in the container logs through the worker's own log) arrives while following.
    list(client.run(pb.RunRequest(kind=pb.CELL, label="log", session=session, code=(
        "import logging\nlogging.getLogger('remote_agent.worker').warning('marker-from-the-run')"))))
    text = ""
    while "marker-from-the-run" not in text:
        text += next(chunks).data.decode()
    client.stop_session(session)
    list(chunks)  # the follow ends once the container has
    # The log stays readable after the container has ended.
    kept = b"".join(chunk.data for chunk in client.container_logs(container_id)).decode()
    assert "marker-from-the-run" in kept
    with pytest.raises(grpc.RpcError) as bad:
        list(client.container_logs("../agent"))
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
