"""On a real agent: a spawned container started from the standby launcher (remote_agent/launchers/standby.py)
is inside its own pids cgroup from the start, and its limit stops a fork bomb as on the ordinary path."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from waiting import wait_for

from nbmodal._runtime.client import CLIENT_PYTHON, AgentClient
from nbmodal._runtime.local_agent import start_local_agent, stop_local_agent
from nbmodal_wire import pb

pytestmark = [pytest.mark.agent, pytest.mark.timeout(120)]

PIDS_MAX = 40
# Bounded: if the limit failed, 200 processes sleep for 15 s, not an unbounded number.
BOMB = """
import os, time
for _ in range(200):
    if os.fork() == 0:
        time.sleep(15)
        os._exit(0)
"""
WHERE = """
import os
print([line.split(":", 2)[2] for line in open("/proc/self/cgroup").read().splitlines()
       if "pids" in line.split(":")[1].split(",")][0])
"""


@contextlib.contextmanager
def own_agent(state_dir: Path) -> Iterator[tuple[AgentClient, Path]]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NBMODAL_CONTAINER_PIDS_MAX", str(PIDS_MAX))
        patch.delenv("NBMODAL_STANDBY_LAUNCHER", raising=False)
        address = start_local_agent(state_dir)
    client = AgentClient(address)
    try:
        log = (state_dir / "agent.log").read_text()
        if "container process limit: none" in log:
            pytest.skip("this host has no pids cgroup the agent may use")
        yield client, Path(log.split("container process limit: ")[1].split(" under ")[1].splitlines()[0])
    finally:
        client.close()
        stop_local_agent(state_dir)


def run_cell(client: AgentClient, code: str, tag: str) -> tuple[pb.RunFinished, bytes]:
    events = list(client.run(pb.RunRequest(kind=pb.CELL, code=code, filename="<cell>", client_python=CLIENT_PYTHON,
                                           timeout_s=60, spec=pb.ContainerSpec(env={"STANDBY_TEST": tag}))))
    output = b"".join(event.output.data for event in events if event.HasField("output"))
    return events[-1].finished, output


def _waiting_standby(cgroups: Path) -> Path | None:
    """A standby launcher's cgroup with the launcher itself running in it (so the agent holds it by now)."""
    for cgroup in cgroups.glob("standby-*"):
        with contextlib.suppress(OSError):
            for pid in (cgroup / "cgroup.procs").read_text().split():
                # The launcher itself (`python -I -S -c ...`), not its bubblewrap, whose command line names it
                # too and stays in the cgroup once the launcher has become a container.
                if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[1:4] == [b"-I", b"-S", b"-c"]:
                    return cgroup
    return None


def test_a_container_from_the_standby_launcher_is_limited_from_its_start(tmp_path):
    with own_agent(tmp_path / "agent") as (client, cgroups):
        finished, _ = run_cell(client, "x = 1", "first")  # a standby is made after it (if this one took none)
        assert finished.state == pb.SUCCEEDED, finished
        standby = wait_for(lambda: _waiting_standby(cgroups), 20, "a standby launcher in its cgroup")
        finished, output = run_cell(client, WHERE, "second")
        assert finished.state == pb.SUCCEEDED, finished
        assert output.decode().strip().endswith("/" + standby.name)  # the container is in the standby's cgroup
        assert (standby / "pids.max").read_text().strip() == str(PIDS_MAX)
        wait_for(lambda: _waiting_standby(cgroups), 20, "the next standby launcher")
        finished, _ = run_cell(client, BOMB, "bomb")
        assert finished.state == pb.FAILED and finished.error.kind == pb.ERROR_PROCESS_LIMIT, finished
        finished, output = run_cell(client, "print('next')", "after")
        assert finished.state == pb.SUCCEEDED and output == b"next\n"
