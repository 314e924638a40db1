"""What a warm ``f.remote()`` keeps between calls on the client (issue 19), and what makes it look again:
the resolved target (kept per live client and spec, never with an image) and the local agent's liveness
(one look answers a run's placement and its follower)."""

from __future__ import annotations

import pytest

from nbmodal._runtime import connection as connection_module
from nbmodal._runtime import invocation
from nbmodal._runtime.client import CLIENT_PYTHON
from nbmodal._runtime.invocation import container_spec, resolve_target
from nbmodal_wire import pb

pytestmark = pytest.mark.unit


class FakeClient:
    def __init__(self, alive: bool = True) -> None:
        self.hello = pb.HelloReply(state_dir="/nonexistent", container_python=CLIENT_PYTHON)
        self.label = "fake agent"
        self.alive = alive
        self.looks = 0
        self.closed = False
        self.address = self

    def is_alive(self) -> bool:  # the client's AgentAddress
        self.looks += 1
        return self.alive

    def close(self) -> None:
        self.closed = True


class FakeConnection:
    name = "local"

    def __init__(self) -> None:
        self.live = FakeClient()

    def client(self) -> FakeClient:
        return self.live


def test_a_functions_target_is_kept_per_live_client_and_spec(monkeypatch):
    connection = FakeConnection()
    monkeypatch.setattr(invocation, "place", lambda host, session, spec: connection)
    spec = container_spec("", {}, 0.0, 0)
    first = resolve_target(host=None, spec=spec)
    assert resolve_target(host=None, spec=spec) is first
    spec.scaledown_window_s = 30  # the target holds the very spec: a change shows without a new target
    assert resolve_target(host=None, spec=spec).spec.scaledown_window_s == 30
    connection.live = FakeClient()  # a restarted agent
    renewed = resolve_target(host=None, spec=spec)
    assert renewed is not first and renewed.client is connection.live
    assert resolve_target(host=None, spec=container_spec("", {}, 0.0, 0)) is not renewed  # another spec
    invocation.forget_targets()
    assert resolve_target(host=None, spec=spec) is not renewed


def test_a_target_with_an_image_is_resolved_every_time(monkeypatch):
    connection = FakeConnection()
    built = []
    monkeypatch.setattr(invocation, "place", lambda host, session, spec: connection)
    monkeypatch.setattr(invocation, "spec_with_image", lambda spec, image, conn, sink: built.append(image) or spec)
    spec, image = container_spec("", {}, 0.0, 0), object()
    first = resolve_target(host=None, spec=spec, image=image)  # type: ignore[arg-type]
    assert resolve_target(host=None, spec=spec, image=image) is not first  # type: ignore[arg-type]
    assert built == [image, image]


def test_one_look_at_the_local_agent_answers_a_runs_placement_and_follower(monkeypatch):
    local = connection_module.LocalConnection()
    client = FakeClient()
    local._client = client  # type: ignore[assignment]
    clock = [100.0]
    monkeypatch.setattr(connection_module.time, "monotonic", lambda: clock[0])
    assert local.client() is client and local.client() is client and client.looks == 1
    clock[0] += connection_module.ALIVE_SEEN_S  # the look is too old: look again
    assert local.client() is client and client.looks == 2

    started = FakeClient()
    monkeypatch.setattr(connection_module, "ensure_local_agent", lambda: "address")
    monkeypatch.setattr(connection_module, "AgentClient", lambda address: started)
    client.alive = False
    clock[0] += connection_module.ALIVE_SEEN_S
    assert local.client() is started and client.closed  # a dead agent: the next one is started, as before
    local.forget()
    assert started.closed and local._client is None
