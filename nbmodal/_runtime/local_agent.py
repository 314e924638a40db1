"""The embedded agent: started on this machine on first use, then shared.

Its address and token are in ``agent.json`` in its state dir; any kernel that
reads it reuses the running agent instead of starting another.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from nbmodal.config import local_agent_dir
from nbmodal.exceptions import AgentError
from nbmodal_wire.agent_file import read_agent_file
from nbmodal_wire.pids import pid_alive

log = logging.getLogger(__name__)

START_TIMEOUT_S = 30.0


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
        return pid_alive(self.pid)


def read_agent_json(state_dir: Path | None = None) -> AgentAddress | None:
    """The running agent of a state dir, or None if there is none."""
    state_dir = state_dir or local_agent_dir()
    info = read_agent_file(state_dir)
    if info is None or not info.is_alive():
        return None
    return AgentAddress(info.host, info.port, info.token, info.pid, info.version, info.protocol_version, state_dir)


def ensure_local_agent(state_dir: Path | None = None) -> AgentAddress:
    """The running local agent; starts one in the background if needed."""
    state_dir = state_dir or local_agent_dir()
    return read_agent_json(state_dir) or start_local_agent(state_dir)


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


def stop_local_agent(state_dir: Path | None = None, timeout: float = 15.0) -> AgentAddress | None:
    """Stop the local agent (and its containers); None if none was running."""
    address = read_agent_json(state_dir)
    if address is None:
        return None
    os.kill(address.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(address.pid):
        if time.monotonic() > deadline:
            os.kill(address.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    return address


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
