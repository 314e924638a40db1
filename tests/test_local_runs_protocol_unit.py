"""The agent's end of the local run socket as a protocol (remote_agent/local_runs.py): frames taken as they
arrive, each event written as the run records it, writes held while the client's buffer is full (the
waiting output then coalesced), refusals and lost runs answered as before."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from nbmodal_wire import local_runs as wire
from nbmodal_wire import pb
from remote_agent.local_runs import _Connection
from remote_agent.output_limits import OutputGate
from remote_agent.runs import COALESCE_FROM, Run, RunRegistry

pytestmark = pytest.mark.unit

TOKEN = b"the-token"


class Agent:
    """Submits runs into a real registry, as Agent.submit does (RunStarted first); refuses a bad run id."""

    def __init__(self, runs_dir: Path) -> None:
        self.runs = RunRegistry(runs_dir)
        self.submitted: list[Run] = []

    def submit(self, request: pb.RunRequest) -> Run:
        run = self.runs.create(request)  # ValueError for a malformed run id
        run.emit(started=pb.RunStarted(run_id=run.id))
        self.submitted.append(run)
        return run


class Transport:
    """Records what is written; ``close`` ends the connection as asyncio's would (later, once flushed)."""

    def __init__(self, protocol: _Connection) -> None:
        self.protocol = protocol
        self.written = bytearray()
        self.closing = False

    def write(self, data: bytes) -> None:
        assert not self.closing, "written after close"
        self.written += data

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def is_closing(self) -> bool:
        return self.closing

    def frames(self) -> list[tuple[int, bytes]]:
        frames, data = [], bytes(self.written)
        while data:
            length, kind = wire.HEADER.unpack_from(data)
            frames.append((kind, data[wire.HEADER.size: wire.HEADER.size + length]))
            data = data[wire.HEADER.size + length:]
        self.written.clear()
        return frames

    def events(self) -> list[pb.RunEvent]:
        frames = self.frames()
        assert all(kind == wire.EVENT for kind, _ in frames), frames
        return [pb.RunEvent.FromString(body) for _, body in frames]


def connect(tmp_path: Path) -> tuple[Agent, _Connection, Transport]:
    agent = Agent(tmp_path / "runs")
    protocol = _Connection(agent, TOKEN)  # type: ignore[arg-type]
    transport = Transport(protocol)
    protocol.connection_made(transport)  # type: ignore[arg-type]
    return agent, protocol, transport


def request(run_id: str) -> bytes:
    return wire.frame(wire.REQUEST, pb.RunRequest(kind=pb.FUNCTION, label="f()", run_id=run_id).SerializeToString())


def run_scenario(scenario: Any) -> None:
    asyncio.run(scenario())


def test_frames_in_pieces_then_events_as_they_are_recorded_and_the_next_run(tmp_path):
    async def scenario() -> None:
        agent, protocol, transport = connect(tmp_path)
        data = wire.frame(wire.TOKEN, TOKEN) + request("r-00000001") + request("r-00000002")
        for byte in range(len(data)):  # however the bytes arrive
            protocol.data_received(data[byte: byte + 1])
        (run,) = agent.submitted  # the second request waits for the first run's end
        assert transport.frames() == []  # its RunStarted is not sent: the client knows the id
        run.emit(output=pb.Output(stream=pb.STDOUT, data=b"hello\n"))
        (printed,) = transport.events()  # written as it was recorded, with no turn of the event loop
        assert printed.output.data == b"hello\n"
        run.finish(pb.RunFinished(state=pb.SUCCEEDED, return_value=b"42"))
        (finished,) = transport.events()
        assert finished.finished.return_value == b"42"
        assert len(agent.submitted) == 1  # the next request on a turn of its own
        await asyncio.sleep(0)
        assert [r.id for r in agent.submitted] == ["r-00000001", "r-00000002"]
        agent.submitted[1].finish(pb.RunFinished(state=pb.FAILED))
        assert transport.events()[0].finished.state == pb.FAILED
        assert not transport.closing

    run_scenario(scenario)


