"""The zygote: a pre-started interpreter that forks containers.

Started by the agent (remote_agent/zygote.py) once per image as ``python -u -m
remote_agent.worker.zygote --fd N [--preload mod1,mod2]``. It imports the
worker and the image's heavy modules (torch...) once, says it's ready, then
forks a container for each spawn request: the child already has those
modules, so it serves its first run in milliseconds instead of seconds.

fd N is one end of a socket pair with the agent. Messages both ways are a
4-byte big-endian length and a JSON object; file descriptors travel beside
them as SCM_RIGHTS, counted by the message's "nfds".

    agent -> zygote  {"op": "spawn", "id", "env", "cwd", "layout", "session", "nfds": 2}
                     + the container's socket and its log file
    zygote -> agent  {"ready": pid, "python": "3.11"}    or {"error": text}, then it exits 1
                     {"id", "pid", "nfds": 1} + a pidfd  or {"id", "error": text}
                     {"exited": pid, "returncode": rc}   rc < 0: killed by signal -rc

The zygote starts no threads and never initializes CUDA (a forked child
couldn't use either). It exits when the agent closes its end; the containers
it forked keep running until their own sockets close.
"""

from __future__ import annotations

import argparse
import collections
import gc
import importlib
import json
import logging
import os
import selectors
import signal
import socket
import struct
import sys
import threading
import traceback
from typing import Any, NoReturn

log = logging.getLogger("remote_agent.zygote")

_HEADER = struct.Struct(">I")
MAX_FDS = 8  # per message, more than any message carries
_CHUNK = 1 << 16


def pack(message: dict[str, Any]) -> bytes:
    """One message on the wire."""
    body = json.dumps(message).encode()
    return _HEADER.pack(len(body)) + body


