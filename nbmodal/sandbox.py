"""``nbmodal.Sandbox``: Modal's Sandboxes on your own hosts — containers for running commands.

A sandbox is a container on a host's agent (the local one by default; ``host=`` picks a configured SSH
host) with the image, GPUs, cores, memory, volumes and secrets asked for, that runs commands rather
than Python functions (remote_agent/sandboxes.py is the agent's side). Its entrypoint (``*cmd``), if
given, is its first process, and its return code is the sandbox's; without one it stays up until
``terminate()``, its ``timeout`` (300 s, as in Modal) or its ``idle_timeout``. ``exec`` starts more
processes in it (``ContainerProcess``), ``open``/``ls``/``mkdir``/``rm`` work on its files.

    sb = nbmodal.Sandbox.create(app=app, timeout=600)
    p = sb.exec("bash", "-c", "echo hello; echo oops >&2")
    assert p.stdout.read() == "hello\\n" and p.wait() == 0
    sb.terminate()
"""

from __future__ import annotations

import builtins
import logging
import os
import sys
import threading
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import grpc

from nbmodal._aio import WithAio
from nbmodal._runtime.client import AgentClient, translate_rpc_error
from nbmodal._runtime.connection import connection, existing_client, in_container, place
from nbmodal._runtime.container_exec import ExecProcess
from nbmodal._runtime.images import spec_with_image
from nbmodal._runtime.invocation import container_spec
from nbmodal.container_process import ContainerProcess
from nbmodal.exceptions import (
    Error,
    ExecutionError,
    FilesystemExecutionError,
    InvalidError,
    InvalidGpuError,
    NbmodalError,
    NotFoundError,
    SandboxTerminatedError,
    SandboxTimeoutError,
    not_available,
)
from nbmodal.file_io import FileIO
from nbmodal.gpu import to_gpu_string
from nbmodal.hosts import LOCAL, HostError, load_hosts
from nbmodal.io_streams import StreamReader, StreamWriter
from nbmodal.output import default_sink
from nbmodal.stream_type import StreamType
from nbmodal_wire import pb
from nbmodal_wire.gpu_request import GpuRequestError, parse_gpu_request
from nbmodal_wire.names import MountError, check_mount_path

log = logging.getLogger(__name__)

__all__ = ["Sandbox", "SandboxError", "SandboxPathError", "SandboxTunnel"]

DEFAULT_TIMEOUT_S = 300  # Modal's
_WAIT_STEP_S = 30.0  # one SANDBOX_WAIT call waits at most this long; wait() asks again
_ENDED = (pb.SANDBOX_FINISHED, pb.SANDBOX_TERMINATED, pb.SANDBOX_TIMED_OUT, pb.SANDBOX_FAILED)

# Modal's keywords that name things of its cloud: accepted, with one warning each, and no effect here.
_NO_EFFECT = {
    "cloud": "there is no cloud provider to choose: sandboxes run on your hosts (host= picks one)",
    "region": "there are no regions: host= picks the host",
    "proxy": "sandboxes use their host's own network",
    "verbose": "the agent's log (agent.log) has every sandbox's start and end",
    "pty": "a sandbox's entrypoint runs without a PTY; exec(pty=True) gives a process one",
    "pty_info": "a sandbox's entrypoint runs without a PTY; exec(pty=True) gives a process one",
    "experimental_options": "Modal's experimental scheduler options",
    "_experimental_scheduler_placement": "Modal's scheduler placement",
    "client": "a Modal API client; here sandboxes are reached through the host's agent",
    "environment_name": "Modal environments group objects in its cloud; here each host has its own",
    "custom_domain": "there is no Modal domain: a sandbox's ports are its host's ports",
}


class SandboxError(NbmodalError, ExecutionError):
    """A sandbox can't do what was asked: it has ended, it could not start, or it is still starting."""


