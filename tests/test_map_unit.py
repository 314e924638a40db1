"""``Function.map`` against in-process fake agents: results in input order, retries that re-run
only the failed inputs, lost batches retried, batches spread over hosts. The fake agent runs each
batch here, in this process, as a container would; the functions keep their tallies in files."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fakeagent import (
    FakeAgent,
    FakeConnection,
    FakeRun,
    execute_in_process,
    serve_as_local_agent,
    stop_serving_as_local_agent,
)

import nbmodal
from nbmodal._runtime import connection as connections
from nbmodal.exceptions import RunLostError
from nbmodal.hosts import LOCAL, add_host
from nbmodal.results import rebuild_error_record
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


# --- inputs read lazily, kwargs, Modal's wrapper for returned failures ------------------------------


@app.function()
def scaled(x: int, scale: int = 1, offset: int = 0) -> int:
    return x * scale + offset


class CountingIterator:
    """An endless iterator that counts how many items were taken from it."""

    def __init__(self) -> None:
        self.taken = 0

    def __iter__(self):
        return self

    def __next__(self) -> int:
        self.taken += 1
        return self.taken - 1


def test_an_endless_iterator_is_read_as_capacity_frees_up_and_a_break_stops_it(local_agent):
    source = CountingIterator()
    run = scaled.map(source, kwargs={"scale": 2})
    got = []
    for value in run:
        got.append(value)
        if len(got) == 30:
            break
    assert got == [2 * x for x in range(30)]
    taken = source.taken
    # Read ahead by at most a few batches per container, never the whole (endless) iterator.
    assert taken <= 30 + run.read_ahead + 1
    assert source.taken == taken  # stopping the map stopped reading


def test_a_generator_of_inputs_is_not_read_before_the_map_is_iterated(local_agent):
    pulled = []

    def inputs():
        for x in range(5):
            pulled.append(x)
            yield x

    run = scaled.map(inputs(), kwargs={"offset": 1})
    assert pulled == [] and run.total is None
    assert list(run) == [1, 2, 3, 4, 5]
    assert next(iter(scaled.map(range(3)))) == 0
    assert next(scaled.map(range(3))) == 0  # Modal's map result is an iterator


def test_kwargs_go_to_every_input_of_map_starmap_and_for_each(local_agent):
    assert list(scaled.map([1, 2, 3], kwargs={"scale": 10, "offset": 1})) == [11, 21, 31]
    assert list(scaled.starmap(iter([(1, 5), (2, 5)]), kwargs={"offset": 2})) == [7, 12]
    scaled.for_each([1, 2], kwargs={"scale": 3})


def test_returned_failures_are_modals_wrapper_and_their_own_type(local_agent, tally):
    from nbmodal._runtime.returned_exceptions import UserCodeException

    xs = [1, 3]
    ok, failed = fails_on_multiples_of_three.map(xs, [str(tally)] * 2, return_exceptions=True)
    assert ok == 10
    assert isinstance(failed, UserCodeException) and isinstance(failed, ValueError)
    assert isinstance(failed.exc, ValueError) and not isinstance(failed.exc, UserCodeException)
    assert repr(failed) == "UserCodeException(ValueError('no 3'))" and str(failed) == "no 3"
    assert "raise ValueError" in failed.remote_traceback
    _, raw = fails_on_multiples_of_three.map(xs, [str(tally)] * 2, return_exceptions=True,
                                             wrap_returned_exceptions=False)
    assert type(raw) is ValueError


def test_the_wrapper_keeps_what_the_error_carries():
    from nbmodal._runtime.returned_exceptions import UserCodeException, wrap_returned

    class NeedsTwo(Exception):
        def __init__(self, a, b):
            super().__init__(f"{a}-{b}")
            self.a = a

    wrapped = wrap_returned(KeyError("k"))
    assert isinstance(wrapped, KeyError) and wrapped.exc.args == ("k",)
    assert wrap_returned(wrapped) is wrapped
    custom = wrap_returned(NeedsTwo(1, 2))  # built without calling its __init__ again
    assert isinstance(custom, NeedsTwo) and isinstance(custom, UserCodeException)
    assert custom.a == 1 and str(custom) == "1-2"
    os_error = wrap_returned(FileNotFoundError(2, "gone", "/x"))
    assert isinstance(os_error, FileNotFoundError) and os_error.filename == "/x"


# --- retries of .remote(), .spawn() and .spawn_map(), with a map's backoff ------------------------------


@app.function(retries=nbmodal.Retries(max_retries=2, initial_delay=0.5, backoff_coefficient=3.0))
def fails_twice_then_succeeds(tally: str) -> str:
    calls = count_call(tally, "remote")
    if calls <= 2:
        raise RuntimeError(f"attempt {calls}")
    return f"ok after {calls}"


@app.function(retries=1)
def always_fails(tally: str) -> None:
    calls = count_call(tally, "always")
    raise RuntimeError(f"attempt {calls}")


@pytest.fixture()
def waits(monkeypatch) -> list[float]:
    """The backoffs slept, instead of sleeping them."""
    from nbmodal._runtime import retrying
    from remote_agent.worker import retrying as worker_retrying

    slept: list[float] = []
    monkeypatch.setattr(retrying.time, "sleep", slept.append)
    monkeypatch.setattr(worker_retrying.time, "sleep", slept.append)
    return slept


def test_remote_retries_with_the_maps_backoff(local_agent, tally, waits):
    assert fails_twice_then_succeeds.remote(str(tally)) == "ok after 3"
    assert waits == [0.5, 1.5]
    assert len(local_agent.run_requests) == 3  # each attempt is a run of its own


def test_remote_raises_the_last_failure_once_retries_are_spent(local_agent, tally, waits):
    with pytest.raises(RuntimeError, match="attempt 2"):
        always_fails.remote(str(tally))
    assert calls_of(tally, "always") == 2 and waits == [0.0]


def test_a_request_no_retry_can_meet_is_not_retried(local_agent, tally, waits):
    def refused(run: FakeRun) -> None:
        run.finish(pb.FAILED, error=nbmodal.GpuUnavailableError("no H100 here"))

    local_agent.behaviour = refused
    with pytest.raises(nbmodal.GpuUnavailableError):
        fails_twice_then_succeeds.remote(str(tally))
    assert len(local_agent.run_requests) == 1 and waits == []


def test_spawn_retries_in_the_container(local_agent, tally, waits):
    call = fails_twice_then_succeeds.spawn(str(tally))
    assert call.get(timeout=10) == "ok after 3"
    assert waits == [0.5, 1.5] and len(local_agent.run_requests) == 1  # retried where it ran


def test_a_spawned_call_whose_container_died_is_started_again(local_agent, tally, waits):
    lost = []

    def first_run_lost(run: FakeRun) -> None:
        if not lost:
            lost.append(run.run_id)
            run.end_without_result(pb.LOST, "the container died (signal 9)")
            return
        execute_in_process(run)

    local_agent.behaviour = first_run_lost
    call = times_ten.spawn(4, str(tally))
    first_id = call.object_id
    assert call.get(timeout=10) == 40
    assert call.object_id != first_id and lost == [first_id]
    assert calls_of(tally, 4) == 1


def test_spawn_map_retries_failed_inputs_in_the_container(local_agent, tally, waits):
    xs = [1, 3, 6]
    fails_first_try_on_multiples_of_three.spawn_map(xs, [str(tally)] * 3)
    deadline = time.monotonic() + 10
    while not all(run.done for run in local_agent.runs.values()):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert {x: calls_of(tally, x) for x in xs} == {1: 1, 3: 2, 6: 2}
    assert all(run.state == pb.SUCCEEDED for run in local_agent.runs.values())


# --- @nbmodal.batched ---------------------------------------------------------------------------


@app.function()
@nbmodal.batched(max_batch_size=4, wait_ms=2000)
def add_batched(xs: list[int], ys: list[int]) -> list[int]:
    return [x + y for x, y in zip(xs, ys)]


@app.function()
@nbmodal.batched(max_batch_size=4, wait_ms=10)
def returns_too_few(xs: list[int]) -> list[int]:
    return xs[:1]


def test_batched_groups_a_maps_inputs_into_calls_with_lists():
    from remote_agent.worker.batch import run_batch

    calls = []

    @nbmodal.batched(max_batch_size=3, wait_ms=0)
    def record(xs, scale=[]):  # noqa: B006 - the default is part of what is grouped
        calls.append((list(xs), list(scale)))
        return [x * (s or 1) for x, s in zip(xs, scale)]

    work = [(i, (i,), {"scale": 2} if i % 2 else {}) for i in range(7)]
    outcomes = run_batch(record, work)
    assert outcomes == [(i, True, i * 2 if i % 2 else i) for i in range(7)]
    assert [xs for xs, _ in calls] == [[0, 1, 2], [3, 4, 5], [6]]
    assert calls[0][1] == [[], 2, []]


def test_a_batched_call_that_fails_fails_its_whole_group_only():
    from remote_agent.worker.batch import run_batch

    @nbmodal.batched(max_batch_size=2, wait_ms=0)
    def picky(xs):
        if 3 in xs:
            raise ValueError("no 3 in this batch")
        return xs

    outcomes = run_batch(picky, [(i, (i,), {}) for i in range(4)])
    assert [ok for _, ok, _ in outcomes] == [True, True, False, False]
    assert "no 3" in str(rebuild_error_record(outcomes[2][2]))


def test_batched_refuses_bad_options_and_variadic_functions():
    with pytest.raises(ValueError, match="max_batch_size"):
        nbmodal.batched(max_batch_size=0, wait_ms=0)
    with pytest.raises(ValueError, match="wait_ms"):
        nbmodal.batched(max_batch_size=2, wait_ms=-1)
    with pytest.raises(TypeError, match="one list per parameter"):
        nbmodal.batched(max_batch_size=2, wait_ms=0)(lambda *xs: xs)


def test_concurrent_remote_calls_of_a_batched_function_are_one_run(local_agent):
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda x: add_batched.remote(x, 100), range(4)))
    assert results == [100, 101, 102, 103]
    assert len(local_agent.run_requests) == 1  # four calls, one batch run: the fourth filled it
    assert list(add_batched.map(range(6), range(6))) == [0, 2, 4, 6, 8, 10]
    assert add_batched.spawn(5, 6).get(timeout=10) == 11


def test_a_batched_result_of_the_wrong_length_fails_each_caller(local_agent):
    with pytest.raises(ValueError, match="returned 1 results for a batch of 2"):
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(returns_too_few.remote, [1, 2]))


def test_the_remote_batcher_waits_at_most_wait_ms_and_at_most_max_batch_size():
    from nbmodal._runtime.batching import RemoteBatcher

    sent: list[list] = []

    def send(work):
        sent.append([args for _, args, _ in work])
        return [(index, True, args[0] * 2) for index, args, _ in work]

    batcher = RemoteBatcher(max_batch_size=3, wait_ms=50, send=send)
    started = time.monotonic()
    assert batcher.call((1,), {}) == 2  # alone: sent after wait_ms
    assert 0.04 <= time.monotonic() - started < 5
    with ThreadPoolExecutor(5) as pool:
        assert list(pool.map(lambda x: batcher.call((x,), {}), range(5))) == [0, 2, 4, 6, 8]
    groups = sent[1:]
    assert sum(map(len, groups)) == 5 and all(len(group) <= 3 for group in groups)
    assert len(groups) < 5  # concurrent calls were grouped

    def broken(work):
        raise ConnectionError("the host went away")

    with pytest.raises(ConnectionError, match="went away"):
        RemoteBatcher(2, 0, broken).call((1,), {})


def test_a_function_travels_into_containers_that_call_it():
    from nbmodal import serialization

    @app.function(gpu="any", cpu=1.5)
    def nested_target(x):
        return x

    copy = serialization.loads(serialization.dumps(nested_target))
    assert copy.spec == nested_target.spec and copy.spec.gpu == "any"
    assert copy.run_options().app == "map-unit" and copy.local(3) == 3
