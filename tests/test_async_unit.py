"""async in the container and ``.aio`` on the client, in-process.

The worker's side: ``async def`` functions, async generators, class hooks and methods run on the
container's one event loop (kept across runs); a timeout or SIGINT cancels the coroutine; a map's
batch of an async function runs its inputs as coroutines, ``max_inputs`` at once. The client's side:
``WithAio`` gives awaitables, and async iterators for methods that return iterators.
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import threading
import time

import cloudpickle
import pytest
from waiting import wait_for

from nbmodal._aio import WithAio
from nbmodal_wire import pb
from remote_agent.worker import event_loop
from remote_agent.worker.batch import run_batch
from remote_agent.worker.classes import call_method, run_exit_hooks
from remote_agent.worker.execute import Interrupts, execute

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def _this_process_stays_local(monkeypatch):
    # These tests run the worker's code in the test process, which marks it as a container for
    # nbmodal.is_local() and current_function_call_id(); later tests must see a notebook process again.
    from remote_agent.worker import context

    monkeypatch.setattr(context, "_run_id", "")

events: dict[str, object] = {}  # what the functions below saw, for the tests to check


@pytest.fixture
def interrupts():
    """The worker's interrupt handlers, installed in this process for one test."""
    saved = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGALRM)
    events.clear()
    try:
        yield Interrupts()
    finally:
        signal.signal(signal.SIGINT, saved[0])
        signal.signal(signal.SIGALRM, saved[1])


def run_function(interrupts: Interrupts, fn, *args, timeout_s: float = 0.0, generator: bool = False, **kwargs):
    """One FUNCTION run, as the container gets it: returns (RunFinished, items)."""
    items: list = []
    request = pb.Execute(kind=pb.FUNCTION, payload=cloudpickle.dumps((fn, args, kwargs)), timeout_s=timeout_s,
                         generator=generator, run_id="r-async-unit")
    finished = execute(request, None, interrupts, emit_item=lambda item: items.append(cloudpickle.loads(item.value)))
    return finished, items


async def add_later(a: int, b: int) -> int:
    await asyncio.sleep(0.01)
    return a + b


async def loop_id() -> int:
    return id(asyncio.get_running_loop())


async def count_up(n: int):
    for i in range(n):
        await asyncio.sleep(0)
        yield i * 10


started = threading.Event()  # set by sleep_until_cancelled once it runs


async def sleep_until_cancelled() -> None:
    started.set()
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        events["cancelled"] = True
        raise


def test_an_async_function_runs_to_its_result(interrupts):
    finished, _ = run_function(interrupts, add_later, 2, 3)
    assert finished.state == pb.SUCCEEDED, finished.error.traceback
    assert cloudpickle.loads(finished.return_value) == 5


def test_the_container_keeps_one_event_loop_across_runs(interrupts):
    first, _ = run_function(interrupts, loop_id)
    second, _ = run_function(interrupts, loop_id)
    assert cloudpickle.loads(first.return_value) == cloudpickle.loads(second.return_value)


def test_an_async_generator_sends_its_items(interrupts):
    finished, items = run_function(interrupts, count_up, 4, generator=True)
    assert finished.state == pb.SUCCEEDED, finished.error.traceback
    assert items == [0, 10, 20, 30]


def test_a_timeout_cancels_the_coroutine(interrupts):
    finished, _ = run_function(interrupts, sleep_until_cancelled, timeout_s=0.2)
    assert finished.state == pb.TIMED_OUT
    assert events.get("cancelled") is True  # its except/finally ran before the run ended


def test_sigint_cancels_the_coroutine_and_reports_keyboardinterrupt(interrupts):
    started.clear()

    def interrupt_once_started() -> None:
        if started.wait(10):
            os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_once_started, daemon=True).start()
    finished, _ = run_function(interrupts, sleep_until_cancelled)
    assert finished.state == pb.CANCELLED
    assert finished.error.type_name == "KeyboardInterrupt"
    assert events.get("cancelled") is True


async def block_the_loop() -> None:
    time.sleep(1.0)  # sync code in an async def: no await, so no cancel can land


def test_a_loop_held_by_sync_code_is_replaced_after_a_timeout(interrupts, monkeypatch):
    monkeypatch.setattr(event_loop, "CANCEL_WAIT_S", 0.1)
    held = event_loop.container_loop()
    finished, _ = run_function(interrupts, block_the_loop, timeout_s=0.1)
    assert finished.state == pb.TIMED_OUT
    started_at = time.monotonic()
    after, _ = run_function(interrupts, add_later, 1, 2)
    assert cloudpickle.loads(after.return_value) == 3 and time.monotonic() - started_at < 0.8  # not behind it
    assert event_loop.container_loop() is not held


def test_running_a_coroutine_from_inside_the_loop_is_refused():
    async def nested() -> None:
        event_loop.run(asyncio.sleep(0))

    with pytest.raises(RuntimeError, match="await it instead"):
        event_loop.run(nested())


