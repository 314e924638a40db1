"""Async variants: `async def` functions, `.remote.aio`, `.map.aio` with `async for`, `.spawn.aio`,
an async generator over `.remote_gen.aio`, and an async local entrypoint."""

import asyncio

import nbmodal as modal

app = modal.App("example-async")


@app.function()
async def async_square(x: int) -> int:
    await asyncio.sleep(0.01)
    return x * x


@app.function()
def sync_double(x: int) -> int:
    return 2 * x


@app.function()
async def ticks(n: int):
    for i in range(n):
        await asyncio.sleep(0)
        yield i


@app.local_entrypoint()
async def main():
    assert await async_square.remote.aio(7) == 49
    assert await sync_double.remote.aio(7) == 14
    assert async_square.remote(3) == 9  # an async function called from sync code

    results = []
    async for value in async_square.map.aio(range(5)):
        results.append(value)
    assert results == [0, 1, 4, 9, 16], results

    both = await asyncio.gather(async_square.remote.aio(2), sync_double.remote.aio(2))
    assert both == [4, 4], both

    call = await sync_double.spawn.aio(21)
    assert await call.get.aio() == 42

    items = [item async for item in ticks.remote_gen.aio(4)]
    assert items == [0, 1, 2, 3], items
    print("async ok")
