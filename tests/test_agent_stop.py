"""The agent stops in bounded time whatever its backends do, and a client meeting a stuck agent says
how to clear it.

The hung backend is a Slurm host whose commands never answer (slurmctld gone): fake ``sbatch`` accepts
the job, fake ``squeue``/``scancel``/``scontrol``/``sinfo`` sleep, on the agent's PATH."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from waiting import wait_for

from nbmodal._runtime import local_agent
from nbmodal._runtime.client import CLIENT_PYTHON, AgentClient
from nbmodal._runtime.local_agent import lock_holder, read_agent_json, stop_local_agent
from nbmodal.exceptions import AgentError
from nbmodal_wire import pb
from nbmodal_wire.pids import pid_alive

pytestmark = [pytest.mark.agent, pytest.mark.timeout(90)]

HUNG = "#!/bin/sh\nexec sleep 300\n"
SBATCH = "#!/bin/sh\ncat > /dev/null\necho '4242;cluster'\n"


def lock_is_free(state_dir: Path) -> bool:
    fd = os.open(state_dir / "agent.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


@pytest.fixture()
def hung_slurm(tmp_path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, script in (("sbatch", SBATCH), ("squeue", HUNG), ("scancel", HUNG), ("scontrol", HUNG),
                         ("sinfo", HUNG)):
        (bin_dir / name).write_text(script)
        (bin_dir / name).chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def test_sigterm_stops_an_agent_whose_slurm_commands_hang_within_30_s(tmp_path, hung_slurm):
    state_dir = tmp_path / "agent"
    state_dir.mkdir()
    (state_dir / "slurm.json").write_text('{"partition": "gpu"}')
    subprocess.run([sys.executable, "-m", "remote_agent", "serve", "--state-dir", str(state_dir), "--daemon"],
                   env=hung_slurm, check=True, timeout=30)
    address = wait_for(lambda: read_agent_json(state_dir), 30, "the agent to listen")
    client = AgentClient(address)
    run = client.submit(pb.RunRequest(kind=pb.CELL, code="x = 1", filename="<cell>", client_python=CLIENT_PYTHON,
                                      detach=True))
    # The job is submitted and the agent is polling squeue, which never answers.
    wait_for(lambda: "submitted job 4242" in (state_dir / "agent.log").read_text(), 30, "the job's submission")
    assert client.get_run(run.run_id).state == pb.PENDING
    client.close()

    assert lock_holder(state_dir) == address.pid
    started = time.monotonic()
    os.kill(address.pid, signal.SIGTERM)
    wait_for(lambda: not pid_alive(address.pid), 30, "the agent to exit after SIGTERM")
    took = time.monotonic() - started
    assert took < 30, took
    assert lock_is_free(state_dir) and lock_holder(state_dir) is None
    assert read_agent_json(state_dir) is None
    print(f"agent with a hung Slurm backend exited {took:.1f} s after SIGTERM")


def test_a_stuck_agent_is_named_with_how_to_clear_it(tmp_path, monkeypatch):
    """A process holds the state dir's lock and never answers: the client says so, and --force clears it."""
    state_dir = tmp_path / "agent"
    state_dir.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(state_dir / 'agent.lock')!r}, os.O_RDWR | os.O_CREAT, 0o600)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "os.write(fd, f'{os.getpid()}\\n'.encode())\n"
        "print('locked', flush=True)\n"
        "time.sleep(120)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        monkeypatch.setattr(local_agent, "START_TIMEOUT_S", 1.0)
        with pytest.raises(AgentError) as caught:
            local_agent.ensure_local_agent(state_dir)
        message = str(caught.value)
        assert f"(pid {holder.pid})" in message and "nbmodal agent stop --force" in message
        assert f"kill -9 {holder.pid}" in message, message

        assert stop_local_agent(state_dir, force=True) == holder.pid
        assert holder.wait(timeout=10) == -signal.SIGKILL
        assert lock_is_free(state_dir)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
