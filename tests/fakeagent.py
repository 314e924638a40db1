"""An in-process fake of the agent's gRPC service, for fast tests of the client's logic.

``FakeAgent`` serves the real ``Agent`` gRPC service (the generated servicer)
on 127.0.0.1 from a thread pool of this test process, so the client under test
talks to it through its real ``AgentClient``, channel, token and streams. What
a run does is a script: ``behaviour(run)`` runs in a thread of its own per run
and emits events (``run.output``, ``run.finish``); the default one executes a
FUNCTION run's pickled ``(fn, args, kwargs)`` here, in this process, as a
container would. Faults are scripted too: a Run or Attach stream that breaks
with UNAVAILABLE after a given event (``drop_stream_after``), a Run call
dropped before the agent took the run (``drop_next_runs``).

``FakeConnection`` stands where a host's connection does (``client()``,
``recover()``, ``name``); ``serve_as_local_agent`` writes an ``agent.json`` so
that the real local connection finds the fake.

    with FakeAgent() as agent:
        client = agent.client()
        client.get_run("r-00000000")   # KeyError: the fake knows no such run
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

from nbmodal import serialization
from nbmodal._runtime.client import CLIENT_PYTHON, AgentClient
from nbmodal._runtime.local_agent import AgentAddress
from nbmodal.exceptions import AgentLostError
from nbmodal_wire import MESSAGE_SIZE_OPTIONS, PROTOCOL_VERSION, TOKEN_METADATA_KEY, __version__, pb
from nbmodal_wire.agent_file import AgentFile, remove_agent_file, write_agent_file
from nbmodal_wire.proto import agent_pb2_grpc as pb_grpc

_fake_pids = itertools.count(900_001)


class FakeRun:
    """One run on the fake agent: its request, its events so far (seq 1 is RunStarted) and whether it ended."""

    def __init__(self, request: pb.RunRequest) -> None:
        self.request = request
        self.run_id = request.run_id
        self.state = pb.RUNNING
        self.error = ""
        self.events: list[pb.RunEvent] = []
        self.done = False  # no event will follow
        self.cancelled = threading.Event()
        self.cancel_requests: list[pb.CancelRequest] = []
        self._changed = threading.Condition()
        self.created = time.time()
        self._emit(started=pb.RunStarted(run_id=self.run_id))

    # -- what a behaviour calls ------------------------------------------------

    def output(self, text: str | bytes, stream: int = pb.STDOUT) -> None:
        data = text.encode() if isinstance(text, str) else text
        self._emit(output=pb.Output(stream=stream, data=data))

    def notice(self, text: str) -> None:
        self._emit(notice=pb.Notice(text=text))

    def input_started(self, index: int) -> None:
        self._emit(input_started=pb.InputStarted(index=index))

    def finish(self, state: int = pb.SUCCEEDED, value: object = None, error: BaseException | None = None) -> None:
        """End the run: SUCCEEDED with ``value`` as its return value, or with ``error`` as the user's exception."""
        finished = pb.RunFinished(state=state)
        if error is not None:
            finished.error.CopyFrom(pb.ErrorInfo(type_name=type(error).__qualname__, message=str(error),
                                                 exception=serialization.dumps(error)))
        elif state == pb.SUCCEEDED:
            finished.return_value = serialization.dumps(value)
        self._emit(finished=finished, state=state, done=True)

    def end_without_result(self, state: int = pb.LOST, error: str = "the container died") -> None:
        """End the run's streams with no RunFinished event, as when its container died with its agent."""
        with self._changed:
            self.state, self.error, self.done = state, error, True
            self._changed.notify_all()

    def wait_cancelled(self, timeout: float = 10.0) -> bool:
        return self.cancelled.wait(timeout)

    # -- what the service reads ------------------------------------------------

    def _emit(self, state: int | None = None, done: bool = False, **kind) -> None:
        with self._changed:
            if self.done:
                raise RuntimeError(f"run {self.run_id} has ended; nothing can follow")
            self.events.append(pb.RunEvent(seq=len(self.events) + 1, time=time.time(), **kind))
            if state is not None:
                self.state = state
            self.done = done
            self._changed.notify_all()

    def events_after(self, seq: int, follow: bool, still_wanted: Callable[[], bool]) -> list[pb.RunEvent] | None:
        """The events after ``seq``; with ``follow``, waits for one. None: there will be no more."""
        with self._changed:
            while follow and len(self.events) <= seq and not self.done and still_wanted():
                self._changed.wait(0.05)
            if len(self.events) > seq:
                return self.events[seq:]
            return None

    def info(self, agent_pid: int) -> pb.RunInfo:
        finished = self.events[-1].finished if self.events[-1].WhichOneof("kind") == "finished" else None
        return pb.RunInfo(run_id=self.run_id, state=self.state, kind=self.request.kind, label=self.request.label,
                          session=self.request.session, created=self.created, detach=self.request.detach,
                          error=self.error or (finished.error.message if finished is not None else ""),
                          last_seq=len(self.events), agent_pid=agent_pid)


