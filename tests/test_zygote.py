"""Zygotes: containers forked from a pre-started interpreter (remote_agent/zygote.py and
remote_agent/worker/zygote.py), plainly and under the bubblewrap sandbox."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import statistics
import sys
import time
from pathlib import Path

import pytest

from remote_agent import sandbox
from nbmodal_wire.frames import read_frame, write_frame
from nbmodal_wire import pb
from remote_agent.zygote import ForkedProcess, Zygote, ZygoteError

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
SLOW_IMPORT_S = 1.5

pytestmark = [pytest.mark.agent, pytest.mark.timeout(120)]


class Env:
    """What a test's zygotes and containers run with."""

    def __init__(self, tmp_path: Path, sandboxed: bool) -> None:
        self.modules = tmp_path / "modules"
        self.modules.mkdir()
        (self.modules / "slowmod.py").write_text(f"import time\ntime.sleep({SLOW_IMPORT_S})\nMARKER = 'slow'\n")
        (self.modules / "badmod.py").write_text("raise ImportError('badmod needs a library this host lacks')\n")
        self.blobs = tmp_path / "blobs"
        self.blobs.mkdir()
        self.logs = tmp_path / "logs"
        self.sandboxed = sandboxed
        self.argv_prefix = (sandbox.outer_argv([str(tmp_path)], [(str(self.modules), False), (str(self.blobs), True),
                                                                 (str(self.logs), False)])
                            if sandboxed else [])
        self.zygote_env = {**os.environ, "PYTHONPATH": f"{self.modules}{os.pathsep}{REPO}", "ZYGOTE_ONLY": "1"}
        self.container_env = {**os.environ, "PYTHONPATH": f"{self.modules}{os.pathsep}{REPO}",
                              "NBMODAL_BLOB_DIR": str(self.blobs), "CONTAINER_ONLY": "yes"}
        self.layout = {"sandboxed": sandboxed, "private_tmp": sandboxed, "binds": [], "gpu_devices": None}
        self.logs.mkdir()

    async def zygote(self, preload: list[str]) -> Zygote:
        return await Zygote.start(self.argv_prefix, sys.executable, preload, self.zygote_env,
                                  self.logs / "zygote.log")


@pytest.fixture(params=["plain", "sandboxed"])
def env(request, tmp_path: Path) -> Env:
    if request.param == "sandboxed" and not sandbox.sandbox_available():
        pytest.skip("bubblewrap can't sandbox here")
    return Env(tmp_path, request.param == "sandboxed")


class Container:
    """The agent's end of one forked container."""

    def __init__(self, process: ForkedProcess, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 log_path: Path) -> None:
        self.process, self.reader, self.writer, self.log_path = process, reader, writer, log_path

    @classmethod
    async def fork(cls, zygote: Zygote, env: Env, name: str = "c", cwd: str | None = None,
                   ready: bool = True, session: bool = False,
                   container_env: dict[str, str] | None = None) -> tuple[Container, float]:
        """Fork one; the time from the spawn request to its ready frame."""
        parent, child = socket.socketpair()
        log_path = env.logs / f"{name}.log"
        started = time.perf_counter()
        try:
            with open(log_path, "ab") as log_file:
                process = await zygote.spawn(child.fileno(), log_file.fileno(), container_env or env.container_env,
                                             cwd, env.layout, session=session)
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        reader, writer = await asyncio.open_unix_connection(sock=parent)
        container = cls(process, reader, writer, log_path)
        if ready:
            frame = await asyncio.wait_for(read_frame(reader, pb.FromContainer), 30)
            assert frame is not None and frame.HasField("ready"), log_path.read_text()
            assert frame.ready.pid == process.pid
        return container, time.perf_counter() - started

    async def run_cell(self, code: str) -> str:
        write_frame(self.writer, pb.ToContainer(execute=pb.Execute(run_id="r", kind=pb.CELL, code=code,
                                                                   filename="<cell>", first_line=1)))
        output = b""
        while True:
            message = await asyncio.wait_for(read_frame(self.reader, pb.FromContainer), 30)
            assert message is not None, self.log_path.read_text()
            if message.HasField("finished"):
                assert message.finished.state == pb.SUCCEEDED, message.finished.error.traceback
                return output.decode()
            output += message.output.data

    def close(self) -> None:
        self.writer.close()


def test_forked_container_has_the_preloaded_modules(env: Env) -> None:
    async def scenario() -> None:
        started = time.perf_counter()
        zygote = await env.zygote(["slowmod"])
        assert time.perf_counter() - started >= SLOW_IMPORT_S
        try:
            container, latency = await Container.fork(zygote, env)
            log.info("%s fork: spawn to ready in %.1f ms", "sandboxed" if env.sandboxed else "plain", latency * 1e3)
            assert latency < 0.5  # the import took 1.5 s: the fork didn't redo it
            process = container.process
            assert process.pid not in (os.getpid(), zygote.pid)
            assert os.getpgid(process.pid) == process.pid  # its own group: the agent signals it
            assert os.getsid(process.pid) == process.pid
            output = await container.run_cell(
                "import os, sys\n"
                "print('slowmod' in sys.modules, os.getpgrp() == os.getpid())\n"
                "print(os.environ.get('CONTAINER_ONLY'), os.environ.get('ZYGOTE_ONLY'))\n")
            assert output.split() == ["True", "True", "yes", "None"]  # its env is exactly the one asked for
            os.killpg(process.pid, signal.SIGKILL)
            assert await asyncio.wait_for(process.wait(), 10) == -signal.SIGKILL
            assert process.returncode == -signal.SIGKILL
            container.close()
        finally:
            await zygote.stop()

    asyncio.run(scenario())


