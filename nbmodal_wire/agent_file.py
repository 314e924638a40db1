"""``agent.json``: how a client finds a running agent and proves who it is.

The agent writes it (mode 0600) into its state dir once it listens, and
removes it when it stops or hands over to a newer agent. The local client
reads it from disk; an SSH client reads the same text over SSH. One
dataclass, one parser, for both.

    info = read_agent_file(Path("~/.nbmodal/agent").expanduser())
    if info is not None and info.is_alive():
        print(info.port, info.version)
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

from nbmodal_wire.pids import pid_alive

FILE_NAME = "agent.json"


@dataclass(frozen=True)
class AgentFile:
    pid: int
    host: str
    port: int
    token: str
    version: str
    protocol_version: int
    state_dir: str = ""
    python: str = ""      # the agent's interpreter
    started: float = 0.0  # unix seconds

    def is_alive(self) -> bool:
        """Whether its process still runs (on this machine)."""
        return pid_alive(self.pid)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> AgentFile:
        """Parse agent.json; a ValueError names what is missing or malformed."""
        info = json.loads(text)
        if not isinstance(info, dict):
            raise ValueError("agent.json does not hold an object")
        try:
            return cls(pid=int(info["pid"]), host=str(info["host"]), port=int(info["port"]), token=str(info["token"]),
                       version=str(info.get("version", "?")), protocol_version=int(info.get("protocol_version", 0)),
                       state_dir=str(info.get("state_dir", "")), python=str(info.get("python", "")),
                       started=float(info.get("started", 0.0)))
        except KeyError as missing:
            raise ValueError(f"agent.json has no {missing.args[0]!r}") from None


def read_agent_file(state_dir: Path) -> AgentFile | None:
    """The state dir's agent.json, or None if there is none or it can't be read (its agent may be dead)."""
    try:
        return AgentFile.from_json((state_dir / FILE_NAME).read_text())
    except (OSError, ValueError):
        return None


def write_agent_file(state_dir: Path, info: AgentFile) -> None:
    """Write agent.json atomically, readable by its owner only (it holds the token)."""
    tmp = state_dir / f".{FILE_NAME}.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(info.to_json())
    os.replace(tmp, state_dir / FILE_NAME)


def remove_agent_file(state_dir: Path, pid: int) -> None:
    """Remove agent.json if it is still agent ``pid``'s (a newer agent may have written its own)."""
    info = read_agent_file(state_dir)
    if info is not None and info.pid == pid:
        (state_dir / FILE_NAME).unlink(missing_ok=True)