def execute_in_process(run: FakeRun) -> None:
    """What a container does with a FUNCTION run, done here: call the pickled ``(fn, args, kwargs)``."""
    if run.request.kind != pb.FUNCTION:
        run.finish()
        return
    fn, args, kwargs = serialization.loads(run.request.payload)
    try:
        value = fn(*args, **kwargs)
    except Exception as exc:  # the user's code raised: the run fails with it
        run.finish(pb.FAILED, error=exc)
        return
    run.finish(value=value)


class FakeAgent(pb_grpc.AgentServicer):
    """The agent's gRPC service with scripted runs, GPUs, containers, stores and images (what the
    sidebar lists); see the module docstring."""

    def __init__(self, behaviour: Callable[[FakeRun], None] = execute_in_process, *, pid: int | None = None,
                 gpus: list[pb.GpuInfo] | None = None, containers: list[pb.ContainerInfo] | None = None,
                 volumes: list[pb.StoreInfo] | None = None, dicts: list[pb.StoreInfo] | None = None,
                 queues: list[pb.StoreInfo] | None = None, images: list[pb.ImageInfo] | None = None,
                 stats: pb.HostStatsReply | None = None,
                 state_dir: Path | str = "/nonexistent-fake-agent-state", token: str = "fake-token") -> None:
        self.behaviour = behaviour
        self.pid = pid if pid is not None else next(_fake_pids)
        self.gpus = list(gpus or [])
        self.containers = list(containers or [])
        self.volumes = list(volumes or [])
        self.dicts = list(dicts or [])
        self.queues = list(queues or [])
        self.images = list(images or [])
        self.stats = stats or pb.HostStatsReply(load1=0.5, cpus=2, memory_total=8 << 30, memory_available=6 << 30)
        self.state_dir = str(state_dir)
        self.token = token
        self.runs: dict[str, FakeRun] = {}
        self.run_requests: list[pb.RunRequest] = []  # every Run and Submit call, in order
        self.attach_requests: list[pb.AttachRequest] = []
        self.cancel_requests: list[pb.CancelRequest] = []
        self.drop_stream_after: set[int] = set()  # a stream breaks (UNAVAILABLE) once it has sent this seq
        self.drop_next_runs = 0  # Run calls to drop (UNAVAILABLE) before the run is taken
        self._lock = threading.Lock()
        self._server: grpc.Server | None = None
        self.port = 0

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> FakeAgent:
        self._server = grpc.server(ThreadPoolExecutor(max_workers=32, thread_name_prefix="fake-agent"),
                                   options=MESSAGE_SIZE_OPTIONS)
        pb_grpc.add_AgentServicer_to_server(self, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=0).wait()
            self._server = None

    def __enter__(self) -> FakeAgent:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def address(self) -> AgentAddress:
        return AgentAddress("127.0.0.1", self.port, self.token, self.pid, __version__, PROTOCOL_VERSION,
                            Path(self.state_dir))

    def client(self, label: str = "fake agent") -> AgentClient:
        return AgentClient(self.address, label=label)

    # -- the service -----------------------------------------------------------

    def _check_token(self, context: grpc.ServicerContext) -> None:
        if dict(context.invocation_metadata()).get(TOKEN_METADATA_KEY) != self.token:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "fake agent: wrong or missing token")

    def _run(self, run_id: str, context: grpc.ServicerContext) -> FakeRun:
        with self._lock:
            run = self.runs.get(run_id)
        if run is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no run {run_id!r} on the fake agent")
        return run

    def _take(self, request: pb.RunRequest) -> FakeRun:
        run = FakeRun(request)
        with self._lock:
            self.runs[run.run_id] = run
        threading.Thread(target=self._behave, args=(run,), name=f"fake-run-{run.run_id}", daemon=True).start()
        return run

    def _behave(self, run: FakeRun) -> None:
        try:
            self.behaviour(run)
        except Exception as exc:  # a broken script fails its run visibly rather than hanging the test
            if not run.done:
                run.finish(pb.FAILED, error=RuntimeError(f"fake agent behaviour failed: {exc!r}"))

    def _stream(self, run: FakeRun, after_seq: int, follow: bool,
                context: grpc.ServicerContext) -> Iterator[pb.RunEvent]:
        seq = after_seq
        while (events := run.events_after(seq, follow, context.is_active)) is not None:
            for event in events:
                yield event
                seq = event.seq
                with self._lock:
                    drop = seq in self.drop_stream_after
                    self.drop_stream_after.discard(seq)
                if drop:
                    context.abort(grpc.StatusCode.UNAVAILABLE, f"fake agent: connection dropped after seq {seq}")
            if not follow or not context.is_active():
                return

    def Hello(self, request, context):
        self._check_token(context)
        return pb.HelloReply(protocol_version=PROTOCOL_VERSION, agent_version=__version__,
                             container_python=CLIENT_PYTHON, pid=self.pid, hostname="fake-host",
                             state_dir=self.state_dir)

    def Run(self, request, context):
        self._check_token(context)
        with self._lock:
            self.run_requests.append(request)
            dropped = self.drop_next_runs > 0
            self.drop_next_runs -= dropped
        if dropped:
            context.abort(grpc.StatusCode.UNAVAILABLE, "fake agent: connection dropped before the run was taken")
        yield from self._stream(self._take(request), 1, True, context)

    def Submit(self, request, context):
        self._check_token(context)
        with self._lock:
            self.run_requests.append(request)
        return self._take(request).info(self.pid)

    def Attach(self, request, context):
        self._check_token(context)
        with self._lock:
            self.attach_requests.append(request)
        yield from self._stream(self._run(request.run_id, context), request.after_seq, request.follow, context)

    def Cancel(self, request, context):
        self._check_token(context)
        run = self._run(request.run_id, context)
        with self._lock:
            self.cancel_requests.append(request)
        run.cancel_requests.append(request)
        run.cancelled.set()
        return run.info(self.pid)

    def GetRun(self, request, context):
        self._check_token(context)
        return self._run(request.run_id, context).info(self.pid)

    def ListRuns(self, request, context):
        self._check_token(context)
        with self._lock:
            runs = list(self.runs.values())
        return pb.RunList(runs=[run.info(self.pid) for run in runs])

    def ListGpus(self, request, context):
        self._check_token(context)
        return pb.GpuList(gpus=self.gpus)

    def ListContainers(self, request, context):
        self._check_token(context)
        return pb.ContainerList(containers=self.containers)

    def HostStats(self, request, context):
        self._check_token(context)
        return self.stats

    def VolumeCall(self, request, context):
        self._check_token(context)
        if request.op != pb.VOLUME_LIST:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "the fake agent only lists volumes")
        return pb.VolumeReply(stores=self.volumes)

    def DictCall(self, request, context):
        self._check_token(context)
        if request.op != pb.LIST:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "the fake agent only lists Dicts")
        return pb.DictReply(stores=self.dicts)

    def QueueCall(self, request, context):
        self._check_token(context)
        if request.op != pb.LIST:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "the fake agent only lists Queues")
        return pb.QueueReply(stores=self.queues)

    def ImageCall(self, request, context):
        self._check_token(context)
        if request.op != pb.IMAGE_LIST:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "the fake agent only lists images")
        return pb.ImageReply(images=self.images)


