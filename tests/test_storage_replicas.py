"""One Volume, Dict and Queue across hosts (issue 18), on alpha and beta: two SSH hosts in network
namespaces that can't reach each other, only this client can reach both (tests/sshhosts.py).

Each object has a home host; volumes have replicas elsewhere, synced before a run and committed after
it; Dicts and Queues are reached from the other host through the client's relay.
"""

from __future__ import annotations

import os
import queue

import pytest
from waiting import wait_for

import nbmodal
from nbmodal import commands, hosts
from nbmodal._cli.volume import copies_table
from nbmodal._runtime import connection as connections
from nbmodal.exceptions import AgentLostError
from nbmodal.hosts import HostError

pytestmark = pytest.mark.ssh

TAG = f"r{os.getpid()}"
CKPT, TRAIN, SHARED = f"{TAG}-ckpt", f"{TAG}-train", f"{TAG}-shared"
app = nbmodal.App("replicas")


@pytest.fixture(scope="module")
def both(ssh_hosts):
    """alpha and beta configured; every object made here deleted afterwards, links restored."""
    for host in ssh_hosts:
        commands.host_add(host.name, host.name, str(host.config_path))
    yield ssh_hosts
    for host in ssh_hosts:
        host.restore()
    for name in (CKPT, TRAIN, SHARED):
        nbmodal.Volume.delete(name, allow_missing=True)
    for kind, name in ((nbmodal.Dict, f"{TAG}-d"), (nbmodal.Queue, f"{TAG}-q"), (nbmodal.Dict, f"{TAG}-gate"),
                       (nbmodal.Dict, f"{TAG}-gate2")):
        kind.delete(name, allow_missing=True)
    for host in ssh_hosts:
        connections.forget(host.name)
        if host.name in hosts.load_hosts():
            hosts.remove_host(host.name)


# -- functions, placed on each host ----------------------------------------------------------------

def _write(path: str, text: str) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return text


def _read(path: str) -> str | None:
    return open(path).read() if os.path.exists(path) else None


write_on_alpha = app.function(host="alpha", volumes={"/ckpt": CKPT}, name="write_on_alpha")(_write)
read_on_beta = app.function(host="beta", volumes={"/ckpt": CKPT}, name="read_on_beta")(_read)


def _train(total_steps: int, stop_after: int | None = None, ckpt_dir: str = "/ckpt") -> dict:
    """The 03 notebook's loop: resume from the latest checkpoint, save one every 5 steps, stop early."""
    import json
    import socket

    path = os.path.join(ckpt_dir, "latest.json")
    start, w = 0, 0.0
    if os.path.exists(path):
        saved = json.load(open(path))
        start, w = saved["step"], saved["w"]
    for step in range(start, total_steps):
        w += 0.5 * (3.0 - w)  # one gradient step towards 3
        if (step + 1) % 5 == 0:
            tmp = path + ".tmp"
            json.dump({"step": step + 1, "w": w}, open(tmp, "w"))
            os.replace(tmp, path)  # a checkpoint is never half-written
        if stop_after is not None and step + 1 - start >= stop_after:
            break
    return {"started_at": start, "w": w, "host": socket.gethostname(), "home": os.environ["HOME"]}


train_on_alpha = app.function(host="alpha", volumes={"/ckpt": TRAIN}, name="train_on_alpha")(_train)
train_on_beta = app.function(host="beta", volumes={"/ckpt": TRAIN}, name="train_on_beta")(_train)


def _write_when_told(who: str, gate_name: str) -> str:
    """Write /shared/f.txt, say so in the gate Dict, and end (commit) only when the test says."""
    import time

    gate = nbmodal.Dict.from_name(gate_name)
    _write("/shared/f.txt", f"from {who}")
    gate[f"{who}-wrote"] = True
    while not gate.get(f"{who}-go"):
        time.sleep(0.05)
    return who


shared_alpha = app.function(host="alpha", volumes={"/shared": SHARED}, name="shared_alpha")(_write_when_told)
shared_beta = app.function(host="beta", volumes={"/shared": SHARED}, name="shared_beta")(_write_when_told)


def _produce(name: str, n: int) -> int:
    q = nbmodal.Queue.from_name(name)
    for start in range(0, n, 100):
        q.put_many(list(range(start, min(n, start + 100))))
    return n


def _consume(name: str, n: int) -> list[int]:
    q = nbmodal.Queue.from_name(name)
    got: list[int] = []
    while len(got) < n:
        got += q.get_many(100, timeout=60)
    return got


produce_on_alpha = app.function(host="alpha", name="produce_on_alpha")(_produce)
consume_on_beta = app.function(host="beta", name="consume_on_beta")(_consume)


