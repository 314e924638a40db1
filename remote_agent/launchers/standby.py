"""A launcher kept waiting inside a fresh pids cgroup and the sandbox, so a spawned container's start
skips both.

Moving a process into a cgroup waits for an RCU grace period where the host's cgroups aren't set up for
frequent moves (every cgroup v1 host, v2 without ``favordynmods``): 7–20 ms, which a spawned container
would spend between its fork and its bubblewrap (remote_agent/process_limits.py, ``wrap_argv``), and
bubblewrap's own set-up is another ~5 ms. A Standby does both ahead of time: one small process
(``python -I -S``: no site, no imports) that joined a cgroup of its own, with ``pids.max`` already set,
through the same ``wrap_argv`` shell, then started inside the container sandbox (the bubblewrap prefix a
container with no image gets: every such container has the same one), holding the container's end of a
fresh socket pair and a log file of its own. When a container starts, the agent renames that log to the
container's and writes the launcher the worker's command and environment over its stdin; it takes
/dev/null as its stdin and execs the command. Everything the container ever runs descends from a
process that was in the cgroup before the command was known, so the limit holds from its first
instruction, as with the shell.

After each use the next Standby is made in the background at once (``REFILL_DELAY_S``: waiting 50 ms so
as not to compete with the container just started measured slower, as the next start often came first).
``NBMODAL_STANDBY_LAUNCHER=0`` turns this off (each spawned container joins on its own start path, as before).

Example::

    standby = Standby(limiter, lambda: sandbox_prefix, sys.executable, logs_dir)
    standby.refill()                               # in the background
    ready = standby.take(plan.outer_argv, plan.python)  # None: use the ordinary path
    if ready is not None:
        await ready.start(worker_argv, env, log_path)  # worker_argv's --fd is ready.container_fd
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path

from remote_agent.process_limits import PidsCgroup, ProcessLimiter

log = logging.getLogger(__name__)

REFILL_DELAY_S = 0.0
# A launcher older than this is replaced rather than used: its sandbox's view of the host's mounts dates from
# its start (as an image's zygote's does), so a long-idle agent doesn't hand out an old one.
MAX_AGE_S = 600.0
# Launchers that die before use one after another (they can't join a cgroup, or start): stop making them.
MAX_EARLY_DEATHS = 3

# The waiting process: reads one request (8-byte length, then NUL-separated fields: cwd, argc, argv...,
# env entries), takes /dev/null as its stdin (its stdout and stderr are the log already) and execs. Only
# builtins and the frozen os module, so it starts in a few ms; an empty read: the agent dropped it unused.
LAUNCHER_CODE = r"""
import os
def _read():
    data = b""
    while len(data) < 8 or len(data) < 8 + int.from_bytes(data[:8], "big"):
        chunk = os.read(0, 1 << 16)
        if not chunk:
            os._exit(0)
        data += chunk
    return data[8:8 + int.from_bytes(data[:8], "big")].split(b"\0")
fields = _read()
cwd, argc = fields[0], int(fields[1])
argv, env = fields[2:2 + argc], fields[2 + argc:]
null_fd = os.open("/dev/null", os.O_RDONLY)
os.dup2(null_fd, 0)
os.close(null_fd)
try:
    if cwd:
        os.chdir(cwd)
    os.execvpe(argv[0], argv, dict(entry.split(b"=", 1) for entry in env))
except BaseException as exc:
    os.write(2, b"the container's launcher couldn't start " + argv[0] + b": " + repr(exc).encode() + b"\n")
    os._exit(127)
