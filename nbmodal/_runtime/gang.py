"""Multi-node gangs, the client half: place N ranks, start them together, follow them, stop them together.

A gang is one run per rank (``@nbmodal.clustered(size=N)``, ``%%remote nodes=N``):

1. **Placement** (``gang_connections``): ``host=NAME`` puts every rank on that
   host (a Slurm host, whose ranks are jobs on its nodes, or one machine);
   without it, N *distinct* configured SSH hosts that can run the spec, those
   with free matching cards first; fewer than N is an error listing them. With
   no hosts configured, all ranks run on the local agent.
2. **Reserve** (remote_agent/gangs.py): each rank's run is admitted on its agent
   and its container started; it then waits, holding what it reserved. The cell
   says what each rank waits for while the gang assembles.
3. **Go**: once all are ready, each rank gets its environment
   (``rank_environment``: the torchrun variables, with rank 0's address as the
   others reach it and a port free on its host) and its code starts.
4. **Following**: rank 0's output streams into the cell; the others' is kept
   per rank (``ClusterRun.logs(rank)``). The first rank to fail (or whose host
   drops) stops all others; an interrupt stops all of them (a second one kills).
"""

from __future__ import annotations

import ipaddress
import logging
import queue
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nbmodal._runtime.connection import connection, container_connection, in_container, run_hosts
from nbmodal._runtime.execution import RunFollower
from nbmodal.exceptions import GpuUnavailableError, InvalidError
from nbmodal.hosts import LOCAL, HostError, load_hosts
from nbmodal_wire import pb
from nbmodal_wire.gpu_request import Gpu, describe, gpu_matches, parse_gpu_request

if TYPE_CHECKING:
    from nbmodal._runtime.invocation import RunTarget
    from nbmodal._runtime.transfer import BlobTransfer
    from nbmodal.output import OutputSink

log = logging.getLogger(__name__)

STATUS_INTERVAL_S = 0.2
# For the first FAST_FOR_S the agents are asked this often instead: the go waits on the next ask after the
# last rank is ready, and most gangs assemble within a second or two.
FIRST_STATUS_S = 0.025
FAST_FOR_S = 2.0
# A gang that assembles faster than this says nothing about it; a slower one says what each rank waits for.
QUIET_S = 1.0
# A gang member's assemble timeout: how long a ready rank holds its reservation for the others.
DEFAULT_ASSEMBLE_TIMEOUT_S = 600.0


class ClusterError(InvalidError):
    """A gang can't be placed or assembled (too few hosts, a rank's host lost)."""


# -- placement -----------------------------------------------------------------------------


@dataclass
class HostCandidate:
    """What placement knows of one configured host: its cards (and which are free), or why it can't be used."""

    name: str
    cards: list[Gpu] = field(default_factory=list)
    free: list[Gpu] = field(default_factory=list)
    problem: str = ""  # unreachable: why


def choose_hosts(size: int, gpu: str, candidates: list[HostCandidate]) -> list[str]:
    """``size`` distinct hosts for a gang, in rank order: hosts that can run ``gpu`` (if asked), those whose
    matching cards are free now first, then in configuration order. Raises ClusterError listing every host
    and why it was not enough."""
    options = parse_gpu_request(gpu) if gpu else []
    free_now, busy, problems = [], [], []
    for host in candidates:
        if host.problem:
            problems.append(f"{host.name}: {host.problem}")
        elif options and not _fits(options, host.cards):
            problems.append(f"{host.name}: {describe(host.cards)}")
        elif not options or _fits(options, host.free):
            free_now.append(host.name)
        else:
            busy.append(host.name)
    usable = free_now + busy
    if len(usable) >= size:
        return usable[:size]
    listed = ", ".join(h.name for h in candidates) or "none"
    reasons = ("\n  " + "\n  ".join(problems)) if problems else ""
    what = f" with gpu={gpu!r}" if gpu else ""
    raise ClusterError(
        f"a gang of {size} needs {size} distinct hosts{what}, and {len(usable)} of the configured hosts "
        f"({listed}) can take a rank{reasons}\nAdd hosts (`nbmodal host add`), ask for fewer nodes, or put "
        f"every rank on one host with host=NAME (a Slurm host runs them on its nodes).")


def _fits(options, cards: list[Gpu]) -> bool:
    return any(sum(gpu_matches(option, card) for card in cards) >= option.count for option in options)


