"""The container supervisor and adoption, without an agent: the real supervisor script over socket pairs.

The supervisor (remote_agent/supervisor.py) waits while its agent's link is open, spools the container's
bytes once it closes, and hands the socket to the next agent so that spool + socket are one unbroken
stream; the agent side (remote_agent/supervision.py) finds it, reads a torn events.log back, and keeps
adopted runs from being marked LOST.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from waiting import wait_for

from nbmodal_wire import pb
from remote_agent import supervisor as script
from remote_agent.runs import RunRegistry, write_info
from remote_agent.supervision import SUPERVISOR_SCRIPT, Supervision, _read_events

pytestmark = pytest.mark.unit


class Supervised:
    """A fake container's socket pair, and the real supervisor holding the agent's end."""

    def __init__(self, root: Path, container_id: str = "c-1-1") -> None:
        self.agent_end, self.container_end = socket.socketpair()
        self.link, theirs = socket.socketpair()
        self.sock_path = root / f"{container_id}.sock"
        self.spool_path = root / f"{container_id}.spool"
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-S", str(SUPERVISOR_SCRIPT), "--container-fd", str(self.agent_end.fileno()),
             "--agent-fd", str(theirs.fileno()), "--socket", str(self.sock_path), "--spool", str(self.spool_path)],
            pass_fds=(self.agent_end.fileno(), theirs.fileno()), start_new_session=True)
        theirs.close()
        self.link.settimeout(10)
        assert self.link.recv(1) == script.READY

    def ask(self, request: bytes) -> tuple[bytes, list[int], socket.socket]:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.settimeout(10)
        conn.connect(str(self.sock_path))
        conn.sendall(request)
        message, fds, _, _ = socket.recv_fds(conn, 64, 1)
        return message, fds, conn

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        for sock in (self.agent_end, self.container_end, self.link):
            sock.close()


@pytest.fixture()
def supervised(tmp_path):
    made = Supervised(tmp_path)
    yield made
    made.close()


def _spooled(path: Path, size: int) -> bool:
    return path.exists() and path.stat().st_size >= size


def test_the_spool_and_the_handed_socket_are_one_unbroken_stream(supervised):
    supervised.agent_end.close()  # the agent's own copy went with it
    supervised.link.close()  # the agent died
    sent = b"".join(struct.pack("<I", n) for n in range(50000))  # many reads' worth
    supervised.container_end.sendall(sent)
    wait_for(lambda: _spooled(supervised.spool_path, len(sent)), 10, "the container's bytes in the spool")
    message, fds, link = supervised.ask(script.ADOPT)
    assert message == script.GRANTED and len(fds) == 1
    spooled = supervised.spool_path.read_bytes()
    taken = socket.socket(fileno=fds[0])
    supervised.container_end.sendall(b"after")
    taken.settimeout(10)
    assert spooled == sent and taken.recv(64) == b"after"  # nothing twice, nothing missing
    supervised.spool_path.unlink()  # read by the adopting agent
    link.close()  # the second agent dies too: the supervisor takes over again
    taken.close()
    supervised.container_end.sendall(b"again")
    wait_for(lambda: _spooled(supervised.spool_path, 5), 10, "the spool after the second agent")
    assert supervised.spool_path.read_bytes() == b"again"


def test_a_linked_supervisor_refuses_another_agent_and_a_release_ends_it(supervised):
    message, fds, conn = supervised.ask(script.ADOPT)
    conn.close()
    assert message == script.BUSY and not fds
    supervised.link.sendall(script.RELEASE)
    assert supervised.process.wait(10) == 0
    assert not supervised.sock_path.exists()


def test_an_end_request_lets_the_container_see_its_socket_close(supervised):
    supervised.link.close()
    supervised.agent_end.close()
    message, _, conn = supervised.ask(script.END)
    conn.close()
    assert message == script.GRANTED
    assert supervised.process.wait(10) == 0
    supervised.container_end.settimeout(10)
    assert supervised.container_end.recv(16) == b""  # the container's end of the pair: EOF, so it exits


def test_discover_takes_a_live_container_and_keeps_a_dead_ones_spool(tmp_path):
    root = tmp_path / "supervisors"
    supervision = Supervision(root)
    live = Supervised(root, "c-9-1")
    try:
        live.link.close()
        live.container_end.sendall(b"\x01\x02")
        wait_for(lambda: _spooled(live.spool_path, 2), 10, "the live container's spool")
        for container_id in ("c-9-1", "c-9-2"):
            (root / f"{container_id}.json").write_text(
                f'{{"container_id": "{container_id}", "pid": 1, "worker_pid": 1, "token": "t", "spec": ""}}')
        (root / "c-9-2.spool").write_bytes(b"left")  # its supervisor is gone: the container ended
        found = {a.record.container_id: a for a in supervision.discover()}
        assert found["c-9-1"].sock is not None and found["c-9-1"].spooled == b"\x01\x02"
        assert found["c-9-2"].sock is None and found["c-9-2"].spooled == b"left"
        assert (root / "c-9-1.json").exists() and not (root / "c-9-2.json").exists()
        assert not (root / "c-9-1.spool").exists() and not (root / "c-9-2.spool").exists()
        for adoptable in found.values():
            for sock in (adoptable.sock, adoptable.link):
                if sock is not None:
                    sock.close()
    finally:
        live.close()


def test_a_torn_events_log_is_cut_back_to_its_last_whole_event(tmp_path):
    log = tmp_path / "events.log"
    frames = b""
    for seq in (1, 2, 3):
        body = pb.RunEvent(seq=seq, output=pb.Output(data=b"x" * seq)).SerializeToString()
        frames += struct.pack("<I", len(body)) + body
    log.write_bytes(frames + struct.pack("<I", 100) + b"half")
    assert [event.seq for event in _read_events(log)] == [1, 2, 3]
    assert log.read_bytes() == frames


def test_runs_on_adopted_containers_are_not_marked_lost(tmp_path):
    runs = tmp_path / "runs"
    dead_agent = 2 ** 22 + 12345  # beyond pid_max: no such process
    for run_id, container_id in (("r-00000001", "c-1-1"), ("r-00000002", "c-1-2")):
        (runs / run_id).mkdir(parents=True)
        write_info(runs / run_id, pb.RunInfo(run_id=run_id, state=pb.RUNNING, container_id=container_id,
                                             agent_pid=dead_agent))
    registry = RunRegistry(runs, adopted=frozenset({"c-1-1"}))
    states = {run.id: run.info.state for run in registry.list()}
    assert states == {"r-00000001": pb.RUNNING, "r-00000002": pb.LOST}
