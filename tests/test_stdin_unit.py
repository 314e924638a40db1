"""A run's stdin, piece by piece in process: the container's side, the agent's record, the client's answers."""

from __future__ import annotations

import asyncio
import builtins
import sys
import threading
from pathlib import Path

import pytest

from nbmodal._runtime.run_events import RunEvents, read_log_page
from nbmodal._runtime.stdin_answers import StdinAnswers, prompt_for
from nbmodal.exceptions import AgentError
from nbmodal_wire import pb
from nbmodal_wire.debugger_floor import DebuggerFloor, ends_session
from remote_agent.request_errors import RequestError
from remote_agent.runs import Run
from remote_agent.worker import context as worker_context
from remote_agent.worker import stdin as worker_stdin

pytestmark = pytest.mark.unit


class _Sink:
    def __init__(self) -> None:
        self.out: list[str] = []
        self.notices: list[str] = []
        self.prompted = 0

    def output(self, stream: int, text: str) -> None:
        self.out.append(text)

    def display(self, data, metadata, execute_result) -> None:
        pass

    def notice(self, text: str) -> None:
        self.notices.append(text)

    def item(self, item) -> None:
        pass

    def close(self) -> None:
        pass

    def before_prompt(self) -> None:
        self.prompted += 1


def _events(*kinds: dict) -> list[pb.RunEvent]:
    return [pb.RunEvent(seq=seq, **kind) for seq, kind in enumerate(kinds, start=1)]


SESSION = _events(
    {"output": pb.Output(stream=pb.STDOUT, data=b"> f()\n")},
    {"input_request": pb.InputRequest(prompt="(Pdb) ", debugger=True, input_index=-1)},
    {"input_answered": pb.InputAnswered(request_seq=2, text="p x")},
    {"output": pb.Output(stream=pb.STDOUT, data=b"41\n")},
)


def test_a_viewer_that_does_not_answer_sees_prompt_and_answer_as_typed():
    sink = _Sink()
    RunEvents(sink).consume(SESSION)
    assert "".join(sink.out) == "> f()\n(Pdb) p x\n41\n"
    assert read_log_page(SESSION, 0).text == "> f()\n(Pdb) p x\n41\n"  # the sidebar's log view


def test_a_follower_that_answers_shows_neither_again():
    sink, asked = _Sink(), []
    events = RunEvents(sink, on_input=lambda seq, request: asked.append((seq, request.prompt)) or True)
    events.consume(SESSION)
    assert asked == [(2, "(Pdb) ")] and "".join(sink.out) == "> f()\n41\n"


class _Client:
    def __init__(self, waiting_seq: int, refuse: bool = False) -> None:
        self.waiting_seq = waiting_seq
        self.refuse = refuse
        self.answers: list[tuple] = []

    def get_run(self, run_id: str) -> pb.RunInfo:
        return pb.RunInfo(run_id=run_id, input_request_seq=self.waiting_seq)

    def answer_input(self, run_id: str, seq: int, text: str, eof: bool = False) -> None:
        if self.refuse:
            raise AgentError("run r-1 is not waiting for input")
        self.answers.append((run_id, seq, text, eof))


def test_answers_are_asked_for_the_request_still_waiting_only():
    sink, prompts = _Sink(), []
    answers = StdinAnswers(ask=lambda prompt: prompts.append(prompt) or "n")
    request = pb.InputRequest(prompt="(Pdb) ", input_index=3)
    assert answers.answer(_Client(7), "r-1", 7, request, sink) is True
    assert prompts == ["[input 3] (Pdb) "] and sink.prompted == 1  # a map's input says which
    stale = _Client(0)
    assert answers.answer(stale, "r-1", 7, request, sink) is False and stale.answers == []
    refused = _Client(7, refuse=True)
    assert answers.answer(refused, "r-1", 7, request, sink) is True
    assert "not used" in sink.notices[-1]
    assert prompt_for(pb.InputRequest(prompt="? ", input_index=-1)) == "? "


def test_end_of_input_and_a_frontend_without_stdin_send_eof():
    sink, client = _Sink(), _Client(4)

    def no_stdin(prompt: str) -> str:
        raise NotImplementedError("raw_input was called, but this frontend does not support input requests.")

    def ctrl_d(prompt: str) -> str:
        raise EOFError

    StdinAnswers(ask=no_stdin).answer(client, "r-1", 4, pb.InputRequest(), sink)
    StdinAnswers(ask=ctrl_d).answer(client, "r-1", 4, pb.InputRequest(), sink)
    assert client.answers == [("r-1", 4, "", True)] * 2
    assert "can't answer" in sink.notices[0]


