"""The one invocation path: where a run goes, the request every kind of run is built with, and a map
input's failure rebuilt as a single run's failure is. Requests are built here, never sent."""

from __future__ import annotations

import os
import pickle
from collections import deque
from types import SimpleNamespace

import pytest

import nbmodal
from nbmodal import remote_cell, serialization
from nbmodal._runtime import fanout, invocation
from nbmodal._runtime.client import CLIENT_PYTHON
from nbmodal._runtime.connection import run_hosts
from nbmodal._runtime.invocation import (
    BATCH_BACKSTOP_SLACK_S,
    CELL_FIRST_LINE,
    RunOptions,
    RunTarget,
    batch_request,
    call_request,
    cell_request,
    check_python_versions,
    container_spec,
    resolve_target,
    target_on,
)
from nbmodal.config import DEFAULT_CANCEL_GRACE_S, DEFAULT_MAX_RESULT_BYTES
from nbmodal.exceptions import RemoteError, VersionMismatchError
from nbmodal.hosts import LOCAL
from nbmodal.remote_cell import CellOptions
from nbmodal.results import raise_for_state, rebuild_error_record
from nbmodal_wire import pb
from nbmodal_wire.names import RUN_ID
from remote_agent.worker.batch import run_batch
from remote_agent.worker.execute import error_info

pytestmark = pytest.mark.unit

app = nbmodal.App("invocation")


class FakeClient:
    """What a target needs of an agent client; ``submit`` records instead of sending."""

    def __init__(self, state_dir: str, container_python: str = CLIENT_PYTHON, label: str = "fake agent") -> None:
        self.hello = pb.HelloReply(state_dir=state_dir, container_python=container_python)
        self.label = label
        self.submitted: list[pb.RunRequest] = []

    def submit(self, request: pb.RunRequest) -> pb.RunInfo:
        self.submitted.append(request)
        return pb.RunInfo(run_id=request.run_id)


class FakeConnection:
    def __init__(self, name: str, client: FakeClient) -> None:
        self.name = name
        self._client = client

    def client(self) -> FakeClient:
        return self._client


def fake_target(tmp_path, host: str = LOCAL, spec: pb.ContainerSpec | None = None) -> RunTarget:
    connection = FakeConnection(host, FakeClient(str(tmp_path)))
    return target_on(connection, spec=spec or pb.ContainerSpec())


@app.function(timeout=3, max_containers=2)
def double(x):
    return 2 * x


# --- where a run goes ---------------------------------------------------------------------------

def test_resolve_target_places_once_and_checks_python(tmp_path, monkeypatch):
    placed = []
    connection = FakeConnection("gpu-box", FakeClient(str(tmp_path)))

    def place(host, session, spec):
        placed.append((host, session, spec))
        return connection

    monkeypatch.setattr(invocation, "place", place)
    spec = container_spec("any", {"/data": "vol"}, cpu=2, memory=512)
    target = resolve_target(host="gpu-box", session="s", spec=spec)
    assert placed == [("gpu-box", "s", spec)]
    assert target.connection is connection and target.client is connection.client()
    assert target.spec == spec and not target.on_local_agent
    assert target.transfer.blob_dir is None  # another machine: blobs are streamed

    connection._client = FakeClient(str(tmp_path), container_python="2.7")
    with pytest.raises(VersionMismatchError, match="Python 2.7"):
        resolve_target(host="gpu-box", spec=spec)


def test_check_python_versions_leaves_an_image_to_its_container(tmp_path):
    client = FakeClient(str(tmp_path), container_python="2.7")
    with pytest.raises(VersionMismatchError, match="equal minor versions"):
        check_python_versions(client)
    check_python_versions(client, image=object())


def test_container_spec_sorts_volumes_and_refuses_negative_resources():
    spec = container_spec("", {"/b": "two", "/a": "one"}, cpu=1.5, memory=256)
    assert [(m.path, m.volume) for m in spec.volumes] == [("/a", "one"), ("/b", "two")]
    assert spec.cpu == 1.5 and spec.memory_mib == 256
    with pytest.raises(ValueError, match="negative"):
        container_spec("", {}, cpu=-1)


