"""Sandboxes (Modal's ``Sandbox``): containers that run commands, not Python runs, until they end.

A sandbox is a container of its own (remote_agent/containers.py's pool starts it as it starts a run's:
same launcher, image, GPUs, cores, memory, volumes and secrets; never pooled or reused). Its entrypoint
command, if it has one, is the first process started inside it, by the same mechanism as any exec
(remote_agent/container_exec.py), and the sandbox's return code is the entrypoint's. It ends when its
entrypoint exits, at ``timeout`` (Modal's default, 300 s), after ``idle_timeout`` without a running exec or
a call, with ``terminate()``, when its container is stopped, or when the agent stops; then its container
is killed, which releases what it held.

``block_network`` puts it in a network namespace of its own (bubblewrap's, with only a loopback): the
spec field is honoured by the launch plan (remote_agent/launch.py), and refused here where there is no
bubblewrap. File operations run inside the sandbox (remote_agent/worker/sandbox_files.py), confined to
its own directories.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from nbmodal_wire import pb
from remote_agent import container_exec, request_errors
from remote_agent.request_errors import RequestError

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 300.0  # Modal's
DEFAULT_WORKDIR = "/sandbox"  # its working directory where it has a root of its own (bubblewrap)
RETURNCODE_TIMED_OUT = 124  # Modal's return codes of a sandbox that timed out or was terminated
RETURNCODE_TERMINATED = 137
OUTPUT_KEPT_BYTES = 64 << 20  # of each entrypoint stream; older output is dropped beyond it
_OUTPUT_CHUNK = 1 << 20
ENDED_KEPT = 200  # ended sandboxes remembered (for from_id, wait, list)
# A create call with a deadline stops waiting for a container slot this long before it, to answer why.
SLOT_WAIT_MARGIN_S = 0.5
_FILE_OPS = {pb.SANDBOX_FILE_READ: "read", pb.SANDBOX_FILE_WRITE: "write", pb.SANDBOX_FILE_LS: "ls",
             pb.SANDBOX_FILE_MKDIR: "mkdir", pb.SANDBOX_FILE_RM: "rm", pb.SANDBOX_FILE_STAT: "stat"}
_ENDED_WORDS: dict[int, str] = {pb.SANDBOX_FINISHED: "finished", pb.SANDBOX_TERMINATED: "was terminated",
                pb.SANDBOX_TIMED_OUT: "timed out", pb.SANDBOX_FAILED: "failed to start"}


class OutputBuffer:
    """One stream of the entrypoint's output, kept for readers that come and go (``sb.stdout``)."""

    def __init__(self, kept: int = OUTPUT_KEPT_BYTES) -> None:
        self._data = bytearray()
        self._base = 0  # offset of _data[0] in the whole stream
        self._kept = kept
        self.closed = False
        self._more = asyncio.Event()

    def append(self, data: bytes) -> None:
        self._data += data
        if len(self._data) > self._kept:
            drop = len(self._data) - self._kept
            del self._data[:drop]
            self._base += drop
        self._wake()

    def close(self) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        self._more.set()
        self._more = asyncio.Event()

    async def read(self, offset: int, follow: bool) -> AsyncIterator[bytes]:
        """The stream from ``offset`` (or the oldest byte kept); with ``follow``, until it closes."""
        while True:
            start = max(offset, self._base)
            end = self._base + len(self._data)
            if start < end:
                stop = min(end, start + _OUTPUT_CHUNK)
                offset = stop
                yield bytes(self._data[start - self._base:stop - self._base])
                continue
            if self.closed or not follow:
                return
            await self._more.wait()


