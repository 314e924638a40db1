"""Where a run goes (nbmodal/_runtime/connection.place): hosts' GPUs and warm containers, asked of
fake agents that stand in for configured hosts."""

from __future__ import annotations

import pytest

from fakeagent import FakeAgent, FakeConnection
from nbmodal._runtime import connection as connections
from nbmodal.exceptions import GpuUnavailableError
from nbmodal.hosts import HostError, add_host
from nbmodal_wire import pb

pytestmark = pytest.mark.unit

GIB = 2**30


def card(index: int, name: str, memory_gib: int = 80, container_id: str = "") -> pb.GpuInfo:
    return pb.GpuInfo(index=index, uuid=f"GPU-{index}", name=name, memory_total=memory_gib * GIB,
                      container_id=container_id)


def H100(index: int, held_by: str = "") -> pb.GpuInfo:
    return card(index, "NVIDIA H100 80GB HBM3", 80, held_by)


def A100_40(index: int, held_by: str = "") -> pb.GpuInfo:
    return card(index, "NVIDIA A100-SXM4-40GB", 40, held_by)


@pytest.fixture()
def hosts(tmp_path, monkeypatch):
    """Configure hosts whose agents are fakes: ``hosts(name=FakeAgent | Exception, ...)``, in that order."""
    monkeypatch.setenv("NBMODAL_HOME", str(tmp_path))
    agents: list[FakeAgent] = []

    def configure(**by_name):
        for name, agent in by_name.items():
            add_host(name, f"user@{name}.example")
            if isinstance(agent, Exception):
                conn = FakeConnection(name, FakeAgent(), unreachable=agent)
            else:
                agents.append(agent.start())
                conn = FakeConnection(name, agent)
            monkeypatch.setitem(connections._connections, name, conn)
        return by_name

    yield configure
    for name in list(connections._connections):
        if isinstance(connections._connections[name], FakeConnection):
            connections._connections[name].forget()
    for agent in agents:
        agent.stop()


def spec(gpu: str = "", image: str = "") -> pb.ContainerSpec:
    return pb.ContainerSpec(gpu=gpu, image=image)


def test_a_named_host_wins(hosts):
    hosts(a=FakeAgent(), b=FakeAgent(gpus=[H100(0)]))
    assert connections.place("a", spec=spec("H100")).name == "a"


def test_a_gpu_run_goes_to_the_host_with_free_matching_cards(hosts):
    hosts(cpu_box=FakeAgent(), a100_box=FakeAgent(gpus=[A100_40(0)]), h100_box=FakeAgent(gpus=[H100(0), H100(1)]))
    assert connections.place(None, spec=spec("H100")).name == "h100_box"
    assert connections.place(None, spec=spec("A100-40GB")).name == "a100_box"
    assert connections.place(None, spec=spec("H100:2")).name == "h100_box"


def test_a_host_that_has_any_of_the_fallback_options_will_do(hosts):
    hosts(cpu_box=FakeAgent(), a100_box=FakeAgent(gpus=[A100_40(0)]))
    assert connections.place(None, spec=spec("H100,A100-40GB")).name == "a100_box"


def test_a_host_with_free_cards_beats_one_whose_cards_are_busy(hosts):
    hosts(busy=FakeAgent(gpus=[H100(0, held_by="c-1")]), free=FakeAgent(gpus=[H100(0)]))
    assert connections.place(None, spec=spec("H100")).name == "free"


def test_when_every_matching_card_is_busy_the_run_waits_on_the_first_host_that_has_them(hosts):
    hosts(none=FakeAgent(), busy1=FakeAgent(gpus=[H100(0, held_by="c-1")]),
          busy2=FakeAgent(gpus=[H100(0, held_by="c-2")]))
    assert connections.place(None, spec=spec("H100")).name == "busy1"


def test_no_host_with_the_cards_is_a_clear_error_naming_each_hosts_gpus(hosts):
    hosts(cpu_box=FakeAgent(), a100_box=FakeAgent(gpus=[A100_40(0)]))
    with pytest.raises(GpuUnavailableError, match="no host can run gpu='H100:2'") as raised:
        connections.place(None, spec=spec("H100:2"))
    message = str(raised.value)
    assert "cpu_box:" in message and "a100_box:" in message and "A100" in message


def test_an_unreachable_host_is_skipped_and_named_when_nothing_else_fits(hosts):
    hosts(down=HostError("ssh: connection refused"), h100_box=FakeAgent(gpus=[H100(0)]))
    assert connections.place(None, spec=spec("H100")).name == "h100_box"
    with pytest.raises(GpuUnavailableError, match=r"down: unreachable \(ssh: connection refused\)"):
        connections.place(None, spec=spec("A100-40GB"))


def test_no_reachable_host_at_all_says_so(hosts):
    hosts(down1=HostError("timed out"), down2=HostError("refused"))
    with pytest.raises(HostError, match="no configured host is reachable") as raised:
        connections.place(None, spec=spec())
    assert "down1: unreachable (timed out)" in str(raised.value) and "down2: unreachable (refused)" in str(raised.value)


def test_a_cpu_run_prefers_a_host_with_a_warm_container_for_its_spec(hosts):
    wanted = spec(image="im-1")
    warm = pb.ContainerInfo(container_id="c-9", state=pb.CONTAINER_IDLE, spec=wanted)
    busy = pb.ContainerInfo(container_id="c-8", state=pb.CONTAINER_BUSY, spec=wanted)
    in_session = pb.ContainerInfo(container_id="c-7", state=pb.CONTAINER_IDLE, spec=wanted, session="s")
    hosts(first=FakeAgent(containers=[busy, in_session]), second=FakeAgent(containers=[warm]))
    assert connections.place(None, spec=wanted).name == "second"
    assert connections.place(None, spec=spec(image="im-2")).name == "first"  # none warm: the first host


def test_a_session_stays_where_it_started(hosts, monkeypatch):
    hosts(a=FakeAgent(), b=FakeAgent())
    monkeypatch.setitem(connections.session_hosts, "train", "b")
    assert connections.place(None, session="train", spec=spec()).name == "b"


def test_without_configured_hosts_everything_runs_locally(tmp_path, monkeypatch):
    monkeypatch.setenv("NBMODAL_HOME", str(tmp_path))
    assert connections.place(None, spec=spec("H100")).name == "local"
