"""Multi-node gangs, the logic without agents: placement of N ranks, each rank's environment, the address
the others reach, the torchrun command, ``get_cluster_info()`` and the decorator."""

from __future__ import annotations

import ipaddress

import pytest

import nbmodal
from nbmodal._runtime.gang import ClusterError, HostCandidate, choose_hosts, rank_environment, reachable_address
from nbmodal.exceptions import InvalidError
from nbmodal_wire.gpu_request import Gpu
from remote_agent.worker import cluster_net
from remote_agent.worker.torchrun import torchrun_argv

pytestmark = pytest.mark.unit


def h100(index: int) -> Gpu:
    return Gpu(index, f"GPU-{index}", "NVIDIA H100 80GB HBM3", 80 * 2**30)


def a10g(index: int) -> Gpu:
    return Gpu(index, f"GPU-{index}", "NVIDIA A10G", 24 * 2**30)


def test_hosts_with_free_cards_come_first_then_busy_ones_in_order():
    candidates = [HostCandidate("busy", [h100(0)], []), HostCandidate("small", [a10g(0)], [a10g(0)]),
                  HostCandidate("free", [h100(0)], [h100(0)])]
    assert choose_hosts(2, "H100", candidates) == ["free", "busy"]
    assert choose_hosts(3, "", candidates) == ["busy", "small", "free"]


def test_fewer_usable_hosts_than_nodes_is_an_error_naming_each_host_and_why():
    candidates = [HostCandidate("alpha", [h100(0)], [h100(0)]), HostCandidate("beta", [a10g(0)], [a10g(0)]),
                  HostCandidate("gamma", problem="unreachable (timed out)")]
    with pytest.raises(ClusterError) as info:
        choose_hosts(2, "H100", candidates)
    message = str(info.value)
    assert "a gang of 2 needs 2 distinct hosts with gpu='H100'" in message
    assert "(alpha, beta, gamma)" in message and "1 of the configured hosts" in message
    assert "beta: 1× NVIDIA A10G" in message and "gamma: unreachable (timed out)" in message
    assert "host=NAME" in message
    with pytest.raises(ClusterError, match=r"configured hosts \(none\)"):
        choose_hosts(2, "", [])


def test_a_gpu_count_must_fit_on_each_host():
    candidates = [HostCandidate("one", [h100(0)], [h100(0)]), HostCandidate("two", [h100(0), h100(1)], [h100(1)])]
    with pytest.raises(ClusterError, match="one: 1× NVIDIA H100"):
        choose_hosts(2, "H100:2", candidates)
    assert choose_hosts(1, "H100:2", candidates) == ["two"]


def test_the_master_address_is_the_ssh_address_when_the_container_has_it_else_its_first_routable_one():
    assert reachable_address(["10.0.0.5", "192.168.1.2"], ssh_address="192.168.1.2") == "192.168.1.2"
    assert reachable_address(["127.0.0.1", "10.0.0.5"], ssh_address="203.0.113.9") == "10.0.0.5"
    assert reachable_address(["127.0.0.1", "10.0.0.5"], ssh_address="127.0.0.1") == "10.0.0.5"  # a login node
    assert reachable_address(["127.0.0.1"]) == "127.0.0.1"
    assert reachable_address([]) == "127.0.0.1"


def test_each_rank_gets_torchs_environment():
    env = rank_environment(1, 2, ["10.0.0.1", "10.0.0.2"], 29500, "cl-x")
    assert env == {"MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500", "WORLD_SIZE": "2", "RANK": "1",
                   "LOCAL_RANK": "0", "NODE_RANK": "1", "LOCAL_WORLD_SIZE": "1", "NBMODAL_CLUSTER_ID": "cl-x",
                   "NBMODAL_CLUSTER_RANK": "1", "NBMODAL_CLUSTER_SIZE": "2",
                   "NBMODAL_CLUSTER_IPS": "10.0.0.1,10.0.0.2"}
    per_proc = rank_environment(1, 2, ["a", "b"], 1, "c", procs_per_node=8)
    assert (per_proc["WORLD_SIZE"], per_proc["RANK"], per_proc["LOCAL_WORLD_SIZE"], per_proc["NODE_RANK"]) == (
        "16", "8", "8", "1")