class SandboxPathError(NbmodalError, FilesystemExecutionError, PermissionError):
    """A file path outside the sandbox's own directories (``..``, or a symlink out of them)."""


class SandboxFileNotFoundError(NbmodalError, FilesystemExecutionError, FileNotFoundError):
    """No such file or directory in the sandbox."""


class SandboxFileExistsError(NbmodalError, FilesystemExecutionError, FileExistsError):
    """The path exists in the sandbox (``mkdir`` of an existing directory)."""


class SandboxIsADirectoryError(NbmodalError, FilesystemExecutionError, IsADirectoryError):
    """A file operation on a directory of the sandbox."""


class SandboxNotADirectoryError(NbmodalError, FilesystemExecutionError, NotADirectoryError):
    """A directory operation on a file of the sandbox."""


class SandboxFileError(NbmodalError, FilesystemExecutionError, OSError):
    """Any other failure of a file operation in the sandbox (permissions, a non-empty directory...)."""


_FILE_ERRORS: dict[str, type[Exception]] = {
    "OutsideSandbox": SandboxPathError, "FileNotFoundError": SandboxFileNotFoundError,
    "FileExistsError": SandboxFileExistsError, "IsADirectoryError": SandboxIsADirectoryError,
    "NotADirectoryError": SandboxNotADirectoryError,
}


