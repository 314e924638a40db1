"""Where a run goes: the embedded local agent or an SSH host's agent.

A ``Connection`` hands out a connected ``AgentClient`` and knows how to
recover after a drop: the local agent can't be recovered (it died, and its
runs with it), an SSH host can (its agent and runs go on; the client
reconnects with backoff and the run's stream resumes where it stopped).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import TYPE_CHECKING, cast

from nbmodal._runtime.client import AgentClient
from nbmodal._runtime.local_agent import AgentAddress, ensure_local_agent, read_agent_json, stuck_agent_message
from nbmodal._runtime.recent_runs import RecentRuns
from nbmodal.exceptions import AgentError, AgentLostError, GpuUnavailableError, NotFoundError
from nbmodal.hosts import LOCAL, HostError, get_host, load_hosts
from nbmodal_wire import pb
from nbmodal_wire.gpu_request import Gpu, describe, gpu_matches, parse_gpu_request

if TYPE_CHECKING:
    from nbmodal._runtime.ssh import SSHConnection
    from nbmodal._runtime.tunnel import LocalForwarder
    from nbmodal_wire.agent_file import AgentFile

log = logging.getLogger(__name__)

def reconnect_timeout_s() -> float:
    """How long a run's follower waits for a dropped host to come back before failing the cell."""
    return float(os.environ.get("NBMODAL_RECONNECT_TIMEOUT", 60))


LOCAL_RECOVER_S = 30.0  # how long a run's follower tries to bring the local agent back
# How long the local agent's liveness, once seen, stands: a run's placement and its follower each ask for
# the client within microseconds, and one look (a poll of the agent's pidfd) answers both.
ALIVE_SEEN_S = 0.0005


