"""Faults in user code, on a real agent: a segfault or os._exit says what really ended the container
(sandboxed, zygote-forked and plain), a fork bomb ends its own run and nothing else, and an output
flood leaves the agent small, the cell a marker, and the run's full log capped."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import pytest
from waiting import wait_for

import nbmodal
from nbmodal._runtime.client import CLIENT_PYTHON, AgentClient
from nbmodal._runtime.local_agent import start_local_agent, stop_local_agent
from nbmodal.exceptions import RunLostError
from nbmodal_wire import pb
from nbmodal_wire.names import new_run_id

pytestmark = [pytest.mark.agent, pytest.mark.timeout(120)]

app = nbmodal.App("faults")
forked_image = nbmodal.Image.debian_slim().env({"NBMODAL_TEST_FAULTS": "zygote"})  # an image: a zygote forks


@app.function()
def segfault() -> None:
    import ctypes

    ctypes.string_at(0)


@app.function()
def exit_with(code: int) -> None:
    import os

    os._exit(code)


@app.function()
def pid() -> int:
    import os

    return os.getpid()


@app.function(image=forked_image)
def segfault_forked() -> None:
    import ctypes

    ctypes.string_at(0)


@app.function(image=forked_image)
def exit_forked(code: int) -> None:
    import os

    os._exit(code)


@app.function(image=forked_image)
def pid_forked() -> int:
    import os

    return os.getpid()


@contextlib.contextmanager
def own_agent(state_dir: Path, **env: str):
    """An agent of this test's own, started with ``env`` (the session's agent keeps its settings)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        address = start_local_agent(state_dir)
    client = AgentClient(address)
    try:
        yield client
    finally:
        client.close()
        stop_local_agent(state_dir)


def run_cell(client: AgentClient, code: str) -> tuple[pb.RunFinished, bytes]:
    events = list(client.run(pb.RunRequest(kind=pb.CELL, code=code, filename="<cell>",
                                           client_python=CLIENT_PYTHON, timeout_s=60)))
    output = b"".join(event.output.data for event in events if event.HasField("output"))
    return events[-1].finished, output


@pytest.mark.parametrize("how", ["spawned", "zygote"])
def test_a_segfault_and_os_exit_name_the_real_signal_and_code(agent_address, how):
    crash, leave, alive = (segfault, exit_with, pid) if how == "spawned" else (segfault_forked, exit_forked, pid_forked)
    with pytest.raises(RunLostError, match=r"was killed by SIGSEGV \(segmentation fault\)"):
        crash.remote()
    with pytest.raises(RunLostError, match=r"exited with code 3\b"):
        leave.remote(3)
    assert alive.remote() > 0  # replaced: the next call works


def test_without_the_sandbox_too(tmp_path):
    with own_agent(tmp_path / "agent", NBMODAL_SANDBOX="0") as client:
        finished, _ = run_cell(client, "import ctypes\nctypes.string_at(0)")
        assert finished.state == pb.LOST and finished.error.kind == pb.ERROR_CONTAINER_DIED
        assert "was killed by SIGSEGV (segmentation fault)" in finished.error.message, finished.error.message
        finished, _ = run_cell(client, "import os\nos._exit(3)")
        assert "exited with code 3;" in finished.error.message, finished.error.message
        finished, output = run_cell(client, "print('still here')")
        assert finished.state == pb.SUCCEEDED and output == b"still here\n"


# A bounded bomb: forks children that sleep and then exit by themselves, up to ten times the limit. If the
# limit failed, this machine would hold 400 sleeping processes for 15 s, not an unbounded number.
BOMB = """
import os, time
for _ in range(400):
    if os.fork() == 0:
        time.sleep(15)
        os._exit(0)
"""
PIDS_MAX = 40


def _processes_in(cgroups: Path) -> list[str]:
    """The processes in containers' pids cgroups, other than the agent's idle containers' workers."""
    found = []
    for cgroup in cgroups.iterdir() if cgroups.is_dir() else ():
        with contextlib.suppress(OSError):
            pids = (cgroup / "cgroup.procs").read_text().split()
            if len(pids) > 3:  # a container is its worker (and bubblewrap, and a shell): a bomb's are many more
                found.append(f"{cgroup.name}: {len(pids)}")
    return found