def gang_connections(host: str | None, size: int, spec: pb.ContainerSpec) -> list[Any]:
    """The connection of each rank, in rank order (see the module docstring)."""
    if size < 1:
        raise ClusterError(f"a gang needs at least one node, not {size}")
    if in_container():
        return [container_connection()] * size
    if host:
        return [connection(host)] * size
    names = list(load_hosts())
    if not names:
        return [connection(LOCAL)] * size
    candidates = []
    for name in names:
        try:
            client = connection(name).client()
        except HostError as exc:
            candidates.append(HostCandidate(name, problem=f"unreachable ({exc})"))
            continue
        if spec.gpu:
            gpus = client.list_gpus()
            cards = [Gpu(g.index, g.uuid, g.name, g.memory_total) for g in gpus]
            candidates.append(HostCandidate(name, cards, [c for c, g in zip(cards, gpus) if not g.container_id]))
        else:
            candidates.append(HostCandidate(name))
    try:
        return [connection(name) for name in choose_hosts(size, spec.gpu, candidates)]
    except ClusterError as exc:
        if spec.gpu and not any(_fits(parse_gpu_request(spec.gpu), c.cards) for c in candidates):
            raise GpuUnavailableError(str(exc)) from None
        raise


# -- the environment of each rank ------------------------------------------------------------


def reachable_address(addresses: list[str], ssh_address: str = "") -> str:
    """The address of a rank's container that the other ranks reach.

    The SSH HostName of its host (as resolved here) when the container has it and it isn't loopback,
    since the notebook reaches the host there; else its first address that is not loopback (the worker
    lists ``NBMODAL_CLUSTER_ADDR`` first); else loopback (every rank on one machine)."""
    if ssh_address and ssh_address in addresses and not ipaddress.ip_address(ssh_address).is_loopback:
        return ssh_address
    for address in addresses:
        if not ipaddress.ip_address(address).is_loopback:
            return address
    return addresses[0] if addresses else "127.0.0.1"


def rank_environment(rank: int, size: int, addresses: list[str], master_port: int, cluster_id: str,
                     procs_per_node: int = 1) -> dict[str, str]:
    """What ``torch.distributed`` and ``torchrun`` expect, for rank ``rank`` of ``size`` nodes.

    ``addresses`` are each rank's reachable address (rank 0's is MASTER_ADDR). One process per node:
    RANK is the node's rank; with ``procs_per_node`` K (torchrun starts K processes and sets each one's
    RANK and LOCAL_RANK itself) RANK is the node's first process's and WORLD_SIZE counts processes.
    """
    return {
        "MASTER_ADDR": addresses[0], "MASTER_PORT": str(master_port),
        "WORLD_SIZE": str(size * procs_per_node), "RANK": str(rank * procs_per_node), "LOCAL_RANK": "0",
        "NODE_RANK": str(rank), "LOCAL_WORLD_SIZE": str(procs_per_node),
        "NBMODAL_CLUSTER_ID": cluster_id, "NBMODAL_CLUSTER_RANK": str(rank), "NBMODAL_CLUSTER_SIZE": str(size),
        "NBMODAL_CLUSTER_IPS": ",".join(addresses),
    }


def new_cluster_id() -> str:
    return "cl-" + uuid.uuid4().hex[:10]


def _ssh_address(conn: Any) -> str:
    """The host's SSH HostName resolved here ("" for the local agent, or when it doesn't resolve)."""
    ssh = getattr(conn, "ssh", None)
    hostname = getattr(getattr(ssh, "params", None), "hostname", "")
    if not hostname:
        return ""
    try:
        return socket.gethostbyname(hostname)
    except OSError:
        return ""


# -- the run of a gang -------------------------------------------------------------------------


class RankLog:
    """A rank's output, kept (ranks above 0 don't stream into the cell): ``ClusterRun.logs(rank)``."""

    def __init__(self, rank: int, forward: queue.Queue | None) -> None:
        self.rank = rank
        self.parts: list[str] = []
        self._forward = forward  # its notices (what it waits for) go to the cell
        self.lock = threading.Lock()

    def output(self, stream: int, text: str) -> None:
        with self.lock:
            self.parts.append(text)

    def display(self, data: dict, metadata: dict, execute_result: bool) -> None:
        self.output(pb.STDOUT, str(data.get("text/plain", "")) + "\n")

    def notice(self, text: str) -> None:
        if self._forward is not None:
            self._forward.put(("notice", (text if text.startswith("rank ") else f"rank {self.rank}: {text}",)))

    def item(self, item: pb.Item) -> None:
        return None  # a gang's ranks don't stream generator items

    def close(self) -> None:
        return None  # nothing held

    def text(self) -> str:
        with self.lock:
            return "".join(self.parts)


