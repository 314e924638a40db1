"""gpu= requests: matching, exclusive allocation, fair waiting, release — on a declared fake inventory."""

from __future__ import annotations

import os

import pytest

import nbmodal
from kernels import kernel
from nbmodal import commands
from nbmodal._runtime import connection as connections
from nbmodal._runtime.local_agent import stop_local_agent
from remote_agent.gpus import FakeInventory, Gpu, GpuOption, GpuRequestError, gpu_matches, parse_gpu_request
from waiting import wait_for

pytestmark = pytest.mark.agent

# -- pure logic ---------------------------------------------------------------


def test_gpu_requests_parse_as_modal_accepts_them():
    assert parse_gpu_request("any") == [GpuOption("ANY", 1)]
    assert parse_gpu_request("h100:2, A100-80GB") == [GpuOption("H100", 2), GpuOption("A100-80GB", 1)]
    assert parse_gpu_request("a100-40gb:4") == [GpuOption("A100-40GB", 4)]
    assert parse_gpu_request("") == []
    with pytest.raises(GpuRequestError, match="unknown GPU type 'H1000'; known types: any, T4, L4"):
        parse_gpu_request("H1000")
    with pytest.raises(GpuRequestError, match="must be a whole number"):
        parse_gpu_request("H100:two")
    with pytest.raises(GpuRequestError, match="at least 1"):
        parse_gpu_request("H100:0")


def test_names_match_nvml_names():
    h100 = Gpu(0, "u", "NVIDIA H100 80GB HBM3", memory_total=81559 * 2**20)
    a100_40 = Gpu(1, "u", "NVIDIA A100-SXM4-40GB", memory_total=40 * 2**30)
    a10g = Gpu(2, "u", "NVIDIA A10G", memory_total=23 * 2**30)
    for name in ("H100", "H100-80GB", "ANY"):
        assert gpu_matches(GpuOption(name, 1), h100)
    assert not gpu_matches(GpuOption("A100", 1), h100)
    assert gpu_matches(GpuOption("A100", 1), a100_40) and gpu_matches(GpuOption("A100-40GB", 1), a100_40)
    assert not gpu_matches(GpuOption("A100-80GB", 1), a100_40)
    assert gpu_matches(GpuOption("A10G", 1), a10g) and not gpu_matches(GpuOption("A10", 1), a10g)
    assert [g.name for g in FakeInventory("H100:2,T4").read()] == ["NVIDIA H100 80GB HBM3"] * 2 + ["Tesla T4"]


# -- a local agent with one H100 and one A10G ------------------------------------


@pytest.fixture(scope="module")
def gpu_agent(tmp_path_factory):
    """Its own agent (own NBMODAL_HOME) with a declared inventory."""
    home = tmp_path_factory.mktemp("gpu-home")
    saved = {k: os.environ.get(k) for k in ("NBMODAL_HOME", "NBMODAL_FAKE_GPUS")}
    os.environ.update(NBMODAL_HOME=str(home), NBMODAL_FAKE_GPUS="H100:1,A10G:1")
    connections.forget("local")
    yield home
    stop_local_agent(home / "agent")
    connections.forget("local")
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


app = nbmodal.App("gpus")


@app.function(gpu="H100")
def hold_h100(seconds):
    import os
    import time

    started = time.time()
    time.sleep(seconds)
    return os.environ["CUDA_VISIBLE_DEVICES"], started, time.time()


@app.function(gpu=["H100", "A10G"])
def either():
    import os

    return os.environ["CUDA_VISIBLE_DEVICES"]


def _wait_until_it_holds_a_card(call) -> None:
    client = connections.get_client()
    wait_for(lambda: any(g.run_id == call.object_id for g in client.list_gpus()), 20,
             f"run {call.object_id} to hold a card")


def _uuid_of(name: str) -> str:
    gpus = connections.get_client().list_gpus()
    return next(g.uuid for g in gpus if name in g.name)


def test_cuda_visible_devices_names_the_allocated_card(gpu_agent):
    visible, _, _ = hold_h100.remote(0)
    assert visible == _uuid_of("H100")


def test_two_requests_for_the_only_h100_run_one_after_the_other(gpu_agent, capsys):
    calls = [hold_h100.spawn(1.0) for _ in range(3)]
    results = [call.get(timeout=60) for call in calls]
    spans = sorted((start, end) for _, start, end in results)
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start >= end - 0.05, spans  # never two at once on one card
    waits = capsys.readouterr().err
    assert "waiting for gpu=H100 (1 ahead)" in waits and "waiting for gpu=H100 (next in line)" in waits


def test_more_cards_than_the_host_has_fails_at_once(gpu_agent):
    @app.function(gpu="H100:2")
    def two():
        return 1

    with pytest.raises(nbmodal.GpuUnavailableError,  # raised, not queued behind cards that can't come
                       match=r"gpu=H100:2 can never be met on this host: it has 1× NVIDIA H100 80GB HBM3, "
                             r"1× NVIDIA A10G"):
        two.remote()


def test_fallback_takes_the_second_type_while_the_first_is_busy(gpu_agent):
    busy = hold_h100.spawn(3.0)
    _wait_until_it_holds_a_card(busy)
    assert either.remote() == _uuid_of("A10G")
    assert busy.get(timeout=30)[0] == _uuid_of("H100")


def test_a_killed_container_frees_its_card(gpu_agent):
    call = hold_h100.spawn(60)
    client = connections.get_client()
    _wait_until_it_holds_a_card(call)
    holder = next(c for c in client.list_containers() if c.run_id == call.object_id)
    os.kill(holder.pid, 9)
    with pytest.raises(nbmodal.RunLostError):
        call.get(timeout=30)
    assert hold_h100.remote(0)[0] == _uuid_of("H100")


def test_remote_cell_with_gpu_and_the_gpus_table(gpu_agent, tmp_path):
    with kernel(tmp_path) as k:
        result = k.execute("%%remote gpu=a10g\nimport os\nvisible = os.environ['CUDA_VISIBLE_DEVICES']")
        assert result["error"] is None, result
        assert k.execute("print(visible)")["stdout"].strip() == _uuid_of("A10G")
        table = k.execute("%nbmodal gpus")["stdout"]
        assert "NVIDIA H100 80GB HBM3" in table and "NVIDIA A10G" in table and "container c-" in table
        bad = k.execute("%%remote gpu=K80\n1")
        assert "unknown GPU type 'K80'; known types: any, T4" in bad["stderr"], bad
    assert "HELD BY" in commands.gpus_table()
