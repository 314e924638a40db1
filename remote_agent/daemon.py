"""The agent process: state dir, single-instance lock, agent.json, serving.

    python -m remote_agent serve --state-dir ~/.nbmodal/agent --daemon

One agent serves one state dir (an flock on ``agent.lock``). Once listening it
writes ``agent.json`` (pid, port, token, versions; mode 0600), which is how
clients find it and prove who they are. Logs go to ``agent.log`` there.
"""

from __future__ import annotations

import asyncio
import fcntl
import gc
import logging
import os
import secrets
import signal
import sys
import threading
import time
from pathlib import Path

from nbmodal_wire import PROTOCOL_VERSION, __version__
from nbmodal_wire.agent_file import AgentFile, remove_agent_file, write_agent_file

log = logging.getLogger("remote_agent")

EXIT_ALREADY_RUNNING = 3
EXIT_STOP_DEADLINE = 4  # the agent exited at its stop deadline, not by finishing its stop
# A stop (SIGTERM, `nbmodal agent stop`, the Shutdown call) ends the process within this, whatever its
# backends do; agent.shutdown() gets a little less, so a normal slow stop still closes storage cleanly.
STOP_DEADLINE_S = 25.0
SHUTDOWN_WAIT_S = 10.0


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
    # Who holds it, for a client that finds the state dir locked but no agent answering.
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
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
    # Also when it existed with looser bits (`mkdir -p` by hand or by an SSH bootstrap): runs' output,
    # volumes, images and blobs inside are the user's alone, whatever modes their own files got.
    os.chmod(state_dir, 0o700)
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
    from remote_agent.local_runs import close_local_runs, serve_local_runs
    from remote_agent.service import AgentService, TokenInterceptor

    token = secrets.token_urlsafe(32)
    agent = Agent(state_dir, scaledown_window_s)
    server = grpc.aio.server(options=MESSAGE_SIZE_OPTIONS,
                             interceptors=[TokenInterceptor(token, agent.pool.container_tokens)])
    pb_grpc.add_AgentServicer_to_server(AgentService(agent), server)
    port = _listen(server, agent.supervision.preferred_port(agent.adoptable))
    await server.start()
    agent.pool.agent_port = port  # containers reach their host's storage here, with their own token
    await agent.start()
    local_runs = await serve_local_runs(state_dir, agent, token)  # warm local runs without gRPC (local_runs.py)

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, agent.stopping.set)

    def hand_over() -> None:
        # SIGUSR1: a newer agent takes over this state dir; ours finishes its runs.
        remove_agent_file(state_dir, os.getpid())
        agent.runs.flush_all()  # every run on disk (the writer thread may be behind) before the next agent reads
        if lock[0] >= 0:
            os.close(lock[0])
            lock[0] = -1
        asyncio.ensure_future(agent.drain())

    loop.add_signal_handler(signal.SIGUSR1, hand_over)
    # SIGHUP (`nbmodal agent restart`): exit, leaving the runs in flight to the next agent (supervision.py).
    loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(_restart(agent, state_dir)))
    write_agent_file(state_dir, AgentFile(
        pid=os.getpid(), host="127.0.0.1", port=port, token=token, version=__version__,
        protocol_version=PROTOCOL_VERSION, state_dir=str(state_dir), python=sys.executable, started=time.time()))
    log.info("agent %s (protocol %d) serving on 127.0.0.1:%d, pid %d", __version__, PROTOCOL_VERSION, port, os.getpid())
    gc.freeze()  # start-up's objects live as long as the agent: the collector's older generations skip them

    await agent.stopping.wait()
    log.info("agent stopping")
    remove_agent_file(state_dir, os.getpid())
    StopDeadline(state_dir).start()  # whatever blocks below, the process ends in bounded time
    for signum in (signal.SIGTERM, signal.SIGINT):  # asked again while stopping: stop now
        loop.add_signal_handler(signum, _exit_now, state_dir, f"signal {signal.Signals(signum).name}")
    close_local_runs(local_runs, state_dir)
    await server.stop(grace=1.0)
    shutdown_wait = min(SHUTDOWN_WAIT_S, stop_deadline_s() * 0.8)
    try:
        await asyncio.wait_for(agent.shutdown(), shutdown_wait)
    except asyncio.TimeoutError:
        log.warning("the agent's containers and backends did not stop within %g s; exiting without them",
                    shutdown_wait)
    agent.storage.close()
    log.info("agent stopped")


def _listen(server, preferred: int) -> int:
    """The port: the previous agent's when adopted containers reach their storage there, else any."""
    if preferred:
        try:
            port = server.add_insecure_port(f"127.0.0.1:{preferred}")
        except RuntimeError:
            port = 0
        if port:
            return port
        log.warning("port %d of the previous agent is taken: adopted containers can't reach their Dicts, "
                    "Queues and Volumes", preferred)
    return server.add_insecure_port("127.0.0.1:0")


async def _restart(agent, state_dir: Path) -> None:
    """Exit now; each container running something keeps running under its supervisor for the next agent."""
    log.info("agent restarting: its running containers stay for the next agent")
    agent.restarting = True
    await agent.supervision.keep_for_restart(agent.pool.containers())
    for run in agent.runs.list():
        if not run.done and run.container is not None and run.container.supervisor is not None:
            run.durable = True
    agent.runs.flush_all()
    agent.storage.close()
    remove_agent_file(state_dir, os.getpid())
    log.info("agent exiting for a restart (%d container(s) supervised)",
             sum(1 for c in agent.pool.containers() if c.supervisor is not None))
    logging.shutdown()
    os._exit(0)  # the lock goes with the process; the supervisors see their links close


class StopDeadline(threading.Thread):
    """Ends the process ``STOP_DEADLINE_S`` after the agent began stopping, if it hasn't ended by then.

    A thread, not a task: what blocks a stop may be the event loop itself, or a thread the
    interpreter joins at exit (a Slurm command that never answers, a hung file system). Exiting
    releases ``agent.lock`` (the kernel closes it), so the next agent can start.
    """

    def __init__(self, state_dir: Path) -> None:
        super().__init__(name="stop-deadline", daemon=True)
        self.state_dir = state_dir

    def run(self) -> None:
        time.sleep(stop_deadline_s())
        _exit_now(self.state_dir, f"still stopping after {stop_deadline_s():g} s")


def stop_deadline_s() -> float:
    """How long a stop may take before the process exits anyway (``NBMODAL_AGENT_STOP_DEADLINE``, s)."""
    try:
        return max(1.0, float(os.environ.get("NBMODAL_AGENT_STOP_DEADLINE", STOP_DEADLINE_S)))
    except ValueError:
        return STOP_DEADLINE_S


def _exit_now(state_dir: Path, why: str) -> None:
    # Containers still running end by themselves when their socket to the agent closes.
    log.error("agent exiting at once (%s)", why)
    remove_agent_file(state_dir, os.getpid())
    logging.shutdown()
    os._exit(EXIT_STOP_DEADLINE)