class Sandbox:
    """One sandbox as the agent keeps it."""

    def __init__(self, sandbox_id: str, request: pb.SandboxCreateRequest, spec: pb.ContainerSpec, workdir: str,
                 hostname: str) -> None:
        self.id = sandbox_id
        self.request = request
        self.spec = spec
        self.workdir = workdir
        self.hostname = hostname
        self.tags = dict(request.tags)
        self.state: int = pb.SANDBOX_STARTING
        self.returncode = 0
        self.error = ""
        self.created = time.time()
        self.finished = 0.0
        self.last_active = self.created
        self.active_execs = 0
        self.container: Any = None  # remote_agent.containers.Container, once started
        self.outputs = {pb.STDOUT: OutputBuffer(), pb.STDERR: OutputBuffer()}
        self.stdin: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.stdin_closed = False
        self.started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.ended = asyncio.Event()
        self.terminate_requested = asyncio.Event()
        self.changed = asyncio.Event()  # activity: the idle deadline moves
        self.scratch: Path | None = None  # its working directory on the host, when it has no root of its own
        self.slot_timeout_s: float | None = None  # how long it may wait for a container slot (container_slots.py)

    @property
    def timeout_s(self) -> float:
        return self.request.timeout_s or DEFAULT_TIMEOUT_S

    @property
    def running(self) -> bool:
        return self.state in (pb.SANDBOX_STARTING, pb.SANDBOX_RUNNING)

    def touch(self) -> None:
        self.last_active = time.time()
        self.changed.set()

    def describe_end(self) -> str:
        """How it ended, in words: "finished with exit code 0", "timed out after 300s"..."""
        if self.state == pb.SANDBOX_FINISHED:
            return f"finished with exit code {self.returncode}" + (f" ({self.error})" if self.error else "")
        return f"{_ENDED_WORDS.get(self.state, 'ended')}" + (f": {self.error}" if self.error else "")

    def info(self) -> pb.SandboxInfo:
        container = self.container
        return pb.SandboxInfo(
            sandbox_id=self.id, container_id=container.id if container is not None else "", state=self.state,  # type: ignore[arg-type]
            returncode=self.returncode, app=self.request.app, name=self.request.name, tags=self.tags,
            argv=list(self.request.argv), created=self.created, finished=self.finished,
            timeout_s=self.timeout_s, idle_timeout_s=self.request.idle_timeout_s, last_active=self.last_active,
            error=self.error, workdir=self.workdir, ports=list(self.request.ports), spec=self.spec,
            hostname=self.hostname)


