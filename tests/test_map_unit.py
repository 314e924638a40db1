"""``Function.map`` against in-process fake agents: results in input order, retries that re-run
only the failed inputs, lost batches retried, batches spread over hosts. The fake agent runs each
batch here, in this process, as a container would; the functions keep their tallies in files."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import nbmodal
from fakeagent import FakeAgent, FakeConnection, FakeRun, execute_in_process, serve_as_local_agent, \
    stop_serving_as_local_agent
from nbmodal._runtime import connection as connections
from nbmodal.exceptions import RunLostError
from nbmodal.hosts import LOCAL, add_host
from nbmodal_wire import pb

pytestmark = pytest.mark.unit

app = nbmodal.App("map-unit")


def count_call(tally: str, x) -> int:
    """Count a call of input ``x`` in the directory ``tally``; returns its number (1 for the first)."""
    path = Path(tally) / f"calls-{x}"
    calls = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(calls))
    return calls


def calls_of(tally: Path, x) -> int:
    path = tally / f"calls-{x}"
    return int(path.read_text()) if path.exists() else 0


@app.function()
def square_later_for_smaller(x: int, n: int) -> int:
    time.sleep((n - x) * 0.02)  # later inputs finish first
    return x * x


@app.function(retries=nbmodal.Retries(max_retries=2, initial_delay=0.0))
def fails_first_try_on_multiples_of_three(x: int, tally: str) -> int:
    if count_call(tally, x) == 1 and x % 3 == 0:
        raise ValueError(f"first try of {x}")
    return x * 10


@app.function()
def fails_on_multiples_of_three(x: int, tally: str) -> int:
    count_call(tally, x)
    if x % 3 == 0:
        raise ValueError(f"no {x}")
    return x * 10


@app.function(retries=1)
def times_ten(x: int, tally: str) -> int:
    count_call(tally, x)
    return x * 10


@pytest.fixture()
def local_agent(tmp_path, monkeypatch):
    """A fake agent that the real local connection finds (by the agent.json of a home of its own)."""
    monkeypatch.setenv("NBMODAL_HOME", str(tmp_path / "home"))
    connections.forget(LOCAL)
    with FakeAgent() as agent:
        state_dir = serve_as_local_agent(agent, tmp_path / "home")
        try:
            yield agent
        finally:
            connections.forget(LOCAL)
            stop_serving_as_local_agent(agent, state_dir)


@pytest.fixture()
def tally(tmp_path) -> Path:
    path = tmp_path / "tally"
    path.mkdir()
    return path


def test_results_come_in_input_order_though_later_inputs_finish_first(local_agent):
    n = 12
    assert list(square_later_for_smaller.map(range(n), [n] * n)) == [x * x for x in range(n)]
    assert len(local_agent.run_requests) >= 2  # it did fan out


def test_unordered_results_are_each_input_once(local_agent):
    n = 12
    results = list(square_later_for_smaller.map(range(n), [n] * n, order_outputs=False))
    assert sorted(results) == [x * x for x in range(n)]


def test_retries_rerun_only_the_failed_inputs(local_agent, tally):
    xs = list(range(10))
    assert list(fails_first_try_on_multiples_of_three.map(xs, [str(tally)] * len(xs))) == [x * 10 for x in xs]
    assert {x: calls_of(tally, x) for x in xs} == {x: 2 if x % 3 == 0 else 1 for x in xs}


def test_without_retries_a_failure_raises_the_inputs_own_exception_and_is_not_rerun(local_agent, tally):
    xs = [1, 2, 3, 4]
    with pytest.raises(ValueError, match="no 3"):
        list(fails_on_multiples_of_three.map(xs, [str(tally)] * len(xs)))
    assert calls_of(tally, 3) == 1


def test_return_exceptions_puts_each_failure_in_its_place(local_agent, tally):
    xs = list(range(7))
    results = list(fails_on_multiples_of_three.map(xs, [str(tally)] * len(xs), return_exceptions=True))
    for x, result in zip(xs, results):
        if x % 3 == 0:
            assert isinstance(result, ValueError) and str(result) == f"no {x}"
        else:
            assert result == x * 10
    assert all(calls_of(tally, x) == 1 for x in xs)


def test_a_batch_whose_container_died_is_retried(local_agent, tally):
    first = []

    def first_batch_dies(run: FakeRun) -> None:
        if not first:
            first.append(run.run_id)
            run.output("about to die\n")
            run.end_without_result(pb.LOST, "the container died (signal 9)")
            return
        execute_in_process(run)

    local_agent.behaviour = first_batch_dies
    xs = list(range(6))
    assert list(times_ten.map(xs, [str(tally)] * len(xs))) == [x * 10 for x in xs]
    # The lost batch's inputs never ran; every input ran exactly once.
    assert [calls_of(tally, x) for x in xs] == [1] * len(xs)


def test_a_lost_batch_without_retries_fails_the_map(local_agent, tally):
    local_agent.behaviour = lambda run: run.end_without_result(pb.LOST, "the container died (signal 9)")
    with pytest.raises(RunLostError, match="the container died"):
        list(fails_on_multiples_of_three.map([1, 2], [str(tally)] * 2))


def test_batches_spread_over_every_host(tmp_path, monkeypatch):
    monkeypatch.setenv("NBMODAL_HOME", str(tmp_path))
    with FakeAgent() as a, FakeAgent() as b:
        for name, agent in (("a", a), ("b", b)):
            add_host(name, f"user@{name}.example")
            monkeypatch.setitem(connections._connections, name, FakeConnection(name, agent))
        n = 12
        assert list(square_later_for_smaller.map(range(n), [n] * n)) == [x * x for x in range(n)]
        assert a.run_requests and b.run_requests
        for name in ("a", "b"):
            connections._connections[name].forget()
