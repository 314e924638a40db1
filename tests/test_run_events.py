"""The one reader of run events: whole UTF-8 characters across events, polls and reconnects.

Hand-made ``pb.RunEvent`` sequences stand in for the agent; a fake connection
whose first stream drops mid-character stands in for a lost SSH link.
"""

from __future__ import annotations

import pytest

from nbmodal._runtime.execution import RunFollower
from nbmodal._runtime.run_events import MAX_HELD_BACK_EVENTS, RunEvents, read_log_page
from nbmodal.exceptions import AgentLostError
from nbmodal.output import StreamSink
from nbmodal_wire import pb

pytestmark = pytest.mark.unit

TEXT = "café 日本 😀 done\n"


def split_inside_characters(text: str) -> list[bytes]:
    """The text's bytes cut in the middle of every multi-byte character."""
    data, chunks, start = text.encode(), [], 0
    for position in range(1, len(data)):
        if 0x80 <= data[position] < 0xC0 and data[position - 1] >= 0xC0:  # just after a lead byte
            chunks.append(data[start:position])
            start = position
    chunks.append(data[start:])
    return chunks


def output_events(chunks: list[bytes], first_seq: int = 2, stream: int = pb.STDOUT) -> list[pb.RunEvent]:
    return [pb.RunEvent(seq=first_seq + i, output=pb.Output(stream=stream, data=chunk))
            for i, chunk in enumerate(chunks)]


def finished_event(seq: int, **fields) -> pb.RunEvent:
    return pb.RunEvent(seq=seq, finished=pb.RunFinished(state=pb.SUCCEEDED, **fields))


def a_run(text: str = TEXT) -> list[pb.RunEvent]:
    """RunStarted, the text's output cut inside each character, RunFinished."""
    events = [pb.RunEvent(seq=1, started=pb.RunStarted(run_id="r-00000001"))]
    events += output_events(split_inside_characters(text))
    events.append(finished_event(len(events) + 1))
    return events


class Recorder:
    """A sink that keeps what it was given."""

    def __init__(self) -> None:
        self.text = {pb.STDOUT: "", pb.STDERR: ""}
        self.notices: list[str] = []
        self.closed = False

    def output(self, stream: int, text: str) -> None:
        assert isinstance(text, str)
        self.text[stream] += text

    def display(self, data: dict, metadata: dict, execute_result: bool) -> None:
        pass

    def notice(self, text: str) -> None:
        self.notices.append(text)

    def item(self, item: pb.Item) -> None:
        pass

    def close(self) -> None:
        self.closed = True


# -- the reader ----------------------------------------------------------------


def test_a_character_split_across_two_output_events_comes_out_whole():
    assert len(split_inside_characters(TEXT)) == 5  # é, 日, 本 and 😀 each span two events
    sink = Recorder()
    reader = RunEvents(sink)
    finished = reader.consume(a_run())
    assert finished is not None and finished.state == pb.SUCCEEDED
    assert sink.text[pb.STDOUT] == TEXT
    assert reader.last_seq == len(a_run())


def test_each_stream_has_its_own_decoder():
    out, err = split_inside_characters("日本\n"), split_inside_characters("é😀\n")
    events = []
    for seq, (o, e) in enumerate(zip(out, err)):  # stdout and stderr interleaved, each cut mid-character
        events += [pb.RunEvent(seq=2 * seq + 1, output=pb.Output(stream=pb.STDOUT, data=o)),
                   pb.RunEvent(seq=2 * seq + 2, output=pb.Output(stream=pb.STDERR, data=e))]
    sink = Recorder()
    RunEvents(sink).consume(events)
    assert sink.text == {pb.STDOUT: "日本\n", pb.STDERR: "é😀\n"}


def test_an_unfinished_character_at_the_end_shows_as_a_replacement_when_flushed():
    sink = Recorder()
    reader = RunEvents(sink)
    reader.consume(output_events([b"ok ", "日".encode()[:2]]))
    assert sink.text[pb.STDOUT] == "ok " and not reader.clean
    reader.flush()
    assert sink.text[pb.STDOUT] == "ok \ufffd" and reader.clean


