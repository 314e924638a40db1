"""Processes started inside this container beside its runs: ``nbmodal container exec``, ``nbmodal shell``,
``Sandbox.exec``.

The agent sends ``exec`` frames (remote_agent/container_exec.py routes each ContainerExec stream here by
its exec id): the first starts a process, later ones carry its stdin, a window size or a signal. The process
is this worker's child, so it shares the container's namespaces, mounts, working directory, environment and
GPUs (``CUDA_VISIBLE_DEVICES``): it *is* in the container. Each process leads its own session (so a signal
reaches its whole group, and a PTY's Ctrl-C its foreground job). A process whose stream goes away is killed
with everything of its session (a shell's jobs too); when the worker leaves in order, so is every session an
exec started; a worker killed outright takes its processes with it (``PR_SET_PDEATHSIG``).

Frames arrive on the inbox's reader thread (or the idle main thread), which must never block: stdin is
written by a thread per process, output read by a thread per stream, and the exit waited for by another,
which sends ``exited`` after all output (the last frame of the stream, always).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import logging
import os
import queue
import signal
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Callable

from nbmodal_wire import pb

log = logging.getLogger("remote_agent.worker")

_CHUNK = 1 << 16
_PR_SET_PDEATHSIG = 1
_NOT_FOUND = 127      # as a shell answers a command it can't find
_NOT_EXECUTABLE = 126
_DRAIN_AFTER_EXIT_S = 5.0
# Output sent to the agent that its client hasn't taken yet, at most (then the readers wait for acks, the
# pipes fill, and the process waits: a slow client slows the process down instead of filling memory).
OUTPUT_WINDOW_BYTES = 1 << 20

Send = Callable[[pb.FromContainer], None]


class ExecServer:
    """The processes of this container's exec streams, by exec id."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._processes: dict[str, _Process] = {}
        self._sessions: set[int] = set()  # each exec's session (its id is its first process's pid)
        self._lock = threading.Lock()

    def handle(self, message: pb.ToContainer) -> None:
        """One ``exec`` frame (on the thread that read it, the inbox's or the idle main thread: nothing here blocks)."""
        frame = message.exec
        kind = frame.input.WhichOneof("kind")
        if kind == "start":
            self._start(frame.exec_id, frame.input.start)
            return
        with self._lock:
            process = self._processes.get(frame.exec_id)
        if process is None:
            return  # it has exited; a late keystroke or signal has nothing to reach
        if kind == "stdin":
            process.write(frame.input.stdin)
        elif kind == "stdin_eof":
            process.write(None)
        elif kind == "resize":
            process.resize(frame.input.resize.rows, frame.input.resize.cols)
        elif kind == "signal":
            process.signal(frame.input.signal)
        elif kind == "kill":
            process.kill()
        elif kind == "output_ack":
            process.window.ack(frame.input.output_ack)

    def kill_all(self) -> None:
        """Kill every process an exec started, and what they left running (the worker is leaving)."""
        with self._lock:
            sessions = set(self._sessions)
        kill_sessions(sessions, os.environ.get("NBMODAL_CONTAINER_ID", ""))


    def _start(self, exec_id: str, start: pb.ExecStart) -> None:
        send = _sender(self._send, exec_id)
        try:
            process = _Process(start, send)
        except OSError as exc:
            send(pb.ExecOutput(exited=_could_not_start(start, exc)))
            return
        with self._lock:
            self._processes[exec_id] = process
            self._sessions.add(process.pid)
        send(pb.ExecOutput(started=pb.ExecStarted(exec_id=exec_id, pid=process.pid)))
        process.begin(on_exit=lambda: self._forget(exec_id))

    def _forget(self, exec_id: str) -> None:
        with self._lock:
            self._processes.pop(exec_id, None)


def _sender(send: Send, exec_id: str) -> Callable[[pb.ExecOutput], None]:
    def send_output(output: pb.ExecOutput) -> None:
        send(pb.FromContainer(exec=pb.ExecFromContainer(exec_id=exec_id, output=output)))
    return send_output


def _could_not_start(start: pb.ExecStart, exc: OSError) -> pb.ExecExited:
    command = start.argv[0] if start.argv else ""
    if isinstance(exc, FileNotFoundError) and exc.filename == start.workdir and start.workdir:
        return pb.ExecExited(exit_code=_NOT_FOUND, error=f"no such working directory in the container: "
                                                         f"{start.workdir!r}")
    if isinstance(exc, FileNotFoundError):
        return pb.ExecExited(exit_code=_NOT_FOUND, error=f"command not found in the container: {command!r}")
    if isinstance(exc, PermissionError):
        return pb.ExecExited(exit_code=_NOT_EXECUTABLE, error=f"permission denied running {command!r} "
                                                              f"in the container: {exc.strerror}")
    return pb.ExecExited(exit_code=_NOT_EXECUTABLE, error=f"could not start {command!r} in the container: {exc}")