def test_a_target_follows_its_connection_to_a_new_client(tmp_path):
    target = fake_target(tmp_path)
    assert target.current() is target
    target.connection._client = FakeClient(str(tmp_path))
    renewed = target.current()
    assert renewed.client is target.connection.client() and renewed.transfer.client is renewed.client
    assert renewed.spec == target.spec


# --- the request builder's defaults -------------------------------------------------------------

def test_every_request_gets_the_defaults_from_one_place(tmp_path):
    target = fake_target(tmp_path, spec=pb.ContainerSpec(gpu="any"))
    requests = [call_request(target, "f", (len, ([1],), {}), RunOptions()),
                cell_request(target, "x = 1", "<cell>", {}, RunOptions()),
                batch_request(target, "f", len, [(0, ([1],), {})], 1, RunOptions())]
    for request in requests:
        assert request.cancel_grace_s == DEFAULT_CANCEL_GRACE_S
        assert request.timeout_s == 0  # no timeout unless asked (a batch's backstop too)
        assert request.client_python == CLIENT_PYTHON
        assert request.max_result_bytes == DEFAULT_MAX_RESULT_BYTES
        assert request.spec == target.spec
        assert RUN_ID.fullmatch(request.run_id)
        assert not request.detach and not request.session
    assert len({request.run_id for request in requests}) == len(requests)


def test_a_cell_runs_in_the_notebook_directory_only_on_the_local_agent(tmp_path):
    local = cell_request(fake_target(tmp_path), "# setup\ny = x + 1", "<remote cell In[4]>", {"x": 1}, RunOptions())
    assert local.kind == pb.CELL and local.cwd == os.getcwd()
    assert local.label == "y = x + 1" and local.filename == "<remote cell In[4]>"
    assert local.first_line == CELL_FIRST_LINE and local.code == "# setup\ny = x + 1"
    assert serialization.loads(local.payload) == {"x": 1}
    remote = cell_request(fake_target(tmp_path, host="gpu-box"), "y = 2", "<cell>", {}, RunOptions())
    assert remote.cwd == ""
    function = call_request(fake_target(tmp_path), "f", (len, (), {}), RunOptions())
    assert function.kind == pb.FUNCTION and function.cwd == ""  # a function carries its code by value


def test_options_reach_the_request(tmp_path):
    options = RunOptions(timeout_s=7, grace_s=2, session="train", detach=True, max_result_bytes=10)
    request = cell_request(fake_target(tmp_path), "x = 1", "<cell>", {}, options)
    assert (request.timeout_s, request.cancel_grace_s, request.session, request.detach,
            request.max_result_bytes) == (7, 2, "train", True, 10)
    generator = call_request(fake_target(tmp_path), "g", (len, (), {}), RunOptions(), generator=True)
    assert generator.generator and generator.label == "g()"


def test_a_large_payload_goes_as_a_blob(tmp_path):
    (tmp_path / "blobs").mkdir()
    request = call_request(fake_target(tmp_path), "f", (len, (b"x" * (2 << 20),), {}), RunOptions())
    assert request.payload == b"" and request.payload_blob
    assert (tmp_path / "blobs" / request.payload_blob).exists()


def test_a_batch_has_per_input_timeouts_and_a_backstop(tmp_path):
    work = [(0, (1,), {}), (1, (2,), {})]
    request = batch_request(fake_target(tmp_path), "f", double.raw_f, work, 1, RunOptions(timeout_s=3))
    assert request.timeout_s == 3 * 2 + BATCH_BACKSTOP_SLACK_S
    assert request.label == "f() × 2"
    function, args, kwargs = serialization.loads(request.payload)
    assert function is run_batch and args[1:] == (work, 1, 3)
    assert args[0](4) == 8  # the function itself, by value


# --- every kind of run is built the same way ---------------------------------------------------

