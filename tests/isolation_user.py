"""What tests/test_isolation.py runs as each of two Unix users on one host (``python isolation_user.py ROLE``).

``owner``: starts its own agent, stores a secret, a volume file, a Dict entry and an image, keeps three
containers running (a plain one and two of one image, forked from the same zygote), and has them probe
what a container must not reach: the agent user's ``~/.ssh``, the agent's token, the other container's
private /tmp and environment. It prints one JSON line with what it made and what the probes saw, then
waits for its stdin to close (its containers live until then).

``intruder``: given the owner's JSON line on stdin, starts its own agent and tries every way into the
owner's: the state dir and each store under it, the token, a call to the owner's agent with its own
token, a signal to the owner's container, and its own agent asked to attach to or stop the owner's run.
It prints one JSON line of outcomes.

Outcomes are strings: ``"ok: ..."`` when the access worked, else the error's class and text.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable

import nbmodal
from nbmodal.config import local_agent_dir

SECRET_VALUE = "isolation-secret-value-7f3a"
HOLDER_WAIT_S = 120


def attempt(action: Callable[[], Any]) -> str:
    """``ok: RESULT`` when ``action`` works, else its error as ``TYPE: TEXT``."""
    try:
        return f"ok: {action()!r}"[:300]
    except BaseException as exc:  # noqa: BLE001 - every refusal is an outcome to report
        return f"{type(exc).__name__}: {exc}"[:300]


def _probe_from_container(agent_pid: int, state_dir: str, home: str) -> dict[str, str]:
    """In a plain container: what of the agent user's secrets it can reach (it must reach none)."""
    import os

    def attempt(action):  # by value into the container, so no module globals
        try:
            return f"ok: {action()!r}"[:300]
        except BaseException as exc:  # noqa: BLE001
            return f"{type(exc).__name__}: {exc}"[:300]

    def read(path: str) -> str:
        with open(path, "rb") as f:
            return f.read(200).decode(errors="replace")

    def open_fds() -> list[str]:
        opened = []
        for name in os.listdir(f"/proc/{agent_pid}/fd"):  # listing is allowed; opening one is the question
            try:
                os.close(os.open(f"/proc/{agent_pid}/fd/{name}", os.O_RDONLY))
                opened.append(name)
            except OSError:
                continue
        if not opened:
            raise PermissionError(f"none of the agent's descriptors can be opened through /proc/{agent_pid}/fd")
        return opened

    return {
        "ssh_key": attempt(lambda: read(f"{home}/.ssh/id_ed25519")),
        "ssh_dir": attempt(lambda: sorted(os.listdir(f"{home}/.ssh"))),
        "agent_json": attempt(lambda: read(f"{state_dir}/agent.json")),
        "agent_json_via_proc": attempt(lambda: read(f"/proc/{agent_pid}/root{state_dir}/agent.json")),
        "agent_environ": attempt(lambda: read(f"/proc/{agent_pid}/environ")),
        "agent_open_fds": attempt(open_fds),
    }


def _hold_private_tmp(ready_path: str, wait_s: float) -> None:
    """An image container: a file in its private /tmp and a secret in its environment, until told to stop."""
    import os
    import time

    with open("/tmp/private.txt", "w") as f:
        f.write("private-data")
    with open(ready_path, "w") as f:
        f.write(str(os.getpid()))
    deadline = time.monotonic() + wait_s
    while os.path.exists(ready_path) and time.monotonic() < deadline:
        time.sleep(0.1)


def _probe_sibling(ready_path: str, wait_s: float) -> dict[str, str]:
    """Another container of the same image: the holder's private /tmp, environment and memory map."""
    import os
    import time

    def attempt(action):
        try:
            return f"ok: {action()!r}"[:300]
        except BaseException as exc:  # noqa: BLE001
            return f"{type(exc).__name__}: {exc}"[:300]

    def read(path: str) -> str:
        with open(path, "rb") as f:
            return f.read(4096).decode(errors="replace")

    deadline = time.monotonic() + wait_s
    while not os.path.exists(ready_path) and time.monotonic() < deadline:
        time.sleep(0.1)
    with open(ready_path) as f:
        pid = f.read().strip()
    outcome = {"private_tmp": attempt(lambda: read(f"/proc/{pid}/root/tmp/private.txt")),
               "environ": attempt(lambda: read(f"/proc/{pid}/environ")),
               "mem_maps": attempt(lambda: read(f"/proc/{pid}/maps")),
               "own_tmp_has_it": attempt(lambda: os.path.exists("/tmp/private.txt"))}
    os.unlink(ready_path)
    return outcome


def _sleep_with_pid(pid_path: str, wait_s: float) -> None:
    """A plain container that stays up (the intruder's target) until its pid file goes."""
    import os
    import time

    with open(pid_path, "w") as f:
        f.write(str(os.getpid()))
    deadline = time.monotonic() + wait_s
    while os.path.exists(pid_path) and time.monotonic() < deadline:
        time.sleep(0.1)