def _find_prctl() -> Callable[..., int] | None:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux's libc
        return None


# Looked up here, not in the child: between fork and exec only async-signal-safe work is safe (no dlopen).
_prctl = _find_prctl()


def _die_with_worker() -> None:
    """In the child before exec: SIGKILL when the worker's thread that started it (the inbox's or the main one) dies."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _set_window(fd: int, rows: int, cols: int) -> None:
    if rows and cols:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class _Process:
    """One exec'd process: started in its own session, with pipes or a PTY."""

    def __init__(self, start: pb.ExecStart, send: Callable[[pb.ExecOutput], None]) -> None:
        if not start.argv:
            raise FileNotFoundError(2, "no command given", "")
        self._send = send
        self._pty = start.pty
        self._timeout_s = start.timeout_s
        self._timed_out = False
        env = dict(os.environ)
        env.update(start.env)
        workdir = start.workdir or None
        if workdir is not None and not os.path.isdir(workdir):
            raise FileNotFoundError(2, "no such directory", workdir)
        # Each descriptor below has one owner that closes it: a number is never reused under a read or write.
        self._control = -1  # a PTY's master, for window size, EOF and its foreground job (closed at exit)
        self._control_lock = threading.Lock()
        if start.pty:
            env.setdefault("TERM", "xterm-256color")
            master, slave = os.openpty()
            try:
                _set_window(slave, start.rows or 24, start.cols or 80)
                self.popen = subprocess.Popen(
                    list(start.argv), stdin=slave, stdout=slave, stderr=slave, env=env, cwd=workdir,
                    start_new_session=True, preexec_fn=_pty_child_setup, close_fds=True)
            except BaseException:
                os.close(master)
                raise
            finally:
                os.close(slave)
            self._sources = [(master, pb.STDOUT)]
            self._stdin_fd = os.dup(master)
            self._control = os.dup(master)
        else:
            in_r, in_w = os.pipe()
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            try:
                self.popen = subprocess.Popen(
                    list(start.argv), stdin=in_r, stdout=out_w, stderr=err_w, env=env, cwd=workdir,
                    start_new_session=True, preexec_fn=_die_with_worker, close_fds=True)
            except BaseException:
                for fd in (in_w, out_r, err_r):
                    os.close(fd)
                raise
            finally:
                for fd in (in_r, out_w, err_w):
                    os.close(fd)
            self._sources = [(out_r, pb.STDOUT), (err_r, pb.STDERR)]
            self._stdin_fd = in_w
        self.pid = self.popen.pid
        self._stdin: queue.SimpleQueue[bytes | bool | None] = queue.SimpleQueue()  # None: EOF; False: stop
        self._output_lock = threading.Lock()  # no output after `exited`
        self._exited = False
        self.window = _Window(OUTPUT_WINDOW_BYTES)
        self._reading: dict[int, float | None] = {}  # reader's fd -> when its current read began

    def begin(self, on_exit: Callable[[], None]) -> None:
        """Start its threads: stdin writer, output readers, and the waiter that reports the exit."""
        readers = [(threading.Thread(target=self._pump, args=source, name=f"exec-out-{self.pid}", daemon=True),
                    source[0]) for source in self._sources]
        for reader, _ in readers:
            reader.start()
        threading.Thread(target=self._write_stdin, name=f"exec-stdin-{self.pid}", daemon=True).start()
        threading.Thread(target=self._wait, args=(readers, on_exit), name=f"exec-wait-{self.pid}",
                         daemon=True).start()

    # -- input --------------------------------------------------------------

    def write(self, data: bytes | None) -> None:
        """Queue stdin bytes (None: end of input) for the writer thread."""
        self._stdin.put(data)

    def _write_stdin(self) -> None:
        fd = self._stdin_fd
        try:
            while True:
                data = self._stdin.get()
                if data is False:
                    return
                if data is None:
                    if self._pty:
                        self._send_eof_character()
                        continue  # a terminal stays open after ^D: a shell may read on
                    return
                assert isinstance(data, bytes)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
        except OSError:  # the process closed its stdin or exited: the rest has nowhere to go
            return
        finally:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _send_eof_character(self) -> None:
        # A terminal has no end of file of its own; its EOF character (^D) is what a reader sees as one.
        with self._control_lock:
            if self._control >= 0:
                with contextlib.suppress(OSError):
                    os.write(self._control, bytes([termios.tcgetattr(self._control)[6][termios.VEOF][0]]))

    def resize(self, rows: int, cols: int) -> None:
        with self._control_lock:
            if self._control >= 0:
                with contextlib.suppress(OSError):
                    _set_window(self._control, rows, cols)  # the kernel sends SIGWINCH to its foreground job

    def kill(self) -> None:
        """SIGKILL to its whole session: its own group and the jobs a shell in it started in groups of theirs."""
        self.window.close()  # nobody will take its output now: readers drain to the end
        kill_sessions({self.pid})

    def signal(self, signum: int) -> None:
        """``signum`` to the process's group; with a PTY, to its foreground job (as the terminal's keys do)."""
        group = self.pid
        if self._pty:
            with self._control_lock, contextlib.suppress(OSError):
                if self._control >= 0:
                    group = os.tcgetpgrp(self._control)
        try:
            os.killpg(group, signum)
        except (ProcessLookupError, PermissionError):
            pass
        except OSError as exc:
            log.warning("signal %d to exec process group %d failed: %s", signum, group, exc)

    # -- output and exit ----------------------------------------------------

    def _pump(self, fd: int, stream: int) -> None:
        try:
            while True:
                self._reading[fd] = time.monotonic()
                try:
                    data = os.read(fd, _CHUNK)
                except OSError:  # EIO: a PTY whose every slave end has closed
                    return
                self._reading[fd] = None
                if not data:
                    return
                self.window.take(len(data))
                with self._output_lock:
                    if self._exited:  # a child it left behind still writes: the stream has ended
                        continue
                    self._send(pb.ExecOutput(output=pb.Output(stream=stream, data=data)))  # type: ignore[arg-type]
        finally:
            # Closed by its reader only, so the descriptor's number can't be reused under a read.
            with contextlib.suppress(OSError):
                os.close(fd)

    def _wait(self, readers: list[tuple[threading.Thread, int]], on_exit: Callable[[], None]) -> None:
        try:
            status = self.popen.wait(self._timeout_s or None)
        except subprocess.TimeoutExpired:
            self._timed_out = True
            self.kill()
            status = self.popen.wait()
        # What it wrote is in the pipe or PTY already, all sent before `exited` (however slowly the client
        # takes it); children it left running may keep them open, so a reader waiting on a read past a
        # moment is not waited for (their later output is not part of this stream).
        exited_at = time.monotonic()
        for reader, fd in readers:
            while reader.is_alive():
                reader.join(0.05)
                began = self._reading.get(fd)
                if began is not None and time.monotonic() - max(began, exited_at) > _DRAIN_AFTER_EXIT_S:
                    break
        on_exit()
        self._stdin.put(False)  # the writer thread ends
        with self._control_lock:
            if self._control >= 0:
                os.close(self._control)
                self._control = -1
        code, signum = (128 - status, -status) if status < 0 else (status, 0)
        error = f"timed out after {self._timeout_s:g}s; killed" if self._timed_out else ""
        with self._output_lock:
            self._exited = True
            self._send(pb.ExecOutput(exited=pb.ExecExited(exit_code=code, signal=signum, error=error)))


