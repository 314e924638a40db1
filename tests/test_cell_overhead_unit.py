"""What a warm %%remote cell no longer does, and what it still must: a follower answers stdin while it
follows and leaves no cycle behind, a sink is set up from the shell at hand, a run that printed nothing
flushes nothing, and each run's options are its line's."""

from __future__ import annotations

import gc
import io
import weakref
from dataclasses import replace
from types import SimpleNamespace

import pytest
from fakeagent import FakeAgent, FakeConnection, FakeRun

from nbmodal import remote_cell
from nbmodal._runtime.execution import RunFollower
from nbmodal._runtime.run_events import RunEvents
from nbmodal.output import StreamSink, default_sink
from nbmodal.remote_cell import CellOptions, run_options
from nbmodal_wire import pb

pytestmark = pytest.mark.unit


class Sink:
    def __init__(self) -> None:
        self.text: list[str] = []

    def output(self, stream: int, text: str) -> None:
        self.text.append(text)

    def display(self, data: dict, metadata: dict, execute_result: bool) -> None:
        pass

    def notice(self, text: str) -> None:
        self.text.append(f"[notice] {text}")

    def item(self, item: pb.Item) -> None:
        pass

    def close(self) -> None:
        pass


class Answers:
    """Stands in for StdinAnswers: answers every request, and records it."""

    def __init__(self) -> None:
        self.asked: list[tuple[int, str]] = []
        self.released: list[str] = []

    def answer(self, client, run_id: str, seq: int, request: pb.InputRequest, sink) -> bool:
        self.asked.append((seq, request.prompt))
        return True

    def finished(self, run_id: str) -> None:
        self.released.append(run_id)


def asks_then_finishes(run: FakeRun) -> None:
    run._emit(input_request=pb.InputRequest(prompt="(Pdb) "))
    run.finish()


def test_a_follower_answers_input_while_following_and_is_freed_without_the_collector():
    answers, sink = Answers(), Sink()
    with FakeAgent(asks_then_finishes) as agent:
        follower = RunFollower(FakeConnection("h", agent), sink, 5.0, answer_input=answers)
        finished = follower.start(pb.RunRequest(kind=pb.CELL, code="breakpoint()"))
    assert finished.state == pb.SUCCEEDED
    assert answers.asked == [(2, "(Pdb) ")] and answers.released == [follower.run_id]
    assert "(Pdb) " not in "".join(sink.text)  # answered here: its prompt isn't shown again
    enabled = gc.isenabled()
    gc.disable()
    try:
        freed = weakref.ref(follower)
        del follower
        assert freed() is None  # no cycle through its own bound method: reference counting frees it
    finally:
        if enabled:
            gc.enable()


def test_a_follower_without_stdin_answers_shows_the_prompt():
    sink = Sink()
    with FakeAgent(asks_then_finishes) as agent:
        RunFollower(FakeConnection("h", agent), sink, 5.0).start(pb.RunRequest(kind=pb.CELL))
    assert "(Pdb) " in "".join(sink.text)


def test_the_finished_event_ends_the_stream_with_what_the_decoders_held():
    sink = Sink()
    events = RunEvents(sink)
    assert events.dispatch(pb.RunEvent(seq=2, output=pb.Output(stream=pb.STDOUT, data="é".encode()[:1]))) is None
    finished = events.dispatch(pb.RunEvent(seq=3, finished=pb.RunFinished(state=pb.SUCCEEDED)))
    assert finished is not None and finished.state == pb.SUCCEEDED
    assert sink.text == ["\ufffd"] and events.last_seq == 3


def test_a_sink_is_rich_in_a_kernel_and_plain_elsewhere():
    assert default_sink(SimpleNamespace(kernel=object()))._rich
    assert not default_sink(SimpleNamespace())._rich


def test_a_sink_that_got_nothing_writes_nothing_and_one_that_got_a_redraw_shows_its_line(monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    quiet = StreamSink()
    quiet.close()
    assert out.getvalue() == ""
    sink = StreamSink()
    sink.output(pb.STDOUT, "10%\r50%")
    sink.output(pb.STDOUT, "\r90%")  # a redraw soon after another: held back until the next, or the end
    sink.close()
    assert out.getvalue().endswith("\r90%")


def test_run_options_are_the_lines_and_kept_per_distinct_line():
    line = dict(timeout=5, grace=1, session="s", detach=True, max_result_bytes=99)
    options = run_options(CellOptions(**line))
    assert (options.timeout_s, options.grace_s, options.session, options.detach, options.max_result_bytes) == \
        (5, 1, "s", True, 99)
    assert run_options(CellOptions(**line)) is options
    for changed in (dict(timeout=6), dict(grace=2), dict(session="t"), dict(detach=False), dict(max_result_bytes=9)):
        other = run_options(CellOptions(**{**line, **changed}))
        assert other is not options and other == replace(options, **{_RUN_FIELDS[k]: v for k, v in changed.items()})
    secret = (pb.SecretSource(name="hf"),)
    assert run_options(CellOptions(secrets=secret)).secrets == secret
    assert not run_options(CellOptions()).secrets  # a line without secrets= doesn't get the last one's
    for n in range(100):  # bounded
        run_options(CellOptions(timeout=n + 1))
    assert remote_cell._kept_run_options.cache_info().currsize <= remote_cell._kept_run_options.cache_info().maxsize


_RUN_FIELDS = {"timeout": "timeout_s", "grace": "grace_s", "session": "session", "detach": "detach",
               "max_result_bytes": "max_result_bytes"}