def test_remote_spawn_map_and_spawn_map_share_the_functions_options(tmp_path, monkeypatch):
    target = fake_target(tmp_path)
    monkeypatch.setattr(nbmodal.Function, "resolve", lambda self: target)

    double.spawn(1)
    spawned = target.client.submitted.pop()
    assert spawned.detach and spawned.timeout_s == 3 and spawned.cancel_grace_s == DEFAULT_CANCEL_GRACE_S
    assert run_hosts[spawned.run_id] == LOCAL

    assert double.spawn_map(range(4)) is None
    batches = target.client.submitted
    assert len(batches) == 2  # max_containers=2
    for request in batches:
        assert request.detach and request.label == "double() × 2"
        # the same backstop as a map's batch of that size (spawn_map had none)
        assert request.timeout_s == 3 * 2 + BATCH_BACKSTOP_SLACK_S
        assert request.cancel_grace_s == DEFAULT_CANCEL_GRACE_S and request.client_python == CLIENT_PYTHON
    inputs = sorted(index for request in batches for index, _, _ in serialization.loads(request.payload)[1][1])
    assert inputs == [0, 1, 2, 3]


def test_a_map_batch_uses_the_functions_grace_and_timeout(tmp_path, monkeypatch):
    target = fake_target(tmp_path)
    sent = []

    def follow(target, request, sink):
        sent.append(request)
        outcomes = [(index, True, 2 * args[0]) for index, args, _ in serialization.loads(request.payload)[1][1]]
        return pb.RunFinished(state=pb.SUCCEEDED, return_value=serialization.dumps(outcomes)), target.transfer

    monkeypatch.setattr(fanout, "follow", follow)
    runner = double.map([5, 6], return_exceptions=True)
    runner.progress = None
    runner._read_inputs(deque())  # a map reads its inputs lazily, as it schedules them
    assert runner._run_batch(target, [(0, 0), (1, 0)]) == [(0, True, 10), (1, True, 12)]
    (request,) = sent
    assert request.cancel_grace_s == double.run_options().grace_s == DEFAULT_CANCEL_GRACE_S
    assert request.timeout_s == 3 * 2 + BATCH_BACKSTOP_SLACK_S and not request.detach
    assert runner._running == {}  # the batch is no longer in flight

    monkeypatch.setattr(double, "run_options", lambda detach=False: RunOptions(timeout_s=1, grace_s=0.5))
    runner._run_batch(target, [(0, 0)])
    assert (sent[-1].cancel_grace_s, sent[-1].timeout_s) == (0.5, 1 + BATCH_BACKSTOP_SLACK_S)


def test_sweep_runs_are_built_with_the_cells_options(tmp_path, monkeypatch):
    target = fake_target(tmp_path)
    sent = []
    monkeypatch.setattr(remote_cell, "resolve_target", lambda **where: target)

    def follow(target, request, sink):
        sent.append(request)
        lr = serialization.loads(request.payload)["lr"]
        return pb.RunFinished(state=pb.SUCCEEDED, values={"loss": serialization.dumps(lr * 10)}), target.transfer

    monkeypatch.setattr(remote_cell, "follow", follow)
    shell = SimpleNamespace(user_ns={"lrs": [1, 2], "base": 3}, execution_count=5)
    options = CellOptions(timeout=9, grace=4, map=("lr", "lrs"))
    remote_cell.run_cell(shell, "loss = lr * 10 + 0 * base", options)
    assert shell.user_ns["loss"] == [10, 20]
    assert sorted(request.label for request in sent) == ["loss = lr * 10 + 0 * base [lr=1]",
                                                         "loss = lr * 10 + 0 * base [lr=2]"]
    for request in sent:
        assert (request.timeout_s, request.cancel_grace_s) == (9, 4)
        assert request.kind == pb.CELL and request.cwd == os.getcwd() and request.first_line == CELL_FIRST_LINE
        assert not request.session and not request.detach
        assert serialization.loads(request.payload)["base"] == 3


def test_a_cell_is_built_with_its_options(tmp_path, monkeypatch):
    target = fake_target(tmp_path)
    sent = []
    monkeypatch.setattr(remote_cell, "resolve_target", lambda **where: target)

    def follow(target, request, sink):
        sent.append(request)
        return pb.RunFinished(state=pb.SUCCEEDED, values={"y": serialization.dumps(2)}), target.transfer

    monkeypatch.setattr(remote_cell, "follow", follow)
    shell = SimpleNamespace(user_ns={"x": 1}, execution_count=3)
    remote_cell.run_cell(shell, "y = x + 1", CellOptions(timeout=5, grace=1, max_result_bytes=99))
    assert shell.user_ns["y"] == 2
    (request,) = sent
    assert (request.timeout_s, request.cancel_grace_s, request.max_result_bytes) == (5, 1, 99)
    assert request.filename == "<remote cell In[3]>" and request.client_python == CLIENT_PYTHON