def test_the_agent_records_the_wait_and_refuses_stale_answers(tmp_path: Path):
    async def scenario() -> None:
        run = Run(tmp_path / "r-1", pb.RunInfo(run_id="r-00000001", state=pb.RUNNING), pb.RunRequest())
        run.request_input(pb.InputRequest(prompt="(Pdb) "))
        seq = run.info.input_request_seq
        assert run.info.state == pb.WAITING_FOR_DEBUGGER and run.events[-1].input_request.prompt == "(Pdb) "
        with pytest.raises(RequestError, match="answered already"):
            run.answer_input(seq + 5, "c", False)
        assert run.answer_input(seq, "c", False) == pb.InputAnswer(text="c")
        assert run.info.state == pb.RUNNING and run.info.input_request_seq == 0
        assert run.events[-1].input_answered == pb.InputAnswered(request_seq=seq, text="c")
        with pytest.raises(RequestError, match="not waiting"):
            run.answer_input(seq, "c", False)
        run.request_input(pb.InputRequest(prompt="(Pdb) "))
        run.request_input(pb.InputRequest(withdrawn=True))  # interrupted: nothing waits any more
        assert run.info.state == pb.RUNNING and run.info.input_request_seq == 0
        run.flush()

    asyncio.run(scenario())


def test_the_container_asks_one_line_at_a_time_and_input_uses_it():
    sent: list[pb.FromContainer] = []
    replies = [pb.InputAnswer(text="Ada"), pb.InputAnswer(text="two"), pb.InputAnswer(eof=True)]

    def send(message: pb.FromContainer) -> None:  # the agent forwards the next answer once asked
        sent.append(message)
        channel.on_answer(pb.ToContainer(input_answer=replies.pop(0)))

    channel = worker_stdin.StdinChannel(send, lambda: None)
    channel.on_answer(pb.ToContainer(input_answer=pb.InputAnswer(text="stale")))  # of a withdrawn request
    saved = sys.stdin, builtins.input, sys.breakpointhook
    outside_a_map = worker_context._in_batch.set(False)  # other tests may have run a map's input here
    try:
        stdin = worker_stdin.install(channel)
        assert input("name? ") == "Ada"
        assert sent[-1].input_request == pb.InputRequest(prompt="name? ", input_index=-1)
        assert stdin.read() == "two\n" and len(sent) == 3
        assert stdin.readline() == "" and len(sent) == 3  # after end of input, as a pipe: not asked again
        with pytest.raises(OSError):
            stdin.fileno()
        replies.append(pb.InputAnswer(text="c"))
        import pdb

        assert pdb.Pdb(nosigint=True).runcall(lambda: 6 * 7) == 42
        assert sent[-1].input_request.debugger and sent[-1].input_request.prompt == "(Pdb) "
    finally:
        sys.stdin, builtins.input, sys.breakpointhook = saved
        worker_context._in_batch.reset(outside_a_map)


def test_quitting_the_debugger_says_so():
    import bdb

    exc = bdb.BdbQuit()
    worker_stdin.explain_debugger_quit(exc)
    assert "debugger was quit (q or end of input)" in str(exc)


def test_the_floor_stays_with_a_session_until_it_continues():
    now = [0.0]
    floor = DebuggerFloor(hold_s=30.0, clock=lambda: now[0])
    floor.take("a")
    floor.answered("a", "p x")  # a step: the session will ask again, it keeps the floor
    waiter = threading.Thread(target=floor.take, args=("b",))
    waiter.start()
    waiter.join(0.1)
    assert waiter.is_alive()  # b waits its turn
    floor.take("a")  # a's next prompt
    floor.answered("a", "c")  # a goes on: b's turn
    waiter.join(5)
    assert not waiter.is_alive()
    floor.answered("b", "n")
    now[0] = 31.0  # b asked nothing more for longer than the hold: a may take the floor back
    floor.take("a")
    assert [ends_session(line) for line in ("c", "continue", "q", None, "p x;; c", "n", "", "p c")] == [
        True, True, True, True, True, False, False, False]


def test_the_source_of_code_from_the_notebook_travels_for_pdb(tmp_path: Path):
    import functools
    import linecache

    from nbmodal._runtime.debug_sources import debug_sources

    cell = "<ipython-input-7-abc>"  # a cell IPython keeps in linecache; its functions name it
    linecache.cache[cell] = (21, None, ["def f(x):\n", "    return x\n"], cell)
    namespace: dict = {}
    exec(compile("def f(x):\n    return x\n", cell, "exec"), namespace)

    class Model:
        def predict(self):
            return 1

    sources = debug_sources(namespace["f"])
    assert sources == {cell: "def f(x):\n    return x\n"}
    assert __file__ in debug_sources(Model) and __file__ in debug_sources(functools.partial(print, Model, "predict"))
    assert debug_sources(linecache.getlines) == {}  # the standard library: the host has its own
    del linecache.cache[cell]
    worker_stdin.remember_sources({cell: "def f(x):\n    return x\n", __file__: "not this"})
    assert linecache.getline(cell, 2) == "    return x\n"
    assert linecache.getline(__file__, 1) != "not this"  # a file the host has is its own
    linecache.checkcache()
    assert linecache.getline(cell, 1) == "def f(x):\n"
    del linecache.cache[cell]