def test_a_full_buffer_holds_the_events_and_the_waiting_output_is_coalesced(tmp_path):
    async def scenario() -> None:
        agent, protocol, transport = connect(tmp_path)
        protocol.data_received(wire.frame(wire.TOKEN, TOKEN) + request("r-00000001"))
        (run,) = agent.submitted
        protocol.pause_writing()
        for n in range(COALESCE_FROM + 2):
            run.emit(output=pb.Output(stream=pb.STDOUT, data=f"{n};".encode()))
        run.finish(pb.RunFinished(state=pb.SUCCEEDED))
        assert transport.frames() == []
        protocol.resume_writing()
        joined, finished = transport.events()
        assert joined.output.data == "".join(f"{n};" for n in range(COALESCE_FROM + 2)).encode()
        assert joined.seq == finished.seq - 1 and finished.HasField("finished")

    run_scenario(scenario)


def test_a_wrong_token_is_closed_without_a_word_and_submits_nothing(tmp_path):
    async def scenario() -> None:
        agent, protocol, transport = connect(tmp_path)
        protocol.data_received(wire.frame(wire.TOKEN, b"wrong") + request("r-00000001"))
        assert transport.closing and transport.frames() == [] and agent.submitted == []
        agent, protocol, transport = connect(tmp_path)
        protocol.data_received(request("r-00000001"))  # no token first
        assert transport.closing and agent.submitted == []

    run_scenario(scenario)


def test_a_refused_run_is_answered_with_its_grpc_status_and_the_connection_ends(tmp_path):
    async def scenario() -> None:
        agent, protocol, transport = connect(tmp_path)
        protocol.data_received(wire.frame(wire.TOKEN, TOKEN) + request("not-a-run-id") + request("r-00000001"))
        ((kind, body),) = transport.frames()
        assert kind == wire.REFUSED
        name, details = wire.parse_refusal(body)
        assert name == "INVALID_ARGUMENT" and "is not of the form" in details
        assert transport.closing
        await asyncio.sleep(0)
        assert agent.submitted == []  # nothing after a refusal

    run_scenario(scenario)


def test_a_run_over_without_its_result_ends_the_connection(tmp_path):
    async def scenario() -> None:
        agent, protocol, transport = connect(tmp_path)
        protocol.data_received(wire.frame(wire.TOKEN, TOKEN) + request("r-00000001"))
        (run,) = agent.submitted
        run.info.state = pb.LOST  # its agent lost track of it: no finished event comes
        run.emit(notice=pb.Notice(text="lost"))
        (notice,) = transport.events()
        assert notice.notice.text == "lost" and not transport.closing
        await asyncio.sleep(0)  # the recording is over, and still no result
        assert transport.closing  # its client then asks what happened

    run_scenario(scenario)


def test_events_recorded_in_finish_before_the_result_are_followed_by_it(tmp_path):
    # Output over the run's cap: finish() records a marker event (its state already final), then the result.
    async def scenario() -> None:
        agent, protocol, transport = connect(tmp_path)
        protocol.data_received(wire.frame(wire.TOKEN, TOKEN) + request("r-00000001"))
        (run,) = agent.submitted
        run._output_gate = OutputGate(4)
        run.emit_output(pb.Output(stream=pb.STDOUT, data=b"over the cap"))
        run.finish(pb.RunFinished(state=pb.SUCCEEDED, return_value=b"1"))
        await asyncio.sleep(0)
        events = transport.events()
        assert [event.WhichOneof("kind") for event in events] == ["output", "output", "finished"]
        assert b"left out" in events[1].output.data and events[2].finished.return_value == b"1"
        assert not transport.closing

    run_scenario(scenario)


def test_a_client_gone_mid_run_leaves_the_run_going(tmp_path):
    async def scenario() -> None:
        agent, protocol, transport = connect(tmp_path)
        protocol.data_received(wire.frame(wire.TOKEN, TOKEN) + request("r-00000001"))
        (run,) = agent.submitted
        assert protocol.eof_received() is False
        protocol.connection_lost(None)
        run.emit(output=pb.Output(stream=pb.STDOUT, data=b"still running\n"))
        run.finish(pb.RunFinished(state=pb.SUCCEEDED))
        assert transport.frames() == [] and run.done

    run_scenario(scenario)