def test_procs_per_node_runs_torchrun_with_the_gangs_shape():
    argv = torchrun_argv(2, 8, 1, "10.0.0.1", 29500, "/t/call.pkl", "/t/result.pkl", python="/py")
    assert argv == ["/py", "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=8", "--node-rank=1",
                    "--master-addr=10.0.0.1", "--master-port=29500", "-m", "remote_agent.worker.torchrun",
                    "/t/call.pkl", "/t/result.pkl"]


def test_get_cluster_info_reads_the_ranks_environment(monkeypatch):
    with pytest.raises(InvalidError, match="clustered"):
        nbmodal.get_cluster_info()
    monkeypatch.setenv("NBMODAL_CLUSTER_RANK", "1")
    monkeypatch.setenv("NBMODAL_CLUSTER_IPS", "10.0.0.1,10.0.0.2")
    monkeypatch.setenv("NBMODAL_CLUSTER_ID", "cl-x")
    info = nbmodal.experimental.get_cluster_info()
    assert info == nbmodal.ClusterInfo(1, ["10.0.0.1", "10.0.0.2"], ["10.0.0.1", "10.0.0.2"], "cl-x")


def test_clustered_marks_the_function_in_either_order_and_checks_its_size():
    app = nbmodal.App("cluster-unit")

    @app.function(gpu="H100:8")
    @nbmodal.clustered(size=2)
    def below():
        return None

    @nbmodal.experimental.clustered(size=3, procs_per_node=4)
    @app.function()
    def above():
        return None

    assert (below.cluster_size, below.procs_per_node) == (2, 1)
    assert (above.cluster_size, above.procs_per_node) == (3, 4)
    assert below.with_options(timeout=5).cluster_size == 2
    for bad in (0, -1, 1.5):
        with pytest.raises(InvalidError, match="size"):
            nbmodal.clustered(size=bad)  # type: ignore[arg-type]
    with pytest.raises(nbmodal.exception.NotAvailableError, match="spawn"):
        below.spawn()
    with pytest.raises(nbmodal.exception.NotAvailableError, match=r"map\(\) of a clustered function"):
        below.map([1, 2])


def test_a_member_container_lists_its_addresses_with_the_configured_one_first(monkeypatch):
    monkeypatch.setenv(cluster_net.ADDRESS_ENV, "198.51.100.7")
    addresses = cluster_net.interface_addresses()
    assert addresses[0] == "198.51.100.7" and "127.0.0.1" in addresses
    loopback = [ipaddress.ip_address(address).is_loopback for address in addresses[1:]]
    assert loopback == sorted(loopback)  # loopback last: another host can't reach it
    assert 0 < cluster_net.free_port() < 65536


def test_the_sidebar_shows_a_gang_as_one_run_with_its_ranks_as_members():
    from test_sidebar_shapes import check_shape

    from nbmodal.server import dashboard
    from nbmodal_wire import pb

    def rank(host: str, run_id: str, number: int) -> pb.RunInfo:
        return pb.RunInfo(run_id=run_id, state=pb.RUNNING, label=f"train() [rank {number}/2]", created=100 + number,
                          started=101, cluster_id="cl-1", cluster_rank=number, cluster_size=2)

    rows = [dashboard.run_row("beta", rank("beta", "r-00000002", 1), 110),
            dashboard.run_row("local", pb.RunInfo(run_id="r-00000003", state=pb.SUCCEEDED, created=200), 110),
            dashboard.run_row("alpha", rank("alpha", "r-00000001", 0), 110)]
    merged = dashboard.merge_cluster_runs(rows)
    assert [row["run_id"] for row in merged] == ["r-00000003", "r-00000001"]
    gang = merged[1]
    assert gang["members"] == [{"host": "alpha", "run_id": "r-00000001", "rank": 0, "state": "RUNNING"},
                               {"host": "beta", "run_id": "r-00000002", "rank": 1, "state": "RUNNING"}]
    check_shape(gang, "RunInfo")
    check_shape(merged[0], "RunInfo")


