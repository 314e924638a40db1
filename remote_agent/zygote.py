"""Zygotes, agent side: pre-started interpreters that fork containers in milliseconds.

A Zygote runs remote_agent/worker/zygote.py (the wire protocol is described
there) under the container sandbox, with an image's heavy modules imported;
``spawn`` forks a worker from it that serves a container's socket exactly as
a spawned ``python -m remote_agent.worker`` would. Each fork is a
ForkedProcess: what a Container uses of asyncio.subprocess.Process.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import socket
from pathlib import Path
from typing import Any

from remote_agent.worker.zygote import MAX_FDS, Unpacker, pack

log = logging.getLogger(__name__)

ZYGOTE_START_TIMEOUT_S = 120.0  # heavy imports (torch) on a cold disk
SPAWN_TIMEOUT_S = 30.0
STOP_GRACE_S = 5.0
EXIT_REPORT_GRACE_S = 2.0  # after a child's pidfd fires, how long its return code may take to come
_LOG_TAIL_BYTES = 4000
_ids = itertools.count(1)


class ZygoteError(RuntimeError):
    pass


class ForkedProcess:
    """A container forked by a zygote: its pid, return code, and a way to wait for it.

    The process is the zygote's child, not the agent's: its end is seen
    through a pidfd and its return code comes from the zygote. If the zygote
    is gone by then, the return code stays None.
    """

    def __init__(self, pid: int, pidfd: int | None, zygote: Zygote) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._zygote = zygote
        self._pidfd = pidfd
        self._exited = False
        self._done = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        if pidfd is not None:
            self._loop.add_reader(pidfd, self._on_exit)

    async def wait(self) -> int | None:
        """Wait for the process to end; its return code (negative: the signal), None if unknowable."""
        await self._done.wait()
        return self.returncode

    def _on_exit(self) -> None:
        self._close_pidfd()
        self._exited = True
        if not self._zygote.alive:
            self._finish()
        else:  # the zygote reaps it and reports its return code in a moment
            self._loop.call_later(EXIT_REPORT_GRACE_S, self._finish)

    def _reported(self, returncode: int) -> None:
        self.returncode = returncode
        self._exited = True
        self._close_pidfd()
        self._finish()

    def _zygote_lost(self) -> None:
        """Nobody will report a return code now: finish at the process's end."""
        if self._exited:
            self._finish()
        elif self._pidfd is None:
            self._loop.create_task(self._poll_until_gone())

    async def _poll_until_gone(self) -> None:
        while True:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                break
            except PermissionError:  # the pid is someone else's now: ours is gone
                break
            await asyncio.sleep(0.2)
        self._exited = True
        self._finish()

    def _finish(self) -> None:
        self._done.set()

    def _close_pidfd(self) -> None:
        if self._pidfd is not None:
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None


