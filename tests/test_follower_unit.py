"""Following a run (nbmodal/_runtime/execution.py RunFollower) against the in-process fake agent:
every event reaches the sink once, a dropped connection resumes after the last event seen, a new
agent means the run is lost, and an interrupt cancels the remote run."""

from __future__ import annotations

import threading

import pytest

from fakeagent import FakeAgent, FakeConnection, FakeRun
from nbmodal._runtime.execution import RunFollower
from nbmodal.exceptions import AgentLostError, RunLostError
from nbmodal_wire import pb
from waiting import wait_for

pytestmark = pytest.mark.unit

GRACE_S = 5.0


class RecordingSink:
    """Keeps what a follower hands it, output as text (whether it comes as bytes or already decoded)."""

    def __init__(self, interrupt_on: str | None = None) -> None:
        self.text: list[str] = []
        self.notices: list[str] = []
        self.closed = False
        self._interrupt_on = interrupt_on

    def output(self, stream: int, data) -> None:
        text = data.decode() if isinstance(data, (bytes, bytearray)) else data
        self.text.append(text)
        if self._interrupt_on is not None and self._interrupt_on in text:
            self._interrupt_on = None
            raise KeyboardInterrupt  # as if the user interrupted the kernel while this printed

    def display(self, data: dict, metadata: dict, execute_result: bool) -> None:
        self.text.append(f"<display {sorted(data)}>")

    def notice(self, text: str) -> None:
        self.notices.append(text)

    def item(self, item: pb.Item) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    @property
    def output_text(self) -> str:
        return "".join(self.text)


def prints(*lines: str, value: object = "done"):
    """A behaviour: the run prints each line, then succeeds with ``value``."""

    def behave(run: FakeRun) -> None:
        for line in lines:
            run.output(line + "\n")
        run.finish(value=value)

    return behave


def request() -> pb.RunRequest:
    return pb.RunRequest(kind=pb.CELL, label="cell", code="print('hi')")


@pytest.fixture()
def agent():
    with FakeAgent() as fake:
        yield fake


def test_a_run_is_followed_to_its_end_with_every_event_once(agent):
    agent.behaviour = prints("one", "two", "three")
    sink = RecordingSink()
    finished = RunFollower(FakeConnection("h", agent), sink, GRACE_S).start(request())
    assert finished.state == pb.SUCCEEDED
    assert sink.output_text == "one\ntwo\nthree\n"
    assert sink.closed
    [sent] = agent.run_requests
    assert sent.run_id.startswith("r-")  # the client chose the id, so it can cancel at once


def test_a_dropped_stream_resumes_after_the_last_event_seen_and_delivers_the_rest_once(agent):
    agent.behaviour = prints(*(f"line {i}" for i in range(6)))
    agent.drop_stream_after = {3}  # RunStarted, line 0, line 1: then the connection drops
    conn = FakeConnection("h", agent)
    sink = RecordingSink()
    finished = RunFollower(conn, sink, GRACE_S).start(request())
    assert finished.state == pb.SUCCEEDED
    assert sink.output_text == "".join(f"line {i}\n" for i in range(6))
    assert conn.recoveries == 1
    [attach] = agent.attach_requests
    assert attach.after_seq == 3 and attach.follow
    assert any("lost" in n for n in sink.notices) and any("resuming" in n for n in sink.notices)


def test_an_attach_that_drops_resumes_too(agent):
    agent.behaviour = prints("a", "b", "c", "d")
    run_id = agent.client().submit(request()).run_id
    agent.drop_stream_after = {2, 4}  # twice: each resume continues where the last one stopped
    sink = RecordingSink()
    finished = RunFollower(FakeConnection("h", agent), sink, GRACE_S).attach(run_id)
    assert finished.state == pb.SUCCEEDED
    assert sink.output_text == "a\nb\nc\nd\n"
    assert [a.after_seq for a in agent.attach_requests] == [0, 2, 4]


