"""The embedded agent: started on this machine on first use, then shared.

Its address and token are in ``agent.json`` in its state dir; any kernel that
reads it reuses the running agent instead of starting another.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from nbmodal._runtime.pid_watch import alive
from nbmodal.config import local_agent_dir
from nbmodal.exceptions import AgentError
from nbmodal_wire.agent_file import read_agent_file
from nbmodal_wire.pids import pid_alive

log = logging.getLogger(__name__)

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0  # the agent's own stop deadline is 25 s
LOCK_FILE = "agent.lock"


@dataclass(frozen=True)
class AgentAddress:
    host: str
    port: int
    token: str
    pid: int
    version: str
    protocol_version: int
    state_dir: Path | str  # on an SSH host: "host:dir", for messages

    def is_alive(self) -> bool:
        return alive(self.pid)  # a pidfd's poll: asked twice per warm call


def read_agent_json(state_dir: Path | None = None) -> AgentAddress | None:
    """The running agent of a state dir, or None if there is none."""
    state_dir = state_dir or local_agent_dir()
    info = read_agent_file(state_dir)
    if info is None or not info.is_alive():
        return None
    return AgentAddress(info.host, info.port, info.token, info.pid, info.version, info.protocol_version, state_dir)


def ensure_local_agent(state_dir: Path | None = None) -> AgentAddress:
    """The running local agent; starts one in the background if needed.

    A state dir whose lock is held by a process that never writes agent.json (an agent
    stuck while stopping, or not yet listening) raises AgentError saying how to clear it.
    """
    state_dir = state_dir or local_agent_dir()
    address = read_agent_json(state_dir)
    if address is not None:
        return address
    holder = lock_holder(state_dir)
    if holder is not None:  # an agent starting or stopping: it writes agent.json, or exits, soon
        address = _wait_for_lock_holder(state_dir, holder, START_TIMEOUT_S)
        if address is not None:
            return address
    return start_local_agent(state_dir)


def _wait_for_lock_holder(state_dir: Path, holder: int, timeout: float) -> AgentAddress | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        address = read_agent_json(state_dir)
        if address is not None:
            return address
        if lock_holder(state_dir) is None:
            return None
        time.sleep(0.05)
    raise AgentError(stuck_agent_message(state_dir, holder, f"holds {state_dir / LOCK_FILE} but has not "
                                                             f"answered for {timeout:g} s"))


def lock_holder(state_dir: Path) -> int | None:
    """The pid of the agent holding the state dir's lock, or None when nobody holds it.

    The agent writes its pid into ``agent.lock``; /proc/locks (where there is one) tells whether
    that file's flock is really held, without taking it (which could refuse an agent starting now).
    """
    path = state_dir / LOCK_FILE
    try:
        pid = int(path.read_text().split()[0])
        inode = path.stat().st_ino
    except (OSError, ValueError, IndexError):
        return None
    try:
        locks = Path("/proc/locks").read_text().splitlines()
    except OSError:  # no /proc (macOS): the pid alone says
        return pid if pid_alive(pid) else None
    for line in locks:
        fields = line.split()  # "1: FLOCK  ADVISORY  WRITE 12548 00:2b:1234 0 EOF"
        if len(fields) > 5 and fields[1] == "FLOCK" and fields[5].rsplit(":", 1)[-1] == str(inode):
            return int(fields[4]) if fields[4].isdigit() else pid
    return None


def stuck_agent_message(state_dir: Path | str, pid: int, what: str) -> str:
    """What a client says about an agent that holds its state dir but doesn't answer, and how to clear it."""
    return (f"the nbmodal agent (pid {pid}) {what}: it is stuck. Stop it with `nbmodal agent stop --force` "
            f"(or `kill -9 {pid}`); the next cell starts a new one. Its log is {state_dir}/agent.log.")


def start_local_agent(state_dir: Path | None = None, timeout: float = START_TIMEOUT_S) -> AgentAddress:
    state_dir = state_dir or local_agent_dir()
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    log.info("starting the nbmodal agent in %s", state_dir)
    # The agent daemonizes: this returns once it has detached.
    launcher = subprocess.run(
        [sys.executable, "-m", "remote_agent", "serve", "--state-dir", str(state_dir), "--daemon"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout)
    if launcher.returncode != 0:
        raise AgentError(f"the nbmodal agent failed to start: {launcher.stderr.decode(errors='replace').strip()}")
    deadline = time.monotonic() + timeout
    delay = 0.002
    while time.monotonic() < deadline:
        address = read_agent_json(state_dir)
        if address is not None:
            return address
        time.sleep(delay)
        delay = min(delay * 1.5, 0.05)
    raise AgentError(
        f"the nbmodal agent did not come up within {timeout:g} s; its log is {state_dir / 'agent.log'}:\n"
        + _tail(state_dir / "agent.log"))


def stop_local_agent(state_dir: Path | None = None, timeout: float = STOP_TIMEOUT_S,
                     force: bool = False) -> int | None:
    """Stop the local agent (and its containers); its pid, None if none was running.

    The agent gets SIGTERM and ``timeout`` seconds (it exits by itself within 25 s whatever its
    backends do), then SIGKILL; ``force`` kills it at once. An agent that holds the state dir's lock
    without answering (no agent.json) is stopped the same way.
    """
    state_dir = state_dir or local_agent_dir()
    address = read_agent_json(state_dir)
    pid = address.pid if address is not None else lock_holder(state_dir)
    if pid is None:
        return None
    try:
        os.kill(pid, signal.SIGKILL if force else signal.SIGTERM)
    except ProcessLookupError:
        return pid
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    if force or time.monotonic() > deadline:  # killed, not stopped: a stop ends its containers all the same
        end_supervised_containers(state_dir)
    return pid


def restart_local_agent(state_dir: Path | None = None,
                        timeout: float = STOP_TIMEOUT_S) -> tuple[int | None, AgentAddress]:
    """Restart the local agent, keeping its running containers: the new agent takes their runs back.

    The agent gets SIGHUP: it hands each container that runs something to its supervisor and exits
    (remote_agent/supervision.py). Returns the old agent's pid (None if none ran) and the new one's address.
    """
    state_dir = state_dir or local_agent_dir()
    address = read_agent_json(state_dir)
    pid = address.pid if address is not None else None
    if pid is not None:
        try:
            os.kill(pid, signal.SIGHUP)
        except ProcessLookupError:
            pid = None
        deadline = time.monotonic() + timeout
        while pid is not None and pid_alive(pid):
            if time.monotonic() > deadline:  # its containers are supervised by now: a kill keeps them too
                os.kill(pid, signal.SIGKILL)
                break
            time.sleep(0.02)
    return pid, ensure_local_agent(state_dir)


def end_supervised_containers(state_dir: Path) -> int:
    """After killing an agent outright (``stop --force``): let each container that outlived it end as well.

    Each container's supervisor (remote_agent/supervisor.py) is asked, on its socket, to let its
    container's socket close; the container then exits, and the next agent records its run as LOST.
    """
    ended = 0
    for path in sorted((state_dir / "supervisors").glob("*.sock")):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(5)
            try:
                conn.connect(str(path))
                conn.sendall(b"end\n")  # as remote_agent/supervisor.py's END
                ended += conn.recv(16) == b"ok\n"
            except OSError:
                continue
    return ended


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