class _ForwardSink(RankLog):
    """Rank 0: its events go to the cell (through the thread that owns it), and are kept too."""

    def output(self, stream: int, text: str) -> None:
        super().output(stream, text)
        assert self._forward is not None
        self._forward.put(("output", (stream, text)))

    def display(self, data: dict, metadata: dict, execute_result: bool) -> None:
        assert self._forward is not None
        self._forward.put(("display", (data, metadata, execute_result)))

    def notice(self, text: str) -> None:
        assert self._forward is not None
        self._forward.put(("notice", (text,)))


@dataclass
class _Member:
    rank: int
    target: RunTarget
    request: pb.RunRequest
    log: RankLog
    follower: RunFollower | None = None
    finished: pb.RunFinished | None = None
    error: BaseException | None = None  # its follower's (the host was lost)
    thread: threading.Thread | None = None
    ended_at: float = 0.0  # when this client saw it end: the first failure is the one to report

    @property
    def host(self) -> str:
        return str(self.target.connection.name)

    @property
    def done(self) -> bool:
        return self.thread is not None and not self.thread.is_alive()


class ClusterRun:
    """One gang's runs: the run id and host of each rank, and each rank's output.

    Example::

        run = nbmodal.last_cluster_run()
        print(run.run_ids, run.hosts)
        print(run.logs(rank=1))
    """

    def __init__(self, cluster_id: str, members: list[_Member]) -> None:
        self.cluster_id = cluster_id
        self._members = members
        self.run_ids = [m.request.run_id for m in members]
        self.hosts = [m.host for m in members]
        self.failed_rank: int | None = None

    @property
    def size(self) -> int:
        return len(self._members)

    def logs(self, rank: int = 0) -> str:
        """The output of rank ``rank`` (stdout and stderr, as it printed them)."""
        if not 0 <= rank < len(self._members):
            size = len(self._members)
            raise IndexError(f"rank {rank} is not in this gang of {size} (ranks 0-{size - 1})")
        return self._members[rank].log.text()

    def __repr__(self) -> str:
        ranks = ", ".join(f"{r}: {h} {i}" for r, (h, i) in enumerate(zip(self.hosts, self.run_ids)))
        return f"ClusterRun({self.cluster_id}: {ranks})"


_history: list[ClusterRun] = []


def last_cluster_run() -> ClusterRun | None:
    """The most recent gang this process ran (``None`` before any)."""
    return _history[-1] if _history else None


@dataclass
class GangOutcome:
    """How a gang ended: the finished run to report (rank 0's, or the first rank that failed) and its rank."""

    finished: pb.RunFinished
    rank: int
    transfer: BlobTransfer
    cluster: ClusterRun

    @property
    def failed(self) -> bool:
        return self.finished.state != pb.SUCCEEDED

    def annotate(self, exc: BaseException) -> BaseException:
        """Say which rank (and host) raised ``exc``."""
        host = self.cluster.hosts[self.rank]
        exc.cluster_rank = self.rank  # type: ignore[attr-defined]
        note = f"(rank {self.rank} of gang {self.cluster.cluster_id}, on {host})"
        # Python 3.11 shows notes under the traceback; 3.10 keeps them where 3.11's add_note would.
        exc.__notes__ = [*getattr(exc, "__notes__", []), note]  # type: ignore[attr-defined]
        return exc


def set_members(requests: list[pb.RunRequest], targets: list[RunTarget], cluster_id: str) -> None:
    """Make ``requests`` (one per rank, in rank order) the ranks of gang ``cluster_id``; each also says how
    many ranks go to its agent and its place among them."""
    agents = [id(target.connection) for target in targets]
    for rank, (request, agent) in enumerate(zip(requests, agents)):
        request.cluster.CopyFrom(pb.ClusterMember(
            cluster_id=cluster_id, rank=rank, size=len(requests), assemble_timeout_s=DEFAULT_ASSEMBLE_TIMEOUT_S,
            ranks_here=agents.count(agent), index_here=agents[:rank].count(agent)))
        request.label = f"{request.label} [rank {rank}/{len(requests)}]"


