"""Fan-out: .map/.starmap/.for_each over warm containers, retries, lost containers, the sweep magic."""

from __future__ import annotations

import textwrap
import time

import pytest
from kernels import kernel

import nbmodal
from nbmodal_wire import pb

pytestmark = pytest.mark.agent

app = nbmodal.App("fanout")


@app.function()
def square(x):
    return x * x


@app.function()
def add(a, b, scale=1):
    return (a + b) * scale


def test_map_in_order_and_as_completed():
    assert list(square.map(range(50))) == [x * x for x in range(50)]
    assert sorted(square.map(range(50), order_outputs=False)) == [x * x for x in range(50)]
    assert list(add.map([1, 2], [10, 20])) == [11, 22]
    assert list(add.starmap([(1, 2), (3, 4)], kwargs={"scale": 10})) == [30, 70]
    assert list(square.map([])) == []


def test_ten_thousand_inputs():
    assert list(square.map(range(10_000))) == [x * x for x in range(10_000)]


def test_return_exceptions_in_place_with_the_remote_traceback():
    @app.function()
    def picky(x):
        if x == 3:
            raise ValueError(f"three is bad ({x})")
        return x

    results = list(picky.map(range(6), return_exceptions=True))
    assert results[:3] == [0, 1, 2] and results[4:] == [4, 5]
    assert isinstance(results[3], ValueError) and "raise ValueError" in results[3].remote_traceback
    with pytest.raises(ValueError, match="three is bad"):
        list(picky.map(range(6)))


def test_retries_until_success_counted_in_a_dict():
    attempts = nbmodal.Dict.from_name("fanout-attempts", create_if_missing=True)
    attempts.clear()

    @app.function(retries=nbmodal.Retries(max_retries=3, initial_delay=0.05))
    def fails_twice(x):
        tries = attempts.get(x, 0) + 1
        attempts[x] = tries
        if tries <= 2:
            raise RuntimeError(f"attempt {tries} of {x}")
        return x

    assert list(fails_twice.map(range(5))) == list(range(5))
    assert dict(attempts.items()) == {x: 3 for x in range(5)}


def test_a_container_killed_mid_map_loses_and_duplicates_nothing():
    seen = nbmodal.Dict.from_name("fanout-killed", create_if_missing=True)
    seen.clear()

    @app.function(retries=2, max_containers=2)
    def sometimes_dies(x):
        import os
        import signal

        if x == 7 and not seen.get("killed"):
            seen["killed"] = True
            os.kill(os.getpid(), signal.SIGKILL)  # the whole container goes, mid-batch
        return x

    results = list(sometimes_dies.map(range(40)))
    assert results == list(range(40)) and seen["killed"]


def test_for_each_and_a_sweep_cell(tmp_path):
    hits = nbmodal.Queue.from_name("fanout-hits", create_if_missing=True)
    hits.clear()

    @app.function()
    def record(x):
        hits.put(x)

    record.for_each(range(10))
    assert sorted(hits.get_many(20)) == list(range(10))

    with kernel(tmp_path) as k:
        k.execute("lrs = [0.1, 0.01, 0.001]\nsteps = 10")
        sweep = k.execute(textwrap.dedent("""
            %%remote map=lr:lrs
            loss = round(1 / (lr * steps), 3)
            print("trained with", lr)
        """))
        assert sweep["error"] is None, sweep
        assert "── lr=0.1: succeeded" in sweep["stdout"] and "trained with 0.001" in sweep["stdout"]
        assert k.execute("print(loss)")["stdout"].strip() == "[1.0, 10.0, 100.0]"
        bad = k.execute("%%remote map=lr:nothing\n1")
        assert "the notebook has no 'nothing'" in bad["stderr"]
        # A map in a notebook shows a progress widget rather than lines of text.
        shown = k.execute("import nbmodal\n@nbmodal.App('nb').function()\ndef cube(x):\n    return x ** 3\n"
                          "print(list(cube.map(range(5))))")
        assert shown["stdout"].strip() == "[0, 1, 8, 27, 64]"
        assert any("application/vnd.jupyter.widget-view+json" in d for d in shown["data"]), shown
        assert "done" not in shown["stderr"]


