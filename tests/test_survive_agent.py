"""Runs outlive the agent: kill -9 and restarts of a real local agent while its containers run.

A run that has lasted a moment has a supervisor (remote_agent/supervision.py); the agent is killed (or
restarted) under it, the next agent takes the container back, and the run goes on: the output printed
while no agent existed comes back in order, with consecutive sequence numbers, and the run ends with
its result. The module has a home (and so an agent) of its own: it kills that agent.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from kernels import kernel
from waiting import wait_for

from nbmodal_wire import pb
from nbmodal_wire.names import new_run_id
from nbmodal_wire.pids import pid_alive
from remote_agent.runs import read_event_log

pytestmark = pytest.mark.agent

COUNTER = textwrap.dedent("""
    import time, nbmodal
    d = nbmodal.Dict.from_name('survive', create_if_missing=True)
    q = nbmodal.Queue.from_name('survive', create_if_missing=True)
    i = 0
    while True:
        print(i, flush=True)
        i += 1
        try:
            if d.get('finish') == RUN:
                break
        except Exception:
            pass  # no agent just now: the next one serves the Dict again
        time.sleep(0.04)
    q.put(('after the restarts', i))
    result = i
""")


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Iterator[Path]:
    from nbmodal._runtime import connection
    from nbmodal._runtime.local_agent import stop_local_agent
    from nbmodal.hosts import LOCAL

    home = tmp_path_factory.mktemp("survive-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NBMODAL_HOME", str(home))
        connection.forget(LOCAL)
        try:
            yield home
        finally:
            stop_local_agent(home / "agent")
            connection.forget(LOCAL)


class Follower:
    """A Run stream followed on a thread, as the notebook's follower does, re-attached by the test."""

    def __init__(self) -> None:
        self.events: list[pb.RunEvent] = []
        self.ended = threading.Event()

    def follow(self, stream) -> None:
        self.ended.clear()

        def read() -> None:
            try:
                for event in stream:
                    self.events.append(event)
            except grpc.RpcError:
                pass  # the agent went away
            finally:
                self.ended.set()

        threading.Thread(target=read, daemon=True).start()

    @property
    def last_seq(self) -> int:
        return self.events[-1].seq if self.events else 1

    def outputs(self) -> int:
        return sum(event.output.data.count(b"\n") for event in self.events if event.HasField("output"))

    def finished(self) -> pb.RunFinished | None:
        return next((e.finished for e in self.events if e.HasField("finished")), None)


def _client():
    from nbmodal._runtime.client import AgentClient
    from nbmodal._runtime.local_agent import ensure_local_agent

    address = ensure_local_agent()
    return AgentClient(address), address.pid


def _supervised(state: Path) -> dict:
    records = list((state / "supervisors").glob("*.json"))
    return json.loads(records[0].read_text()) if records else {}


def _kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(pid), 10, f"the killed agent (pid {pid}) to exit")


def _spooled(state: Path, container_id: str) -> bool:
    spool = state / "supervisors" / f"{container_id}.spool"
    return spool.exists() and spool.stat().st_size > 0


def test_a_run_outlives_kill_9_and_a_restart_with_every_line_once(home):
    import nbmodal
    from nbmodal._runtime import connection
    from nbmodal._runtime.local_agent import restart_local_agent
    from nbmodal.hosts import LOCAL

    state = home / "agent"
    client, first_pid = _client()
    run_id = new_run_id()
    follower = Follower()
    follower.follow(client.run(pb.RunRequest(run_id=run_id, kind=pb.CELL, code=f"RUN = {run_id!r}\n" + COUNTER,
                                             filename="<cell>", label="counter")))
    record = wait_for(lambda: _supervised(state), 30, "the run's container to be supervised")
    wait_for(lambda: follower.outputs() >= 5, 30, "the counter to print")

    _kill(first_pid)  # kill -9: no goodbye
    wait_for(follower.ended.is_set, 10, "the stream to end with its agent")
    wait_for(lambda: _spooled(state, record["container_id"]), 10, "output printed while no agent exists")
    client, second_pid = _client()  # the next agent takes the container back
    assert second_pid != first_pid
    follower.follow(client.attach(run_id, follower.last_seq, follow=True))
    seen = follower.outputs()
    wait_for(lambda: follower.outputs() > seen + 3, 30, "the counter to go on under the second agent")

    old, address = restart_local_agent()  # a restart keeps the container too
    assert old == second_pid and address.pid != second_pid
    wait_for(follower.ended.is_set, 10, "the stream to end with the restart")
    client, _ = _client()
    follower.follow(client.attach(run_id, follower.last_seq, follow=True))
    seen = follower.outputs()
    wait_for(lambda: follower.outputs() > seen + 3, 30, "the counter to go on under the third agent")

    connection.forget(LOCAL)
    nbmodal.Dict.from_name("survive", create_if_missing=True)["finish"] = run_id  # the container reads it
    wait_for(follower.ended.is_set, 30, "the run to finish")
    finished = follower.finished()
    assert finished is not None and finished.state == pb.SUCCEEDED, finished
    count = pickle.loads(finished.values["result"])
    # The container's Queue put, made after both restarts, reaches a consumer.
    assert nbmodal.Queue.from_name("survive").get(timeout=30) == ("after the restarts", count)

    expected = "".join(f"{i}\n" for i in range(count))
    # What the follower got across three agents: every line once, in order.
    assert b"".join(e.output.data for e in follower.events if e.HasField("output")).decode() == expected
    # And the run's log: consecutive sequence numbers, the same lines, one finish.
    logged = list(read_event_log(state / "runs" / run_id / "events.log"))
    assert [e.seq for e in logged] == list(range(1, len(logged) + 1))
    assert b"".join(e.output.data for e in logged if e.HasField("output")).decode() == expected
    assert [e.HasField("finished") for e in logged].count(True) == 1
    info = client.get_run(run_id)
    assert info.state == pb.SUCCEEDED and info.last_seq == len(logged)


