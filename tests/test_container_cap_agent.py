"""The cap on live containers on a real agent (NBMODAL_MAX_CONTAINERS=3): runs of distinct specs reclaim the idle
warm container, a fourth waits and says why, then runs once a slot frees; a sandbox past the cap with a deadline
gets a clear error; the agent never has more than 3 containers."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from waiting import wait_for

from nbmodal._runtime.client import CLIENT_PYTHON, AgentClient
from nbmodal._runtime.local_agent import start_local_agent, stop_local_agent
from nbmodal_wire import pb

pytestmark = [pytest.mark.agent, pytest.mark.timeout(120)]

CAP = 3
HOLD = "print('go', flush=True)\nimport time\ntime.sleep(120)"


@contextlib.contextmanager
def own_agent(state_dir: Path, **env: str) -> Iterator[AgentClient]:
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


def submit(client: AgentClient, tag: str) -> str:
    request = pb.RunRequest(kind=pb.CELL, code=HOLD, filename="<cell>", client_python=CLIENT_PYTHON,
                            timeout_s=110, spec=pb.ContainerSpec(env={"TAG": tag}))
    return client.submit(request).run_id


class Follower:
    """The events of a run, as they come (a thread follows it)."""

    def __init__(self, client: AgentClient, run_id: str) -> None:
        self.events: list[pb.RunEvent] = []
        self._thread = threading.Thread(target=self._follow, args=(client, run_id), daemon=True)
        self._thread.start()

    def _follow(self, client: AgentClient, run_id: str) -> None:
        try:
            for event in client.attach(run_id):
                self.events.append(event)
        except grpc.RpcError:
            pass

    def notices(self) -> list[str]:
        return [event.notice.text for event in self.events if event.HasField("notice")]

    def printed(self) -> bytes:
        return b"".join(event.output.data for event in self.events if event.HasField("output"))


def live_containers(client: AgentClient) -> int:
    return len(client.list_containers())


def test_a_run_past_the_cap_waits_and_says_why_then_runs_when_a_slot_frees(tmp_path: Path):
    with own_agent(tmp_path / "agent", NBMODAL_MAX_CONTAINERS=str(CAP)) as client:
        # The agent prewarms one idle container at start: three distinct specs need it reclaimed.
        wait_for(lambda: live_containers(client) == 1, 60, "the agent's prewarmed container")
        peak = [0]

        def count() -> int:
            live = live_containers(client)
            peak[0] = max(peak[0], live)
            return live

        run_ids = {tag: submit(client, tag) for tag in "abcd"[:CAP]}
        held = {tag: Follower(client, run_id) for tag, run_id in run_ids.items()}
        for tag, follower in held.items():
            wait_for(lambda f=follower: b"go" in f.printed() and count() <= CAP, 60, f"run {tag} started")
        assert count() == CAP

        run_ids["d"] = submit(client, "d")
        fourth = Follower(client, run_ids["d"])
        wait_for(lambda: any("waiting for a container slot" in n for n in fourth.notices()), 30, "the fourth waits")
        notice = next(n for n in fourth.notices() if "waiting for a container slot" in n)
        assert notice.startswith(f"waiting for a container slot: {CAP} of {CAP} live"), notice
        assert b"go" not in fourth.printed()

        # A sandbox with a deadline past the cap: a clear error before its deadline, nothing started.
        with pytest.raises(grpc.RpcError) as refused:
            client._stub.SandboxCreate(pb.SandboxCreateRequest(argv=["true"]), metadata=client._metadata,
                                       timeout=3)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION, refused.value
        assert f"no container slot freed within 2.5 s: {CAP} of {CAP} live" in refused.value.details()

        # Cancel one: its container goes idle, is reclaimed, and the fourth run starts in its slot.
        client.cancel(run_ids["a"])
        wait_for(lambda: b"go" in fourth.printed(), 60, "the fourth run starts once a slot frees")
        assert count() <= CAP and peak[0] <= CAP
        for run_id in run_ids.values():
            client.cancel(run_id)


NESTED = textwrap.dedent("""
    import nbmodal
    app = nbmodal.App("nested-cap")

    @app.function(secrets=[nbmodal.Secret.from_dict({"WHICH": "inner"})])  # a spec of its own: a new container
    def inner(x):
        return x + 1

    @app.function()
    def outer(x):
        return inner.remote(x) * 10

    with app.run():
        print("result", outer.remote(1))
""")


def test_a_nested_call_past_the_cap_runs_on_the_slot_its_waiting_caller_lends(tmp_path: Path):
    home = tmp_path / "home"
    env = {**os.environ, "NBMODAL_HOME": str(home), "NBMODAL_MAX_CONTAINERS": "1"}
    try:
        done = subprocess.run([sys.executable, "-c", NESTED], env=env, capture_output=True, text=True, timeout=90)
        assert "result 20" in done.stdout, done.stderr[-3000:]
    finally:
        stop_local_agent(home / "agent")