@dataclass(frozen=True)
class SandboxTunnel:
    """Where a port of a sandbox is reached (Modal's ``Tunnel``, from ``sb.tunnels()``).

    A sandbox shares its host's network, so its port is the host's port: ``host`` is the agent's
    machine (``localhost`` for the local agent); from elsewhere, forward it over SSH (``ssh -L``).
    There is no TLS proxy in front of it: ``url`` is plain ``http://``.
    """

    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def tls_socket(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def tcp_socket(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def unencrypted_host(self) -> str:
        return self.host

    @property
    def unencrypted_port(self) -> int:
        return self.port


def _no_effect(**keywords: Any) -> None:
    from nbmodal._function_options import warn_no_effect

    for keyword, value in keywords.items():
        if value not in (None, False, {}, (), []):
            warn_no_effect(f"Sandbox.create({keyword}=)", _NO_EFFECT[keyword])


def _translate(exc: grpc.RpcError, client: AgentClient) -> Exception:
    """A failed sandbox call as the notebook sees it."""
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else str(exc)
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        return SandboxError(details)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidError(details)
    return translate_rpc_error(exc, client)


class _ThroughSandbox:
    """An AgentClient whose ContainerExec goes through SandboxExec (the agent finds the sandbox's container,
    or says how the sandbox ended); the sandbox's own error is kept in ``failure``."""

    def __init__(self, client: AgentClient) -> None:
        self._client = client
        self.failure: Exception | None = None

    def container_exec(self, inputs: Iterator[pb.ExecInput]) -> Any:
        return _KeepingFailure(self, self._client.sandbox_exec(inputs))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class _KeepingFailure:
    def __init__(self, through: _ThroughSandbox, call: Any) -> None:
        self._through = through
        self._call = call

    def __iter__(self) -> Iterator[pb.ExecOutput]:
        try:
            yield from self._call
        except grpc.RpcError as exc:
            self._through.failure = _translate(exc, self._through._client)
            raise

    def cancel(self) -> None:
        self._call.cancel()


class Sandbox:
    """A sandbox on a host (Modal's ``Sandbox``): make one with ``Sandbox.create``, find one with
    ``Sandbox.from_id``, ``from_name`` or ``list``.

    Example::

        sb = nbmodal.Sandbox.create("python", "-c", "print(40 + 2)")
        sb.wait()
        assert sb.returncode == 0 and sb.stdout.read() == "42\\n"
    """

    def __init__(self, info: pb.SandboxInfo, host: str) -> None:
        self._info = info
        self._host = host
        self._stdout: StreamReader | None = None
        self._stderr: StreamReader | None = None
        self._stdin: StreamWriter | None = None
        self._lock = threading.Lock()

    # -- making and finding ---------------------------------------------------

    @WithAio.on_class
    def create(cls: Any, *entrypoint_args: str, app: Any = None, name: str | None = None, image: Any = None,
               env: Mapping[str, str | None] | None = None, secrets: Sequence[Any] = (),
               network_file_systems: Mapping[str, Any] | None = None, timeout: int = DEFAULT_TIMEOUT_S,
               idle_timeout: int | None = None, workdir: str | None = None, gpu: Any = None, cloud: str | None = None,
               region: str | Sequence[str] | None = None, cpu: Any = None, memory: Any = None,
               block_network: bool = False, cidr_allowlist: Sequence[str] | None = None,
               volumes: Mapping[str | os.PathLike, Any] | None = None, pty: bool = False, pty_info: Any = None,
               encrypted_ports: Sequence[int] = (), h2_ports: Sequence[int] = (),
               unencrypted_ports: Sequence[int] = (), proxy: Any = None, verbose: bool = False,
               experimental_options: dict[str, Any] | None = None, _experimental_enable_snapshot: bool = False,
               _experimental_scheduler_placement: Any = None, client: Any = None,
               environment_name: str | None = None, custom_domain: str | None = None,
               host: str | None = None) -> Sandbox:
        """Start a sandbox (Modal's ``Sandbox.create``); returns once it runs.

        ``*entrypoint_args``: its first command (its exit code becomes the sandbox's); without one it
        waits for ``exec`` calls. ``image``, ``gpu``, ``cpu``, ``memory``, ``volumes``, ``secrets``,
        ``env`` and ``workdir`` are as for functions; ``timeout`` (300 s) and ``idle_timeout`` (no running
        exec and no call for that long) end it. ``block_network=True`` gives it no network at all
        (refused on a host without bubblewrap). ``encrypted_ports``/``unencrypted_ports``/``h2_ports``:
        its ports, reached at its host's address (``tunnels()``). ``app`` is kept (``list(app_id=)``),
        and a sandbox made inside ``with app.run():`` ends with that block. ``host`` (nbmodal's own)
        names a configured host. ``cidr_allowlist`` and ``network_file_systems`` are not available;
        the cloud-only keywords (``region``, ``cloud``…) warn once and change nothing.

        Example::

            sb = nbmodal.Sandbox.create("sleep", "infinity", gpu="any", timeout=3600, app=app)
        """
        if cidr_allowlist is not None:
            raise not_available("Sandbox.create(cidr_allowlist=)", "use block_network=True for no network, or "
                                                                 "the host's firewall for finer rules")
        if network_file_systems:
            raise not_available("Sandbox.create(network_file_systems=)", "use volumes=")
        if _experimental_enable_snapshot:
            raise not_available("Sandbox snapshots (_experimental_enable_snapshot)")
        _no_effect(cloud=cloud, region=region, proxy=proxy, verbose=verbose, pty=pty, pty_info=pty_info,
                   experimental_options=experimental_options,
                   _experimental_scheduler_placement=_experimental_scheduler_placement, client=client,
                   environment_name=environment_name, custom_domain=custom_domain)
        if in_container():
            raise not_available("Sandbox.create inside a container", "create sandboxes from the notebook or "
                                                                    "a local entrypoint")
        argv = _command(entrypoint_args, "Sandbox.create")
        ports = sorted({int(p) for p in (*encrypted_ports, *h2_ports, *unencrypted_ports)})
        if block_network and ports:
            raise InvalidError(f"Sandbox.create: ports {ports} can't be reached in a sandbox with "
                               f"block_network=True (it has no network)")
        spec = _spec(gpu, cpu, memory, volumes, env, workdir)
        request = pb.SandboxCreateRequest(
            argv=argv, app=_app_name(app), name=name or "", timeout_s=float(timeout or 0),
            idle_timeout_s=float(idle_timeout or 0), ports=ports, secrets=_secret_sources(secrets))
        if timeout is not None and timeout <= 0:
            raise InvalidError(f"Sandbox.create: timeout must be > 0 seconds, not {timeout}")
        target = place(host, spec=spec)
        spec.block_network = bool(block_network)
        request.spec.CopyFrom(spec_with_image(spec, image, target, default_sink()) if image is not None else spec)
        agent = target.client()
        try:
            info = agent.sandbox_create(request)
        except grpc.RpcError as exc:
            raise _translate(exc, agent) from None
        sandbox = cls(info, target.name)
        _remember(sandbox, app)
        return sandbox

    @WithAio.on_class
    def from_id(cls: Any, sandbox_id: str, client: Any = None) -> Sandbox:
        """The sandbox with this id (``sb.object_id``), on whichever host has it.

        Example::

            sb = nbmodal.Sandbox.from_id("sb-1a2b3c4d5e6f")
        """
        host = _HOSTS.get(sandbox_id)
        names = [host] if host else _hosts()
        for name in names:
            agent = _client(name)
            if agent is None:
                continue
            try:
                reply = agent.sandbox_call(pb.SandboxRequest(op=pb.SANDBOX_GET, sandbox_id=sandbox_id), timeout=60)
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.NOT_FOUND:
                    continue
                raise _translate(exc, agent) from None
            _HOSTS[sandbox_id] = name
            return cls(reply.sandbox, name)
        raise NotFoundError(f"no sandbox {sandbox_id!r} on {', '.join(names)} (Sandbox.list() shows the running "
                            f"ones; ended ones are kept for a while only)")

    @WithAio.on_class
    def from_name(cls: Any, app_name: str, name: str, *, environment_name: str | None = None,
                  client: Any = None, host: str | None = None) -> Sandbox:
        """The running sandbox created with ``name=`` under the App named ``app_name``.

        Example::

            sb = nbmodal.Sandbox.from_name("agents", "worker-1")
        """
        for sandbox in cls.list(tags=None, host=host, _app=app_name):
            if sandbox._info.name == name:
                return sandbox
        raise NotFoundError(f"no running sandbox named {name!r} in app {app_name!r}")

    @WithAio.on_class  # a generator: its .aio is an async iterator
    def list(cls: Any, *, app_id: str | None = None, tags: Mapping[str, str] | None = None, client: Any = None,
             host: str | None = None, _app: str = "") -> Iterator[Sandbox]:
        """The running sandboxes (on ``host``, else on the local agent and every configured host), those of
        the App ``app_id`` (its name here: nothing is deployed) and with all of ``tags`` if given.

        Example::

            for sb in nbmodal.Sandbox.list(tags={"team": "ml"}):
                sb.terminate()
        """
        request = pb.SandboxRequest(op=pb.SANDBOX_LIST, app=app_id or _app, tags=dict(tags or {}))
        for name in [host] if host else _hosts():
            agent = _client(name)
            if agent is None:
                continue
            try:
                reply = agent.sandbox_call(request, timeout=60)
            except grpc.RpcError as exc:
                raise _translate(exc, agent) from None
            for info in reply.sandboxes:
                if info.state not in _ENDED:
                    _HOSTS[info.sandbox_id] = name
                    yield cls(info, name)

    # -- what it is -------------------------------------------------------------

    @property
    def object_id(self) -> str:
        """Its id, ``sb-`` and 12 hex digits."""
        return self._info.sandbox_id

    @property
    def container_id(self) -> str:
        """Its container, as ``nbmodal container list`` shows it (``nbmodal shell ID`` opens a shell in it)."""
        return self._info.container_id

    @property
    def host(self) -> str:
        """The configured host it runs on (``local``: the local agent)."""
        return self._host

    def hydrate(self, client: Any = None) -> Sandbox:
        """Refresh what is known of it from its agent; returns it."""
        self._refresh()
        return self

    @WithAio
    def get_tags(self) -> dict[str, str]:
        return dict(self._refresh().tags)

    @WithAio
    def set_tags(self, tags: Mapping[str, str], *, client: Any = None) -> None:
        """Replace its tags (``Sandbox.list(tags=)`` finds it by them)."""
        bad = [k for k, v in tags.items() if not isinstance(k, str) or not isinstance(v, str)]
        if bad:
            raise InvalidError(f"Sandbox tags are str: str; not {bad!r}")
        self._info = self._call(pb.SANDBOX_SET_TAGS, tags=dict(tags)).sandbox

    # -- its life ----------------------------------------------------------------

    @property
    def returncode(self) -> int | None:
        """None while it runs; then its entrypoint's exit code (0 without one), 124 if it timed out,
        137 if it was terminated."""
        info = self._info if self._info.state in _ENDED else self._refresh()
        return info.returncode if info.state in _ENDED else None

    @WithAio
    def poll(self) -> int | None:
        """Its return code if it has ended, else None (never waits)."""
        info = self._refresh()
        return info.returncode if info.state in _ENDED else None

    @WithAio
    def wait(self, raise_on_termination: bool = True) -> None:
        """Wait until it ends. Raises ``SandboxTimeoutError`` if it timed out, ``SandboxTerminatedError`` if it
        was terminated (unless ``raise_on_termination=False``), ``SandboxError`` if it could not start."""
        while self._info.state not in _ENDED:
            self._info = self._call(pb.SANDBOX_WAIT, timeout_s=_WAIT_STEP_S, rpc_timeout=_WAIT_STEP_S + 30).sandbox
        info = self._info
        if info.state == pb.SANDBOX_TIMED_OUT:
            raise SandboxTimeoutError(f"sandbox {self.object_id} timed out: {info.error}")
        if info.state == pb.SANDBOX_TERMINATED and raise_on_termination:
            raise SandboxTerminatedError(f"sandbox {self.object_id} was terminated: {info.error}")
        if info.state == pb.SANDBOX_FAILED:
            raise SandboxError(f"sandbox {self.object_id} could not start: {info.error}")

    @WithAio
    def terminate(self, *, wait: bool = False) -> None:
        """End it now: its processes are killed, its GPUs and cores released (``wait=True``: until it has ended)."""
        self._info = self._call(pb.SANDBOX_TERMINATE).sandbox
        if wait:
            self.wait(raise_on_termination=False)

    def detach(self) -> None:
        """Stop using this handle (the sandbox keeps running): its entrypoint streams stop following."""
        for reader in (self._stdout, self._stderr):
            if reader is not None:
                reader._close()

    def reload_volumes(self) -> None:
        """Volumes here are the host's directories, always current in the sandbox: nothing to reload."""
        self._refresh()

    # -- processes and streams ------------------------------------------------------

    @WithAio
    def exec(self, *args: str, pty_info: Any = None, stdout: StreamType = StreamType.PIPE,
             stderr: StreamType = StreamType.PIPE, timeout: int | None = None, workdir: str | None = None,
             secrets: Sequence[Any] = (), env: Mapping[str, str | None] | None = None, text: bool = True,
             bufsize: int = -1, pty: bool = False, _pty_info: Any = None) -> ContainerProcess:
        """Start a process in the sandbox (Modal's ``Sandbox.exec``): its ``stdout``/``stderr`` stream in order
        (text, or bytes with ``text=False``), ``stdin`` is writable, ``wait()`` returns its exit code.

        ``workdir`` defaults to the sandbox's; ``timeout`` kills it after that many seconds; ``secrets``
        and ``env`` add to its environment; ``stdout=StreamType.DEVNULL`` discards a stream,
        ``StreamType.STDOUT`` prints it here as it comes. A command that doesn't exist exits with 127
        (``p.error`` says so); a sandbox that has ended raises ``SandboxError``.

        Example::

            p = sb.exec("cat")
            p.stdin.write("hi\\n"); p.stdin.write_eof()
            assert p.stdout.read() == "hi\\n" and p.wait() == 0
        """
        argv = _command(args, "Sandbox.exec")
        if not argv:
            raise InvalidError("Sandbox.exec needs a command, e.g. sb.exec('ls', '-l')")
        if timeout is not None and timeout <= 0:
            raise InvalidError(f"Sandbox.exec: timeout must be > 0 seconds, not {timeout}")
        named = [s.to_proto().name for s in _secrets(secrets) if s.to_proto().name]
        environment: dict[str, str] = {}
        for source in _secrets(secrets):
            environment.update(source.to_proto().values)
        environment.update({k: v for k, v in (env or {}).items() if v is not None})
        through = _ThroughSandbox(self._client())
        try:
            process = ExecProcess(cast(AgentClient, through), self.object_id, argv, env=environment,
                                  workdir=workdir or "", pty=pty, timeout=float(timeout or 0), secrets=named)
        except Error:
            if through.failure is not None:
                raise through.failure from None
            raise
        echo = (sys.stdout, sys.stderr) if StreamType.STDOUT in (stdout, stderr) else None
        return ContainerProcess(process, text=text, discard=(stdout == StreamType.DEVNULL,
                                                             stderr == StreamType.DEVNULL), echo=echo)

    @property
    def stdout(self) -> StreamReader:
        """The entrypoint's stdout, from its start (lines as they come; ``read()`` once it has ended)."""
        with self._lock:
            if self._stdout is None:
                self._stdout = self._entry_stream(pb.STDOUT)
            return self._stdout

    @property
    def stderr(self) -> StreamReader:
        """The entrypoint's stderr, from its start."""
        with self._lock:
            if self._stderr is None:
                self._stderr = self._entry_stream(pb.STDERR)
            return self._stderr

    @property
    def stdin(self) -> StreamWriter:
        """The entrypoint's stdin."""
        with self._lock:
            if self._stdin is None:
                self._stdin = StreamWriter(lambda data: self._write_stdin(data, eof=False),
                                           lambda: self._write_stdin(b"", eof=True))
            return self._stdin

    def _entry_stream(self, stream: int) -> StreamReader:
        def start() -> None:
            threading.Thread(target=follow, name=f"nbmodal-{self.object_id}-fd{reader.file_descriptor}",
                             daemon=True).start()

        def follow() -> None:
            agent = self._client()
            error: BaseException | None = None
            try:
                for chunk in agent.sandbox_output(pb.SandboxOutputRequest(
                        sandbox_id=self.object_id, stream=stream, follow=True)):  # type: ignore[arg-type]
                    reader._feed(chunk.data)
            except grpc.RpcError as exc:
                error = _translate(exc, agent)
            reader._close(error)

        reader: StreamReader = StreamReader(1 if stream == pb.STDOUT else 2, start=start)
        return reader

    def _write_stdin(self, data: bytes, eof: bool) -> None:
        agent = self._client()
        try:
            agent.sandbox_stdin(pb.SandboxStdinRequest(sandbox_id=self.object_id, data=data, eof=eof))
        except grpc.RpcError as exc:
            raise _translate(exc, agent) from None

    @WithAio
    def tunnels(self, timeout: int = 50) -> dict[int, SandboxTunnel]:
        """Where each of its ports (``encrypted_ports``, ``unencrypted_ports``, ``h2_ports``) is reached: its
        host's address and the same port (it shares the host's network). From elsewhere, forward the port
        over SSH; there is no public URL or TLS proxy here.

        Example::

            sb = nbmodal.Sandbox.create("python", "-m", "http.server", "8000", encrypted_ports=[8000])
            print(sb.tunnels()[8000].url)   # http://localhost:8000
        """
        info = self._refresh()
        address = "localhost" if self._host == LOCAL else (info.hostname or self._host)
        return {port: SandboxTunnel(address, port) for port in info.ports}

    # -- files --------------------------------------------------------------------

    @WithAio
    def open(self, path: str, mode: str = "r") -> FileIO:
        """A file of the sandbox (``FileIO``): read when opened, written back by ``flush``/``close``.

        Paths are the sandbox's own (relative ones from its working directory) and must stay within
        its own directories: its working directory, its /tmp, its volumes and new top-level
        directories (where the host has bubblewrap); ``..`` or a symlink out of them raises
        ``SandboxPathError``.

        Example::

            with sb.open("out.txt", "w") as f:
                f.write("done")
        """
        return FileIO(path, mode, read=lambda: self._read_file(path), write=lambda data: self._write_file(path, data))

    @WithAio
    def ls(self, path: str) -> builtins.list[str]:
        """The names in a directory of the sandbox, sorted."""
        return list(self._file(pb.SANDBOX_FILE_LS, path).names)

    @WithAio
    def mkdir(self, path: str, parents: bool = False) -> None:
        """Make a directory in the sandbox (``parents=True``: with its parents, and no error if it exists)."""
        self._file(pb.SANDBOX_FILE_MKDIR, path, flag=parents)

    @WithAio
    def rm(self, path: str, recursive: bool = False) -> None:
        """Remove a file, or a directory (an empty one unless ``recursive=True``)."""
        self._file(pb.SANDBOX_FILE_RM, path, flag=recursive)

    def watch(self, path: str, filter: Any = None, recursive: bool | None = None, timeout: int | None = None) -> Any:
        """Modal's file watching; not available yet."""
        raise not_available("Sandbox.watch()", "poll with sb.ls() meanwhile")

    def snapshot_filesystem(self, timeout: int = 55) -> Any:
        """Modal's filesystem snapshots; not available (containers are processes on the host, not images)."""
        raise not_available("Sandbox.snapshot_filesystem()", "build an nbmodal.Image with the same steps instead")

    def _read_file(self, path: str) -> bytes | None:
        if self._file(pb.SANDBOX_FILE_STAT, path).kind == "":
            return None
        return self._file(pb.SANDBOX_FILE_READ, path).data

    def _write_file(self, path: str, data: bytes) -> None:
        self._file(pb.SANDBOX_FILE_WRITE, path, data=data)

    def _file(self, op: int, path: str, data: bytes = b"", flag: bool = False) -> pb.SandboxFileReply:
        if not isinstance(path, str) or not path:
            raise InvalidError(f"a sandbox file path is a non-empty str, not {path!r}")
        agent = self._client()
        try:
            reply = agent.sandbox_file(pb.SandboxFileRequest(sandbox_id=self.object_id, op=op,  # type: ignore[arg-type]
                                                             path=path, data=data, flag=flag))
        except grpc.RpcError as exc:
            raise _translate(exc, agent) from None
        if reply.error:
            raise _FILE_ERRORS.get(reply.error_type, SandboxFileError)(
                f"sandbox {self.object_id}: {reply.error}")
        return reply

    # -- plumbing -------------------------------------------------------------------

    def _client(self) -> AgentClient:
        return connection(self._host).client()

    def _call(self, op: int, rpc_timeout: float = 60, **fields: Any) -> pb.SandboxReply:
        agent = self._client()
        try:
            return agent.sandbox_call(pb.SandboxRequest(op=op, sandbox_id=self.object_id, **fields),  # type: ignore[arg-type]
                                      timeout=rpc_timeout)
        except grpc.RpcError as exc:
            raise _translate(exc, agent) from None

    def _refresh(self) -> pb.SandboxInfo:
        self._info = self._call(pb.SANDBOX_GET).sandbox
        return self._info

    def __reduce__(self) -> tuple[Any, ...]:
        return _from_pickle, (self._info.SerializeToString(), self._host)

    def __repr__(self) -> str:
        return f"<nbmodal.Sandbox {self.object_id}{f' on {self._host}' if self._host != LOCAL else ''}>"


def _from_pickle(info: bytes, host: str) -> Sandbox:
    return Sandbox(pb.SandboxInfo.FromString(info), host)


# -- helpers -----------------------------------------------------------------------------------

_HOSTS: dict[str, str] = {}  # sandbox id -> the host it runs on, as far as this process knows
# Sandboxes made with each App in this process: ``with app.run():`` ends those still running (Modal's
# sandboxes of an ephemeral app end with it).
_BY_APP: weakref.WeakKeyDictionary[Any, list[Sandbox]] = weakref.WeakKeyDictionary()


def _remember(sandbox: Sandbox, app: Any) -> None:
    _HOSTS[sandbox.object_id] = sandbox.host
    if app is not None:
        try:
            _BY_APP.setdefault(app, []).append(sandbox)
        except TypeError:  # an object that can't be weakly referenced: nothing to end with it
            pass


def end_app_sandboxes(app: Any) -> None:
    """Terminate the sandboxes this process made with ``app`` that still run (its ``run()`` block ended)."""
    for sandbox in _BY_APP.pop(app, []):
        try:
            if sandbox.poll() is None:
                sandbox.terminate()
        except (Error, HostError) as exc:  # its host went away: it ends by its own timeout there
            log.warning("could not terminate sandbox %s with its app: %s", sandbox.object_id, exc)


def _hosts() -> list[str]:
    return [LOCAL, *load_hosts()]


def _client(name: str) -> AgentClient | None:
    """The host's client; the local agent's only if it runs (listing shouldn't start one)."""
    if name == LOCAL:
        return existing_client()
    try:
        return connection(name).client()
    except HostError as exc:
        log.info("sandboxes: host %s is unreachable (%s)", name, exc)
        return None


def _command(args: Sequence[Any], where: str) -> list[str]:
    bad = [a for a in args if not isinstance(a, str)]
    if bad:
        raise InvalidError(f"{where}: each argument of the command is a str, not {bad[0]!r} "
                           f"({type(bad[0]).__name__}); e.g. {where.split('.')[-1]}('sleep', '10')")
    return list(args)


def _app_name(app: Any) -> str:
    if app is None:
        return ""
    return str(getattr(app, "name", None) or getattr(app, "description", "") or "")


def _secrets(secrets: Sequence[Any] | None) -> list[Any]:
    from nbmodal.secret import Secret, secret_sources

    secret_sources(secrets, "Sandbox")  # the error for anything that isn't a Secret
    if isinstance(secrets, Secret):
        return [secrets]
    return list(secrets or ())


def _secret_sources(secrets: Sequence[Any] | None) -> list[pb.SecretSource]:
    from nbmodal.secret import secret_sources

    return list(secret_sources(secrets, "Sandbox.create"))


def _spec(gpu: Any, cpu: Any, memory: Any, volumes: Mapping[Any, Any] | None, env: Mapping[str, str | None] | None,
          workdir: str | None) -> pb.ContainerSpec:
    gpu_string = to_gpu_string(gpu)
    try:
        parse_gpu_request(gpu_string)
    except GpuRequestError as exc:
        raise InvalidGpuError(str(exc)) from None
    try:
        mounts = {check_mount_path(getattr(v, "name", v), str(path)): getattr(v, "name", v)
                  for path, v in (volumes or {}).items()}
    except MountError as exc:
        raise InvalidError(str(exc)) from None
    spec = container_spec(gpu_string, mounts, cpu or 0.0, memory or 0)
    spec.env.update({k: v for k, v in (env or {}).items() if v is not None})
    if workdir:
        if not workdir.startswith("/"):
            raise InvalidError(f"Sandbox.create: workdir must be an absolute path, not {workdir!r}")
        spec.workdir = workdir
    return spec
