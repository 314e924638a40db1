"""The local run socket (nbmodal_wire/local_runs.py): a client of this machine's agent sends its warm runs
on the agent's Unix socket instead of gRPC, with the same answers, the same errors and the same token."""

from __future__ import annotations

import socket
import stat

import pytest
from waiting import wait_for

from nbmodal._runtime.client import CLIENT_PYTHON, AgentClient, iterate_events
from nbmodal._runtime.local_runs import LocalRun, LocalRuns
from nbmodal_wire import local_runs as wire
from nbmodal_wire import pb
from nbmodal_wire.names import new_run_id

pytestmark = pytest.mark.agent


def cell(code: str) -> pb.RunRequest:
    return pb.RunRequest(kind=pb.CELL, code=code, filename="<cell>", label=code, run_id=new_run_id(),
                         client_python=CLIENT_PYTHON)


def finished_of(client: AgentClient, call) -> pb.RunFinished:
    events = list(iterate_events(call, client))
    assert events[-1].HasField("finished"), events
    return events[-1].finished


def test_warm_runs_go_one_after_another_on_one_socket_connection(agent_address):
    path = wire.socket_path(agent_address.state_dir)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    client = AgentClient(agent_address)
    try:
        first = client.run(cell("x = 41 + 1"))
        assert isinstance(first, LocalRun)
        assert finished_of(client, first).state == pb.SUCCEEDED
        (connection,) = client._local_runs._idle
        second = client.run(cell("raise ValueError('from the cell')"))
        assert isinstance(second, LocalRun)
        finished = finished_of(client, second)
        assert finished.state == pb.FAILED and "from the cell" in finished.error.message
        assert client._local_runs._idle == [connection]  # the same connection carried both
    finally:
        client.close()


def test_runs_started_at_once_each_get_a_connection(agent_address):
    client = AgentClient(agent_address)
    try:
        first, second = client.run(cell("a = 1")), client.run(cell("b = 2"))  # neither followed yet
        assert isinstance(first, LocalRun) and isinstance(second, LocalRun)
        assert client._local_runs._open == 2
        assert finished_of(client, second).state == finished_of(client, first).state == pb.SUCCEEDED
        assert len(client._local_runs._idle) == 2  # both kept for the next runs
    finally:
        client.close()
    assert client._local_runs._open == 0


def test_a_refused_run_raises_what_grpc_would_and_the_next_run_works(agent_address):
    client = AgentClient(agent_address)
    try:
        bad = cell("x = 1")
        bad.run_id = "not-a-run-id"
        with pytest.raises(ValueError, match="is not of the form"):
            finished_of(client, client.run(bad))
        assert client._local_runs._open == 0  # a refusal ends that connection
        assert finished_of(client, client.run(cell("y = 2"))).state == pb.SUCCEEDED
    finally:
        client.close()


def test_a_run_not_followed_to_its_end_closes_the_connection_and_goes_on(agent_address):
    client = AgentClient(agent_address)
    try:
        request = cell("print('started', flush=True)")
        call = client.run(request)
        first = next(iter(call))
        assert not first.HasField("finished")
        call.cancel()  # stop following: the run goes on at the agent, as after cancelling a Run call
        assert client._local_runs._open == 0
        wait_for(lambda: client.get_run(request.run_id).state == pb.SUCCEEDED, 30, "the unfollowed run to end")
        assert finished_of(client, client.run(cell("z = 3"))).state == pb.SUCCEEDED
    finally:
        client.close()


def test_the_socket_wants_the_agent_token(agent_address):
    request = cell("x = 1")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(wire.socket_path(agent_address.state_dir)))
        sock.sendall(wire.frame(wire.TOKEN, b"wrong-token") + wire.frame(wire.REQUEST, request.SerializeToString()))
        assert sock.recv(1) == b""  # closed without a word
    client = AgentClient(agent_address)
    try:
        assert request.run_id not in {run.run_id for run in client.list_runs()}
    finally:
        client.close()


def test_only_the_agent_greeted_over_grpc_is_used(agent_address):
    # Another process answering the path (not the agent this client greeted): the run takes gRPC.
    stranger = LocalRuns(wire.socket_path(agent_address.state_dir), agent_address.token, agent_address.pid + 1)
    assert stranger.start(cell("x = 1")) is None
    # An SSH host's agent is named "host:dir", a container's agent has no state dir here: no socket.
    assert LocalRuns.for_agent("gpu1:~/.nbmodal/agent", "token", 123) is None
    assert LocalRuns.for_agent(agent_address.state_dir, agent_address.token, agent_address.pid) is not None