class Unpacker:
    """Messages out of a stream socket's bytes, each with the descriptors that came with it.

    A message's descriptors arrive with its first byte, so by the time it is
    complete they are at the head of the queue.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._fds: collections.deque[int] = collections.deque()

    def feed(self, data: bytes, fds: list[int]) -> None:
        self._buffer += data
        self._fds.extend(fds)

    def next(self) -> tuple[dict[str, Any], list[int]] | None:
        """The next complete message and its descriptors (now the caller's), or None."""
        if len(self._buffer) < _HEADER.size:
            return None
        (length,) = _HEADER.unpack_from(self._buffer)
        if len(self._buffer) < _HEADER.size + length:
            return None
        message = json.loads(self._buffer[_HEADER.size:_HEADER.size + length])
        del self._buffer[:_HEADER.size + length]
        count = min(int(message.get("nfds", 0)), len(self._fds))
        return message, [self._fds.popleft() for _ in range(count)]

    def close(self) -> None:
        """Close the descriptors of messages not taken yet."""
        while self._fds:
            os.close(self._fds.popleft())


def send(sock: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    """Blocking send of one message (and its descriptors)."""
    data = pack(message)
    if fds:
        data = data[socket.send_fds(sock, [data], fds):]
    if data:
        sock.sendall(data)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m remote_agent.worker.zygote")
    parser.add_argument("--fd", type=int, required=True, help="socket to the agent")
    parser.add_argument("--preload", default="", help="modules to import before forking, comma-separated")
    args = parser.parse_args()
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s zygote: %(message)s")
    channel = socket.socket(fileno=args.fd)
    try:
        # What every container runs, imported once here; with what a spawned worker imports only when first
        # needed (the event loop, exec streams, shell lines): here it costs a forked container nothing.
        from remote_agent.worker import event_loop, exec_server, shell_lines  # noqa: F401
        from remote_agent.worker import main as worker_main  # noqa: F401
        from remote_agent.worker.execute import PYTHON_VERSION
    except BaseException:
        _fail(channel, f"the worker can't be imported:\n{traceback.format_exc()}")
    for name in filter(None, args.preload.split(",")):
        try:
            importlib.import_module(name)
        except BaseException:
            _fail(channel, f"preloading {name!r} failed:\n{traceback.format_exc()}")
    _warn_if_unforkable()
    # Objects from before the fork stay out of the children's collections: their pages stay shared.
    gc.collect()
    gc.freeze()
    send(channel, {"ready": os.getpid(), "python": PYTHON_VERSION})
    log.info("ready (pid %d, preloaded: %s)", os.getpid(), args.preload or "nothing")
    _Server(channel).run()
    log.info("agent closed the channel; exiting")


def _fail(channel: socket.socket, error: str) -> NoReturn:
    log.error("%s", error)
    try:
        send(channel, {"error": error})
    except OSError:
        pass
    sys.exit(1)


def _warn_if_unforkable() -> None:
    """A preload that started Python threads or CUDA leaves children that may hang or fail.

    (Native thread pools, like OpenBLAS's, rebuild themselves after a fork.)
    """
    if threading.active_count() > 1:
        names = ", ".join(t.name for t in threading.enumerate() if t is not threading.current_thread())
        log.warning("the preloaded modules started threads (%s); a forked container may deadlock", names)
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None)
    if cuda is not None and cuda.is_initialized():
        log.warning("the preloaded modules initialized CUDA; forked containers can't use the GPU")


class _Server:
    """Forks a container per spawn request, and tells the agent when each exits."""

    def __init__(self, channel: socket.socket) -> None:
        self.channel = channel
        self.unpacker = Unpacker()
        # SIGCHLD wakes the loop through a wakeup fd: no thread, no race with select().
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # a handler, so the wakeup fd hears it
        signal.set_wakeup_fd(self.wake_w.fileno(), warn_on_full_buffer=False)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.channel, selectors.EVENT_READ)
        self.selector.register(self.wake_r, selectors.EVENT_READ)
        self.launch_pythonpath = os.environ.get("PYTHONPATH", "")

    def run(self) -> None:
        """Serve until the agent closes its end."""
        try:
            while True:
                for key, _ in self.selector.select():
                    if key.fileobj is self.wake_r:
                        self._drain_wakeups()
                        self._reap()
                    elif not self._receive():
                        return
        except (BrokenPipeError, ConnectionResetError):  # a reply to an agent that has gone
            return
        finally:
            self.unpacker.close()

    def _drain_wakeups(self) -> None:
        try:
            while self.wake_r.recv(_CHUNK):
                pass
        except BlockingIOError:
            pass

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            send(self.channel, {"exited": pid, "returncode": os.waitstatus_to_exitcode(status)})

    def _receive(self) -> bool:
        try:
            data, fds, flags, _ = socket.recv_fds(self.channel, _CHUNK, MAX_FDS)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False
        if flags & socket.MSG_CTRUNC:
            log.error("descriptors from the agent were lost (MSG_CTRUNC)")
        if not data:
            for fd in fds:
                os.close(fd)
            return False
        self.unpacker.feed(data, fds)
        while (item := self.unpacker.next()) is not None:
            message, message_fds = item
            if message.get("op") == "spawn":
                self._spawn(message, message_fds)
            else:
                log.warning("unknown request %r", message)
                for fd in message_fds:
                    os.close(fd)
        return True

    def _spawn(self, request: dict[str, Any], fds: list[int]) -> None:
        if len(fds) != 2:
            for fd in fds:
                os.close(fd)
            send(self.channel, {"id": request.get("id"), "error": f"a spawn needs 2 descriptors, got {len(fds)}"})
            return
        container_fd, log_fd = fds
        for stream in (sys.stdout, sys.stderr):
            stream.flush()  # or the child would write our buffered output again
        try:
            pid = os.fork()
        except OSError as exc:
            pid = -1
            error = f"fork failed: {exc}"
        if pid == 0:
            self._become_container(request, container_fd, log_fd)
        os.close(container_fd)
        os.close(log_fd)
        if pid < 0:
            send(self.channel, {"id": request.get("id"), "error": error})
            return
        # A pidfd lets the agent wait for the child, which isn't its own, without pid reuse races.
        pidfd = _pidfd_open(pid)
        try:
            send(self.channel, {"id": request.get("id"), "pid": pid, "nfds": 1 if pidfd >= 0 else 0},
                 [pidfd] if pidfd >= 0 else None)
        finally:
            if pidfd >= 0:
                os.close(pidfd)

    def _become_container(self, request: dict[str, Any], container_fd: int, log_fd: int) -> NoReturn:
        """In the child: set it up as a spawned worker would be, then serve. Never returns to the zygote."""
        error_fd = log_fd
        try:
            os.setsid()  # its own process group: the agent signals the group
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            self.selector.close()
            for sock in (self.channel, self.wake_r, self.wake_w):
                sock.close()
            self.unpacker.close()  # other containers' descriptors, received in the same read
            os.dup2(log_fd, 1)
            os.dup2(log_fd, 2)
            os.close(log_fd)
            error_fd = 2
            from remote_agent.worker import main as worker_main
            from remote_agent.worker import mounts

            os.environ.clear()
            os.environ.update(request.get("env") or {})
            os.environ.pop("NBMODAL_OWN_PROCESS_GROUP", None)  # setsid() did that
            _follow_pythonpath(self.launch_pythonpath, os.environ.get("PYTHONPATH", ""))
            worker_main.pin_to_reserved_cores()
            _fit_thread_pools()
            layout = request.get("layout") or {}
            mounts.enter(layout)
            worker_main.enter_workdir(request.get("cwd") or layout.get("workdir"))
            _reseed()
        except BaseException:
            _exit_with_traceback(error_fd, "container setup failed")
        try:
            worker_main.serve(container_fd, bool(request.get("session")))
        except BaseException:
            _exit_with_traceback(2, "the container failed")
        os._exit(1)  # serve() never returns


def _exit_with_traceback(fd: int, what: str) -> NoReturn:
    """A forked child's end: its error in its own log, and never back into the zygote's code."""
    try:
        os.write(fd, f"{what}:\n{traceback.format_exc()}".encode())
    finally:
        os._exit(1)


def _follow_pythonpath(old: str, new: str) -> None:
    """The child's PYTHONPATH, which the interpreter read at the zygote's start, applied to sys.path."""
    if old == new:
        return
    for entry in filter(None, old.split(os.pathsep)):
        if os.path.abspath(entry) in sys.path:
            sys.path.remove(os.path.abspath(entry))
    for offset, entry in enumerate(filter(None, new.split(os.pathsep))):
        sys.path.insert(1 + offset, os.path.abspath(entry))
    importlib.invalidate_caches()


def _reseed() -> None:
    """Containers forked from one zygote must not share random streams seeded before the fork.

    ``random`` reseeds itself at fork; numpy's global generator doesn't.
    """
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        numpy_random.seed()


def _fit_thread_pools() -> None:
    """Size a preloaded torch's CPU threads as in a fresh process.

    OpenMP read OMP_NUM_THREADS and the usable cores when torch was imported,
    in the zygote, before this container's cores were reserved.
    """
    torch = sys.modules.get("torch")
    if torch is None or not hasattr(torch, "set_num_threads"):
        return
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    elif os.environ.get("NBMODAL_CPUS"):
        torch.set_num_threads(len(os.sched_getaffinity(0)))


def _pidfd_open(pid: int) -> int:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):  # before Linux 5.3
        return -1


if __name__ == "__main__":
    main()