@app.function(host="beta")
def dict_put_on_beta(name: str) -> int:
    d = nbmodal.Dict.from_name(name)
    d["from-beta"] = {"loss": 0.25}
    return len(d)


@app.function(host="alpha")
def dict_read_on_alpha(name: str) -> dict:
    return dict(nbmodal.Dict.from_name(name).items())


@app.function(host="beta")
def put_on_beta(name: str) -> str:
    try:
        nbmodal.Queue.from_name(name).put("lost?", timeout=5)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return "stored"


# -- tests ----------------------------------------------------------------------------------------

def test_a_checkpoint_committed_on_one_host_is_read_by_a_run_on_the_other(both):
    vol = nbmodal.Volume.from_name(CKPT, create_if_missing=True, host="alpha")
    write_on_alpha.remote("/ckpt/config.json", "{}")
    write_on_alpha.remote("/ckpt/step-1.pt", "weights v1")  # committed when the run ends
    assert read_on_beta.remote("/ckpt/step-1.pt") == "weights v1"
    replica = both.beta.home / ".nbmodal" / "agent" / "volumes" / CKPT
    unchanged, changed = (replica / "config.json").stat().st_ino, (replica / "step-1.pt").stat().st_ino
    write_on_alpha.remote("/ckpt/step-1.pt", "weights v2")
    assert read_on_beta.remote("/ckpt/step-1.pt") == "weights v2"
    # Only the changed file moved (a file that arrives is renamed into place: a new inode).
    assert (replica / "config.json").stat().st_ino == unchanged
    assert (replica / "step-1.pt").stat().st_ino != changed
    copies = vol.versions()
    assert copies["alpha"]["role"] == "home" and copies["beta"]["role"] == "replica", copies
    assert copies["alpha"]["version"] == copies["beta"]["version"] >= 2, copies
    listing = commands.volume_command(_args("ls", CKPT))
    assert "alpha" in listing and "replica" in listing and "step-1.pt" in listing, listing


def _commit_then_reload(gate_name: str) -> str | None:
    """In a run on the replica's host: commit() sends this run's write to the home at once; reload() later
    brings in what the home committed meanwhile."""
    import time

    vol, gate = nbmodal.Volume.from_name(CKPT), nbmodal.Dict.from_name(gate_name)
    _write("/ckpt/mid-run.txt", "committed before the run ended")
    vol.commit()
    gate["committed"] = True
    while not gate.get("alpha-wrote"):
        time.sleep(0.05)
    before = _read("/ckpt/fresh.txt")
    vol.reload()
    return f"{before} -> {_read('/ckpt/fresh.txt')}"


commit_then_reload_on_beta = app.function(host="beta", volumes={"/ckpt": CKPT},
                                          name="commit_then_reload_on_beta")(_commit_then_reload)


def test_commit_and_reload_inside_a_run_on_a_replica(both):
    vol = nbmodal.Volume.from_name(CKPT, create_if_missing=True, host="alpha")
    gate = nbmodal.Dict.from_name(f"{TAG}-gate2", create_if_missing=True, host="alpha")
    call = commit_then_reload_on_beta.spawn(gate.name)
    wait_for(lambda: gate.get("committed"), 90, "the run on beta to commit")
    assert b"".join(vol.read_file("/mid-run.txt")) == b"committed before the run ended"  # at the home already
    write_on_alpha.remote("/ckpt/fresh.txt", "committed at the home")
    gate["alpha-wrote"] = True
    assert call.get(timeout=60) == "None -> committed at the home"


def test_a_resumed_training_moves_hosts_between_its_halves(both, tmp_path):
    nbmodal.Volume.from_name(TRAIN, create_if_missing=True, host="alpha")
    first = train_on_alpha.remote(40, stop_after=23)  # "preempted" after 23 steps: checkpoint at step 20
    second = train_on_beta.remote(40)
    assert first["home"] != second["home"]
    assert second["started_at"] == 20
    whole = _train(40, ckpt_dir=str(tmp_path))  # the same loop, here, never interrupted
    assert second["w"] == pytest.approx(whole["w"])


def test_concurrent_commits_of_one_file_last_wins_and_the_other_is_recoverable(both):
    vol = nbmodal.Volume.from_name(SHARED, create_if_missing=True, host="alpha")
    gate = nbmodal.Dict.from_name(f"{TAG}-gate", create_if_missing=True, host="alpha")
    a = shared_alpha.spawn("alpha", gate.name)
    b = shared_beta.spawn("beta", gate.name)  # a Dict of alpha's, reached from beta through the relay
    wait_for(lambda: gate.get("alpha-wrote") and gate.get("beta-wrote"), 90, "both runs to have written f.txt")
    gate["alpha-go"] = True
    assert a.get(timeout=60) == "alpha"
    gate["beta-go"] = True
    assert b.get(timeout=60) == "beta"
    assert b"".join(vol.read_file("/f.txt")) == b"from beta"  # beta committed last: it wins
    overwritten = vol.versions()["alpha"]["overwritten"]
    assert [o["path"] for o in overwritten] == ["/f.txt"] and overwritten[0]["host"] == "beta", overwritten
    assert "overwritten by the last commit" in copies_table(vol.versions())
    commands.volume_command(_args("recover", SHARED, "/f.txt", to="/f.alpha.txt"))
    assert b"".join(vol.read_file("/f.alpha.txt")) == b"from alpha"