class LocalConnection:
    """The embedded agent on this machine, started on first use."""

    name = LOCAL

    def __init__(self) -> None:
        self._client: AgentClient | None = None
        self._lock = threading.Lock()
        self._seen_alive = -1.0  # time.monotonic() of the last look that found the agent alive

    def client(self) -> AgentClient:
        with self._lock:
            if self._client is not None:
                now = time.monotonic()
                if now - self._seen_alive < ALIVE_SEEN_S:
                    return self._client
                if self._client.address.is_alive():
                    self._seen_alive = now
                    return self._client
                self._seen_alive = -1.0
                self._client.close()
            address = ensure_local_agent()
            try:
                self._client = AgentClient(address)
            except TimeoutError:  # alive, listed, holding its state dir, and not answering
                raise AgentError(stuck_agent_message(address.state_dir, address.pid,
                                                     "does not answer its port")) from None
            return self._client

    def existing_client(self) -> AgentClient | None:
        """A client of the running local agent, without starting one."""
        with self._lock:
            if self._client is not None and self._client.address.is_alive():
                return self._client
            address = read_agent_json()
            self._client = AgentClient(address) if address is not None else None
            return self._client

    def recover(self, lost: AgentLostError) -> AgentClient:
        """The local agent went away: start the next one, which takes back the runs that outlived it."""
        deadline = time.monotonic() + min(reconnect_timeout_s(), LOCAL_RECOVER_S)
        while True:
            self.forget()
            try:
                return self.client()
            except (AgentError, OSError, TimeoutError):
                # The old agent may still be exiting (its stream closes a moment before it is gone).
                if time.monotonic() > deadline:
                    raise lost from None
            time.sleep(0.1)

    def forget(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
            self._client = None
            self._seen_alive = -1.0


class HostConnection:
    """One SSH host: its transport, the forwarded port to its agent, and a client."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.ssh: SSHConnection | None = None
        self._forwarder: LocalForwarder | None = None
        self._agent: AgentFile | None = None  # the agent.json of the host's agent we forward to
        self._client: AgentClient | None = None
        self._lock = threading.RLock()

    def client(self, accept_new_host_key: bool = False) -> AgentClient:
        with self._lock:
            if self._client is not None and self.ssh is not None and self.ssh.alive:
                return self._client
            return self._connect(accept_new_host_key)

    def _connect(self, accept_new_host_key: bool = False) -> AgentClient:
        from nbmodal._runtime import bootstrap
        from nbmodal._runtime.ssh import SSHConnection
        from nbmodal._runtime.tunnel import LocalForwarder

        host = get_host(self.name)
        if self.ssh is not None:
            self.ssh.close()
        ssh = self.ssh = SSHConnection.open(host, accept_new_host_key)
        known, agent = self._agent, None
        if known is not None:  # a reconnect: the agent we knew usually still runs
            running = bootstrap.read_agent_json(ssh)
            if running is not None and running.pid == known.pid:
                agent = running
        agent = agent or bootstrap.ensure_agent(ssh)
        if self._forwarder is None:
            self._forwarder = LocalForwarder(self._open_agent_channel, self.name)
        else:
            self._forwarder.drop_connections()  # they rode the old transport
        if self._client is None or known is None or agent.pid != known.pid or agent.port != known.port:
            if self._client is not None:
                self._client.close()
            self._agent = agent
            address = AgentAddress("127.0.0.1", self._forwarder.port, agent.token, agent.pid, agent.version,
                                   agent.protocol_version, f"{self.name}:{agent.state_dir or '~/.nbmodal/agent'}")
            self._client = AgentClient(address, label=f"agent on {self.name}")
        return self._client

    def agent_route(self) -> tuple[int, str] | None:
        """(this client's forwarded port to the host's agent, the agent's token) while connected, else None:
        what another host's agent is given to reach this one through the client (store_relay.py)."""
        with self._lock:
            if self.ssh is None or not self.ssh.alive or self._agent is None or self._forwarder is None:
                return None
            return self._forwarder.port, self._agent.token

    def _agent_answers(self) -> bool:
        from nbmodal._runtime import bootstrap

        ssh, agent = self.ssh, self._agent
        if ssh is None or agent is None:
            return False
        running = bootstrap.read_agent_json(ssh)
        return running is not None and running.pid == agent.pid

    def _open_agent_channel(self):
        ssh, agent = self.ssh, self._agent
        if ssh is None or agent is None:
            raise OSError(f"host {self.name} is not connected")
        return ssh.open_forward(agent.port)

    def recover(self, lost: AgentLostError) -> AgentClient:
        """Reconnect with backoff; the host's agent kept running meanwhile."""
        timeout = reconnect_timeout_s()
        deadline = time.monotonic() + timeout
        delay, last_error = 0.2, None
        while time.monotonic() < deadline:
            try:
                with self._lock:
                    if self.ssh is not None and self.ssh.alive and self._client is not None and self._agent_answers():
                        return self._client
                    return self._connect()
            except (HostError, OSError, EOFError) as exc:
                last_error = exc
                log.info("host %s: reconnect failed (%s); retrying in %.1fs", self.name, exc, delay)
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 1.0)  # a restored link is found within a second
        raise AgentLostError(
            f"lost the connection to host {self.name!r} for {timeout:g} s ({last_error}). The run goes on there; "
            f"`%nbmodal attach RUN_ID` follows it again once the host is reachable.") from None

    def forget(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
            if self._forwarder is not None:
                self._forwarder.close()
            if self.ssh is not None:
                self.ssh.close()
            self._client = self._forwarder = self.ssh = self._agent = None


class ContainerConnection:
    """Inside a container: its own agent, with the container's scoped token.

    The token opens storage calls and runs of the container's own app (nested calls: a function
    calling ``.remote/.spawn/.map`` of another function of its app); the agent refuses the rest.
    """

    name = "container"

    def __init__(self) -> None:
        self._client: AgentClient | None = None
        self._lock = threading.Lock()

    def client(self) -> AgentClient:
        with self._lock:  # a map's threads share one client
            if self._client is None:
                address = AgentAddress("127.0.0.1", int(os.environ["NBMODAL_AGENT_PORT"]),
                                       os.environ["NBMODAL_CONTAINER_TOKEN"], 0, "?", 0, "(this container's agent)")
                self._client = AgentClient(address, label="agent of this container")
            return self._client

    def recover(self, lost: AgentLostError) -> AgentClient:
        raise lost

    def forget(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client = None


def in_container() -> bool:
    return bool(os.environ.get("NBMODAL_CONTAINER_TOKEN"))


def container_connection() -> ContainerConnection:
    """Inside a container, the one connection to its own agent."""
    with _registry_lock:
        return cast(ContainerConnection, _connections.setdefault(CONTAINER, ContainerConnection()))


def storage_connection(host: str | None = None):
    """Where a Dict, Queue or Volume lives: inside a container, its own host; in the notebook,
    ``host``, else the local agent when no hosts are configured, else the first configured host."""
    if in_container():
        return container_connection()
    if host:
        return connection(host)
    hosts = list(load_hosts())
    return connection(hosts[0] if hosts else LOCAL)


CONTAINER = ContainerConnection.name
# Where a run can go: the embedded agent, an SSH host's agent, or (nested calls) a container's own agent.
Connection = LocalConnection | HostConnection | ContainerConnection
_connections: dict[str, Connection] = {}
_registry_lock = threading.Lock()
# Where runs and sessions started from this kernel live.
run_hosts: dict[str, str] = RecentRuns()  # the newest runs only (recent_runs.py); locate_run finds the others
session_hosts: dict[str, str] = {}


def connection(name: str | None = None) -> LocalConnection | HostConnection:
    """The connection to a host by name (None or "local": the embedded agent)."""
    name = name or LOCAL
    with _registry_lock:
        if name not in _connections:
            if name != LOCAL:
                get_host(name)  # a clear error for an unknown host
            _connections[name] = LocalConnection() if name == LOCAL else HostConnection(name)
        # Only storage_connection() files a ContainerConnection, and only inside a container.
        return cast(LocalConnection | HostConnection, _connections[name])


def get_client(host: str | None = None) -> AgentClient:
    """A connected client of a host's agent (default: the local agent, started if needed)."""
    return connection(host).client()


def existing_client() -> AgentClient | None:
    """A client of the running local agent, without starting one."""
    return cast(LocalConnection, connection(LOCAL)).existing_client()


def forget(name: str) -> None:
    with _registry_lock:
        conn = _connections.pop(name, None)
    if conn is not None:
        conn.forget()


def place(host: str | None, session: str = "", spec=None) -> Connection:
    """Choose where a run goes.

    Inside a container, every run goes to the container's own agent (a nested call: there are no SSH
    hosts there, and ``host=`` names a host of the notebook's machine). Otherwise ``host`` wins; a
    session stays where it started; with no hosts configured everything runs locally. Otherwise,
    among reachable hosts: for a ``gpu=`` run, one with matching free cards, else one that has the
    cards (the run waits there); for other runs, one with a warm container for the spec, else the
    first reachable one.
    """
    if in_container():
        return container_connection()
    if host:
        return connection(host)
    if session and session in session_hosts:
        return connection(session_hosts[session])
    hosts = list(load_hosts())
    if not hosts:
        return connection(LOCAL)
    options = parse_gpu_request(spec.gpu) if spec is not None and spec.gpu else []
    fallback, problems = None, []
    for name in hosts:
        conn = connection(name)
        try:
            client = conn.client()
        except HostError as exc:
            problems.append(f"{name}: unreachable ({exc})")
            continue
        if options:
            gpus = client.list_gpus()
            cards = [Gpu(g.index, g.uuid, g.name, g.memory_total) for g in gpus]
            free = [card for card, g in zip(cards, gpus) if not g.container_id]
            if not _fits(options, cards):
                problems.append(f"{name}: {describe(cards)}")
                continue
            if _fits(options, free):
                return conn
        elif spec is not None and any(c.state == pb.CONTAINER_IDLE and c.spec == spec and not c.session
                                      for c in client.list_containers()):
            return conn
        fallback = fallback or conn
    if fallback is not None:
        return fallback
    if options:
        raise GpuUnavailableError(f"no host can run gpu={spec.gpu!r}:\n  " + "\n  ".join(problems))
    raise HostError("no configured host is reachable:\n  " + "\n  ".join(problems))


def spread(host: str | None, spec=None) -> list[Connection]:
    """Every connection a map may use: inside a container, its own agent; else ``host``; else the local
    agent when no hosts are configured; else each reachable host that can run the spec (a gpu= spec:
    one with the cards)."""
    if in_container():
        return [container_connection()]
    if host:
        return [connection(host)]
    hosts = list(load_hosts())
    if not hosts:
        return [connection(LOCAL)]
    options = parse_gpu_request(spec.gpu) if spec is not None and spec.gpu else []
    usable: list[Connection] = []
    for name in hosts:
        conn = connection(name)
        try:
            client = conn.client()
        except HostError as exc:
            log.info("map: host %s is unreachable (%s)", name, exc)
            continue
        if options:
            cards = [Gpu(g.index, g.uuid, g.name, g.memory_total) for g in client.list_gpus()]
            if not _fits(options, cards):
                continue
        usable.append(conn)
    return usable or [place(None, spec=spec)]  # nothing fits: place() says why


def _fits(options, cards) -> bool:
    return any(sum(gpu_matches(option, card) for card in cards) >= option.count for option in options)


def locate_run(run_id: str) -> Connection:
    """The connection whose agent has this run (asking each host if it isn't known here); inside a
    container, its own agent (the only one its token opens)."""
    if in_container():
        return container_connection()
    if run_id in run_hosts:
        return connection(run_hosts[run_id])
    candidates = [LOCAL, *load_hosts()]
    for name in candidates:
        conn = connection(name)
        try:
            client = existing_client() if name == LOCAL else conn.client()
            if client is None:
                continue
            client.get_run(run_id)
        except (NotFoundError, HostError, AgentLostError):
            continue
        run_hosts[run_id] = name
        return conn
    raise NotFoundError(f"no run {run_id!r} on {', '.join(candidates)} (see `nbmodal runs`)")