def owner() -> None:
    from nbmodal._runtime.connection import get_client
    from nbmodal._runtime.local_agent import read_agent_json
    from nbmodal.secret import create_secret
    from nbmodal_wire import pb

    home = str(Path.home())
    client = get_client()
    address = read_agent_json()
    assert address is not None
    state_dir = str(local_agent_dir().resolve())
    create_secret("owner-secret", {"TOKEN": SECRET_VALUE})
    volume = nbmodal.Volume.from_name("owner-vol", create_if_missing=True)
    with volume.batch_upload() as batch:
        batch.put_file(__file__, "/data.py")
    nbmodal.Dict.from_name("owner-dict", create_if_missing=True)["k"] = "v"

    app = nbmodal.App("owner")
    image = nbmodal.Image.debian_slim().env({"ISOLATION": "1"})
    secret = nbmodal.Secret.from_dict({"SIBLING_SECRET": SECRET_VALUE})
    plain_probe = app.function()(_probe_from_container)
    holder = app.function(image=image, secrets=[secret])(_hold_private_tmp)
    sibling = app.function(image=image)(_probe_sibling)
    sleeper = app.function()(_sleep_with_pid)
    with app.run():
        container_probe = plain_probe.remote(address.pid, state_dir, home)
        ready = f"{home}/holder.ready"
        held = holder.spawn(ready, HOLDER_WAIT_S)
        sibling_probe = sibling.remote(ready, HOLDER_WAIT_S)
        held.get(timeout=HOLDER_WAIT_S)
        pid_path = f"{home}/sleeper.pid"
        sleeping = sleeper.spawn(pid_path, HOLDER_WAIT_S)
        deadline = time.monotonic() + HOLDER_WAIT_S
        while not os.path.exists(pid_path) and time.monotonic() < deadline:
            time.sleep(0.05)
        running = [run for run in client.list_runs() if run.state == pb.RUNNING]
        print(json.dumps({
            "home": home, "state_dir": state_dir, "port": address.port, "agent_pid": address.pid,
            "container_pid": int(Path(pid_path).read_text()), "run_ids": [run.run_id for run in running],
            "container_probe": container_probe, "sibling_probe": sibling_probe,
        }), flush=True)
        sys.stdin.read()  # the test closes it when the intruder is done
        os.unlink(pid_path)
        sleeping.get(timeout=HOLDER_WAIT_S)


def intruder() -> None:
    import grpc

    from nbmodal._runtime.connection import get_client
    from nbmodal_wire import PROTOCOL_VERSION, TOKEN_METADATA_KEY, pb
    from nbmodal_wire.proto.agent_pb2_grpc import AgentStub

    theirs = json.loads(sys.stdin.readline())
    state = Path(theirs["state_dir"])
    client = get_client()  # my own agent, and my own token
    mine = client.address
    outcomes: dict[str, str] = {}
    outcomes["agent_json"] = attempt(lambda: (state / "agent.json").read_text())
    outcomes["state_dir"] = attempt(lambda: sorted(os.listdir(state)))
    for part in ("runs", "volumes", "secrets", "images", "blobs", "containers", "storage.db", "agent.log"):
        path = state / part
        outcomes[part] = attempt(lambda path=path: sorted(os.listdir(path)) if path.is_dir() else path.read_bytes()[:50])
    for run_id in theirs["run_ids"]:
        outcomes[f"events:{run_id}"] = attempt(lambda run_id=run_id: sorted(os.listdir(state / "runs" / run_id)))
    channel = grpc.insecure_channel(f"127.0.0.1:{theirs['port']}")
    stub = AgentStub(channel)
    hello = pb.HelloRequest(protocol_version=PROTOCOL_VERSION, client_version="intruder", client_python="3")
    outcomes["hello_with_my_token"] = attempt(
        lambda: stub.Hello(hello, metadata=((TOKEN_METADATA_KEY, mine.token),), timeout=15).agent_version)
    outcomes["list_runs_without_token"] = attempt(lambda: len(stub.ListRuns(pb.ListRunsRequest(), timeout=15).runs))
    outcomes["signal_container"] = attempt(lambda: os.kill(theirs["container_pid"], signal.SIGTERM))
    outcomes["signal_agent"] = attempt(lambda: os.kill(theirs["agent_pid"], signal.SIGTERM))
    for run_id in theirs["run_ids"]:
        outcomes[f"attach_via_mine:{run_id}"] = attempt(lambda run_id=run_id: list(client.attach(run_id, follow=False)))
        outcomes[f"stop_via_mine:{run_id}"] = attempt(lambda run_id=run_id: client.cancel(run_id))
    outcomes["my_runs"] = attempt(lambda: [run.run_id for run in client.list_runs()])
    print(json.dumps(outcomes), flush=True)


if __name__ == "__main__":
    {"owner": owner, "intruder": intruder}[sys.argv[1]]()
