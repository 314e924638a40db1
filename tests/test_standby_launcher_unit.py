"""The standby launcher (remote_agent/launchers/standby.py): a process that joined its pids cgroup before it
knew its command, then becomes the container with exactly the environment, descriptors and log it is given.

The "cgroup" here is a plain directory (the files it uses are plain files); the real one is exercised by
tests/test_standby_launcher.py on an agent."""

from __future__ import annotations

import ast
import asyncio
import os
import sys
from pathlib import Path

import pytest

from remote_agent.launchers.standby import MAX_EARLY_DEATHS, ReadyLauncher, Standby, encode_request
from remote_agent.process_limits import ProcessLimiter

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]

# What the container runs here: its pid, its environment, whether the socket fd is open, what its stdin reads.
REPORT = """
import os, sys
fd = int(sys.argv[1])
print("pid", os.getpid())
print("env", sorted(os.environ.items()))
print("fd", os.fstat(fd).st_mode != 0)
print("stdin", repr(os.read(0, 10)))
print("cwd", os.getcwd())
os.write(fd, b"hello")
sys.stderr.write("to the log too\\n")
"""


async def _ready(standby: Standby, timeout_s: float = 20.0) -> ReadyLauncher:
    """Wait (on the loop, no sleeping) for the launcher the standby makes, and take it."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while standby._ready is None:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("no standby launcher was made")
        await asyncio.sleep(0.01)
    ready = standby.take([], sys.executable)
    assert ready is not None
    return ready


async def _joined(ready: ReadyLauncher, timeout_s: float = 20.0) -> str:
    procs = ready.cgroup.path / "cgroup.procs"
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not procs.read_text().strip():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("the launcher never joined its cgroup")
        await asyncio.sleep(0.01)
    return procs.read_text().strip()


def test_a_standby_launcher_joins_first_then_becomes_the_container(tmp_path: Path) -> None:
    async def scenario() -> None:
        limiter = ProcessLimiter(tmp_path / "cgroups", 64, False, "test")
        limiter.parent.mkdir()
        standby = Standby(limiter, lambda: [], sys.executable, tmp_path / "logs", refill_delay_s=0.0)
        assert standby.take([], sys.executable) is None  # none yet: the caller takes the ordinary path; one is made
        ready = await _ready(standby)
        assert (ready.cgroup.path / "pids.max").read_text() == "64"  # the limit is set before it joins
        # In the cgroup before it has been told what to run: everything it runs descends from a member.
        assert await _joined(ready) == str(ready.process.pid)
        log = tmp_path / "logs" / "c-1.log"
        own_log = ready.log_path
        assert own_log.name.startswith("standby-") and own_log.exists()
        env = {"ONLY": "this", "PATH": os.environ.get("PATH", "")}
        await ready.start([sys.executable, "-c", REPORT, str(ready.container_fd)], env, log, cwd=str(tmp_path))
        reader, _ = await asyncio.open_unix_connection(sock=ready.socket)
        assert await reader.readexactly(5) == b"hello"  # the container's end of the socket pair reached it
        assert await ready.process.wait() == 0
        text = log.read_text()
        assert f"pid {ready.process.pid}\n" in text  # exec'd in place: the pid the agent holds is the container's
        seen = dict(ast.literal_eval(next(line for line in text.splitlines() if line.startswith("env "))[4:]))
        seen.pop("LC_CTYPE", None)  # Python's own C-locale coercion, when the given environment has no locale
        assert seen == env  # exactly what it was given, nothing of the agent's
        assert "fd True" in text and "stdin b''" in text and f"cwd {tmp_path}" in text
        assert "to the log too" in text and not own_log.exists()  # its log became the container's
        ready.cgroup.close()
        await standby.close()

    asyncio.run(scenario())


def test_a_launcher_that_died_before_use_is_not_used_and_close_leaves_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        limiter = ProcessLimiter(tmp_path / "cgroups", 64, False, "test")
        limiter.parent.mkdir()
        standby = Standby(limiter, lambda: [], sys.executable, tmp_path / "logs", refill_delay_s=0.0)
        standby.refill()
        dead = await _ready(standby)  # taking it makes the next one
        await _joined(dead)
        dead.process.kill()
        await dead.process.wait()
        waiting = await _ready(standby)
        standby._ready = dead  # as if the one waiting had died
        assert standby.take([], sys.executable) is None  # not used: the caller takes the ordinary path
        standby._ready = waiting
        await standby.close()  # the one waiting is killed and its cgroup closed
        assert waiting.process.returncode is not None and waiting.cgroup._closed
        assert dead.cgroup._closed  # dropped in the background, done by the time close() returns
        assert standby.take([], sys.executable) is None  # closed: no more launchers
        # The one that died keeps its log (the warning names it); the one dropped unused leaves nothing.
        assert list((tmp_path / "logs").glob("standby-*")) == [dead.log_path]

    asyncio.run(scenario())


def test_a_launcher_waits_for_one_kind_of_container_only(tmp_path: Path) -> None:
    async def scenario() -> None:
        limiter = ProcessLimiter(tmp_path / "cgroups", 64, False, "test")
        limiter.parent.mkdir()
        standby = Standby(limiter, lambda: ["env"], sys.executable, tmp_path / "logs", refill_delay_s=0.0)
        standby.refill()
        while standby._ready is None:
            await asyncio.sleep(0.01)
        waiting = standby._ready
        assert standby.take([], sys.executable) is None  # another sandbox (an image's, a network-less one)
        assert standby.take(["env"], "/other/python") is None  # another interpreter
        assert standby._ready is waiting  # still there for the next container of its kind
        assert standby.take(["env"], sys.executable) is waiting
        await waiting.discard()
        await standby.close()

    asyncio.run(scenario())


def test_a_request_is_length_prefixed_nul_separated_and_refuses_nul_inside() -> None:
    data = encode_request(["python", "-m", "remote_agent.worker"], {"A": "1=2"}, cwd="/w")
    body = data[8:]
    assert int.from_bytes(data[:8], "big") == len(body)
    assert body.split(b"\0") == [b"/w", b"3", b"python", b"-m", b"remote_agent.worker", b"A=1=2"]
    with pytest.raises(ValueError, match="NUL"):
        encode_request(["python"], {"A": "x\0y"})


class _UnjoinableLimiter(ProcessLimiter):
    """Its cgroups refuse a process (cgroup.procs can't be written): every launcher dies before use."""

    def for_container(self, container_id: str):
        cgroup = super().for_container(container_id)
        assert cgroup is not None
        (cgroup.path / "cgroup.procs").mkdir()
        return cgroup


def test_launchers_that_keep_dying_before_use_are_given_up(tmp_path: Path) -> None:
    async def scenario() -> None:
        limiter = _UnjoinableLimiter(tmp_path / "cgroups", 64, False, "test")
        limiter.parent.mkdir()
        standby = Standby(limiter, lambda: [], sys.executable, tmp_path / "logs", refill_delay_s=0.0)
        standby.refill()
        for _ in range(MAX_EARLY_DEATHS):
            while standby._ready is None or standby._ready.process.returncode is None:
                if standby._ready is not None:
                    await standby._ready.process.wait()  # the shell can't join, so it never runs the launcher
                else:
                    await asyncio.sleep(0.01)
            assert standby.take([], sys.executable) is None
        assert standby._closed and standby._timer is None  # no more attempts
        await standby.close()

    asyncio.run(scenario())


def test_a_launcher_left_waiting_too_long_is_replaced(tmp_path: Path) -> None:
    async def scenario() -> None:
        limiter = ProcessLimiter(tmp_path / "cgroups", 64, False, "test")
        limiter.parent.mkdir()
        standby = Standby(limiter, lambda: [], sys.executable, tmp_path / "logs", refill_delay_s=0.0, max_age_s=0.2)
        standby.refill()
        while standby._ready is None:
            await asyncio.sleep(0.01)
        first = standby._ready
        while standby._ready is None or standby._ready is first:  # replaced once it is older than max_age_s
            await asyncio.sleep(0.01)
        assert await first.process.wait() != 0  # killed...

        async def closed() -> None:
            while not first.cgroup._closed:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(closed(), 20)  # ...and its cgroup closed
        await standby.close()

    asyncio.run(scenario())


def test_a_launcher_that_cannot_be_started_is_given_up_too(tmp_path: Path) -> None:
    async def scenario() -> None:
        limiter = ProcessLimiter(tmp_path / "cgroups", 64, False, "test")
        limiter.parent.mkdir()
        standby = Standby(limiter, lambda: ["/nonexistent/bwrap"], "/nonexistent/python", tmp_path / "logs",
                          refill_delay_s=0.0)
        for _ in range(MAX_EARLY_DEATHS):
            standby.refill()
            while standby._timer is not None or (standby._making is not None and not standby._making.done()):
                await asyncio.sleep(0.01)
            if standby._ready is not None:  # the shell started, and failed to exec what it was given
                await standby._ready.process.wait()
            assert standby.take(["/nonexistent/bwrap"], "/nonexistent/python") is None
        assert standby._closed
        await standby.close()

    asyncio.run(scenario())


def test_a_launcher_whose_log_cannot_be_made_is_given_up(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        limiter = ProcessLimiter(tmp_path / "cgroups", 64, False, "test")
        limiter.parent.mkdir()
        (tmp_path / "not-a-dir").write_text("")
        standby = Standby(limiter, lambda: [], sys.executable, tmp_path / "not-a-dir", refill_delay_s=0.0)
        for _ in range(MAX_EARLY_DEATHS):
            standby.refill()
            while standby._timer is not None or (standby._making is not None and not standby._making.done()):
                await asyncio.sleep(0.01)
            assert standby._ready is None
        assert standby._closed and "couldn't be started" in caplog.text
        assert not any(path.is_dir() for path in limiter.parent.iterdir() if (path / "cgroup.procs").exists() and
                       (path / "cgroup.procs").read_text())  # nothing was left running in a cgroup
        await standby.close()

    asyncio.run(scenario())
