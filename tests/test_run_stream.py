"""The warm-run fast path (nbmodal/_runtime/run_stream.py): a client's runs go one after another on
one RunStream call; a run that another thread starts meanwhile takes a Run call; a run not followed
to its end closes its stream (the next run opens another); an agent without RunStream is asked once.

Against the in-process fake agent, given a RunStream that answers each request as its Run does."""

from __future__ import annotations

import threading

import grpc
import pytest
from fakeagent import FakeAgent, FakeConnection, FakeRun
from test_follower_unit import GRACE_S, RecordingSink, prints, request
from waiting import wait_for

from nbmodal._runtime.execution import RunFollower
from nbmodal.exceptions import RunLostError
from nbmodal_wire import pb

pytestmark = pytest.mark.unit


class StreamingFakeAgent(FakeAgent):
    """The fake agent with remote_agent/service.py's RunStream: each request answered as Run answers it."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.streams_opened = 0
        self.streamed_requests: list[pb.RunRequest] = []

    def RunStream(self, requests, context):
        self._check_token(context)
        with self._lock:
            self.streams_opened += 1
        for run_request in requests:
            with self._lock:
                self.streamed_requests.append(run_request)
            run = self._take(run_request)
            yield from self._stream(run, 1, True, context)
            if run.events[-1].WhichOneof("kind") != "finished":
                return  # lost: the stream ends, as Run's would


class StreamlessFakeAgent(FakeAgent):
    """An agent that predates RunStream, counting how often it was asked for one."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.stream_attempts = 0

    def RunStream(self, requests, context):
        with self._lock:
            self.stream_attempts += 1
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not implemented!")


def follow(conn: FakeConnection, sink: RecordingSink | None = None) -> pb.RunFinished:
    return RunFollower(conn, sink or RecordingSink(), GRACE_S).start(request())


def test_consecutive_runs_share_one_stream_and_each_gets_only_its_own_events():
    with StreamingFakeAgent(behaviour=prints("one", "two")) as agent:
        conn = FakeConnection("h", agent)
        for _ in range(3):
            sink = RecordingSink()
            assert follow(conn, sink).state == pb.SUCCEEDED
            assert sink.output_text == "one\ntwo\n" and sink.closed
        assert agent.streams_opened == 1
        assert len(agent.streamed_requests) == 3 and agent.run_requests == []  # no Run call was needed


def test_a_run_started_while_the_stream_is_busy_takes_a_run_call_and_neither_waits_for_the_other():
    gate = threading.Event()

    def first_waits(run: FakeRun) -> None:
        run.output(run.request.label + "\n")
        if run.request.label == "slow":
            gate.wait(10)
        run.finish()

    with StreamingFakeAgent(behaviour=first_waits) as agent:
        conn = FakeConnection("h", agent)
        slow_sink, results = RecordingSink(), []
        slow = threading.Thread(target=lambda: results.append(RunFollower(conn, slow_sink, GRACE_S).start(
            pb.RunRequest(kind=pb.CELL, label="slow"))))
        slow.start()
        try:
            wait_for(lambda: slow_sink.output_text == "slow\n", timeout=10, what="the slow run to print")
            fast_sink = RecordingSink()
            fast = RunFollower(conn, fast_sink, GRACE_S).start(pb.RunRequest(kind=pb.CELL, label="fast"))
            assert fast.state == pb.SUCCEEDED and fast_sink.output_text == "fast\n"
            assert [r.label for r in agent.run_requests] == ["fast"]  # the busy stream was not waited for
        finally:
            gate.set()
            slow.join(10)
        assert [r.state for r in results] == [pb.SUCCEEDED]
        assert follow(conn).state == pb.SUCCEEDED  # the stream is free again: the next run takes it
        assert agent.streams_opened == 1 and len(agent.streamed_requests) == 2


def test_an_interrupted_run_closes_its_stream_and_the_next_run_opens_another():
    def cancellable(run: FakeRun) -> None:
        run.output("step 1\n")
        if run.wait_cancelled():
            run.finish(pb.CANCELLED, error=KeyboardInterrupt("interrupted"))

    with StreamingFakeAgent(behaviour=cancellable) as agent:
        conn = FakeConnection("h", agent)
        finished = follow(conn, RecordingSink(interrupt_on="step 1"))
        assert finished.state == pb.CANCELLED  # followed to its end through an attach
        agent.behaviour = prints("after")
        sink = RecordingSink()
        assert follow(conn, sink).state == pb.SUCCEEDED and sink.output_text == "after\n"
        assert agent.streams_opened == 2


def test_a_stream_that_drops_mid_run_resumes_after_the_last_event_and_a_new_stream_serves_the_next_run():
    with StreamingFakeAgent(behaviour=prints("a", "b", "c")) as agent:
        agent.drop_stream_after = {2}
        conn = FakeConnection("h", agent)
        sink = RecordingSink()
        assert follow(conn, sink).state == pb.SUCCEEDED
        assert sink.output_text == "a\nb\nc\n" and conn.recoveries == 1
        assert [a.after_seq for a in agent.attach_requests] == [2]
        assert follow(conn).state == pb.SUCCEEDED and agent.streams_opened == 2


def test_a_lost_run_on_the_stream_is_reported_lost():
    def dies(run: FakeRun) -> None:
        run.output("working\n")
        run.end_without_result(pb.LOST, "the container died (signal 9)")

    with StreamingFakeAgent(behaviour=dies) as agent:
        with pytest.raises(RunLostError, match="the container died"):
            follow(FakeConnection("h", agent))


def test_an_agent_without_run_stream_is_asked_once_and_its_runs_take_run_calls():
    with StreamlessFakeAgent(behaviour=prints("x")) as agent:
        conn = FakeConnection("h", agent)
        for _ in range(3):
            sink = RecordingSink()
            assert follow(conn, sink).state == pb.SUCCEEDED and sink.output_text == "x\n"
        assert agent.stream_attempts == 1 and len(agent.run_requests) == 3