class Zygote:
    """A running zygote process and the channel to it."""

    def __init__(self, process: asyncio.subprocess.Process, channel: socket.socket, log_path: Path) -> None:
        self.process = process
        self.pid = process.pid  # until the zygote says its own (under bubblewrap, bwrap's is the process's)
        self.python = ""
        self.log_path = log_path
        self._channel = channel
        self._unpacker = Unpacker()
        self._loop = asyncio.get_running_loop()
        self._ready: asyncio.Future = self._loop.create_future()
        self._replies: dict[int, asyncio.Future] = {}
        self._children: dict[int, ForkedProcess] = {}
        self._send_lock = asyncio.Lock()
        self._closed = False
        channel.setblocking(False)
        self._loop.add_reader(channel.fileno(), self._on_readable)

    @classmethod
    async def start(cls, argv_prefix: list[str], python: str, preload: list[str], env: dict[str, str],
                    log_path: Path, cwd: str | None = None, timeout_s: float = ZYGOTE_START_TIMEOUT_S) -> Zygote:
        """Start a zygote and wait until it has imported the worker and ``preload``.

        ``argv_prefix`` is the sandbox around it (sandbox.outer_argv) or [].
        Raises ZygoteError with the zygote's own report or its log's tail.
        """
        parent, child = socket.socketpair()
        argv = [*argv_prefix, python, "-u", "-m", "remote_agent.worker.zygote", "--fd", str(child.fileno())]
        if preload:
            argv += ["--preload", ",".join(preload)]
        log_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(log_path, "ab") as log_file:
                process = await asyncio.create_subprocess_exec(
                    *argv, pass_fds=(child.fileno(),), stdin=asyncio.subprocess.DEVNULL, stdout=log_file,
                    stderr=log_file, env=env, cwd=cwd, start_new_session=True)
        except OSError as exc:
            parent.close()
            raise ZygoteError(f"can't start a zygote ({argv[0]}): {exc}") from exc
        finally:
            child.close()
        zygote = cls(process, parent, log_path)
        try:
            ready = await asyncio.wait_for(asyncio.shield(zygote._ready), timeout_s)
        except asyncio.TimeoutError:
            await zygote._kill()
            raise ZygoteError(f"the zygote wasn't ready after {timeout_s:g} s; see {log_path}") from None
        except BaseException:  # its own report, or the start was cancelled
            await zygote._kill()
            raise
        zygote.pid, zygote.python = ready["ready"], ready.get("python", "")
        return zygote

    @property
    def alive(self) -> bool:
        return not self._closed and self.process.returncode is None

    async def spawn(self, container_fd: int, log_fd: int, env: dict[str, str], cwd: str | None,
                    layout: dict[str, Any], session: bool) -> ForkedProcess:
        """Fork a container serving ``container_fd``, its fd 1 and 2 on ``log_fd``.

        Its environment is exactly ``env``; it makes ``layout``'s mounts
        (worker/mounts.py), then starts in ``cwd`` (or the layout's workdir).
        The descriptors stay the caller's to close.
        """
        if not self.alive:
            raise ZygoteError(f"the zygote (pid {self.pid}) has exited; see {self.log_path}")
        request_id = next(_ids)
        reply = self._loop.create_future()
        self._replies[request_id] = reply
        try:
            await self._send({"op": "spawn", "id": request_id, "env": env, "cwd": cwd, "layout": layout,
                              "session": session, "nfds": 2}, [container_fd, log_fd])
            return await asyncio.wait_for(asyncio.shield(reply), SPAWN_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise ZygoteError(f"the zygote (pid {self.pid}) didn't fork within {SPAWN_TIMEOUT_S:g} s") from None
        finally:
            if not reply.done():
                reply.cancel()  # a late reply's child is killed: nobody would own it

    async def stop(self) -> None:
        """Close the channel (the zygote exits; its children don't) and wait for it, killing it after a grace."""
        self._close()
        try:
            await asyncio.wait_for(self.process.wait(), STOP_GRACE_S)
        except asyncio.TimeoutError:
            await self._kill()

    async def _kill(self) -> None:
        self._close()
        if self.process.returncode is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)  # bwrap and the zygote; its children have their own
            except ProcessLookupError:
                pass
        await self.process.wait()

    async def _send(self, message: dict[str, Any], fds: list[int]) -> None:
        whole = memoryview(pack(message))
        data = whole
        async with self._send_lock:  # one message's bytes at a time
            while data:
                try:
                    sent = socket.send_fds(self._channel, [data], fds) if fds else self._channel.send(data)
                except BlockingIOError:
                    try:
                        await self._writable()
                    except asyncio.CancelledError:
                        if len(data) < len(whole):  # half a message in the stream: the channel is unusable
                            self._close()
                        raise
                    continue
                except OSError as exc:
                    raise ZygoteError(f"the zygote (pid {self.pid}) can't be reached: {exc}") from exc
                data, fds = data[sent:], []  # the descriptors went with the first byte

    async def _writable(self) -> None:
        writable = self._loop.create_future()

        def became_writable() -> None:
            if not writable.done():
                writable.set_result(None)

        self._loop.add_writer(self._channel.fileno(), became_writable)
        try:
            await writable
        finally:
            self._loop.remove_writer(self._channel.fileno())

    def _on_readable(self) -> None:
        try:
            data, fds, _flags, _ = socket.recv_fds(self._channel, 1 << 16, MAX_FDS)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data, fds = b"", []
        for fd in fds:
            os.set_inheritable(fd, False)  # received descriptors aren't close-on-exec by default
        if not data:
            for fd in fds:
                os.close(fd)
            self._lost()
            return
        self._unpacker.feed(data, fds)
        while (item := self._unpacker.next()) is not None:
            self._dispatch(*item)

    def _dispatch(self, message: dict[str, Any], fds: list[int]) -> None:
        if "exited" in message:
            child = self._children.pop(message["exited"], None)
            if child is not None:
                child._reported(message["returncode"])
        elif "id" in message:
            self._settle_spawn(message, fds[0] if fds else None)
            return
        elif "ready" in message and not self._ready.done():
            self._ready.set_result(message)
        elif "error" in message and not self._ready.done():
            self._ready.set_exception(ZygoteError(f"the zygote failed to start: {message['error']}"))
        for fd in fds:
            os.close(fd)

    def _settle_spawn(self, message: dict[str, Any], pidfd: int | None) -> None:
        reply = self._replies.pop(message["id"], None)
        if "error" in message:
            if pidfd is not None:
                os.close(pidfd)
            if reply is not None and not reply.done():
                reply.set_exception(ZygoteError(f"the zygote couldn't fork a container: {message['error']}"))
            return
        child = ForkedProcess(message["pid"], pidfd, self)
        self._children[child.pid] = child
        if reply is None or reply.done():
            log.warning("killing forked container %d: its spawn was abandoned", child.pid)
            _kill_quietly(child.pid)
        else:
            reply.set_result(child)

    def _lost(self) -> None:
        """The zygote's end closed: it exited (or is exiting)."""
        if not self._ready.done():
            self._ready.set_exception(ZygoteError(f"the zygote exited before it was ready:\n{self._log_tail()}"))
        self._close()

    def _close(self) -> None:
        """No more messages either way: fail pending spawns; children end on their pidfds alone."""
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._channel.fileno())
        self._channel.close()
        self._unpacker.close()
        for reply in self._replies.values():
            if not reply.done():
                reply.set_exception(ZygoteError(f"the zygote (pid {self.pid}) exited; see {self.log_path}"))
        self._replies.clear()
        for child in self._children.values():
            child._zygote_lost()
        self._children.clear()

    def _log_tail(self) -> str:
        try:
            with open(self.log_path, "rb") as log_file:
                log_file.seek(0, os.SEEK_END)
                log_file.seek(max(0, log_file.tell() - _LOG_TAIL_BYTES))
                return log_file.read().decode(errors="replace").strip() or f"(nothing in {self.log_path})"
        except OSError as exc:
            return f"(its log {self.log_path} can't be read: {exc})"


def _kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