class Gang:
    """Runs one gang's member requests to the end (see the module docstring)."""

    def __init__(self, cluster_id: str, targets: list[RunTarget], requests: list[pb.RunRequest],
                 sink: OutputSink, procs_per_node: int = 1) -> None:
        self.cluster_id = cluster_id
        self.sink = sink
        self.procs_per_node = procs_per_node
        self.events: queue.Queue = queue.Queue()
        self.members = [
            _Member(rank, target, request, (_ForwardSink if rank == 0 else RankLog)(rank, self.events))
            for rank, (target, request) in enumerate(zip(targets, requests))]
        self.cluster = ClusterRun(cluster_id, self.members)
        self._started = False
        self._stopping = False
        self._interrupts = 0
        self._told = ""

    def run(self) -> GangOutcome:
        """Start every rank, release them together once all are ready, follow them to the end."""
        _history.append(self.cluster)
        for member in self.members:
            member.thread = threading.Thread(target=self._follow, args=(member,), daemon=True,
                                             name=f"nbmodal-gang-{self.cluster_id}-{member.rank}")
            member.thread.start()
        started = time.monotonic()
        next_status = 0.0
        while True:
            try:
                fast = not self._started and time.monotonic() - started < FAST_FOR_S
                self._pump(FIRST_STATUS_S if fast else 0.05)
                failed = self._first_failure()
                if failed is not None and not self._stopping:
                    self._stop_all(f"rank {failed.rank} on {failed.host} ended "
                                   f"({self._describe_end(failed)}): stopping the other ranks")
                if all(m.done for m in self.members) or (
                        self._stopping and all(m.done or m.error is not None for m in self.members)):
                    break
                if not self._started and not self._stopping and time.monotonic() >= next_status:
                    next_status = time.monotonic() + (FIRST_STATUS_S if fast else STATUS_INTERVAL_S)
                    self._assemble(started)
            except KeyboardInterrupt:
                self._interrupts += 1
                self._stop_all("interrupted: stopping every rank" if self._interrupts == 1
                               else "interrupted again: killing every rank", force=self._interrupts > 1)
        self._pump(0)
        return self._outcome()

    # -- phases ------------------------------------------------------------------------

    def _follow(self, member: _Member) -> None:
        try:
            member.follower = _RankFollower(member.target.connection, member.log, member.request.cancel_grace_s,
                                            member)
            member.finished = member.follower.start(member.request)
        except BaseException as exc:  # reported by the owning thread
            member.error = exc
        member.ended_at = time.monotonic()

    def _assemble(self, started: float) -> None:
        """Ask each agent where its ranks stand; once all are ready, send each its environment and go."""
        by_client: dict[int, tuple[Any, list[_Member]]] = {}
        for member in self.members:
            client = member.follower.client if member.follower is not None else member.target.client
            by_client.setdefault(id(client), (client, []))[1].append(member)
        statuses: dict[str, pb.ClusterMemberStatus] = {}
        for client, members in by_client.values():
            try:
                for status in client.cluster_status([m.request.run_id for m in members]):
                    statuses[status.run_id] = status
            except Exception as exc:  # the host is reconnecting: ask again next time
                log.info("gang %s: status from %s failed: %s", self.cluster_id, client.label, exc)
                return
        lines, ready = [], 0
        for member in self.members:
            status = statuses.get(member.request.run_id, pb.ClusterMemberStatus(waiting="not arrived yet"))
            ready += status.ready
            state = "ready" if status.ready else (status.waiting or "starting")
            lines.append(f"rank {member.rank} on {member.host}: {state}")
        if ready < len(self.members):
            summary = f"gang {self.cluster_id}: {ready}/{len(self.members)} ranks ready; " + "; ".join(
                line for line in lines if not line.endswith(": ready"))
            if summary != self._told and time.monotonic() - started >= QUIET_S:
                self._told = summary
                self.sink.notice(summary)
            return
        self._go([statuses[m.request.run_id] for m in self.members])
        log.info("gang %s assembled in %.2f s", self.cluster_id, time.monotonic() - started)

    def _go(self, statuses: list[pb.ClusterMemberStatus]) -> None:
        addresses = [reachable_address(list(status.addresses), _ssh_address(member.target.connection))
                     for member, status in zip(self.members, statuses)]
        port = statuses[0].free_port
        self._started = True
        for member in self.members:
            env = rank_environment(member.rank, len(self.members), addresses, port, self.cluster_id,
                                   self.procs_per_node)
            client = member.follower.client if member.follower is not None else member.target.client
            try:
                client.cluster_go(member.request.run_id, env)
            except Exception as exc:  # it ended meanwhile (its run says how), or its host dropped
                self._stop_all(f"rank {member.rank} on {member.host} could not start ({exc}): stopping the others")
                return
        self.sink.notice(f"gang {self.cluster_id}: all {len(self.members)} ranks running "
                         f"(MASTER_ADDR={addresses[0]}:{port}; ranks on {', '.join(m.host for m in self.members)})")

    def _stop_all(self, why: str, force: bool = False) -> None:
        if not self._stopping or force:
            self.sink.notice(f"gang {self.cluster_id}: {why}")
        first = not self._stopping
        self._stopping = True
        for member in self.members:
            if member.error is not None:
                if first:  # its host dropped: its run goes on there, so it is cancelled once the host is back
                    threading.Thread(target=_cancel_when_back, args=(member,), daemon=True,
                                     name=f"nbmodal-gang-cancel-{member.request.run_id}").start()
                continue
            if member.done:
                continue
            try:
                client = member.follower.client if member.follower is not None else member.target.client
                client.cancel(member.request.run_id, force=force)
            except Exception as exc:  # the host is unreachable: its follower reports it
                log.info("gang %s: cancelling rank %d failed: %s", self.cluster_id, member.rank, exc)

    # -- events and outcome -----------------------------------------------------------------

    def _pump(self, timeout: float) -> None:
        """Hand queued events of rank 0 (and ranks' notices) to the cell's sink, in this thread."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                kind, payload = self.events.get(timeout=remaining) if remaining > 0 else self.events.get_nowait()
            except queue.Empty:
                return
            getattr(self.sink, kind)(*payload)

    def _first_failure(self) -> _Member | None:
        for member in self.members:
            if member.error is not None or (member.finished is not None and member.finished.state != pb.SUCCEEDED
                                            and not self._stopped_by_us(member)):
                return member
        return None

    def _stopped_by_us(self, member: _Member) -> bool:
        return self._stopping and member.finished is not None and member.finished.state == pb.CANCELLED

    def _failed_first(self) -> _Member | None:
        """The rank to report: the first whose failure stopped the gang (not one we stopped)."""
        failed = [m for m in self.members if m.error is not None or (
            m.finished is not None and m.finished.state != pb.SUCCEEDED and m.finished.state != pb.CANCELLED)]
        return min(failed, key=lambda m: m.ended_at) if failed else None

    @staticmethod
    def _describe_end(member: _Member) -> str:
        if member.error is not None:
            return f"{type(member.error).__name__}: {member.error}"
        assert member.finished is not None
        error = member.finished.error
        return f"{pb.RunState.Name(member.finished.state)}: {error.type_name}: {error.message}".rstrip(": ")

    def _outcome(self) -> GangOutcome:
        failed = self._failed_first()
        if failed is None and self._interrupts == 0:
            failed = next((m for m in self.members if m.finished is None or m.finished.state != pb.SUCCEEDED), None)
        member = failed or self.members[0]
        if member.error is not None:
            finished = pb.RunFinished(state=pb.LOST, error=pb.ErrorInfo(
                type_name="nbmodal.RunLostError", message=f"rank {member.rank} on {member.host}: {member.error}"))
        else:
            assert member.finished is not None
            finished = member.finished
        if failed is not None:
            self.cluster.failed_rank = failed.rank
            finished.error.traceback = (f"rank {member.rank} of gang {self.cluster_id} (on {member.host}) failed:\n"
                                        + finished.error.traceback)
            finished.error.message = f"rank {member.rank} (on {member.host}): {finished.error.message}"
        client = member.follower.client if member.follower is not None else member.target.client
        return GangOutcome(finished, member.rank, member.target.with_client(client).transfer, self.cluster)


def _cancel_when_back(member: _Member) -> None:
    """Cancel a lost rank's run once its host answers again (within the reconnect timeout)."""
    from nbmodal._runtime.connection import reconnect_timeout_s

    deadline = time.monotonic() + reconnect_timeout_s()
    while time.monotonic() < deadline:
        try:
            member.target.connection.client().cancel(member.request.run_id, force=True)
            return
        except Exception as exc:
            log.info("gang: rank %d's run %s not cancelled yet: %s", member.rank, member.request.run_id, exc)
            time.sleep(1.0)


class _RankFollower(RunFollower):
    """A rank's follower: a dropped link fails the gang at once (the other ranks would wait on it forever)."""

    def __init__(self, connection: Any, sink: Any, grace_s: float, member: _Member) -> None:
        super().__init__(connection, sink, grace_s, cancel_on_interrupt=False)
        self._member = member

    def _resume(self, lost: Any, follow: bool) -> Any:
        raise ClusterError(f"the connection to {self.connection.name} was lost ({lost})")


def start_gang(cluster_id: str, targets: list[RunTarget], requests: list[pb.RunRequest], sink: OutputSink,
               procs_per_node: int = 1) -> GangOutcome:
    """Run a gang's member requests (one per rank, made by the caller with ``set_member``) to the end."""
    for target, request in zip(targets, requests):
        run_hosts[request.run_id] = target.connection.name
    return Gang(cluster_id, targets, requests, sink, procs_per_node).run()