class AsyncModel:
    async def load(self):
        await asyncio.sleep(0)
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue = asyncio.Queue()  # bound to the loop it was made on
        events["entered"] = events.get("entered", 0) + 1  # type: ignore[operator]

    async def predict(self, x):
        await self.queue.put(x)  # works only on the loop the queue was made on
        assert asyncio.get_running_loop() is self.loop
        return (await self.queue.get()) * self.scale

    async def close(self):
        await asyncio.sleep(0)
        events["exited"] = True


AsyncModel.load._nbmodal_role = "enter"  # type: ignore[attr-defined]  # what @nbmodal.enter() marks
AsyncModel.predict._nbmodal_role = "method"  # type: ignore[attr-defined]
AsyncModel.close._nbmodal_role = "exit"  # type: ignore[attr-defined]


def test_a_class_with_async_enter_method_and_exit(interrupts):
    method = functools.partial(call_method, AsyncModel, {"scale": 3}, "predict", "async-model-key")
    first, _ = run_function(interrupts, method, 2)
    second, _ = run_function(interrupts, method, 5)
    assert first.state == pb.SUCCEEDED, first.error.traceback
    assert [cloudpickle.loads(first.return_value), cloudpickle.loads(second.return_value)] == [6, 15]
    assert events["entered"] == 1  # once per container
    run_exit_hooks()
    assert events.get("exited") is True


async def track_concurrency(x: int) -> int:
    events["running"] = events.get("running", 0) + 1  # type: ignore[operator]
    events["peak"] = max(events.get("peak", 0), events["running"])  # type: ignore[call-overload]
    await asyncio.sleep(0.02)
    events["running"] -= 1  # type: ignore[operator]
    return x * x


def test_an_async_batch_runs_max_inputs_coroutines_at_once_in_order(interrupts):
    inputs = [(i, (i,), {}) for i in range(7)]
    outcomes = run_batch(track_concurrency, inputs, max_inputs=3)
    assert [(index, ok, value) for index, ok, value in outcomes] == [(i, True, i * i) for i in range(7)]
    assert events["peak"] == 3
    events.clear()
    run_batch(track_concurrency, inputs[:3], max_inputs=1)
    assert events["peak"] == 1


async def wait_for_cancel(x: int) -> None:
    started.set()
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        events[f"cancelled-{x}"] = True
        raise


def test_sigint_cancels_every_running_input_of_an_async_batch(interrupts):
    started.clear()
    threading.Thread(target=lambda: started.wait(10) and os.kill(os.getpid(), signal.SIGINT), daemon=True).start()
    finished, _ = run_function(interrupts, run_batch, wait_for_cancel, [(i, (i,), {}) for i in range(3)], 3)
    assert finished.state == pb.CANCELLED and finished.error.type_name == "KeyboardInterrupt"
    assert {key for key in events if key.startswith("cancelled-")} == {"cancelled-0", "cancelled-1", "cancelled-2"}


async def slow_for_one(x: int) -> int:
    await asyncio.sleep(30 if x == 1 else 0)
    return x


def test_an_async_batch_times_out_each_input_alone(interrupts):
    outcomes = run_batch(slow_for_one, [(i, (i,), {}) for i in range(3)], max_inputs=3, timeout_s=0.2)
    assert [(index, ok) for index, ok, _ in outcomes] == [(0, True), (1, False), (2, True)]
    error = pb.ErrorInfo.FromString(outcomes[1][2])
    assert error.type_name == "TimeoutError" and "input 1" in error.message


class Source:
    """A stand-in for the public API's blocking methods."""

    def __init__(self) -> None:
        self.closed = False

    @WithAio
    def add(self, a: int, b: int) -> int:
        return a + b

    @WithAio
    def numbers(self, n: int):
        try:
            yield from range(n)
        finally:
            self.closed = True

    @WithAio.iterating
    def squares(self, values) -> list[int]:
        return [v * v for v in values]

    @WithAio.on_class
    def kind(cls) -> str:
        return cls.__name__

    @WithAio.static
    def total(*values: int) -> int:
        return sum(values)


def test_with_aio_gives_awaitables_and_async_iterators():
    source = Source()

    async def use() -> tuple:
        added = await source.add.aio(2, 3)
        numbers = [n async for n in source.numbers.aio(4)]

        async def produce():
            for v in (1, 2, 3):
                yield v

        squares = [s async for s in source.squares.aio(produce())]  # an async iterable argument, as map.aio takes
        return added, numbers, squares, await Source.kind.aio(), await Source.total.aio(1, 2, 3)

    assert asyncio.run(use()) == (5, [0, 1, 2, 3], [1, 4, 9], "Source", 6)
    assert source.add(1, 1) == 2 and Source.add(source, 2, 2) == 4  # the blocking twin is unchanged


def test_stopping_an_aio_iterator_early_closes_the_blocking_one():
    source = Source()

    async def take_two() -> list[int]:
        taken = []
        async for n in source.numbers.aio(100):
            taken.append(n)
            if len(taken) == 2:
                break
        return taken

    assert asyncio.run(take_two()) == [0, 1]
    wait_for(lambda: source.closed, 5, "the blocking generator to be closed")


def test_app_run_works_with_async_with():
    import nbmodal

    app = nbmodal.App("async-with")

    async def use() -> bool:
        async with app.run() as running:
            return running is app

    assert asyncio.run(use())
    with app.run() as running:
        assert running is app
