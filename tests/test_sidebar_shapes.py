"""The sidebar's JSON (nbmodal/server/dashboard.py, one function per row) against the interfaces the
sidebar reads it with (labextension/src/types.ts): the same keys, values of the declared types, and
state words that are exactly the wire enums' words."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fakeagent import FakeAgent, FakeRun, serve_as_local_agent, stop_serving_as_local_agent
from nbmodal._runtime import connection as connections
from nbmodal.hosts import LOCAL
from nbmodal.server import dashboard
from nbmodal_wire import pb
from nbmodal_wire.states import container_state_word, image_state_word, run_state_word
from waiting import wait_for

pytestmark = pytest.mark.unit

TYPES_TS = Path(__file__).resolve().parents[1] / "labextension" / "src" / "types.ts"


# -- reading types.ts ---------------------------------------------------------------


def _without_comments(text: str) -> str:
    return re.sub(r"/\*.*?\*/", "", re.sub(r"//[^\n]*", "", text), flags=re.S)


def ts_interfaces() -> dict[str, dict[str, tuple[str, bool]]]:
    """interface name -> field -> (its type, whether it is optional)."""
    interfaces = {}
    for name, body in re.findall(r"export interface (\w+) \{(.*?)\n\}", _without_comments(TYPES_TS.read_text()), re.S):
        fields = re.findall(r"^\s*(\w+)(\??):\s*([^;]+);", body, re.M)
        interfaces[name] = {field: (type_.strip(), optional == "?") for field, optional, type_ in fields}
    return interfaces


def ts_unions() -> dict[str, set[str]]:
    """type alias name -> its string literals (``export type X = 'a' | 'b';``)."""
    unions = {}
    for name, body in re.findall(r"export type (\w+) =(.*?);", _without_comments(TYPES_TS.read_text()), re.S):
        unions[name] = set(re.findall(r"'([^']*)'", body))
    return unions


INTERFACES = ts_interfaces()
UNIONS = ts_unions()


def matches(value, ts_type: str) -> bool:
    """Whether a JSON value (as Python) is of a TypeScript type written as in types.ts."""
    for alternative in (part.strip() for part in ts_type.split("|")):
        if alternative.endswith("[]"):
            if isinstance(value, list) and all(matches(item, alternative[:-2]) for item in value):
                return True
        elif alternative == "number":
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return True
        elif alternative == "string":
            if isinstance(value, str):
                return True
        elif alternative == "boolean":
            if isinstance(value, bool):
                return True
        elif alternative == "null":
            if value is None:
                return True
        elif alternative.startswith("'"):
            if value == alternative.strip("'"):
                return True
        elif alternative in UNIONS:
            if value in UNIONS[alternative]:
                return True
        elif alternative in INTERFACES:
            if isinstance(value, dict):
                check_shape(value, alternative)
                return True
        else:
            raise AssertionError(f"types.ts: the test can't read the type {alternative!r}; teach matches() it")
    return False


def check_shape(row: dict, interface: str) -> None:
    fields = INTERFACES[interface]
    required = {name for name, (_, optional) in fields.items() if not optional}
    assert required <= row.keys(), f"{interface}: the JSON lacks {sorted(required - row.keys())}"
    assert row.keys() <= fields.keys(), f"{interface} in types.ts lacks {sorted(row.keys() - fields.keys())}"
    for key, value in row.items():
        assert matches(value, fields[key][0]), f"{interface}.{key}: {value!r} is not {fields[key][0]}"


# -- the state words ------------------------------------------------------------------


def words(enum, word) -> set[str]:
    return {word(value) for value in enum.values() if value != 0}


def test_the_sidebars_state_unions_are_the_wires_states():
    assert UNIONS["ContainerState"] == words(pb.ContainerState, container_state_word)
    assert UNIONS["ImageState"] == words(pb.ImageState, image_state_word)
    assert UNIONS["RunState"] == words(pb.RunState, run_state_word)


def test_the_sidebars_final_run_states_are_run_states():
    final = re.search(r"FINAL_RUN_STATES[^=]*= new Set\(\[(.*?)\]\)", TYPES_TS.read_text(), re.S)
    assert final is not None, "types.ts no longer has FINAL_RUN_STATES"
    assert set(re.findall(r"'([^']*)'", final.group(1))) == UNIONS["RunState"] - {"PENDING", "RUNNING", "WAITING_FOR_DEBUGGER"}


# -- one function per row -----------------------------------------------------------

NOW = 1_700_000_100.0


def test_host_rows():
    hello = pb.HelloReply(agent_version="0.1.0")
    stats = pb.HostStatsReply(load1=1.234, cpus=4, memory_total=16 << 30, memory_available=10 << 30)
    check_shape(dashboard.host_row("gpu-box", hello, stats), "HostInfo")
    check_shape(dashboard.unreachable_host_row("gpu-box", "ssh: connection refused"), "HostInfo")


def test_gpu_rows():
    plain = pb.GpuInfo(index=0, name="NVIDIA H100 80GB HBM3", memory_total=80 << 30, utilization=50,
                       container_id="c-1", run_id="r-00000001")
    slurm = pb.GpuInfo(index=3, name="NVIDIA A100", partition="gpu", node="node-1", in_use=True)
    for gpu in (plain, slurm):
        check_shape(dashboard.gpu_row("h", gpu), "GpuInfo")


@pytest.mark.parametrize("state", [s for s in pb.ContainerState.values() if s])
def test_container_rows_in_every_state(state):
    container = pb.ContainerInfo(container_id="c-1", pid=42, state=state, gpus=[0, 1], created=NOW - 60,
                                 idle_since=NOW - 5, spec=pb.ContainerSpec(image="im-1", scaledown_window_s=60))
    row = dashboard.container_row("h", container, NOW)
    check_shape(row, "ContainerInfo")
    assert (row["idle_left_s"] is not None) == (state == pb.CONTAINER_IDLE)


@pytest.mark.parametrize("state", [s for s in pb.RunState.values() if s])
def test_run_rows_in_every_state(state):
    started = state not in (pb.PENDING,)
    run = pb.RunInfo(run_id="r-00000001", state=state, label="train()", created=NOW - 10,
                     started=NOW - 9 if started else 0, finished=NOW - 1 if state > pb.RUNNING else 0)
    row = dashboard.run_row("h", run, NOW)
    check_shape(row, "RunInfo")
    assert (row["duration_s"] is None) == (not started)


def test_volume_and_store_rows():
    store = pb.StoreInfo(name="ckpt", length=1234, created=NOW)
    check_shape(dashboard.volume_row("h", store), "VolumeInfo")
    check_shape(dashboard.store_row("h", store), "CollectionInfo")
    replica = pb.StoreInfo(name="ckpt", length=10, role="replica", home="h", version=3, pending=True)
    merged = dashboard.merge_volume_copies([dashboard.volume_row("h", store), dashboard.volume_row("g", replica)])
    assert len(merged) == 1 and merged[0]["replicas"] == [{"host": "g", "version": 3, "pending": True}]
    check_shape(merged[0], "VolumeInfo")


@pytest.mark.parametrize("state", [s for s in pb.ImageState.values() if s])
def test_image_rows_in_every_state(state):
    image = pb.ImageInfo(image_id="im-1", name="torch", state=state, size_bytes=1 << 30, created=NOW - 100,
                         last_used=NOW, python="3.11", error="pip failed" if state == pb.IMAGE_FAILED else "")
    check_shape(dashboard.image_row("h", image), "ImageInfo")


@pytest.mark.parametrize("kind", ["file", "directory", "symlink"])  # nbmodal.volume.FileEntry.type
def test_volume_entry_rows_of_every_kind(kind):
    check_shape(dashboard.volume_entry_row("/ckpt/w.bin", kind, 10, NOW), "VolumeEntry")


# -- the overview as a whole, from a fake agent ------------------------------------------


@pytest.fixture()
def fake_local_agent(tmp_path, monkeypatch):
    monkeypatch.setenv("NBMODAL_HOME", str(tmp_path / "home"))
    connections.forget(LOCAL)
    store = pb.StoreInfo(name="s", length=3)
    agent = FakeAgent(
        lambda run: run.finish(),
        gpus=[pb.GpuInfo(index=0, name="NVIDIA H100 80GB HBM3", memory_total=80 << 30)],
        containers=[pb.ContainerInfo(container_id=f"c-{s}", state=s, spec=pb.ContainerSpec(scaledown_window_s=9))
                    for s in pb.ContainerState.values() if s],
        volumes=[store], dicts=[store], queues=[store],
        images=[pb.ImageInfo(image_id=f"im-{s}", state=s) for s in pb.ImageState.values() if s])
    with agent:
        state_dir = serve_as_local_agent(agent, tmp_path / "home")
        try:
            yield agent
        finally:
            connections.forget(LOCAL)
            stop_serving_as_local_agent(agent, state_dir)


def test_the_overview_is_an_overview_of_rows_of_their_interfaces(fake_local_agent):
    done = fake_local_agent.client().submit(pb.RunRequest(kind=pb.CELL, label="x = 1"))
    waiting: list[FakeRun] = []
    fake_local_agent.behaviour = waiting.append  # a run that never ends
    fake_local_agent.client().submit(pb.RunRequest(kind=pb.CELL, label="y = 2"))
    view = dashboard.Dashboard().overview()
    check_shape(view, "Overview")
    assert [host["reachable"] for host in view["hosts"]] == [True]
    for key in ("gpus", "containers", "runs", "volumes", "dicts", "queues", "images"):
        assert view[key], f"the fake agent lists {key}: the overview should show them"
    assert {run["run_id"] for run in view["runs"]} >= {done.run_id}
    assert {c["state"] for c in view["containers"]} == UNIONS["ContainerState"]


def test_the_overview_without_a_local_agent_is_one_unreachable_row(tmp_path, monkeypatch):
    monkeypatch.setenv("NBMODAL_HOME", str(tmp_path))
    connections.forget(LOCAL)
    view = dashboard.Dashboard().overview()
    check_shape(view, "Overview")
    [host] = view["hosts"]
    assert not host["reachable"] and "%%remote" in host["error"]
    assert not (tmp_path / "agent" / "agent.json").exists()  # the sidebar starts no agent


def test_a_run_log_page_is_a_run_log(fake_local_agent):
    def prints(run: FakeRun) -> None:
        run.output("héllo\n")
        run.finish()

    fake_local_agent.behaviour = prints
    run_id = fake_local_agent.client().submit(pb.RunRequest(kind=pb.CELL, label="print('héllo')")).run_id
    wait_for(lambda: fake_local_agent.runs[run_id].done, 10, "the fake run to finish")
    page = dashboard.Dashboard().run_log(LOCAL, run_id)
    check_shape(page, "RunLog")
    assert page["text"] == "héllo\n" and page["done"] and page["state"] == "SUCCEEDED"