class SandboxManager:
    """The agent's sandboxes: create, find, list, end; their execs, entrypoint streams and files.

    ``pool`` starts their containers (``start_dedicated``); ``apply_secrets`` resolves a RunRequest's
    secrets into its spec (remote_agent/secrets.py); ``secret_env`` gives named secrets' environment for
    an exec; ``image_workdir`` is an image's working directory (or ""); ``own_root`` says whether
    containers have a root of their own (bubblewrap); ``scratch_dir`` holds working directories otherwise
    (``local``: where containers run on this machine).
    """

    def __init__(self, pool: Any, apply_secrets: Callable[[pb.RunRequest], None],
                 secret_env: Callable[[list[str]], dict[str, str]], image_workdir: Callable[[str], str],
                 own_root: bool, scratch_dir: Path, local: bool = True) -> None:
        self._pool = pool
        self._apply_secrets = apply_secrets
        self._secret_env = secret_env
        self._image_workdir = image_workdir
        self._own_root = own_root
        self._scratch_dir = scratch_dir
        self._local = local  # containers run on this machine (else on a Slurm node: no scratch dir made here)
        self._hostname = socket.gethostname()
        self._sandboxes: dict[str, Sandbox] = {}
        self._tasks: set[asyncio.Task] = set()

    # -- create and end -------------------------------------------------------

    async def create(self, request: pb.SandboxCreateRequest, deadline_s: float | None = None) -> pb.SandboxInfo:
        """Start a sandbox; returns once its container runs (and its entrypoint has been started).

        Past the agent's cap on live containers it waits for a container slot (remote_agent/container_slots.py)
        for at most its own ``timeout``, and, when the caller gave the call a deadline (``deadline_s`` from now),
        until shortly before it, so that the caller hears why rather than a bare deadline.

        Raises RequestError for bad input, and when its container can't start (the sandbox is then
        listed as failed)."""
        _check(request)
        if request.spec.block_network and not self._own_root:
            raise RequestError("block_network=True needs bubblewrap (a network namespace of the sandbox's own), "
                               "which isn't available on this host: install bubblewrap (apt-get install "
                               "bubblewrap) and allow unprivileged user namespaces, or create the sandbox without "
                               "block_network. It is refused rather than run with the host's network.")
        sandbox_id = f"sb-{secrets.token_hex(6)}"
        run_request = pb.RunRequest(spec=request.spec, secrets=request.secrets)
        self._apply_secrets(run_request)  # the values live in the agent; the spec carries their digest
        request.ClearField("secrets")  # nothing kept for the sandbox's life holds their values
        spec = run_request.spec
        spec.sandbox = True
        scratch = None
        if not spec.workdir and not (spec.image and self._image_workdir(spec.image)):
            if self._own_root:
                spec.workdir = DEFAULT_WORKDIR
            elif self._local:  # no root of its own: a directory on the host, gone with it
                scratch = self._scratch_dir / sandbox_id
                scratch.mkdir(parents=True, exist_ok=True)
                spec.workdir = str(scratch)
        workdir = spec.workdir or self._image_workdir(spec.image)
        sandbox = Sandbox(sandbox_id, request, spec, workdir, self._hostname)
        sandbox.scratch = scratch
        sandbox.slot_timeout_s = sandbox.timeout_s
        if deadline_s is not None:
            sandbox.slot_timeout_s = max(0.1, min(sandbox.timeout_s, deadline_s - SLOT_WAIT_MARGIN_S))
        self._sandboxes[sandbox_id] = sandbox
        self._forget_old()
        task = asyncio.create_task(self._lifecycle(sandbox), name=f"sandbox-{sandbox_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        try:
            await asyncio.shield(sandbox.started)
        except RequestError:
            raise
        except Exception as exc:
            raise RequestError(f"sandbox {sandbox_id} could not start: {exc}", request_errors.CONFLICT) from None
        log.info("sandbox %s started in container %s%s", sandbox_id, sandbox.container.id,
                 f": {' '.join(request.argv)}" if request.argv else "")
        return sandbox.info()

    async def _lifecycle(self, sandbox: Sandbox) -> None:
        try:
            sandbox.container = await self._pool.start_dedicated(sandbox.spec, slot_timeout_s=sandbox.slot_timeout_s)
        except BaseException as exc:
            self._end(sandbox, pb.SANDBOX_FAILED, 1, str(exc) or type(exc).__name__)
            if not sandbox.started.done():
                sandbox.started.set_exception(exc if isinstance(exc, Exception) else RuntimeError("cancelled"))
            if not isinstance(exc, Exception):
                raise
            return
        entrypoint = None
        if sandbox.request.argv:
            entrypoint = asyncio.create_task(self._run_entrypoint(sandbox), name=f"sandbox-entry-{sandbox.id}")
        sandbox.state = pb.SANDBOX_RUNNING
        sandbox.started.set_result(None)
        try:
            state, code, why = await self._until_it_ends(sandbox, entrypoint)
        except asyncio.CancelledError:
            state, code, why = pb.SANDBOX_TERMINATED, RETURNCODE_TERMINATED, "the agent stopped"
        except Exception as exc:  # a bug here must still end it (and free what it holds), saying why
            log.exception("sandbox %s: watching it failed", sandbox.id)
            state, code, why = pb.SANDBOX_TERMINATED, RETURNCODE_TERMINATED, f"the agent failed to watch it: {exc}"
        if entrypoint is not None and not entrypoint.done():
            entrypoint.cancel()
        self._end(sandbox, state, code, why)
        sandbox.container.kill()  # its processes go with it; the pool releases what it held when it exits

    async def _until_it_ends(self, sandbox: Sandbox, entrypoint: asyncio.Task | None) -> tuple[int, int, str]:
        """Wait for whatever ends the sandbox first; (state, returncode, why)."""
        container = sandbox.container
        exited = asyncio.create_task(container.wait_exited())
        terminated = asyncio.create_task(sandbox.terminate_requested.wait())
        deadline = sandbox.created + sandbox.timeout_s
        try:
            while True:
                sandbox.changed.clear()  # before reading its activity: a change from now on wakes the wait
                if entrypoint is not None and entrypoint.done():
                    code, error = entrypoint.result()
                    return pb.SANDBOX_FINISHED, code, error
                if terminated.done():
                    return pb.SANDBOX_TERMINATED, RETURNCODE_TERMINATED, "terminate() was called"
                if exited.done():
                    return pb.SANDBOX_TERMINATED, RETURNCODE_TERMINATED, f"its {container.exit_description()}"
                now = time.time()
                if now >= deadline:
                    return pb.SANDBOX_TIMED_OUT, RETURNCODE_TIMED_OUT, f"timeout={sandbox.timeout_s:g}s passed"
                wake = deadline
                idle = sandbox.request.idle_timeout_s
                if idle and sandbox.active_execs == 0:
                    if now >= sandbox.last_active + idle:
                        return pb.SANDBOX_TIMED_OUT, RETURNCODE_TIMED_OUT, f"idle for idle_timeout={idle:g}s"
                    wake = min(wake, sandbox.last_active + idle)
                changed = asyncio.create_task(sandbox.changed.wait())
                waiting = {exited, terminated, changed} | ({entrypoint} if entrypoint is not None else set())
                await asyncio.wait(waiting, timeout=max(0.0, wake - now), return_when=asyncio.FIRST_COMPLETED)
                changed.cancel()
        finally:
            exited.cancel()
            terminated.cancel()

    def _end(self, sandbox: Sandbox, state: int, returncode: int, why: str) -> None:
        sandbox.state, sandbox.returncode, sandbox.error = state, returncode, why
        sandbox.finished = time.time()
        for output in sandbox.outputs.values():
            output.close()
        if sandbox.scratch is not None:
            shutil.rmtree(sandbox.scratch, ignore_errors=True)
        sandbox.ended.set()
        log.info("sandbox %s %s", sandbox.id, sandbox.describe_end())

    async def _run_entrypoint(self, sandbox: Sandbox) -> tuple[int, str]:
        """Its command, as the first process inside it; output kept, stdin from SandboxStdin. (code, error)."""
        start = pb.ExecStart(container_id=sandbox.container.id, argv=sandbox.request.argv, workdir=sandbox.workdir)

        async def inputs() -> AsyncIterator[pb.ExecInput]:
            yield pb.ExecInput(start=start)
            while True:
                data = await sandbox.stdin.get()
                if data is None:
                    yield pb.ExecInput(stdin_eof=True)
                    return
                yield pb.ExecInput(stdin=data)

        code, error = 255, "the entrypoint's stream ended without its exit"
        try:
            async for output in container_exec.serve(lambda: [sandbox.container], inputs(), self._secret_env):
                if output.HasField("output"):
                    sandbox.outputs[output.output.stream].append(output.output.data)
                elif output.HasField("exited"):
                    code, error = output.exited.exit_code, output.exited.error
        except RequestError as exc:  # its container went away before the command could start
            return 255, f"the entrypoint could not start: {exc}"
        return code, error

    async def terminate(self, sandbox_id: str) -> pb.SandboxInfo:
        """Ask it to end (at once; its container is killed); returns without waiting for that."""
        sandbox = self.get(sandbox_id)
        sandbox.terminate_requested.set()
        return sandbox.info()

    async def wait(self, sandbox_id: str, timeout_s: float) -> pb.SandboxInfo:
        """Its info once it has ended, or after ``timeout_s`` (0: wait as long as it takes)."""
        sandbox = self.get(sandbox_id)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(sandbox.ended.wait()), timeout_s or None)
        return sandbox.info()

    async def shutdown(self) -> None:
        for sandbox in self._sandboxes.values():
            sandbox.terminate_requested.set()
        for task in list(self._tasks):
            task.cancel()

    def _forget_old(self) -> None:
        ended = [s for s in self._sandboxes.values() if s.ended.is_set()]
        for sandbox in sorted(ended, key=lambda s: s.finished)[:max(0, len(ended) - ENDED_KEPT)]:
            self._sandboxes.pop(sandbox.id, None)

    # -- finding --------------------------------------------------------------

    def get(self, sandbox_id: str) -> Sandbox:
        sandbox = self._sandboxes.get(sandbox_id)
        if sandbox is None:
            raise RequestError(f"no sandbox {sandbox_id!r} on this agent (Sandbox.list() shows those there are; "
                               f"ended ones are kept for a while only)", request_errors.NOT_FOUND)
        return sandbox

    def running(self, sandbox_id: str, doing: str) -> Sandbox:
        """The sandbox, started; CONFLICT naming how it ended when it has."""
        sandbox = self.get(sandbox_id)
        if not sandbox.running or sandbox.container is None:
            if sandbox.state == pb.SANDBOX_STARTING:
                raise RequestError(f"sandbox {sandbox_id} is still starting", request_errors.CONFLICT)
            raise RequestError(f"can't {doing} sandbox {sandbox_id}: it has ended ({sandbox.describe_end()}). "
                               f"Create a new Sandbox.", request_errors.CONFLICT)
        return sandbox

    def matching(self, app: str, tags: dict[str, str]) -> list[pb.SandboxInfo]:
        chosen = [s for s in self._sandboxes.values()
                  if (not app or s.request.app == app) and all(s.tags.get(k) == v for k, v in tags.items())]
        return [s.info() for s in sorted(chosen, key=lambda s: s.created)]

    def set_tags(self, sandbox_id: str, tags: dict[str, str]) -> pb.SandboxInfo:
        sandbox = self.get(sandbox_id)
        sandbox.tags = dict(tags)
        return sandbox.info()

    def of_container(self, container_id: str) -> Sandbox | None:
        """The running sandbox whose container this is."""
        return next((s for s in self._sandboxes.values()
                     if s.container is not None and s.container.id == container_id and s.running), None)

    # -- processes, streams, files ---------------------------------------------

    async def exec(self, requests: AsyncIterator[pb.ExecInput]) -> AsyncIterator[pb.ExecOutput]:
        """A SandboxExec call: ContainerExec in the sandbox its ExecStart.container_id names."""
        first = await anext(requests, None)
        if first is None or not first.HasField("start"):
            raise RequestError("a SandboxExec call must begin with `start` naming the sandbox")
        sandbox = self.running(first.start.container_id, "exec in")
        first.start.container_id = sandbox.container.id
        if not first.start.workdir:
            first.start.workdir = sandbox.workdir

        async def all_requests() -> AsyncIterator[pb.ExecInput]:
            yield first
            async for request in requests:
                sandbox.touch()
                yield request

        sandbox.active_execs += 1
        sandbox.touch()
        try:
            async for output in container_exec.serve(lambda: [sandbox.container], all_requests(), self._secret_env):
                yield output
        finally:
            sandbox.active_execs -= 1
            sandbox.touch()

    async def output(self, request: pb.SandboxOutputRequest) -> AsyncIterator[bytes]:
        sandbox = self.get(request.sandbox_id)
        async for data in sandbox.outputs[request.stream].read(request.offset, request.follow):
            yield data

    def stdin(self, request: pb.SandboxStdinRequest) -> None:
        sandbox = self.running(request.sandbox_id, "write to the stdin of")
        if not sandbox.request.argv:
            raise RequestError(f"sandbox {sandbox.id} has no entrypoint command, so its stdin reaches nothing: "
                               f"write to a process's stdin instead (sb.exec(...).stdin)", request_errors.CONFLICT)
        if sandbox.stdin_closed:
            raise RequestError(f"the stdin of sandbox {sandbox.id} was closed (write_eof)", request_errors.CONFLICT)
        sandbox.touch()
        if request.data:
            sandbox.stdin.put_nowait(bytes(request.data))
        if request.eof:
            sandbox.stdin_closed = True
            sandbox.stdin.put_nowait(None)

    async def file(self, request: pb.SandboxFileRequest) -> pb.SandboxFileReply:
        """One file operation, run inside the sandbox (remote_agent/worker/sandbox_files.py)."""
        op = _FILE_OPS.get(request.op)
        if op is None:
            raise RequestError(f"unknown sandbox file operation {request.op}")
        if not request.path:
            raise RequestError(f"sandbox file operation {op}: no path given")
        sandbox = self.running(request.sandbox_id, f"{op} files in")
        if not sandbox.workdir and not sandbox.spec.volumes:
            raise RequestError(f"sandbox {sandbox.id} has no directory of its own for file operations here (a "
                               f"Slurm job): create it with workdir= or volumes=", request_errors.CONFLICT)
        sandbox.touch()
        container = sandbox.container
        roots = [sandbox.workdir] if sandbox.workdir else []
        if container.plan.sandboxed:
            roots.append("/tmp")  # its own, private
        roots += [volume.path for volume in sandbox.spec.volumes]
        helper = {"op": op, "path": request.path, "flag": request.flag, "workdir": sandbox.workdir, "roots": roots,
                  "own_top": sorted(os.listdir("/")) if container.plan.sandboxed else None}
        argv = [container.plan.python, "-m", "remote_agent.worker.sandbox_files", json.dumps(helper)]
        code, out, err, error = await self._run_inside(sandbox, argv, bytes(request.data))
        sandbox.touch()
        if code == 0:
            if op == "read":
                return pb.SandboxFileReply(data=out)
            if op == "ls":
                return pb.SandboxFileReply(names=out.decode("utf-8", "surrogateescape").splitlines())
            if op == "stat":
                return pb.SandboxFileReply(kind=out.decode())
            return pb.SandboxFileReply()
        try:
            failure = json.loads(err.decode("utf-8", "replace"))
            return pb.SandboxFileReply(error=failure["message"], error_type=failure["type"])
        except (ValueError, KeyError, TypeError):
            raise RequestError(f"{op} {request.path!r} in sandbox {sandbox.id} failed (exit code {code}): "
                               f"{error or err.decode('utf-8', 'replace').strip()[-2000:]}",
                               request_errors.CONFLICT) from None

    async def _run_inside(self, sandbox: Sandbox, argv: list[str], stdin: bytes) -> tuple[int, bytes, bytes, str]:
        """Run a process in the sandbox to its end: (exit code, stdout, stderr, the exec's error)."""
        start = pb.ExecStart(container_id=sandbox.container.id, argv=argv, workdir="/")

        async def inputs() -> AsyncIterator[pb.ExecInput]:
            yield pb.ExecInput(start=start)
            for offset in range(0, len(stdin), _OUTPUT_CHUNK):
                yield pb.ExecInput(stdin=stdin[offset:offset + _OUTPUT_CHUNK])
            yield pb.ExecInput(stdin_eof=True)

        out, err = bytearray(), bytearray()
        code, error = 255, "the process's stream ended without its exit"
        async for output in container_exec.serve(lambda: [sandbox.container], inputs(), self._secret_env):
            if output.HasField("output"):
                (out if output.output.stream == pb.STDOUT else err).extend(output.output.data)
            elif output.HasField("exited"):
                code, error = output.exited.exit_code, output.exited.error
        return code, bytes(out), bytes(err), error