def test_a_replica_that_missed_a_commit_while_cut_off_catches_up(both, tmp_path):
    vol = nbmodal.Volume.from_name(CKPT, create_if_missing=True, host="alpha")
    read_on_beta.remote("/ckpt/none")  # beta has a replica, synced
    both.beta.cut()
    try:
        (tmp_path / "late.txt").write_text("committed while beta was away")
        with vol.batch_upload() as batch:
            batch.put_file(tmp_path / "late.txt", "/late.txt")
    finally:
        both.beta.restore()
    copies = vol.versions()
    assert copies["beta"]["version"] < copies["alpha"]["version"], copies
    assert read_on_beta.remote("/ckpt/late.txt") == "committed while beta was away"
    copies = vol.versions()
    assert copies["beta"]["version"] == copies["alpha"]["version"], copies


def test_a_queue_between_a_producer_on_one_host_and_a_consumer_on_the_other(both):
    q = nbmodal.Queue.from_name(f"{TAG}-q", create_if_missing=True, host="alpha")
    consumer = consume_on_beta.spawn(q.name, 1000)
    assert produce_on_alpha.remote(q.name, 1000) == 1000
    got = consumer.get(timeout=120)
    assert sorted(got) == list(range(1000))  # each item exactly once
    assert q.len() == 0


def test_a_dict_put_on_one_host_is_read_on_the_other(both):
    d = nbmodal.Dict.from_name(f"{TAG}-d", create_if_missing=True, host="alpha")
    d["from-notebook"] = 1
    assert dict_put_on_beta.remote(d.name) == 2
    assert dict_read_on_alpha.remote(d.name) == {"from-notebook": 1, "from-beta": {"loss": 0.25}}
    assert d["from-beta"] == {"loss": 0.25}


def test_the_home_unreachable_is_a_clear_error_and_nothing_is_lost(both, capsys):
    q = nbmodal.Queue.from_name(f"{TAG}-q", create_if_missing=True, host="alpha")
    vol = nbmodal.Volume.from_name(CKPT, create_if_missing=True, host="alpha")
    write_on_alpha.remote("/ckpt/before.txt", "committed before the cut")
    assert read_on_beta.remote("/ckpt/before.txt") == "committed before the cut"  # routes up, replica synced
    both.alpha.cut()
    try:
        conn = connections.connection("alpha")
        wait_for(lambda: conn.ssh is None or not conn.ssh.alive, 60, "the cut link to alpha to be declared dead")
        outcome = put_on_beta.remote(q.name)
        assert "alpha" in outcome and "reach" in outcome, outcome  # named, at once: no silent local copy
        assert "stored" != outcome
        # A run on beta writes to its replica: the commit can't reach alpha, so the writes stay there.
        wrote = app.function(host="beta", volumes={"/ckpt": CKPT}, name="write_on_beta")(_write)
        assert wrote.remote("/ckpt/offline.txt", "written while alpha was away") == "written while alpha was away"
        said = capsys.readouterr()
        assert "replica at version" in said.out + said.err, said  # the run says what it sees
        assert "stay in this host's replica" in said.out + said.err, said
        with pytest.raises((HostError, AgentLostError)):
            nbmodal.Queue.from_name(q.name).put("x", timeout=1)  # the notebook: alpha is away
    finally:
        both.alpha.restore()
    copies = wait_for(lambda: _copies_if_reachable(vol), 60, "alpha to answer again")
    assert copies["beta"]["pending"], copies
    assert read_on_beta.remote("/ckpt/offline.txt") == "written while alpha was away"  # sync pushes first
    assert b"".join(vol.read_file("/offline.txt")) == b"written while alpha was away"
    assert not vol.versions()["beta"]["pending"]
    with pytest.raises(queue.Empty):
        q.get(block=False)  # nothing half-stored at the home


def _copies_if_reachable(vol):
    copies = vol.versions()
    return copies if all("error" not in c for c in copies.values()) else None


def _args(verb: str, name: str, remote: str = "/", to: str = ""):
    import argparse

    return argparse.Namespace(verb=verb, name=name, path=remote, remote=remote, to=to, host=None)