def test_concurrent_spawns_and_exit_codes(env: Env) -> None:
    async def scenario() -> None:
        zygote = await env.zygote([])
        try:
            forked = await asyncio.gather(*(Container.fork(zygote, env, name=f"c{i}") for i in range(4)))
            containers = [container for container, _ in forked]
            assert len({c.process.pid for c in containers}) == 4
            outputs = await asyncio.gather(*(c.run_cell("import os\nprint(os.getpid())") for c in containers))
            assert [int(out) for out in outputs] == [c.process.pid for c in containers]
            for container in containers:
                container.close()  # the worker sees its socket close and exits normally
            assert await asyncio.gather(*(c.process.wait() for c in containers)) == [0] * 4
        finally:
            await zygote.stop()

    asyncio.run(scenario())


def test_forked_containers_are_set_up_like_spawned_ones(tmp_path: Path) -> None:
    """Their own random streams, their own PYTHONPATH and working directory, sessions that keep names."""
    env = Env(tmp_path, sandboxed=False)
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "extramod.py").write_text("VALUE = 'extra'\n")
    container_env = {**env.container_env, "PYTHONPATH": f"{extra}{os.pathsep}{env.container_env['PYTHONPATH']}"}

    async def scenario() -> None:
        zygote = await env.zygote(["numpy.random"])
        try:
            draws = []
            for i in range(2):
                container, _ = await Container.fork(zygote, env, name=f"r{i}")
                draws.append(await container.run_cell("import numpy\nprint(numpy.random.rand())"))
                container.close()
            assert draws[0] != draws[1]  # numpy's global generator was reseeded in each
            container, _ = await Container.fork(zygote, env, name="s", cwd=str(tmp_path), session=True,
                                                container_env=container_env)
            await container.run_cell("import extramod, os, sys\nkept = extramod.VALUE")
            output = await container.run_cell("print(kept, os.getcwd(), sys.path[0])")
            assert output.split() == ["extra", str(tmp_path), str(tmp_path)]
            container.close()
        finally:
            await zygote.stop()

    asyncio.run(scenario())


def test_a_setup_failure_is_in_the_container_log(env: Env) -> None:
    async def scenario() -> None:
        zygote = await env.zygote([])
        try:
            container, _ = await Container.fork(zygote, env, cwd="/nonexistent-workdir", ready=False)
            assert await asyncio.wait_for(container.process.wait(), 10) == 1
            assert await container.reader.read() == b""  # it never said ready
            text = container.log_path.read_text()
            assert "container setup failed" in text and "/nonexistent-workdir" in text
            container.close()
            assert zygote.alive  # the zygote itself is unharmed
            second, _ = await Container.fork(zygote, env, name="second")
            second.close()
        finally:
            await zygote.stop()

    asyncio.run(scenario())


def test_containers_outlive_their_zygote(env: Env) -> None:
    async def scenario() -> None:
        zygote = await env.zygote([])
        container, _ = await Container.fork(zygote, env)
        await zygote.stop()
        assert not zygote.alive and zygote.process.returncode == 0
        assert (await container.run_cell("print(6 * 7)")).strip() == "42"
        with pytest.raises(ZygoteError):
            await Container.fork(zygote, env, name="late")
        container.close()
        # Its return code went with the zygote, but its end is still seen.
        assert await asyncio.wait_for(container.process.wait(), 10) is None

    asyncio.run(scenario())


@pytest.mark.parametrize("module", ["badmod", "no_such_module_anywhere"])
def test_a_failing_preload_fails_the_start(env: Env, module: str) -> None:
    async def scenario() -> None:
        with pytest.raises(ZygoteError) as failure:
            await env.zygote(["json", module])
        assert repr(module) in str(failure.value) and "Traceback" in str(failure.value)

    asyncio.run(scenario())


def test_fork_is_faster_than_spawning(tmp_path: Path) -> None:
    """Spawn-to-ready: a fork of a zygote vs ``python -m remote_agent.worker``, both unsandboxed."""
    env = Env(tmp_path, sandboxed=False)

    async def spawn_worker() -> float:
        parent, child = socket.socketpair()
        started = time.perf_counter()
        with open(env.logs / "spawned.log", "ab") as log_file:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-u", "-m", "remote_agent.worker", "--fd", str(child.fileno()),
                pass_fds=(child.fileno(),), stdin=asyncio.subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                env=env.container_env, start_new_session=True)
        child.close()
        reader, writer = await asyncio.open_unix_connection(sock=parent)
        assert (await asyncio.wait_for(read_frame(reader, pb.FromContainer), 30)).HasField("ready")
        latency = time.perf_counter() - started
        writer.close()
        await process.wait()
        return latency

    async def scenario() -> tuple[list[float], list[float]]:
        spawned = [await spawn_worker() for _ in range(3)]
        zygote = await env.zygote([])
        try:
            forked = []
            for i in range(5):
                container, latency = await Container.fork(zygote, env, name=f"f{i}")
                forked.append(latency)
                container.close()
                await container.process.wait()
        finally:
            await zygote.stop()
        return spawned, forked

    spawned, forked = asyncio.run(scenario())
    log.warning("spawn to ready: python -m remote_agent.worker %.1f ms, fork of a zygote %.1f ms (medians)",
                statistics.median(spawned) * 1e3, statistics.median(forked) * 1e3)
    assert statistics.median(forked) < statistics.median(spawned)
