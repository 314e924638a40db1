"""async on the local agent: ``async def`` functions, generators and classes run in containers, and the
``.aio`` twins of ``remote``, ``spawn``, ``map``, ``remote_gen`` and of Dict and Queue methods."""

from __future__ import annotations

import asyncio

import pytest

import nbmodal

pytestmark = pytest.mark.agent

app = nbmodal.App("async")


@app.function()
async def add_later(a: int, b: int) -> int:
    await asyncio.sleep(0.01)
    return a + b


@app.function()
async def count_up(n: int):
    for i in range(n):
        await asyncio.sleep(0)
        yield i


@app.function()
@nbmodal.concurrent(max_inputs=4)
async def square_after(x: int, delay: float) -> int:
    await asyncio.sleep(delay)
    return x * x


@app.cls()
class AsyncClient:
    scale: int = nbmodal.parameter(default=2)

    @nbmodal.enter()
    async def connect(self):
        await asyncio.sleep(0)
        self.inbox: asyncio.Queue = asyncio.Queue()  # bound to the container's loop, as an async client is
        self.loop_id = id(asyncio.get_running_loop())

    @nbmodal.method()
    async def scaled(self, x: int) -> tuple[int, bool]:
        await self.inbox.put(x)  # fails on any loop but the one the queue was made on
        value = await self.inbox.get()
        return value * self.scale, id(asyncio.get_running_loop()) == self.loop_id


def test_an_async_function_runs_remotely():
    assert add_later.remote(2, 3) == 5


def test_an_async_generator_streams_its_items():
    assert list(count_up.remote_gen(4)) == [0, 1, 2, 3]


@app.function(timeout=1)
async def sleep_past_timeout() -> None:
    await asyncio.sleep(60)


def test_a_class_with_async_enter_and_method_keeps_its_loop():
    client = AsyncClient(scale=3)
    assert client.scaled.remote(2) == (6, True)
    assert client.scaled.remote(5) == (15, True)  # the second run: the same loop, the same queue
    assert asyncio.run(client.scaled.remote.aio(7)) == (21, True)
    assert list(client.scaled.map([1, 2])) == [(3, True), (6, True)]  # a batch on that loop too


def test_an_async_function_past_its_timeout_is_stopped():
    with pytest.raises(TimeoutError, match="timeout of 1 s"):
        sleep_past_timeout.remote()


def test_aio_twins_of_remote_spawn_map_and_remote_gen():
    async def use() -> tuple:
        together = await asyncio.gather(add_later.remote.aio(1, 1), add_later.remote.aio(2, 2))
        call = await add_later.spawn.aio(5, 5)
        spawned = await call.get.aio(timeout=120)
        # Later inputs finish first: the results still come in input order.
        squares = [x async for x in square_after.map.aio(range(6), [0.3 - 0.05 * i for i in range(6)])]
        starred = [x async for x in square_after.starmap.aio([(7, 0.0), (8, 0.0)])]
        items = [i async for i in count_up.remote_gen.aio(3)]
        return together, spawned, squares, starred, items

    together, spawned, squares, starred, items = asyncio.run(use())
    assert together == [2, 4] and spawned == 10
    assert squares == [0, 1, 4, 9, 16, 25] and starred == [49, 64] and items == [0, 1, 2]


def test_dict_and_queue_aio():
    async def use() -> tuple:
        d = nbmodal.Dict.from_name("async-dict", create_if_missing=True)
        await d.clear.aio()
        await d.put.aio("k", 1)
        got = await d.get.aio("k")
        keys = [k async for k in d.keys.aio()]
        q = nbmodal.Queue.from_name("async-queue", create_if_missing=True)
        await q.clear.aio()
        await q.put.aio("a")
        await q.put_many.aio(["b", "c"])
        first = await q.get.aio()
        rest = [item async for item in q.iterate.aio()]
        return got, keys, first, rest

    assert asyncio.run(use()) == (1, ["k"], "a", ["b", "c"])
