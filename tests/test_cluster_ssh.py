"""Multi-node gangs across two real SSH hosts in network namespaces (tests/sshhosts.py), each with its own
address: a 2-node all-reduce between the ranks, a failing rank stopping the other, an interrupt stopping
both, and a gang waiting for a card that is taken on one host.

alpha and beta are offline and, as the session made them, reach only the root namespace; this module adds
a route between them (and IP forwarding in the root namespace) for its tests and removes both afterwards.
The all-reduce runs twice: socket-level (tests/allreduce.py, between the ranks at MASTER_ADDR:MASTER_PORT,
no dependencies) and with real ``torch.distributed`` over gloo, from a CPU build of torch installed once per
machine (tests/cputorch.py; skipped, saying so, where pip finds none). ``procs_per_node`` runs under a
torchrun stand-in (tests/faketorch: cheap, checks each process's environment) and under the real torchrun.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest
from allreduce import all_reduce
from cputorch import CPU_TORCH, cpu_torch
from kernels import kernel
from waiting import wait_for

import nbmodal
from nbmodal import commands, hosts
from nbmodal._runtime import connection as connections
from nbmodal_wire import pb

pytestmark = pytest.mark.ssh

FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
SUBNET = "10.233.0.0/16"


def _route(host, verb: str) -> None:
    gateway = host.address.rsplit(".", 1)[0] + ".1"  # the root namespace's end of the host's veth
    subprocess.run(["ip", "netns", "exec", host.namespace, "ip", "route", verb, SUBNET, "via", gateway],
                   check=verb == "add", capture_output=True)


@pytest.fixture(scope="module")
def pair(ssh_hosts):
    """alpha and beta configured, and reaching each other; as they were afterwards."""
    forwarding = FORWARD.read_text()
    FORWARD.write_text("1")
    for host in ssh_hosts:
        _route(host, "add")
        commands.host_add(host.name, host.name, str(host.config_path))
    yield ssh_hosts
    for host in ssh_hosts:
        _route(host, "del")
        connections.forget(host.name)
        if host.name in hosts.load_hosts():
            hosts.remove_host(host.name)
    FORWARD.write_text(forwarding)


def test_a_two_node_all_reduce_with_each_ranks_environment_and_cluster_info(pair):
    app = nbmodal.App("cluster-ssh")

    @app.function(timeout=60)
    @nbmodal.clustered(size=2)
    def reduce_step():
        import os
        import socket

        info = nbmodal.get_cluster_info()
        env = {k: os.environ[k] for k in ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK",
                                           "NODE_RANK", "LOCAL_WORLD_SIZE")}
        total = all_reduce([float(info.rank + 1)] * 4)
        print(f"rank {info.rank} on {socket.gethostname()}: {total}", flush=True)
        return {"rank": info.rank, "ips": info.container_ips, "env": env, "total": total, "home": os.environ["HOME"]}

    result = reduce_step.remote()
    run = nbmodal.last_cluster_run()
    assert run is not None and run.hosts == ["alpha", "beta"]
    alpha, beta = pair
    assert result["rank"] == 0 and result["home"] == str(alpha.home)
    assert result["ips"] == [alpha.address, beta.address]  # each host's own address, as the others reach it
    assert result["env"] == {"MASTER_ADDR": alpha.address, "MASTER_PORT": result["env"]["MASTER_PORT"],
                             "WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "NODE_RANK": "0",
                             "LOCAL_WORLD_SIZE": "1"}
    assert result["total"] == [3.0] * 4
    assert "rank 1 on" in run.logs(rank=1) and "[3.0, 3.0, 3.0, 3.0]" in run.logs(rank=1)
    assert "rank 0 on" in run.logs(rank=0) and "rank 0" not in run.logs(rank=1)
    info = connections.connection("beta").client().get_run(run.run_ids[1])
    assert (info.cluster_id, info.cluster_rank, info.cluster_size, info.state) == (
        run.cluster_id, 1, 2, pb.SUCCEEDED)


def test_each_rank_sees_the_volume_at_its_latest_version_and_its_writes_are_committed(pair, tmp_path):
    name = f"gang-vol-{os.getpid()}"
    vol = nbmodal.Volume.from_name(name, create_if_missing=True, host="alpha")  # alpha is its home
    try:
        (tmp_path / "data.txt").write_text("shard list")
        with vol.batch_upload() as batch:
            batch.put_file(tmp_path / "data.txt", "/data.txt")

        @nbmodal.App("cluster-ssh").function(timeout=60, volumes={"/v": name})
        @nbmodal.clustered(size=2)
        def write_rank() -> str:
            rank = nbmodal.get_cluster_info().rank
            print(f"rank {rank} sees {open('/v/data.txt').read()!r}", flush=True)
            with open(f"/v/rank{rank}.txt", "w") as f:
                f.write(f"written by rank {rank}")
            return "done"

        assert write_rank.remote() == "done"
        run = nbmodal.last_cluster_run()
        assert run is not None and run.hosts == ["alpha", "beta"]
        assert "rank 1 sees 'shard list'" in run.logs(rank=1)  # beta's replica synced before rank 1 started
        for rank in (0, 1):  # beta's write reached the home when its rank ended
            assert b"".join(vol.read_file(f"/rank{rank}.txt")) == f"written by rank {rank}".encode()
    finally:
        nbmodal.Volume.delete(name, allow_missing=True)


def test_a_real_torch_distributed_all_reduce_with_gloo_across_the_two_hosts(pair):
    torch_path = cpu_torch()
    if torch_path is None:
        pytest.skip(f"no CPU build of torch (torch=={CPU_TORCH}) installs here; the socket-level all-reduce ran")
    # torch from the shared directory; gloo on the hosts' own interface (their hostname resolves elsewhere)
    with_torch = nbmodal.Secret.from_dict({"PYTHONPATH": str(torch_path), "GLOO_SOCKET_IFNAME": "eth0"})

    @nbmodal.App("cluster-ssh").function(timeout=120, secrets=[with_torch])
    @nbmodal.clustered(size=2)
    def gloo_all_reduce() -> dict:
        import os

        import torch
        import torch.distributed as dist

        dist.init_process_group("gloo")  # env://: MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE from the gang
        try:
            tensor = torch.full((4,), float(dist.get_rank() + 1))
            dist.all_reduce(tensor)
            print(f"torch rank {dist.get_rank()} of {dist.get_world_size()}: {tensor.tolist()}", flush=True)
            return {"rank": dist.get_rank(), "world": dist.get_world_size(), "sum": tensor.tolist(),
                    "master": os.environ["MASTER_ADDR"], "cluster_rank": nbmodal.get_cluster_info().rank}
        finally:
            dist.destroy_process_group()

    alpha, _ = pair
    assert gloo_all_reduce.remote() == {"rank": 0, "world": 2, "sum": [3.0] * 4, "master": alpha.address,
                                        "cluster_rank": 0}
    run = nbmodal.last_cluster_run()
    assert run is not None and run.hosts == ["alpha", "beta"]
    assert "torch rank 1 of 2: [3.0, 3.0, 3.0, 3.0]" in run.logs(rank=1)


def test_procs_per_node_under_the_real_torchrun_all_reduces_over_every_process(pair):
    torch_path = cpu_torch()
    if torch_path is None:
        pytest.skip(f"no CPU build of torch (torch=={CPU_TORCH}) installs here; tests/faketorch's torchrun ran")
    with_torch = nbmodal.Secret.from_dict({"PYTHONPATH": str(torch_path), "GLOO_SOCKET_IFNAME": "eth0"})

    @nbmodal.App("cluster-ssh").function(timeout=120, secrets=[with_torch])
    @nbmodal.clustered(size=2, procs_per_node=2)
    def per_process() -> list:
        import os

        import torch
        import torch.distributed as dist

        dist.init_process_group("gloo")  # torchrun's own RANK, LOCAL_RANK, WORLD_SIZE for this process
        try:
            tensor = torch.full((2,), float(dist.get_rank()))
            dist.all_reduce(tensor)
            print(f"process {dist.get_rank()} (local {os.environ['LOCAL_RANK']}): {tensor.tolist()}", flush=True)
            return [dist.get_rank(), dist.get_world_size(), tensor.tolist()]
        finally:
            dist.destroy_process_group()

    assert per_process.remote() == [0, 4, [6.0, 6.0]]  # 0+1+2+3 over the 4 processes of the 2 nodes
    run = nbmodal.last_cluster_run()
    assert run is not None
    assert "process 2 (local 0): [6.0, 6.0]" in run.logs(rank=1) and "process 3 (local 1)" in run.logs(rank=1)


@pytest.fixture()
def fake_torch():
    """tests/faketorch (a torchrun stand-in) in a directory the hosts' users read, for the containers' PYTHONPATH."""
    root = Path(tempfile.mkdtemp(prefix="nbm-faketorch-"))
    shutil.copytree(Path(__file__).parent / "faketorch", root, dirs_exist_ok=True)
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_procs_per_node_runs_torchrun_on_each_node_and_returns_global_rank_0s_result(pair, fake_torch):
    on_path = nbmodal.Secret.from_dict({"PYTHONPATH": str(fake_torch)})

    @nbmodal.App("cluster-ssh").function(timeout=60, secrets=[on_path])
    @nbmodal.clustered(size=2, procs_per_node=2)
    def ranks() -> tuple[str, ...]:
        import os

        keys = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "MASTER_ADDR")
        mine = tuple(os.environ[k] for k in keys)
        print(f"process {' '.join(mine)}", flush=True)  # one write: the node's two processes share its output
        return mine

    alpha, _ = pair
    assert ranks.remote() == ("0", "0", "4", "2", "0", alpha.address)
    run = nbmodal.last_cluster_run()
    assert run is not None
    node1 = run.logs(rank=1)
    assert f"process 2 0 4 2 1 {alpha.address}" in node1 and f"process 3 1 4 2 1 {alpha.address}" in node1


def test_a_rank_that_raises_stops_the_other_and_is_named(pair):
    app = nbmodal.App("cluster-ssh")

    @app.function(timeout=120)
    @nbmodal.clustered(size=2)
    def one_fails():
        import time

        if nbmodal.get_cluster_info().rank == 1:
            raise ValueError("bad shard")
        time.sleep(100)

    with pytest.raises(ValueError, match="bad shard") as info:
        one_fails.remote()
    assert info.value.cluster_rank == 1  # type: ignore[attr-defined]
    assert any("rank 1" in note and "on beta" in note for note in info.value.__notes__)
    run = nbmodal.last_cluster_run()
    assert run is not None and run.failed_rank == 1
    rank0 = connections.connection("alpha").client().get_run(run.run_ids[0])
    assert rank0.state == pb.CANCELLED  # stopped long before its 100 s sleep ended


def test_retries_relaunch_the_whole_gang(pair):
    marks = Path(tempfile.mkdtemp(prefix="nbm-gang-retry-"))  # /tmp: every host's containers see it
    marks.chmod(0o777)
    try:
        @nbmodal.App("cluster-ssh").function(timeout=60, retries=nbmodal.Retries(max_retries=1, initial_delay=0.1))
        @nbmodal.clustered(size=2)
        def flaky(folder: str) -> int:
            import os

            rank = nbmodal.get_cluster_info().rank
            with open(os.path.join(folder, f"rank{rank}"), "a") as runs:
                runs.write("ran\n")
            if rank == 1 and not os.path.exists(os.path.join(folder, "failed-once")):
                import time

                deadline = time.monotonic() + 30  # fail once rank 0 has run too (else it may be stopped first)
                while not os.path.exists(os.path.join(folder, "rank0")) and time.monotonic() < deadline:
                    time.sleep(0.01)
                open(os.path.join(folder, "failed-once"), "w").close()
                raise RuntimeError("first attempt fails")
            return rank

        assert flaky.remote(str(marks)) == 0
        assert [(marks / f"rank{r}").read_text().count("ran") for r in (0, 1)] == [2, 2]  # both ranks, twice
    finally:
        shutil.rmtree(marks, ignore_errors=True)


def test_a_rank_whose_host_drops_stops_the_other_and_is_named(pair):
    alpha, beta = pair

    @nbmodal.App("cluster-ssh").function(timeout=120)
    @nbmodal.clustered(size=2)
    def spin() -> None:
        import time

        while True:
            time.sleep(0.05)

    raised: list[BaseException] = []

    def call() -> None:
        try:
            spin.remote()
        except BaseException as exc:  # checked below
            raised.append(exc)

    before = nbmodal.last_cluster_run()
    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    run = wait_for(lambda: (r := nbmodal.last_cluster_run()) is not before and r, 30, "the gang to start")
    clients = [connections.connection(name).client() for name in ("alpha", "beta")]
    wait_for(lambda: all(_state(c, i) == pb.RUNNING for c, i in zip(clients, run.run_ids)), 60, "both ranks to run")
    beta.cut()
    try:
        caller.join(30)
        assert not caller.is_alive() and raised, "the gang did not end when beta's link dropped"
        assert isinstance(raised[0], nbmodal.RunLostError) and "rank 1 (on beta)" in str(raised[0])
        assert clients[0].get_run(run.run_ids[0]).state == pb.CANCELLED
    finally:
        beta.restore()
    beta_client = connections.connection("beta").client()
    wait_for(lambda: beta_client.get_run(run.run_ids[1]).state == pb.CANCELLED, 60,
             "beta's rank to be cancelled once its link is back")


def _state(client, run_id: str):
    """A run's state, or None while its agent hasn't registered it yet (the gang names its runs first)."""
    try:
        return client.get_run(run_id).state
    except nbmodal.NotFoundError:
        return None


def test_an_interrupt_stops_every_rank(pair):
    with kernel() as k:
        k.execute("import nbmodal")
        msg_id = k.start("%%remote nodes=2 timeout=120\nimport time\n"
                         "print('rank', nbmodal.get_cluster_info().rank, 'spinning', flush=True)\n"
                         "while True:\n    time.sleep(0.05)\n")
        k.collect(msg_id, timeout=90, until="spinning")
        k.interrupt()
        reply = k.collect(msg_id, timeout=60)
        assert reply["error"] is not None and reply["error"]["ename"] == "KeyboardInterrupt"
        ids = k.execute("import json; print(json.dumps(nbmodal.last_cluster_run().run_ids))")["stdout"]
    run_ids = json.loads(ids)
    for name, run_id in zip(("alpha", "beta"), run_ids):
        client = connections.connection(name).client()
        wait_for(lambda c=client, r=run_id: c.get_run(r).state == pb.CANCELLED, 30, f"rank on {name} to be cancelled")


def _restart_agent(host) -> None:
    host.stop_agent()
    connections.forget(host.name)  # the next call installs and starts it again


def test_the_gang_waits_while_one_hosts_only_card_is_taken(pair):
    for host in pair:
        connections.connection(host.name).client()  # installed, with its state directory
        fake = host.home / ".nbmodal" / "agent" / "fake-gpus"
        fake.write_text("H100:1")
        fake.chmod(0o644)
        _restart_agent(host)
    alpha, beta = pair
    release = beta.home / "release-card"
    release.unlink(missing_ok=True)
    try:
        @nbmodal.App("cluster-ssh").function(host="beta", gpu="H100", timeout=120)
        def hold_card(path: str) -> None:
            import os
            import time

            while not os.path.exists(path):
                time.sleep(0.05)

        holder = hold_card.spawn(str(release))
        beta_client = connections.connection("beta").client()
        wait_for(lambda: any(g.container_id for g in beta_client.list_gpus()), 60, "beta's card to be taken")
        with kernel() as k:
            msg_id = k.start("%%remote nodes=2 gpu=H100 timeout=60\n"
                             "import os\ngot = os.environ['CUDA_VISIBLE_DEVICES']\nprint('got', got)\n")
            # rank 0 (alpha) is ready and holds its card; rank 1 waits for beta's, and the cell says so
            k.collect(msg_id, timeout=60, until="1/2 ranks ready; rank 1 on beta: waiting for gpu=H100 (next in line)")
            release.write_text("")
            done = k.collect(msg_id, timeout=60)
            assert done["error"] is None, done
            assert "got GPU-" in done["stdout"]
            assert k.execute("print(got)")["stdout"].startswith("GPU-")  # rank 0's names came back
        holder.get(timeout=30)
    finally:
        release.write_text("")
        for host in pair:
            (host.home / ".nbmodal" / "agent" / "fake-gpus").unlink(missing_ok=True)
            _restart_agent(host)
