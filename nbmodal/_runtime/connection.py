"""Which agent a call goes to, and one cached client per agent.

Today every run goes to the embedded local agent; SSH hosts add entries here.
"""

from __future__ import annotations

import threading

from nbmodal._runtime.client import AgentClient
from nbmodal._runtime.local_agent import ensure_local_agent, read_agent_json

_lock = threading.Lock()
_local: AgentClient | None = None


def get_client() -> AgentClient:
    """A connected client of the local agent, starting the agent if needed."""
    global _local
    with _lock:
        if _local is not None and _local.address.is_alive():
            return _local
        if _local is not None:
            _local.close()
        _local = AgentClient(ensure_local_agent())
        return _local


def existing_client() -> AgentClient | None:
    """A client of the running local agent, without starting one."""
    global _local
    with _lock:
        if _local is not None and _local.address.is_alive():
            return _local
        address = read_agent_json()
        if address is None:
            return None
        _local = AgentClient(address)
        return _local


def forget_client(client: AgentClient) -> None:
    """Drop a client whose agent went away, so the next call starts afresh."""
    global _local
    with _lock:
        if _local is client:
            _local = None
            client.close()