def _check(request: pb.SandboxCreateRequest) -> None:
    if request.timeout_s < 0:
        raise RequestError(f"Sandbox timeout must be > 0 seconds, not {request.timeout_s:g}")
    if request.idle_timeout_s < 0:
        raise RequestError(f"Sandbox idle_timeout must be > 0 seconds, not {request.idle_timeout_s:g}")
    for port in request.ports:
        if not 0 < port < 65536:
            raise RequestError(f"Sandbox port {port} is not a TCP port (1-65535)")


def for_agent(agent: Any) -> SandboxManager:
    """The sandbox manager of ``agent`` (remote_agent/agent.py's Agent), wired to its pool, secrets and images."""
    from remote_agent.launchers.local import LocalLauncher

    def secret_env(names: list[str]) -> dict[str, str]:
        return agent.secrets.store.environment(pb.SecretSource(name=name) for name in names)

    def image_workdir(image_id: str) -> str:
        return agent.images.get(image_id).workdir if image_id else ""

    own_root = isinstance(agent.launcher, LocalLauncher) and agent.sandbox.available
    local = isinstance(agent.launcher, LocalLauncher)
    return SandboxManager(agent.pool, agent.secrets.apply, secret_env, image_workdir, own_root,
                          agent.state_dir / "scratch", local)
