"""The agent process: state dir, single-instance lock, agent.json, serving.

    python -m remote_agent serve --state-dir ~/.nbmodal/agent --daemon

One agent serves one state dir (an flock on ``agent.lock``). Once listening it
writes ``agent.json`` (pid, port, token, versions; mode 0600), which is how
clients find it and prove who they are. Logs go to ``agent.log`` there.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import secrets
import signal
import sys
import time
from pathlib import Path

from nbmodal_wire import PROTOCOL_VERSION, __version__
from nbmodal_wire.agent_file import AgentFile, remove_agent_file, write_agent_file

log = logging.getLogger("remote_agent")

EXIT_ALREADY_RUNNING = 3


class AlreadyRunning(Exception):
    pass


def acquire_lock(state_dir: Path) -> int:
    """Hold the state dir's lock for the life of the process."""
    fd = os.open(state_dir / "agent.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise AlreadyRunning(f"another agent already serves {state_dir}") from None
    return fd


def daemonize(log_path: Path) -> None:
    """Detach from the starting process: it returns at once, we live on."""
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    out = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(out, 1)
    os.dup2(out, 2)


def serve(state_dir: Path, daemon: bool, scaledown_window_s: float) -> int:
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    log_path = state_dir / "agent.log"
    if daemon:
        daemonize(log_path)  # before grpc is imported: gRPC doesn't survive fork
    try:
        lock_fd = acquire_lock(state_dir)
    except AlreadyRunning as exc:
        print(f"nbmodal agent: {exc}", file=sys.stderr)
        return EXIT_ALREADY_RUNNING
    logging.basicConfig(filename=log_path, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    lock = [lock_fd]  # released early when draining, so the next agent can take over
    try:
        asyncio.run(_serve(state_dir, scaledown_window_s, lock))
    finally:
        remove_agent_file(state_dir, os.getpid())
        if lock[0] >= 0:
            os.close(lock[0])
    return 0


async def _serve(state_dir: Path, scaledown_window_s: float, lock: list[int]) -> None:
    import grpc

    from nbmodal_wire import MESSAGE_SIZE_OPTIONS
    from nbmodal_wire.proto import agent_pb2_grpc as pb_grpc
    from remote_agent.agent import Agent
    from remote_agent.service import AgentService, TokenInterceptor

    token = secrets.token_urlsafe(32)
    agent = Agent(state_dir, scaledown_window_s)
    server = grpc.aio.server(options=MESSAGE_SIZE_OPTIONS,
                             interceptors=[TokenInterceptor(token, agent.pool.container_tokens)])
    pb_grpc.add_AgentServicer_to_server(AgentService(agent), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    agent.pool.agent_port = port  # containers reach their host's storage here, with their own token
    await agent.start()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, agent.stopping.set)

    def hand_over() -> None:
        # SIGUSR1: a newer agent takes over this state dir; ours finishes its runs.
        remove_agent_file(state_dir, os.getpid())
        if lock[0] >= 0:
            os.close(lock[0])
            lock[0] = -1
        asyncio.ensure_future(agent.drain())

    loop.add_signal_handler(signal.SIGUSR1, hand_over)
    write_agent_file(state_dir, AgentFile(
        pid=os.getpid(), host="127.0.0.1", port=port, token=token, version=__version__,
        protocol_version=PROTOCOL_VERSION, state_dir=str(state_dir), python=sys.executable, started=time.time()))
    log.info("agent %s (protocol %d) serving on 127.0.0.1:%d, pid %d", __version__, PROTOCOL_VERSION, port, os.getpid())

    await agent.stopping.wait()
    log.info("agent stopping")
    remove_agent_file(state_dir, os.getpid())
    await server.stop(grace=1.0)
    await agent.shutdown()
    agent.storage.close()
    log.info("agent stopped")