# --- a map input's failure is a single run's failure ---------------------------------------------

class NotPicklable(Exception):
    def __reduce__(self):
        raise pickle.PicklingError("not this one")


def fails(kind):
    if kind == "value":
        raise ValueError("three is bad")
    raise NotPicklable("refuses pickling")


def single_run_record(kind) -> pb.ErrorInfo:
    """The error record a single run (``.remote()``) of the same call carries: made by the container."""
    try:
        fails(kind)
    except Exception as exc:
        return error_info(exc)
    raise AssertionError("fails() did not fail")


def rebuilt_single_run_failure(record: pb.ErrorInfo) -> BaseException:
    with pytest.raises(BaseException) as raised:
        raise_for_state(pb.RunFinished(state=pb.FAILED, error=record))
    return raised.value


@pytest.mark.parametrize("kind", ["value", "unpicklable"])
def test_a_failed_input_is_rebuilt_as_a_single_run_failure(kind):
    (index, ok, record), = run_batch(fails, [(0, (kind,), {})])
    assert (index, ok) == (0, False) and isinstance(record, bytes)
    from_map_record, from_remote_record = pb.ErrorInfo.FromString(record), single_run_record(kind)
    assert from_map_record.type_name == from_remote_record.type_name
    assert from_map_record.message == from_remote_record.message
    assert bool(from_map_record.exception) == bool(from_remote_record.exception) == (kind == "value")
    from_map, from_remote = rebuild_error_record(record), rebuilt_single_run_failure(from_remote_record)
    assert type(from_map) is type(from_remote) and str(from_map) == str(from_remote)
    assert "in fails" in from_map.remote_traceback and "batch.py" not in from_map.remote_traceback
    if kind == "unpicklable":
        assert isinstance(from_map, RemoteError) and from_map.remote_type.endswith("NotPicklable")


def test_a_timed_out_input_carries_a_timeout_error(monkeypatch):
    from remote_agent.worker.execute import RunTimeout

    def slow():
        raise RunTimeout()  # what the container's alarm raises when an input runs out of time

    (_, ok, record), = run_batch(slow, [(4, (), {})], timeout_s=0.5)
    error = rebuild_error_record(record)
    assert not ok and isinstance(error, TimeoutError) and "input 4 exceeded its timeout of 0.5 s" in str(error)


def test_a_map_delivers_a_failure_as_remote_would_raise_it():
    (_, _, record), = run_batch(fails, [(0, ("value",), {})])
    runner = double.map([], return_exceptions=True)
    delivered = runner._deliver((False, record))
    assert isinstance(delivered, ValueError) and "raise ValueError" in delivered.remote_traceback
    assert "Remote traceback" in str(delivered.__cause__)
    runner.return_exceptions = False
    with pytest.raises(ValueError, match="three is bad"):
        runner._deliver((False, record))


def test_a_function_over_its_timeout_raises_modals_type_and_a_cell_a_plain_timeout_error():
    from nbmodal.exceptions import FunctionTimeoutError
    from nbmodal.results import raise_for_state

    finished = pb.RunFinished(state=pb.TIMED_OUT, error=pb.ErrorInfo(
        type_name="TimeoutError", message="the remote run exceeded its timeout of 1 s",
        traceback="TimeoutError: the remote run exceeded its timeout of 1 s\n"))
    with pytest.raises(FunctionTimeoutError, match="timeout of 1 s") as raised:
        raise_for_state(finished)
    assert isinstance(raised.value, TimeoutError)  # `except TimeoutError` still catches it
    with pytest.raises(TimeoutError) as raised_in_cell:
        raise_for_state(finished, cell=True)
    assert type(raised_in_cell.value) is TimeoutError