def test_a_drop_before_the_agent_took_the_run_sends_it_again(agent):
    agent.behaviour = prints("once")
    agent.drop_next_runs = 1
    sink = RecordingSink()
    finished = RunFollower(FakeConnection("h", agent), sink, GRACE_S).start(request())
    assert finished.state == pb.SUCCEEDED
    assert sink.output_text == "once\n"
    first, second = agent.run_requests
    assert first.run_id == second.run_id  # the same run, not a second one
    assert list(agent.runs) == [first.run_id]


def test_a_different_agent_after_the_reconnect_means_the_run_is_lost(agent):
    gate = threading.Event()

    def slow(run: FakeRun) -> None:
        run.output("started\n")
        gate.wait(10)
        run.finish()

    agent.behaviour = slow
    agent.drop_stream_after = {2}
    with FakeAgent() as successor:  # a new agent (another pid) answers on the host now
        conn = FakeConnection("gpu-box", agent, recover_to=successor)
        sink = RecordingSink()
        try:
            with pytest.raises(RunLostError, match=f"agent on gpu-box stopped \\(pid {agent.pid}\\)"):
                RunFollower(conn, sink, GRACE_S).start(request())
        finally:
            gate.set()
    assert sink.output_text == "started\n" and sink.closed


def test_a_host_that_does_not_come_back_fails_the_follower_with_the_lost_connection(agent):
    agent.behaviour = prints("a", "b")
    agent.drop_stream_after = {2}
    with pytest.raises(AgentLostError):
        RunFollower(FakeConnection("local", agent, can_recover=False), RecordingSink(), GRACE_S).start(request())


def test_a_stream_that_ends_without_a_result_is_a_lost_run(agent):
    def dies(run: FakeRun) -> None:
        run.output("working\n")
        run.end_without_result(pb.LOST, "the container died (signal 9)")

    agent.behaviour = dies
    with pytest.raises(RunLostError, match="the container died"):
        RunFollower(FakeConnection("h", agent), RecordingSink(), GRACE_S).start(request())


def test_an_interrupt_cancels_the_remote_run_and_follows_it_to_its_end(agent):
    def cancellable(run: FakeRun) -> None:
        run.output("step 1\n")
        assert run.wait_cancelled(10), "the follower never cancelled the run"
        run.output("cleaning up\n")
        run.finish(pb.CANCELLED, error=KeyboardInterrupt())

    agent.behaviour = cancellable
    sink = RecordingSink(interrupt_on="step 1")
    finished = RunFollower(FakeConnection("h", agent), sink, GRACE_S).start(request())
    assert finished.state == pb.CANCELLED
    [cancel] = agent.cancel_requests
    assert not cancel.force  # a first interrupt asks politely
    assert sink.output_text == "step 1\ncleaning up\n"
    assert any("interrupted" in n for n in sink.notices)


def test_a_watcher_that_is_interrupted_leaves_the_run_alone(agent):
    gate = threading.Event()

    def slow(run: FakeRun) -> None:
        run.output("tick\n")
        gate.wait(10)
        run.finish()

    agent.behaviour = slow
    run_id = agent.client().submit(request()).run_id
    follower = RunFollower(FakeConnection("h", agent), RecordingSink(interrupt_on="tick"), GRACE_S,
                           cancel_on_interrupt=False)
    try:
        with pytest.raises(KeyboardInterrupt):
            follower.attach(run_id)
    finally:
        gate.set()
    assert agent.cancel_requests == []


def test_attach_without_follow_returns_none_while_the_run_goes_on(agent):
    gate = threading.Event()

    def slow(run: FakeRun) -> None:
        run.output("so far\n")
        gate.wait(10)
        run.finish()

    agent.behaviour = slow
    run_id = agent.client().submit(request()).run_id
    sink = RecordingSink()
    follower = RunFollower(FakeConnection("h", agent), sink, GRACE_S)
    try:
        wait_for(lambda: len(agent.runs[run_id].events) >= 2, 10, "the run's first output")
        assert follower.attach(run_id, follow=False) is None
    finally:
        gate.set()
    assert sink.output_text == "so far\n"
    assert follower.last_seq == 2
