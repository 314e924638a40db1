"""On the real local agent: nested calls from inside a container (scoped to the caller's app),
``retries=`` on ``.remote()``, and ``@nbmodal.batched`` grouping inputs into one call."""

from __future__ import annotations

import itertools
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import nbmodal

pytestmark = pytest.mark.agent

app = nbmodal.App("nested")
other_app = nbmodal.App("someone-else")


@app.function()
def slow_square(x: int) -> int:
    import time

    time.sleep(0.05)
    return x * x


@app.function(timeout=120)
def sweep_until(threshold: int) -> tuple[int, list[int]]:
    """An early-stopping sweep driver: maps over an endless range, stops at the first square over
    ``threshold``."""
    seen = []
    for value in slow_square.map(itertools.count()):
        seen.append(value)
        if value > threshold:
            break
    return len(seen), seen[-3:]


@app.function()
def pipeline_stage(x: int) -> dict:
    """A stage that calls another function of its app with .remote and .spawn."""
    call = slow_square.spawn(x + 1)
    return {"remote": slow_square.remote(x), "spawned": call.get(timeout=60)}


@other_app.function()
def not_ours(x: int) -> int:
    return x


@app.function()
def calls_another_apps_function(x: int) -> int:
    return not_ours.remote(x)


@app.function()
def reads_a_call(call_id: str) -> object:
    return nbmodal.FunctionCall.from_id(call_id).get(timeout=30)


def test_a_driver_maps_another_function_from_its_container_and_stops_early():
    count, last = sweep_until.remote(100)
    assert count == 12 and last == [81, 100, 121]


def test_a_stage_calls_remote_and_spawn_of_its_app():
    assert pipeline_stage.remote(3) == {"remote": 9, "spawned": 16}


def test_a_nested_call_outside_its_apps_scope_is_refused():
    with pytest.raises(nbmodal.AgentError, match="may call functions of its own app only"):
        calls_another_apps_function.remote(1)
    theirs = not_ours.spawn(5)
    assert theirs.get(timeout=60) == 5
    with pytest.raises(nbmodal.AgentError, match="outside this container's scope"):
        reads_a_call.remote(theirs.object_id)


def test_remote_retries_until_success_with_state_in_a_dict():
    attempts = nbmodal.Dict.from_name("nested-attempts", create_if_missing=True)
    attempts.clear()

    @app.function(retries=nbmodal.Retries(max_retries=2, initial_delay=0.1))
    def fails_twice() -> str:
        tries = attempts.get("tries", 0) + 1
        attempts["tries"] = tries
        if tries <= 2:
            raise RuntimeError(f"attempt {tries}")
        return f"succeeded on attempt {tries}"

    assert fails_twice.remote() == "succeeded on attempt 3"
    assert attempts["tries"] == 3


@app.function()
@nbmodal.batched(max_batch_size=4, wait_ms=500)
def with_batch_size(xs: list[int]) -> list[tuple[int, int]]:
    return [(x * 10, len(xs)) for x in xs]


def test_batched_groups_a_maps_inputs_and_concurrent_remote_calls():
    results = list(with_batch_size.map(range(10)))
    assert [value for value, _ in results] == [x * 10 for x in range(10)]
    sizes = [size for _, size in results]
    assert max(sizes) == 4 and all(size <= 4 for size in sizes)

    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        grouped = list(pool.map(with_batch_size.remote, range(4)))
    assert [value for value, _ in grouped] == [0, 10, 20, 30]
    assert [size for _, size in grouped] == [4, 4, 4, 4]  # the four calls were one call of the function
    assert time.monotonic() - started < 60
    assert with_batch_size.remote(7) == (70, 1)  # alone: a batch of one after wait_ms


@app.function()
def factorial(n: int) -> int:
    """Calls itself: each level is a new container of the same pool (the caller keeps its own)."""
    return 1 if n <= 1 else n * factorial.remote(n - 1)


def test_a_function_calls_itself_recursively():
    assert factorial.remote(4) == 24


def test_a_container_killed_under_its_input_is_retried():
    attempts = nbmodal.Dict.from_name("nested-preempted", create_if_missing=True)
    attempts.clear()

    @app.function(retries=nbmodal.Retries(max_retries=1, initial_delay=0.1))
    def preempted_once() -> int:
        import os
        import signal

        tries = attempts.get("tries", 0) + 1
        attempts["tries"] = tries
        if tries == 1:
            os.kill(os.getpid(), signal.SIGKILL)  # what the host does to a preempted container
        return tries

    assert preempted_once.remote() == 2


def test_a_recursive_call_that_could_never_start_is_refused_not_left_to_hang():
    import os

    cores = len(os.sched_getaffinity(0))  # the local agent's cores: this machine's

    @app.function(cpu=cores, timeout=120)
    def hogs_every_core(depth: int) -> int:
        return depth if depth == 0 else hogs_every_core.remote(depth - 1)

    started = time.monotonic()
    with pytest.raises(nbmodal.AgentError, match="nested call refused: it would wait forever"):
        hogs_every_core.remote(1)
    assert time.monotonic() - started < 60