def test_optional_hooks_are_called_when_the_sink_has_them():
    calls = []

    class Hooks(Recorder):
        def started(self, started: pb.RunStarted) -> None:
            calls.append(("started", started.run_id))

        def input_started(self, index: int) -> None:
            calls.append(("input", index))

        def finished(self, finished: pb.RunFinished) -> None:
            calls.append(("finished", pb.RunState.Name(finished.state)))

    events = [pb.RunEvent(seq=1, started=pb.RunStarted(run_id="r-1")),
              pb.RunEvent(seq=2, input_started=pb.InputStarted(index=3)), finished_event(3)]
    RunEvents(Hooks()).consume(events)
    assert calls == [("started", "r-1"), ("input", 3), ("finished", "SUCCEEDED")]
    RunEvents(Recorder()).consume(events)  # a sink without them is fine too


# -- the sidebar's log view: stateless polls -------------------------------------


def test_a_character_split_across_two_polls_comes_out_whole():
    chunks = [b"caf\xc3", b"\xa9 \xe6\x97", b"\xa5\xe6\x9c\xac ", b"\xf0\x9f", b"\x98\x80 done\n"]
    assert b"".join(chunks).decode() == TEXT
    run = [pb.RunEvent(seq=1, started=pb.RunStarted(run_id="r-1")), *output_events(chunks), finished_event(7)]
    pages, after_seq = [], 0
    # One poll each time the agent has produced one more event; most polls end inside a character.
    for produced in range(2, len(run) + 1):
        page = read_log_page([e for e in run[:produced] if e.seq > after_seq], after_seq)
        pages.append((page.text, page.last_seq))
        after_seq = page.last_seq
    assert page.done
    assert pages == [("", 1), ("", 1), ("café 日本 ", 4), ("", 4), ("😀 done\n", 6), ("", 7)]


def test_polls_cut_inside_every_character_still_show_the_whole_text():
    run = a_run()
    shown, after_seq = "", 0
    for produced in range(2, len(run) + 1):
        page = read_log_page([e for e in run[:produced] if e.seq > after_seq], after_seq)
        shown += page.text
        assert "\ufffd" not in shown
        after_seq = page.last_seq
    assert page.done and shown == TEXT and after_seq == len(run)


def test_a_poll_ending_mid_character_stops_before_it_and_the_next_continues_there():
    events = output_events([b"hello ", "日".encode()[:1], "日".encode()[1:]], first_seq=1)
    page = read_log_page(events[:2], 0)
    assert page == ("hello ", 1, False)  # the half character's event is read again next time
    page = read_log_page(events[1:], page.last_seq)
    assert page == ("日", 3, False)


def test_a_poll_releases_a_held_character_when_the_run_has_ended():
    events = output_events([b"x", "本".encode()[:2]], first_seq=1)
    assert read_log_page(events, 0, final=True) == ("x\ufffd", 2, False)


def test_a_writer_that_never_finishes_a_character_does_not_stall_the_log():
    events = output_events(["本".encode()[:1]], first_seq=1, stream=pb.STDERR)
    events += output_events([b"."] * (MAX_HELD_BACK_EVENTS + 1), first_seq=2)
    page = read_log_page(events, 0)
    assert page.last_seq == len(events)
    assert sorted(page.text) == sorted("." * (MAX_HELD_BACK_EVENTS + 1) + "\ufffd")  # released, as U+FFFD


def test_a_log_page_shows_notices_and_the_error():
    events = [pb.RunEvent(seq=1, notice=pb.Notice(text="waiting for a GPU")),
              *output_events([b"out\n"], first_seq=2),
              pb.RunEvent(seq=3, finished=pb.RunFinished(
                  state=pb.FAILED, error=pb.ErrorInfo(type_name="ValueError", message="bad")))]
    assert read_log_page(events, 0) == ("[nbmodal] waiting for a GPU\nout\nValueError: bad\n", 3, True)


# -- following with reconnect and resume -----------------------------------------