"""


def enabled() -> bool:
    """Whether spawned containers start from a Standby (``NBMODAL_STANDBY_LAUNCHER``, on by default)."""
    return os.environ.get("NBMODAL_STANDBY_LAUNCHER", "1") != "0"


def encode_request(argv: list[str], env: dict[str, str], cwd: str | None = None) -> bytes:
    """What a launcher reads on its stdin (see LAUNCHER_CODE)."""
    for part in (*argv, *env, *env.values(), cwd or ""):
        if "\0" in part:
            raise ValueError(f"a container's command or environment can't hold a NUL character: {part!r}")
    fields = [cwd or "", str(len(argv)), *argv, *(f"{key}={value}" for key, value in env.items())]
    body = b"\0".join(os.fsencode(field) for field in fields)
    return len(body).to_bytes(8, "big") + body


class ReadyLauncher:
    """A waiting launcher: its process (the container's, once started), cgroup, socket and log."""

    def __init__(self, name: str, process: asyncio.subprocess.Process, cgroup: PidsCgroup,
                 agent_socket: socket.socket, container_fd: int, prefix: list[str], python: str,
                 log_path: Path) -> None:
        self.name = name
        self.process = process
        self.cgroup = cgroup
        self.socket = agent_socket      # the agent's end of the container's socket pair
        self.container_fd = container_fd  # the container's end, at this number in the launcher
        self.prefix = prefix            # the sandbox it waits in (sandbox.outer_argv), [] for none
        self.python = python
        self.log_path = log_path        # its stdout and stderr, renamed to the container's log on use

    async def start(self, argv: list[str], env: dict[str, str], log_path: Path, cwd: str | None = None) -> None:
        """Have it exec ``argv`` with exactly ``env``, its output in ``log_path`` (raises OSError: it can't be
        told, it is gone; ValueError: a NUL in ``argv`` or ``env``)."""
        request = encode_request(argv, env, cwd)
        os.replace(self.log_path, log_path)
        self.log_path = log_path
        stdin = self.process.stdin
        assert stdin is not None
        stdin.write(request)
        await stdin.drain()
        stdin.close()

    async def discard(self, keep_log: bool = False) -> None:
        """Drop it unused: it is killed, and its cgroup (and log, unless ``keep_log``) go once it has exited."""
        self.socket.close()
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            await self.process.wait()
        self.cgroup.close()
        if not keep_log and self.log_path.name.startswith("standby-"):  # never a container's
            with contextlib.suppress(OSError):
                self.log_path.unlink()


class Standby:
    """Keeps one ReadyLauncher for the next spawned container, made anew after each use."""

    def __init__(self, limiter: ProcessLimiter, prefix: Callable[[], list[str]], python: str, logs_dir: Path,
                 refill_delay_s: float = REFILL_DELAY_S, max_age_s: float = MAX_AGE_S) -> None:
        self.limiter = limiter
        self.prefix = prefix  # the sandbox around the containers it serves (those whose plan has this prefix)
        self.python = python  # ... and this interpreter
        self.logs_dir = logs_dir
        self.refill_delay_s = refill_delay_s
        self.max_age_s = max_age_s
        self._ready: ReadyLauncher | None = None
        self._making: asyncio.Task | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._names = itertools.count(1)
        self._dropping: set[asyncio.Task] = set()
        self._early_deaths = 0
        self._expiry: asyncio.TimerHandle | None = None

    def take(self, prefix: list[str], python: str) -> ReadyLauncher | None:
        """The waiting launcher for a container in sandbox ``prefix`` running ``python``, if there is a live
        one; once it is taken (or found dead) the next one is made in the background."""
        if self._ready is not None and (self._ready.prefix != prefix or self._ready.python != python):
            return None  # another kind of container (an image's, a network-less one): the ordinary path
        ready, self._ready = self._ready, None
        if ready is not None and ready.process.returncode is not None:
            self._died_early(f"the standby launcher {ready.name} exited (code {ready.process.returncode}) before use; "
                             f"see {ready.log_path}")
            self._drop(ready, keep_log=True)
            ready = None
        elif ready is not None:
            self._early_deaths = 0
        self.refill(self.refill_delay_s)
        return ready

    def _drop(self, ready: ReadyLauncher, keep_log: bool = False) -> None:
        task = asyncio.get_running_loop().create_task(ready.discard(keep_log))
        self._dropping.add(task)
        task.add_done_callback(self._dropping.discard)

    def refill(self, delay_s: float = 0.0) -> None:
        """Make a launcher to wait for the next container, after ``delay_s``, unless one waits or is coming."""
        if self._closed or self._ready is not None or self._timer is not None or \
                (self._making is not None and not self._making.done()):
            return
        loop = asyncio.get_running_loop()

        def make() -> None:
            self._timer = None
            if not self._closed and self._ready is None:
                self._making = loop.create_task(self._make_or_give_up(), name="standby-launcher")

        self._timer = loop.call_later(delay_s, make)

    async def _make_or_give_up(self) -> None:
        try:
            await self._make()
        except Exception as exc:  # noqa: BLE001 - containers still start the ordinary way; say why once per try
            self._died_early(f"the standby launcher couldn't be started: {exc}")

    def _died_early(self, what: str) -> None:
        self._early_deaths += 1
        self._closed = self._early_deaths >= MAX_EARLY_DEATHS
        log.warning("%s%s", what, "; containers start without one from now on" if self._closed else "")

    async def _make(self) -> None:
        name = f"standby-{os.getpid()}-{next(self._names)}"
        cgroup = self.limiter.for_container(name)
        if cgroup is None:  # logged by the limiter; the ordinary path still works
            return
        prefix = self.prefix()
        log_path = self.logs_dir / f"{name}.log"
        agent_end, container_end = socket.socketpair()
        try:
            self.logs_dir.mkdir(parents=True, exist_ok=True)
            with open(log_path, "ab") as log_file:
                # The shell joins the cgroup, then becomes bubblewrap, which starts the launcher: all inside.
                process = await asyncio.create_subprocess_exec(
                    *cgroup.wrap_argv([*prefix, self.python, "-I", "-S", "-c", LAUNCHER_CODE]),
                    stdin=asyncio.subprocess.PIPE, stdout=log_file, stderr=log_file,
                    pass_fds=(container_end.fileno(),), start_new_session=True,
                    env={"PATH": os.environ.get("PATH", os.defpath)})  # to find bubblewrap; nothing else of ours
        except (OSError, asyncio.CancelledError):
            agent_end.close()
            cgroup.close()
            with contextlib.suppress(OSError):
                log_path.unlink()
            raise
        finally:
            container_end_fd = container_end.fileno()
            container_end.close()
        ready = ReadyLauncher(name, process, cgroup, agent_end, container_end_fd, prefix, self.python, log_path)
        if self._closed:
            await ready.discard()
            return
        self._ready = ready
        self._expiry = asyncio.get_running_loop().call_later(self.max_age_s, self._expire, ready)

    def _expire(self, ready: ReadyLauncher) -> None:
        """Replace a launcher that waited ``max_age_s`` unused."""
        if self._ready is ready:
            self._ready = None
            self._drop(ready)
            self.refill()

    async def close(self) -> None:
        """Stop making launchers and drop the waiting one."""
        self._closed = True
        if self._expiry is not None:
            self._expiry.cancel()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._making is not None and not self._making.done():
            self._making.cancel()
            with contextlib.suppress(BaseException):
                await self._making
        if self._ready is not None:
            ready, self._ready = self._ready, None
            await ready.discard()
        for task in list(self._dropping):
            with contextlib.suppress(BaseException):
                await task