def test_a_waiting_cell_gets_all_its_output_and_result_across_kill_9(home, tmp_path):
    from nbmodal._runtime.local_agent import read_agent_json

    state = home / "agent"
    with kernel(tmp_path) as k:
        assert k.execute("%%remote\nprint('warm')")["error"] is None
        agent_pid = read_agent_json(state).pid
        msg_id = k.start("%%remote\nimport time\nfor i in range(70):\n    print(i, flush=True)\n"
                         "    time.sleep(0.04)\nresult = 'all done'")
        before = k.collect(msg_id, timeout=60, until="5\n")["stdout"]
        wait_for(lambda: _supervised(state), 30, "the cell's container to be supervised")
        os.kill(agent_pid, signal.SIGKILL)
        rest = k.collect(msg_id, timeout=90)
        assert rest["error"] is None, rest
        assert [int(line) for line in (before + rest["stdout"]).split()] == list(range(70))
        assert "reconnected" in rest["stderr"]
        assert k.execute("print(result)")["stdout"].strip() == "all done"
        assert read_agent_json(state).pid != agent_pid


def test_a_container_that_died_while_no_agent_ran_is_lost_with_its_output(home):
    state = home / "agent"
    client, agent_pid = _client()
    run_id = new_run_id()
    follower = Follower()
    code = "import time\nfor i in range(100000):\n    print(i, flush=True)\n    time.sleep(0.04)\n"
    follower.follow(client.run(pb.RunRequest(run_id=run_id, kind=pb.CELL, code=code, filename="<cell>")))
    record = wait_for(lambda: _supervised(state), 30, "the run's container to be supervised")
    _kill(agent_pid)
    wait_for(lambda: _spooled(state, record["container_id"]), 10, "output printed while no agent exists")
    os.kill(record["worker_pid"], signal.SIGKILL)  # the container really dies too
    sock = state / "supervisors" / f"{record['container_id']}.sock"
    wait_for(lambda: not sock.exists(), 10, "its supervisor to see it end")
    seen = follower.outputs()
    client, _ = _client()
    info = wait_for(lambda: (i := client.get_run(run_id)).state != pb.RUNNING and i, 30, "the run to end")
    assert info.state == pb.LOST, info
    assert "ended while no agent was running" in info.error
    logged = list(read_event_log(state / "runs" / run_id / "events.log"))
    printed = b"".join(e.output.data for e in logged if e.HasField("output")).split()
    assert [int(n) for n in printed] == list(range(len(printed)))  # in order, none twice
    assert len(printed) > seen  # the lines spooled while no agent ran were kept


def test_agent_stop_still_ends_the_containers(home):
    from nbmodal._runtime.local_agent import stop_local_agent

    state = home / "agent"
    client, _ = _client()
    follower = Follower()
    code = "import time\nwhile True:\n    print('.', flush=True)\n    time.sleep(0.05)\n"
    follower.follow(client.run(pb.RunRequest(kind=pb.CELL, code=code, filename="<cell>")))
    record = wait_for(lambda: _supervised(state), 30, "the run's container to be supervised")
    stop_local_agent(state)
    wait_for(lambda: not pid_alive(record["worker_pid"]), 15, "the container to end with the stop")
    assert not list((state / "supervisors").glob("*.sock")), "a supervisor outlived `agent stop`"