class FakeConnection:
    """A host's connection whose agent is a ``FakeAgent``: ``client()``, ``recover()``, ``name``.

    ``recover_to`` is the agent a reconnect finds (by default the same one), ``can_recover=False``
    a host that doesn't come back (as the local agent never does); ``unreachable`` is the error
    ``client()`` raises instead (a host that can't be reached).
    """

    def __init__(self, name: str, agent: FakeAgent, recover_to: FakeAgent | None = None,
                 can_recover: bool = True, unreachable: Exception | None = None) -> None:
        self.name = name
        self.agent = agent
        self.recover_to = recover_to
        self.can_recover = can_recover
        self.unreachable = unreachable
        self.recoveries = 0
        self._client: AgentClient | None = None

    def client(self) -> AgentClient:
        if self.unreachable is not None:
            raise self.unreachable
        if self._client is None:
            self._client = self.agent.client(label=f"agent on {self.name}")
        return self._client

    existing_client = client

    def recover(self, lost: AgentLostError) -> AgentClient:
        self.recoveries += 1
        if not self.can_recover:
            raise lost
        self.forget()
        self.agent = self.recover_to or self.agent
        return self.client()

    def forget(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client = None


def serve_as_local_agent(agent: FakeAgent, home: Path) -> Path:
    """Make ``agent`` the local agent of nbmodal home ``home`` (its agent.json names it); returns its state dir.

    The agent takes this process's pid: the client checks that the agent's pid is alive.
    """
    state_dir = home / "agent"
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "blobs").mkdir(exist_ok=True)
    agent.pid, agent.state_dir = os.getpid(), str(state_dir)
    write_agent_file(state_dir, AgentFile(pid=agent.pid, host="127.0.0.1", port=agent.port, token=agent.token,
                                          version=__version__, protocol_version=PROTOCOL_VERSION,
                                          state_dir=str(state_dir)))
    return state_dir


def stop_serving_as_local_agent(agent: FakeAgent, state_dir: Path) -> None:
    """Remove the agent.json that names this process: nothing may take it for an agent to stop."""
    remove_agent_file(state_dir, agent.pid)
