"""Which runs a container's token reaches (``remote_agent/run_scopes.py``): its own run's app, or the
run tree of a cell; nothing when it runs nothing."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from nbmodal_wire import pb
from remote_agent.run_scopes import RunScopes, ScopeError

pytestmark = pytest.mark.unit


def run(run_id: str, app: str = "", kind: int = pb.FUNCTION):
    return SimpleNamespace(id=run_id, request=pb.RunRequest(run_id=run_id, app=app, kind=kind))


def container(current=None):
    return SimpleNamespace(id="c-1", run=current)


def test_a_run_of_an_app_scopes_its_containers_calls_to_that_app():
    scopes = RunScopes()
    driver = run("r-00000001", app="sweep")
    scope = scopes.caller_scope(container(driver))
    assert scope == "app:sweep"
    scopes.check_submit(scope, pb.RunRequest(kind=pb.FUNCTION, app="sweep"))
    scopes.check_submit(scope, pb.RunRequest(kind=pb.FUNCTION, app=""))  # a function of no named app
    with pytest.raises(ScopeError, match="of app 'sweep' may call functions of its own app only, not of app 'x'"):
        scopes.check_submit(scope, pb.RunRequest(kind=pb.FUNCTION, app="x"))
    with pytest.raises(ScopeError, match="functions only"):
        scopes.check_submit(scope, pb.RunRequest(kind=pb.CELL))
    with pytest.raises(ScopeError, match="session"):
        scopes.check_submit(scope, pb.RunRequest(kind=pb.FUNCTION, session="s"))


def test_a_nested_run_inherits_its_callers_scope_and_others_are_out_of_reach():
    scopes = RunScopes()
    cell = run("r-00000002", kind=pb.CELL)
    scope = scopes.caller_scope(container(cell))
    assert scope == "run:r-00000002"
    child = run("r-00000003", app="anything")
    scopes.adopt(child.id, scope)
    scopes.check_touch(scope, child)
    assert scopes.caller_scope(container(child)) == scope  # its own nested calls: the same tree
    with pytest.raises(ScopeError, match="outside this container's scope"):
        scopes.check_touch(scope, run("r-00000004", app="anything"))
    with pytest.raises(ScopeError, match="outside"):
        scopes.check_touch("app:sweep", run("r-00000005", app="other"))
    scopes.check_touch("app:sweep", run("r-00000006", app="sweep"))  # spawned from the notebook, same app


def test_an_idle_container_has_no_scope():
    with pytest.raises(ScopeError, match="no run in progress"):
        RunScopes().caller_scope(container())


# --- a nested call its waiting callers would starve is refused ------------------------------------


def test_a_nested_call_needing_what_its_waiting_callers_hold_is_refused():
    from remote_agent.allocator import Allocator, Request
    from remote_agent.gpus import FakeInventory
    from remote_agent.nested_waits import never_starts_while_callers_wait

    allocator = Allocator(FakeInventory("H100:1,A10G:1"), cores=[0, 1, 2, 3], memory_mib=1000)
    assert allocator.try_allocate(Request.of(pb.ContainerSpec(gpu="H100", cpu=3, memory_mib=600)), "c-caller")
    why = never_starts_while_callers_wait(pb.ContainerSpec(gpu="H100"), allocator, ["c-caller"])
    assert why is not None and "gpu=H100 needs cards its callers hold" in why and "c-caller" in why
    assert never_starts_while_callers_wait(pb.ContainerSpec(gpu="A10G"), allocator, ["c-caller"]) is None
    assert "cpu=2 needs 2 cores but only 1" in never_starts_while_callers_wait(
        pb.ContainerSpec(cpu=2), allocator, ["c-caller"])
    assert "memory=500 needs 500 MiB but only 400" in never_starts_while_callers_wait(
        pb.ContainerSpec(memory_mib=500), allocator, ["c-caller"])
    assert never_starts_while_callers_wait(pb.ContainerSpec(memory_mib=400), allocator, ["c-caller"]) is None
    # Held by someone else (not a caller): it waits its turn, as any run does.
    assert never_starts_while_callers_wait(pb.ContainerSpec(gpu="H100"), allocator, ["c-other"]) is None
    assert never_starts_while_callers_wait(pb.ContainerSpec(), allocator, ["c-caller"]) is None


def test_the_chain_of_callers_is_followed_to_the_first_run():
    scopes = RunScopes()
    scopes.adopt("r-00000012", "app:a", "r-00000011")
    scopes.adopt("r-00000013", "app:a", "r-00000012")
    assert scopes.callers("r-00000013") == ["r-00000013", "r-00000012", "r-00000011"]
    assert scopes.callers("r-00000011") == ["r-00000011"]