class FakeClient:
    """Answers the calls RunFollower makes; ``streams`` are what successive Run/Attach calls yield."""

    def __init__(self, run: list[pb.RunEvent], drop_after_seq: int) -> None:
        self.hello = pb.HelloReply(pid=4242)
        self.run_events = run
        self.drop_after_seq = drop_after_seq
        self.attached_after: list[int] = []
        self.cancelled: list[str] = []

    def _stream(self, after_seq: int):
        for event in self.run_events:
            if event.seq <= after_seq:
                continue
            if self.drop_after_seq and event.seq > self.drop_after_seq:
                self.drop_after_seq = 0  # only the first stream drops
                raise AgentLostError("lost the connection to the test agent")
            yield event

    def attach(self, run_id: str, after_seq: int = 0, follow: bool = True, timeout: float | None = None):
        self.attached_after.append(after_seq)
        return FakeCall(self._stream(after_seq))

    def run(self, request: pb.RunRequest):
        return FakeCall(self._stream(1))

    def get_run(self, run_id: str) -> pb.RunInfo:
        return pb.RunInfo(run_id=run_id, state=pb.RUNNING, label="test run")

    def cancel(self, run_id: str, force: bool = False) -> pb.RunInfo:
        self.cancelled.append(run_id)
        return self.get_run(run_id)


class FakeCall:
    def __init__(self, events) -> None:
        self._events = events

    def __iter__(self):
        return iter(self._events)

    def cancel(self) -> None:
        pass


class FakeConnection:
    name = "fakehost"

    def __init__(self, client: FakeClient) -> None:
        self._client = client
        self.recovered = 0

    def client(self) -> FakeClient:
        return self._client

    def recover(self, lost: AgentLostError) -> FakeClient:
        self.recovered += 1
        return self._client


def test_follower_resumes_after_a_drop_in_the_middle_of_a_character():
    run = a_run()
    client = FakeClient(run, drop_after_seq=3)  # the stream drops after "café 日"'s first half of 日
    sink = Recorder()
    follower = RunFollower(FakeConnection(client), sink, grace_s=1)
    finished = follower.attach("r-00000001")
    assert finished.state == pb.SUCCEEDED
    assert client.attached_after == [0, 3]
    assert sink.text[pb.STDOUT] == TEXT
    assert any("reconnecting" in n for n in sink.notices) and any("resuming" in n for n in sink.notices)
    assert sink.closed and follower.last_seq == len(run)


def test_the_cell_sink_writes_whole_characters(capsys):
    client = FakeClient(a_run(), drop_after_seq=0)
    request = pb.RunRequest(run_id="r-00000001", kind=pb.CELL)
    RunFollower(FakeConnection(client), StreamSink(), grace_s=1).start(request)
    assert capsys.readouterr().out == TEXT


def test_detached_widget_reconnects_and_resumes():
    pytest.importorskip("ipywidgets")
    from nbmodal.widgets import RunWidget

    run = a_run()
    client = FakeClient(run, drop_after_seq=4)
    connection = FakeConnection(client)
    widget = RunWidget(client, client.get_run("r-00000001"), connection=connection)
    widget._follow()  # what its background thread does
    assert connection.recovered == 1 and client.attached_after == [0, 4]
    # the stream dropped between the two halves of 本: it is whole, after the notices
    assert widget.output.value.endswith("café 日\n[nbmodal] connection to fakehost lost; reconnecting (the run goes on "
                                        "there)\n[nbmodal] reconnected to fakehost; resuming run r-00000001\n"
                                        "本 😀 done\n</pre>")
    assert "succeeded" in widget.header.value and widget.stop_button.disabled
    widget.stop()
    assert client.cancelled == ["r-00000001"]


def test_detached_widget_reports_a_run_it_cannot_follow():
    pytest.importorskip("ipywidgets")
    from nbmodal.widgets import RunWidget

    class Unrecoverable(FakeConnection):
        def recover(self, lost: AgentLostError) -> FakeClient:
            raise lost

    client = FakeClient(a_run(), drop_after_seq=2)
    widget = RunWidget(client, client.get_run("r-00000001"), connection=Unrecoverable(client))
    widget._follow()
    assert "lost" in widget.header.value
    assert "stopped following: lost the connection to the test agent" in widget.output.value
