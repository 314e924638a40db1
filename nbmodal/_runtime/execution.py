"""Following a run: events to the output sink, interrupts to the agent.

This is the client half of every run (a ``%%remote`` cell, ``f.remote()``,
``FunctionCall.get()``, ``%nbmodal attach``): it streams the run's events into
a sink until the run finishes, and turns a KeyboardInterrupt in this process
into a cancel of the remote run. When the connection drops it reconnects and
resumes after the last event seen; the events themselves are read (and their
output decoded) by ``run_events.RunEvents``, whose state spans the resumes.
"""

from __future__ import annotations

import logging

import grpc

from nbmodal._runtime.client import AgentClient, iterate_events
from nbmodal._runtime.connection import run_hosts
from nbmodal._runtime.run_events import RunEvents
from nbmodal._runtime.stdin_answers import StdinAnswers
from nbmodal.exceptions import AgentLostError, NotFoundError, RunLostError
from nbmodal.output import OutputSink
from nbmodal_wire import pb
from nbmodal_wire.names import new_run_id

log = logging.getLogger(__name__)


class RunFollower:
    """Follows one run on ``connection``'s agent into ``sink``.

    With ``cancel_on_interrupt`` false a KeyboardInterrupt only stops watching
    (``nbmodal logs``, a spawned call's ``get``); the run goes on.
    """

    def __init__(self, connection, sink: OutputSink, grace_s: float, cancel_on_interrupt: bool = True,
                 answer_input: StdinAnswers | None = None) -> None:
        self.connection = connection
        self.client: AgentClient = connection.client()
        self.cancel_on_interrupt = cancel_on_interrupt
        self.sink = sink
        self.grace_s = grace_s
        self.run_id = ""
        # With ``answer_input``, the run's stdin requests (a breakpoint's prompt) are answered from here.
        self.answer_input = answer_input
        # Its ``on_input`` (our bound method) is set only while following: held for good it would be a
        # cycle, which only the garbage collector frees, and its collections then land in later calls.
        self._events = RunEvents(sink)
        self._cancelled = False
        self._request: pb.RunRequest | None = None

    @property
    def last_seq(self) -> int:
        """The seq of the last event seen: a resumed or later attach continues after it."""
        return self._events.last_seq

    @last_seq.setter
    def last_seq(self, seq: int) -> None:
        self._events.last_seq = seq

    def start(self, request: pb.RunRequest) -> pb.RunFinished:
        """Start a run and follow it to the end."""
        if not request.run_id:
            request.run_id = new_run_id()
        self.run_id, self.last_seq = request.run_id, 1  # the Run stream starts after the RunStarted event
        run_hosts[self.run_id] = self.connection.name
        self._request = request
        finished = self._follow(lambda: self.client.run(request))
        assert finished is not None  # following to the end, a run without a result raises RunLostError
        return finished

    def attach(self, run_id: str, after_seq: int = 0, follow: bool = True,
               timeout: float | None = None) -> pb.RunFinished | None:
        """Replay an existing run after ``after_seq``; with ``follow``, to its end.

        Without ``follow`` it returns None when the run hasn't finished yet.
        """
        self.run_id, self.last_seq = run_id, after_seq
        return self._follow(lambda: self.client.attach(run_id, self.last_seq, follow=follow, timeout=timeout),
                            follow)

    def _follow(self, open_call, follow: bool = True) -> pb.RunFinished | None:
        interrupts = 0
        call = open_call()
        if self.answer_input is not None:
            self._events.on_input = self._answer_input
        try:
            while True:
                try:
                    finished = self._consume(call)
                    if finished is None and follow:
                        self._lost()
                    if finished is not None and finished.error.type_name == "bdb.BdbQuit":
                        # IPython stops a cell at a BdbQuit without a word; say why the run stopped.
                        self.sink.notice(f"run {self.run_id}: {finished.error.message}")
                    return finished
                except KeyboardInterrupt:
                    call.cancel()
                    if not self.cancel_on_interrupt:
                        raise  # we were only watching
                    interrupts += 1
                    self._cancelled = True
                    self._cancel(force=interrupts > 1)
                    call = self.client.attach(self.run_id, self.last_seq, follow=follow)
                except AgentLostError as lost:
                    call = self._resume(lost, follow)
        finally:
            if self.answer_input is not None:
                self._events.on_input = None  # the cycle through our bound method ends here
                self.answer_input.finished(self.run_id)
            self._events.flush()
            self.sink.close()

    def _resume(self, lost: AgentLostError, follow: bool) -> grpc.Call:
        """After a dropped connection: reconnect, then continue after the last event seen."""
        self.sink.notice(f"connection to {self.connection.name} lost; reconnecting (the run goes on there)")
        agent_pid = self.client.hello.pid
        self.client = self.connection.recover(lost)  # raises when it can't come back
        new_agent = self.client.hello.pid != agent_pid
        lost_with_agent = RunLostError(f"the agent on {self.connection.name} stopped (pid {agent_pid}), and run "
                                       f"{self.run_id} with it; a new agent is running there now, so the next cell "
                                       f"will work.")
        try:
            info = self.client.get_run(self.run_id)
        except NotFoundError:
            if new_agent:
                raise lost_with_agent from None
            if self._request is None:
                raise
            return self.client.run(self._request)  # the drop came before the agent took the run
        if new_agent and info.state == pb.LOST:
            # The new agent took back no container for it (remote_agent/supervision.py): it died with the old one.
            raise lost_with_agent
        self.sink.notice(f"reconnected to {self.connection.name}; resuming run {self.run_id}")
        return self.client.attach(self.run_id, self.last_seq, follow=follow)

    def _answer_input(self, seq: int, request: pb.InputRequest) -> bool:
        assert self.answer_input is not None
        if self._cancelled:
            return False  # stopping it: pdb, which catches the interrupt and asks again, is not answered
        return self.answer_input.answer(self.client, self.run_id, seq, request, self.sink)

    def _consume(self, call: grpc.Call) -> pb.RunFinished | None:
        return self._events.consume(iterate_events(call, self.client))

    def _cancel(self, force: bool) -> None:
        if force:
            self.sink.notice(f"interrupted again: killing the container of run {self.run_id}")
        else:
            self.sink.notice(
                f"interrupted: stopping run {self.run_id} (KeyboardInterrupt in the remote code; its container "
                f"is killed if it hasn't stopped within {self.grace_s:g} s — interrupt again to kill it now)")
        self.client.cancel(self.run_id, force=force)

    def _lost(self) -> None:
        # The stream ended without a result: the run was lost (its agent died earlier).
        info = self.client.get_run(self.run_id)
        raise RunLostError(f"run {self.run_id} has no result: {info.error or pb.RunState.Name(info.state)}")

