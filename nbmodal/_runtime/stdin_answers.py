"""Answering a run's stdin from this process: a remote ``breakpoint()`` debugged in the notebook.

When a run's code reads stdin (pdb's ``(Pdb)`` prompt, ``input()``), its event stream carries an
``InputRequest``. A follower that answers (a cell, ``.remote()``, a map, ``nbmodal attach``) asks
here: this process's ``input(prompt)``, which in a Jupyter kernel is the notebook's input box (a stdin
request) and in a terminal the terminal, and sends the line back with ``InputAnswer``. A request
that was answered already (a replay, another client) is only shown, never asked again.

Prompts are asked one at a time in this process, whichever thread follows the run, and a pdb
session keeps the floor until it continues (``nbmodal_wire/debugger_floor.py``): a map with several
inputs at a breakpoint debugs them one after another, each prompt naming its input (``[input 3] (Pdb) ``).

    answers = StdinAnswers()
    RunFollower(connection, sink, grace_s, answer_input=answers)
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from nbmodal.exceptions import AgentLostError, NbmodalError
from nbmodal_wire.debugger_floor import DebuggerFloor

if TYPE_CHECKING:
    from nbmodal._runtime.client import AgentClient
    from nbmodal.output import OutputSink
    from nbmodal_wire import pb

log = logging.getLogger(__name__)

# One prompt at a time in this process (the kernel has one input box, the terminal one keyboard), and
# one run's pdb session at a time.
_floor = DebuggerFloor()


class StdinAnswers:
    """Answers InputRequests of followed runs with ``ask(prompt)`` (default: this process's ``input``)."""

    def __init__(self, ask: Callable[[str], str] | None = None) -> None:
        self._ask = ask

    def answer(self, client: AgentClient, run_id: str, seq: int, request: pb.InputRequest,
               sink: OutputSink) -> bool:
        """Ask for and send the answer to the request at event ``seq``; False when it isn't waiting
        any more (answered by someone else, or a replay of a finished session)."""
        if client.get_run(run_id).input_request_seq != seq:
            return False
        before_prompt = getattr(sink, "before_prompt", None)
        if before_prompt is not None:
            before_prompt()  # what the debugger printed shows before its prompt
        _floor.take(run_id)  # another run's pdb session (a map's other input) finishes first
        try:
            if client.get_run(run_id).input_request_seq != seq:  # answered while we waited our turn
                _floor.release(run_id)
                return False
            text, eof = self._read_line(prompt_for(request), sink)
        except BaseException:
            _floor.release(run_id)
            raise
        if request.debugger:
            _floor.answered(run_id, None if eof else text)  # the session keeps the floor until `c`
        else:
            _floor.release(run_id)
        try:
            client.answer_input(run_id, seq, text, eof)
        except AgentLostError:
            raise  # the follower reconnects, and the request, still waiting, is asked again
        except NbmodalError as exc:  # answered elsewhere meanwhile, or the run ended
            sink.notice(f"this answer was not used: {exc}")
        return True

    @staticmethod
    def finished(run_id: str) -> None:
        """The run ended (or is no longer followed here): its session gives up the floor."""
        _floor.release(run_id)

    def _read_line(self, prompt: str, sink: OutputSink) -> tuple[str, bool]:
        ask = self._ask or builtins.input  # the kernel puts its own (the notebook's input box) in builtins
        try:
            return ask(prompt), False
        except EOFError:
            return "", True
        except NotImplementedError:  # IPython's StdinNotImplementedError: this frontend has no input box
            sink.notice("the run's code asks for input (a breakpoint?), but this frontend can't answer "
                        "(it doesn't support input requests), so it gets end of input (pdb then quits). "
                        "To debug it, run the notebook in JupyterLab or the code in a terminal.")
            return "", True


def prompt_for(request: pb.InputRequest) -> str:
    """The prompt as asked here: a map's input says which one it is."""
    if request.input_index >= 0:
        return f"[input {request.input_index}] {request.prompt}"
    return request.prompt