def test_each_rank_says_how_many_of_the_gang_go_to_its_agent_and_its_place_among_them():
    from types import SimpleNamespace

    from nbmodal._runtime.gang import set_members
    from nbmodal_wire import pb

    slurm, gpu1 = object(), object()
    targets = [SimpleNamespace(connection=c) for c in (slurm, gpu1, slurm)]
    requests = [pb.RunRequest(label="train()") for _ in targets]
    set_members(requests, targets, "cl-x")  # type: ignore[arg-type]
    assert [(r.cluster.rank, r.cluster.size, r.cluster.ranks_here, r.cluster.index_here) for r in requests] == [
        (0, 3, 2, 0), (1, 3, 1, 0), (2, 3, 2, 1)]
    assert requests[2].label == "train() [rank 2/3]" and requests[0].cluster.cluster_id == "cl-x"


def test_a_slurm_gang_is_one_allocation_of_n_nodes_with_one_task_each():
    from pathlib import Path

    from nbmodal_wire import pb
    from remote_agent.allocator import Allocation
    from remote_agent.launch import LaunchPlan
    from remote_agent.launchers import LaunchRequest
    from remote_agent.launchers.slurm_gang import gang_sbatch_argv, gang_script
    from remote_agent.slurm import SlurmConfig

    request = LaunchRequest("c-1", pb.ContainerSpec(gpu="H100:8", cpu=16), LaunchPlan(python="/py"), {}, Allocation(),
                            False, Path("/log"), "tok0")
    argv = gang_sbatch_argv(request, SlurmConfig(partition="gpu", time="01:00:00"), 2, "nbmodal-cl-x")
    assert argv[-2:] == ["--nodes=2", "--ntasks-per-node=1"]
    assert "--gres=gpu:h100:8" in argv and "--cpus-per-task=16" in argv and "--partition=gpu" in argv
    script = gang_script("/py", "login1:4000")
    assert script.startswith("#!/bin/bash\nexec srun --kill-on-bad-exit=1 --export=ALL bash -c ")
    assert "${tokens[$SLURM_PROCID]}" in script and "-m remote_agent.worker --connect login1:4000" in script


def test_procs_per_node_runs_the_function_or_the_cell_in_each_of_torchruns_processes(tmp_path, monkeypatch):
    """With the torchrun stand-in (tests/faketorch) on the path: K processes on this node, each with its own
    RANK; the function's result is global rank 0's, a cell sees the notebook's values, a failure is named."""
    import os
    from pathlib import Path

    from remote_agent.worker.torchrun import run_cell_under_torchrun, run_under_torchrun

    tests = Path(__file__).parent
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tests / "faketorch"), str(tests.parent)]))
    for key, value in {"NBMODAL_CLUSTER_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "NODE_RANK": "1",
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}.items():
        monkeypatch.setenv(key, value)

    def which_rank(offset: int) -> int:
        import os

        return int(os.environ["RANK"]) + offset

    assert run_under_torchrun(which_rank, (100,), {}) is None  # node 1: ranks 2 and 3; none is global rank 0
    monkeypatch.setenv("NODE_RANK", "0")
    assert run_under_torchrun(which_rank, (100,), {}) == 100  # global rank 0's result
    cell = "import os\nopen(os.path.join(out, 'rank' + os.environ['RANK']), 'w').write(f'{__name__} {value}')\n"
    run_cell_under_torchrun(cell, "<cell>", {"out": str(tmp_path), "value": 42})
    assert sorted(p.read_text() for p in tmp_path.iterdir()) == ["__main__ 42", "__main__ 42"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rank0", "rank1"]
    with pytest.raises(ChildProcessError, match="torchrun exited with status 1 on node 0"):
        run_cell_under_torchrun("raise SystemExit(1)", "<cell>", {})
