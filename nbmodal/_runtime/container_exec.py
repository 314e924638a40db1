"""A process inside a running container, driven from this side: the client of ContainerExec.

``ExecProcess`` starts one command in a container on an agent (``nbmodal container exec``, ``nbmodal shell``,
``Sandbox.exec``): its output arrives in order, by stream (stdout and stderr apart, or both as stdout on a
PTY); stdin, end of input, a window size and signals go the other way; ``exited`` ends it. Blocking, so a
thread may read the output while another writes stdin.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import grpc

from nbmodal._runtime.client import AgentClient, translate_rpc_error
from nbmodal_wire import pb

log = logging.getLogger(__name__)

STDOUT = pb.STDOUT
STDERR = pb.STDERR


@dataclass(frozen=True)
class ExecExit:
    """How an exec'd process ended: ``code`` (128 + N when killed by signal N), ``signal``, and ``error``
    when it could not start (``code`` 127: no such command), timed out, or its container ended."""

    code: int
    signal: int = 0
    error: str = ""


class ExecProcess:
    """One command running inside a running container.

    Example::

        process = ExecProcess(client, "c-123-4", ["cat"])
        process.write(b"hello\\n")
        process.write_eof()
        for stream, data in process.output():
            print(stream, data)
        assert process.wait().code == 0

    Raises ``NotFoundError`` when there is no such running container, ``ValueError`` for a bad request,
    ``AgentLostError`` when the agent can't be reached.
    """

    def __init__(self, client: AgentClient, container_id: str, argv: Sequence[str], *,
                 env: Mapping[str, str] | None = None, workdir: str = "", pty: bool = False,
                 rows: int = 0, cols: int = 0, timeout: float = 0, secrets: Sequence[str] = ()) -> None:
        self.container_id = container_id
        self.argv = list(argv)
        self._client = client
        self._inputs: queue.SimpleQueue[pb.ExecInput | None] = queue.SimpleQueue()
        self._inputs.put(pb.ExecInput(start=pb.ExecStart(
            container_id=container_id, argv=self.argv, env=dict(env or {}), workdir=workdir, pty=pty,
            rows=rows, cols=cols, timeout_s=timeout, secrets=list(secrets))))
        self._call = client.container_exec(self._requests())
        self._events = iter(self._call)
        self.exit: ExecExit | None = None
        self.exec_id = ""
        self.pid = 0
        first = self._next()
        if first is not None and first.HasField("started"):
            self.exec_id, self.pid = first.started.exec_id, first.started.pid

    @property
    def returncode(self) -> int | None:
        """The exit code once it has ended (and its output has been read), else None."""
        return self.exit.code if self.exit is not None else None

    # -- input --------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Bytes for its stdin, delivered in order."""
        if data:
            self._send(pb.ExecInput(stdin=bytes(data)))

    def write_eof(self) -> None:
        """Close its stdin (on a PTY: the terminal's end-of-file character)."""
        self._send(pb.ExecInput(stdin_eof=True))

    def resize(self, rows: int, cols: int) -> None:
        """A PTY's new window size (its foreground job gets SIGWINCH)."""
        self._send(pb.ExecInput(resize=pb.ExecResize(rows=rows, cols=cols)))

    def signal(self, signum: int) -> None:
        """A signal to its process group (on a PTY: to the terminal's foreground job)."""
        self._send(pb.ExecInput(signal=int(signum)))

    def _send(self, message: pb.ExecInput) -> None:
        if self.exit is None:
            self._inputs.put(message)

    def _requests(self) -> Iterator[pb.ExecInput]:
        while True:
            message = self._inputs.get()
            if message is None:
                return
            yield message

    # -- output -------------------------------------------------------------

    def output(self) -> Iterator[tuple[int, bytes]]:
        """(stream, bytes) as the process writes them (``STDOUT``/``STDERR``), until it exits."""
        while self.exit is None:
            event = self._next()
            if event is not None and event.HasField("output"):
                yield event.output.stream, event.output.data

    def wait(self) -> ExecExit:
        """Wait for it to end (discarding output not read yet); how it ended."""
        for _ in self.output():
            pass
        assert self.exit is not None
        return self.exit

    def close(self) -> None:
        """Stop following it; a process still running is killed (its stream is its lifeline)."""
        if self.exit is None:
            self._finish(ExecExit(code=137, signal=9, error="closed by this client"))
            self._call.cancel()

    def _next(self) -> pb.ExecOutput | None:
        """The next message; sets ``exit`` at ``exited`` (or when the stream ends without one)."""
        try:
            event = next(self._events)
        except StopIteration:
            self._finish(ExecExit(code=255, error="the agent ended the stream before the process exited"))
            return None
        except grpc.RpcError as exc:
            self._inputs.put(None)
            if exc.code() == grpc.StatusCode.CANCELLED and self.exit is not None:
                return None
            raise translate_rpc_error(exc, self._client) from None
        if event.HasField("exited"):
            exited = event.exited
            self._finish(ExecExit(code=exited.exit_code, signal=exited.signal, error=exited.error))
        return event

    def _finish(self, exit: ExecExit) -> None:
        self.exit = exit
        self._inputs.put(None)  # the request stream ends: the call completes