def test_scaledown_window_per_function():
    from nbmodal._runtime.connection import get_client

    @app.function(scaledown_window=1)
    def quick():
        import os

        return os.getpid()

    pid = quick.remote()
    client = get_client()
    assert any(c.pid == pid for c in client.list_containers())
    deadline = time.monotonic() + 15
    while any(c.pid == pid for c in client.list_containers()):
        assert time.monotonic() < deadline, "the idle container outlived its 1 s window"
        time.sleep(0.2)


def test_min_containers_stay_up():
    from nbmodal._runtime.connection import get_client

    @app.function(min_containers=2, scaledown_window=1)
    def standing():
        return 1

    standing.remote()
    client = get_client()
    spec = standing.spec

    def count():
        return sum(1 for c in client.list_containers() if c.spec == spec)

    deadline = time.monotonic() + 15
    while count() < 2:
        assert time.monotonic() < deadline, "min_containers were not started"
        time.sleep(0.2)
    time.sleep(3)  # past the scale-down window: still two
    assert count() == 2


def test_buffer_containers_wait_idle_while_the_function_is_in_use():
    from nbmodal._runtime.connection import get_client

    @app.function(buffer_containers=1, scaledown_window=1)
    def busy(seconds):
        import time

        time.sleep(seconds)

    call = busy.spawn(6)
    client = get_client()
    deadline = time.monotonic() + 5
    while not any(c.spec == busy.spec and c.state == pb.CONTAINER_IDLE for c in client.list_containers()):
        assert time.monotonic() < deadline, "no idle buffer container while the function ran"
        time.sleep(0.2)
    assert any(c.spec == busy.spec and c.state == pb.CONTAINER_BUSY for c in client.list_containers())
    call.get(timeout=30)


def test_spawn_map_returns_at_once_and_its_runs_do_the_work():
    done = nbmodal.Queue.from_name("fanout-spawned", create_if_missing=True)
    done.clear()

    @app.function(max_containers=3)
    def work(x):
        import time

        time.sleep(0.2)
        done.put(x)

    started = time.monotonic()
    assert work.spawn_map(range(12)) is None
    assert time.monotonic() - started < 2  # didn't wait for 12 × 0.2 s of work
    got = []
    while len(got) < 12:
        got += done.get_many(12, timeout=30)
    assert sorted(got) == list(range(12))


def test_concurrent_inputs_share_a_container():
    @app.function(max_containers=1)
    @nbmodal.concurrent(max_inputs=8)
    def slow_io(x):
        import os
        import time

        time.sleep(0.5)
        return os.getpid()

    started = time.monotonic()
    pids = list(slow_io.map(range(8)))
    assert len(set(pids)) == 1  # one container
    assert time.monotonic() - started < 1.5  # eight 0.5 s inputs at once, not one after another


def test_each_inputs_output_is_kept_for_asking():
    @app.function(max_containers=2)
    def chatty(x):
        print(f"working on {x}")
        print(f"done with {x}")
        return x

    run = chatty.map(range(6))
    assert list(run) == list(range(6))
    for x in range(6):
        assert run.logs(x) == f"working on {x}\ndone with {x}\n"


def test_timeout_applies_to_each_input():
    @app.function(timeout=1)
    def sometimes_slow(x):
        import time

        if x == 2:
            time.sleep(30)
        return x

    started = time.monotonic()
    results = list(sometimes_slow.map(range(5), return_exceptions=True))
    assert time.monotonic() - started < 15
    assert results[:2] == [0, 1] and results[3:] == [3, 4]
    assert isinstance(results[2], TimeoutError) and "input 2 exceeded its timeout of 1 s" in str(results[2])


def test_stopping_a_map_early_cancels_its_batches():
    from nbmodal._runtime.connection import get_client

    @app.function(max_containers=2)
    def first_fast(x):
        import time

        if x:
            time.sleep(60)
        return x

    run = iter(first_fast.map(range(4)))
    started = time.monotonic()
    assert next(run) == 0
    run.close()  # what a `break` or an interrupt does to the map
    assert time.monotonic() - started < 15
    deadline = time.monotonic() + 10
    while any(c.state == pb.CONTAINER_BUSY for c in get_client().list_containers()):
        assert time.monotonic() < deadline, "the map's other batches kept running"
        time.sleep(0.2)