def test_a_fork_bomb_ends_its_own_run_and_nothing_else(tmp_path):
    state_dir = tmp_path / "agent"
    with own_agent(state_dir, NBMODAL_CONTAINER_PIDS_MAX=str(PIDS_MAX)) as client:
        log = (state_dir / "agent.log").read_text()
        if "container process limit: none" in log:
            pytest.skip("this host has no pids cgroup the agent may use: " + log.split("container process limit: ")[1]
                        .splitlines()[0])
        cgroups = Path(log.split("container process limit: ")[1].split(" under ")[1].splitlines()[0])
        bystander = client.submit(pb.RunRequest(kind=pb.CELL, code="import time\ntime.sleep(3)\nok = 1",
                                                filename="<cell>", client_python=CLIENT_PYTHON, detach=True))
        started = time.monotonic()
        finished, _ = run_cell(client, BOMB)
        assert finished.state == pb.FAILED and finished.error.kind == pb.ERROR_PROCESS_LIMIT, finished
        assert f"limit of {PIDS_MAX} processes" in finished.error.message, finished.error.message
        assert time.monotonic() - started < 20  # ended by the limit, not by the children's own end
        # The bomb's children went with its container; the other container was left alone.
        wait_for(lambda: not _processes_in(cgroups), 10, "the bomb's processes to be gone")
        follow = list(client.attach(bystander.run_id))
        assert follow[-1].finished.state == pb.SUCCEEDED, follow[-1]
        finished, output = run_cell(client, "print('next')")
        assert finished.state == pb.SUCCEEDED and output == b"next\n"


FLOOD_S = 6
FLOOD = f"""
import sys, time
line = "x" * 99 + "\\n"
end = time.time() + {FLOOD_S}
chunks = 0
while time.time() < end:
    sys.stdout.write(line * 100)
    chunks += 1
"""


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_an_output_flood_keeps_the_agent_small_and_the_log_capped(tmp_path):
    state_dir = tmp_path / "agent"
    # Small caps, so a flood on a loaded machine still passes them: 1 MiB shown, the full log 8 MiB + 8 MiB.
    with own_agent(state_dir, NBMODAL_RUN_OUTPUT_CAP_MIB="1", NBMODAL_RUN_OUTPUT_LOG_MIB="8") as client:
        agent_pid = client.address.pid
        finished, _ = run_cell(client, "print('warm')")  # a warm container, so the flood starts at once
        baseline = _rss_mib(agent_pid)
        peak = [baseline]
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.is_set():
                peak[0] = max(peak[0], _rss_mib(agent_pid))
                sampling.wait(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        run_id = new_run_id()
        try:
            events = list(client.run(pb.RunRequest(kind=pb.CELL, code=FLOOD, filename="<cell>", run_id=run_id,
                                                   client_python=CLIENT_PYTHON, timeout_s=60)))
        finally:
            sampling.set()
            sampler.join()
        finished = events[-1].finished
        assert finished.state == pb.SUCCEEDED, finished
        output = b"".join(event.output.data for event in events if event.HasField("output"))
        outputs = sum(1 for event in events if event.HasField("output"))
        run_dir = state_dir / "runs" / run_id
        # The cell got the cap's worth and two markers, in few large messages, not the whole flood.
        assert len(output) < 1.1 * 2**20, len(output)
        assert b"what follows is left out here; the full output is in" in output
        assert f"{run_dir / 'output.log'}".encode() in output
        assert b"MiB of output" in output.split(b"left out here")[-1]  # the final count
        assert outputs < 100, outputs
        # The full log: capped and rotated (8 MiB each here, the older part in output.log.1).
        assert (run_dir / "output.log").stat().st_size <= 8 * 2**20
        assert (run_dir / "output.log.1").stat().st_size <= 8 * 2**20
        assert (run_dir / "events.log").stat().st_size < 1.1 * 2**20
        # The agent stayed small while the container printed as fast as it could.
        assert peak[0] - baseline < 100, f"agent RSS rose from {baseline:.0f} MiB to {peak[0]:.0f} MiB"
        print(f"flood: agent RSS {baseline:.0f} MiB before, {peak[0]:.0f} MiB at most")
        started = time.perf_counter()
        finished, small = run_cell(client, "print('after')")
        assert finished.state == pb.SUCCEEDED and small == b"after\n"
        assert time.perf_counter() - started < 2