class _Window:
    """Flow control of one process's output: bytes sent and not yet acknowledged, up to a limit."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._unacked = 0
        self._open = True
        self._changed = threading.Condition()

    def take(self, size: int) -> None:
        """Wait until there is room, then count ``size`` bytes as sent."""
        with self._changed:
            while self._open and self._unacked >= self._limit:
                self._changed.wait()
            self._unacked += size

    def ack(self, size: int) -> None:
        with self._changed:
            self._unacked = max(0, self._unacked - size)
            self._changed.notify_all()

    def close(self) -> None:
        """No more waiting (the process is being killed)."""
        with self._changed:
            self._open = False
            self._changed.notify_all()


def kill_sessions(sessions: set[int], container_id: str = "") -> None:
    """SIGKILL to every process of these sessions (found in /proc: a shell's jobs have groups of their own).

    With ``container_id``, only to those whose environment says they are that container's: a session whose
    leader has long exited may have an id that is now another process's (pids are reused).
    """
    if not sessions:
        return
    marker = f"NBMODAL_CONTAINER_ID={container_id}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()  # after the command name: state ppid pgrp session
        except (OSError, IndexError):
            continue  # it has exited meanwhile
        if len(fields) > 3 and int(fields[3]) in sessions and (not container_id or _has_env(entry, marker)):
            with contextlib.suppress(OSError):
                os.kill(int(entry), signal.SIGKILL)


def _has_env(pid: str, entry: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as environ:
            return entry in environ.read().split(b"\0")
    except OSError:
        return False


def _pty_child_setup() -> None:
    """In the child: the PTY (its stdin, already in place) becomes its controlling terminal."""
    _die_with_worker()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
