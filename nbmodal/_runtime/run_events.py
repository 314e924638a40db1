"""The one reader of a run's event stream: seqs, UTF-8 text and dispatch to a sink.

Every view of a run (the cell and ``f.remote()``, the detached-run widget,
``nbmodal logs|attach``, the sidebar's log view) reads the same
``pb.RunEvent`` stream. ``RunEvents`` is the single place that turns it into
calls on a sink: it remembers the last seq seen (where a resumed stream
continues) and decodes each stream's raw bytes with an incremental UTF-8
decoder of its own, so a character split across two pipe reads, two events
or a reconnect comes out whole. Sinks therefore receive text, never bytes.

``read_log_page`` serves a log view that polls with ``after_seq`` and keeps
no state between polls.
"""

from __future__ import annotations

import codecs
import json
import logging
from collections.abc import Callable, Iterable
from typing import NamedTuple

from nbmodal.output import OutputSink
from nbmodal_wire import pb

log = logging.getLogger(__name__)


def _new_decoder() -> codecs.IncrementalDecoder:
    # "replace": bytes that are not UTF-8 at all still show, as U+FFFD, rather than failing the run's view.
    return codecs.getincrementaldecoder("utf-8")(errors="replace")


class RunEvents:
    """Feeds one run's events, in seq order, to a sink; spans reconnects and resumed streams."""

    def __init__(self, sink: OutputSink, last_seq: int = 0,
                 on_input: Callable[[int, pb.InputRequest], bool] | None = None) -> None:
        self.sink = sink
        self.last_seq = last_seq
        self._decoders: dict[int, codecs.IncrementalDecoder] = {}
        # Answers a stdin request (seq, request) here and says whether it did (stdin_answers.py); a request
        # it didn't answer shows as its prompt, and its answer, when it comes, as the line typed.
        self.on_input = on_input
        self._answered_here: set[int] = set()

    def consume(self, events: Iterable[pb.RunEvent]) -> pb.RunFinished | None:
        """Dispatch events until the run's ``finished`` event (returned) or the stream's end (None)."""
        for event in events:
            finished = self.dispatch(event)
            if finished is not None:
                return finished
        return None

    def dispatch(self, event: pb.RunEvent) -> pb.RunFinished | None:
        """Hand one event to the sink; the run's result if this is its last event."""
        self.last_seq = event.seq
        kind = event.WhichOneof("kind")
        if kind == "output":
            self._output(event.output.stream, event.output.data)
        elif kind == "finished":  # every run's last event: second only to output, the commonest
            self.flush()
            self._optional("finished", event.finished)
            return event.finished
        elif kind == "display":
            self.sink.display(_json(event.display.data_json), _json(event.display.metadata_json),
                              event.display.execute_result)
        elif kind == "notice":
            self.sink.notice(event.notice.text)
        elif kind == "item":
            self.sink.item(event.item)
        elif kind == "input_started":
            self._optional("input_started", event.input_started.index)
        elif kind == "started":
            self._optional("started", event.started)
        elif kind == "input_request":
            self._input_request(event.seq, event.input_request)
        elif kind == "input_answered":
            if event.input_answered.request_seq not in self._answered_here:  # typed here: shown already
                self._output(pb.STDOUT, event.input_answered.text.encode() + b"\n")
        return None

    @property
    def clean(self) -> bool:
        """True when no stream holds the first bytes of an unfinished character."""
        return not any(decoder.getstate()[0] for decoder in self._decoders.values())

    def flush(self) -> None:
        """The stream is over: pass on what the decoders hold (an unfinished character shows as U+FFFD)."""
        if not self._decoders:
            return  # the run printed nothing (or this was flushed already)
        for stream, decoder in self._decoders.items():
            rest = decoder.decode(b"", final=True)
            if rest:
                self.sink.output(stream, rest)
        self._decoders.clear()

    def _output(self, stream: int, data: bytes) -> None:
        decoder = self._decoders.get(stream)
        if decoder is None:
            decoder = self._decoders[stream] = _new_decoder()
        text = decoder.decode(data)
        if text:
            self.sink.output(stream, text)

    def _input_request(self, seq: int, request: pb.InputRequest) -> None:
        if self.on_input is not None:
            try:
                answered = self.on_input(seq, request)
            except BaseException:
                self.last_seq = seq - 1  # not answered (a dropped link): a resumed stream asks again
                raise
            if answered:
                self._answered_here.add(seq)
                return
        self._output(pb.STDOUT, request.prompt.encode())
        self._optional("input_request", seq, request)

    def _optional(self, method: str, *args) -> None:
        handler = getattr(self.sink, method, None)
        if handler is not None:
            handler(*args)


def _json(text: str) -> dict:
    return json.loads(text) if text else {}


class LogPage(NamedTuple):
    """One poll of a run's log: its text, the seq the next poll continues after, and whether it ended."""

    text: str
    last_seq: int
    done: bool


# A poll holds back the text after a character left unfinished at its end, so that the next poll, which
# starts fresh after ``last_seq``, decodes that character whole. A writer that never finishes the character
# would stall the view, so after this many held-back events the text is released (with U+FFFD).
MAX_HELD_BACK_EVENTS = 64


class _LogText:
    """A sink that writes what a log view shows: output, notices and the run's error, as one text."""

    def __init__(self) -> None:
        self.pieces: list[str] = []

    def output(self, stream: int, text: str) -> None:
        self.pieces.append(text)

    def display(self, data: dict, metadata: dict, execute_result: bool) -> None:
        pass  # rich output belongs to the notebook; the log is text

    def notice(self, text: str) -> None:
        self.pieces.append(f"[nbmodal] {text}\n")

    def item(self, item: pb.Item) -> None:
        pass

    def finished(self, finished: pb.RunFinished) -> None:
        if finished.error.message:
            self.pieces.append(f"{finished.error.type_name}: {finished.error.message}\n")

    def close(self) -> None:
        pass


def read_log_page(events: Iterable[pb.RunEvent], after_seq: int, final: bool = False) -> LogPage:
    """The text of a run's events after ``after_seq``, for a log view that polls.

    Polls are stateless (any number of viewers, a restarted server): instead of
    keeping a decoder per viewer, a page ends at the last event after which
    every stream's decoder was empty, and the next poll re-reads from there.
    ``final`` says no more events will come (the run ended, even without a
    ``finished`` event), so whatever is held is released.
    """
    text = _LogText()
    reader = RunEvents(text, after_seq)
    clean_seq, clean_pieces, done = after_seq, 0, False
    for event in events:
        if reader.dispatch(event) is not None:
            done = True
            break
        if reader.clean:
            clean_seq, clean_pieces = reader.last_seq, len(text.pieces)
    held_back = reader.last_seq - clean_seq
    if done or final or reader.clean or held_back > MAX_HELD_BACK_EVENTS:
        reader.flush()
        return LogPage("".join(text.pieces), reader.last_seq, done)
    log.debug("log page after seq %d: holding back %d event(s) ending in an unfinished character",
              after_seq, held_back)
    return LogPage("".join(text.pieces[:clean_pieces]), clean_seq, done)
