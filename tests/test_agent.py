"""The agent daemon: discovery, auth, one agent per state dir, losing it mid-run."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap

import grpc
import pytest

import nbmodal
from kernels import kernel
from nbmodal import commands
from nbmodal._runtime.client import AgentClient
from nbmodal._runtime.local_agent import AgentAddress, read_agent_json
from nbmodal_wire import PROTOCOL_VERSION, pb
from nbmodal_wire.proto.agent_pb2_grpc import AgentStub

pytestmark = pytest.mark.agent


def test_agent_json_is_private_and_names_a_live_agent(agent_address, nbmodal_home):
    path = nbmodal_home / "agent" / "agent.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    info = json.loads(path.read_text())
    assert info["pid"] == agent_address.pid and info["version"] == nbmodal.__version__
    assert (nbmodal_home / "agent" / "agent.log").exists()


@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_calls_without_the_right_token_are_refused(agent_address, token):
    channel = grpc.insecure_channel(f"127.0.0.1:{agent_address.port}")
    stub = AgentStub(channel)
    metadata = () if token is None else (("x-nbmodal-token", token),)
    for call in (lambda: stub.Hello(pb.HelloRequest(), metadata=metadata, timeout=5),
                 lambda: list(stub.Run(pb.RunRequest(kind=pb.FUNCTION), metadata=metadata, timeout=5))):
        with pytest.raises(grpc.RpcError) as info:
            call()
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "token" in info.value.details()
    channel.close()
    # Through the client: a clear error, not a stack of gRPC internals.
    bad = AgentAddress(agent_address.host, agent_address.port, "wrong", agent_address.pid,
                       agent_address.version, agent_address.protocol_version, agent_address.state_dir)
    with pytest.raises(nbmodal.AgentError, match="refused this client: missing or wrong agent token"):
        AgentClient(bad)


def test_one_agent_per_state_dir(agent_address):
    second = subprocess.run([sys.executable, "-m", "remote_agent", "serve", "--state-dir",
                             str(agent_address.state_dir)], capture_output=True, text=True, timeout=30)
    assert second.returncode == 3
    assert "another agent already serves" in second.stderr
    assert read_agent_json(agent_address.state_dir).pid == agent_address.pid


def test_protocol_mismatch_says_how_to_fix_it(agent_address, monkeypatch):
    import nbmodal._runtime.client as client_module

    monkeypatch.setattr(client_module, "PROTOCOL_VERSION", 999)
    with pytest.raises(nbmodal.VersionMismatchError, match=f"speaks protocol {PROTOCOL_VERSION}.*nbmodal agent stop"):
        AgentClient(agent_address)


def test_container_refuses_pickles_from_another_python_minor(agent_address):
    client = AgentClient(agent_address)
    events = list(client.run(pb.RunRequest(kind=pb.CELL, code="x = 1", filename="<cell>", client_python="3.99")))
    finished = events[-1].finished
    assert finished.state == pb.FAILED
    assert "notebook runs Python 3.99 but this container runs Python" in finished.error.message
    client.close()


def test_agent_never_imports_ipython_or_jupyter():
    code = textwrap.dedent("""
        import sys
        import remote_agent.daemon, remote_agent.agent, remote_agent.service, remote_agent.worker.main
        import remote_agent.worker.execute, remote_agent.worker.display
        bad = [m for m in sys.modules if m.split('.')[0] in ('IPython', 'ipykernel', 'jupyter_client', 'nbclient', 'nbmodal')]
        assert not bad, bad
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_agent_killed_mid_run_with_its_container_fails_the_cell_clearly_and_a_new_agent_runs_the_next(
        tmp_path, nbmodal_home):
    # A container that outlives its agent keeps its run (tests/test_survive_agent.py); one that dies too doesn't.
    with kernel(tmp_path) as k:
        first = k.execute("%%remote\nprint('up')")
        assert first["error"] is None, first
        agent_pid = read_agent_json(nbmodal_home / "agent").pid
        msg_id = k.start("%%remote\nimport os, time\nprint('working', os.getpid(), 'pid', flush=True)\ntime.sleep(60)")
        worker_pid = int(k.collect(msg_id, timeout=30, until=" pid")["stdout"].split()[-2])
        os.kill(agent_pid, signal.SIGKILL)
        os.kill(worker_pid, signal.SIGKILL)
        result = k.collect(msg_id, timeout=30)
        assert result["error"]["ename"] == "RunLostError", result
        assert f"the agent on local stopped (pid {agent_pid})" in result["error"]["evalue"]
        assert "a new agent is running there now, so the next cell will work" in result["error"]["evalue"]
        again = k.execute("%%remote\nprint('up again')")
        assert again["error"] is None, again
        assert read_agent_json(nbmodal_home / "agent").pid != agent_pid
    # The new agent knows the old run was lost with its agent.
    assert "LOST" in commands.runs_table(50)


def test_a_cancel_that_overtakes_its_submit_still_stops_the_run(agent_address):
    # A client registers a run id, then cancels it before its Run call reaches the agent.
    client = AgentClient(agent_address)
    run_id = "r-0badcafe"
    with pytest.raises(nbmodal.NotFoundError, match="no run 'r-0badcafe'"):
        client.cancel(run_id, force=True)
    request = pb.RunRequest(kind=pb.CELL, run_id=run_id, label="late submit", code="import time; time.sleep(60)")
    events = list(client.run(request))
    finished = events[-1].finished
    assert finished.state == pb.CANCELLED
    assert "before it reached the agent" in finished.error.message
