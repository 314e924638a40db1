"""The Python API under the magics: App, Function, FunctionCall (named as in Modal)."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

import nbmodal

pytestmark = pytest.mark.agent

app = nbmodal.App("tests")


@app.function()
def add(a, b=0):
    print("adding", a, b)
    return a + b


@app.function()
def identity(value):
    return value


@app.function()
def fail(message):
    raise LookupError(message)


@app.function(timeout=1)
def slow():
    time.sleep(30)


@app.function()
def sleepy(seconds):
    time.sleep(seconds)
    return seconds


def test_remote_local_and_call(capsys):
    assert add.remote(2, b=3) == 5
    assert "adding 2 3" in capsys.readouterr().out  # remote prints stream here
    assert add.local(2, 3) == 5 and add(1) == 1
    assert app.registered_functions["add"] is add


def test_closures_travel_by_value():
    scale = 3

    @app.function()
    def scaled(v):
        return v * scale

    assert scaled.remote(5) == 15


def test_numpy_64_mib_round_trip():
    array = np.random.default_rng(0).random(8 * 1024 * 1024)  # 64 MiB of float64
    back = identity.remote(array)
    assert back.dtype == array.dtype and np.array_equal(back, array)


def test_remote_exception_keeps_its_type_and_remote_traceback():
    with pytest.raises(LookupError, match="nope") as info:
        fail.remote("nope")
    assert "raise LookupError(message)" in info.value.remote_traceback
    assert "Remote traceback" in str(info.value.__cause__)


def test_timeout_raises_timeout_error():
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="timeout of 1 s"):
        slow.remote()
    assert time.monotonic() - started < 10


def test_spawn_get_and_cancel():
    call = sleepy.spawn(0.3)
    assert isinstance(call, nbmodal.FunctionCall) and call.object_id.startswith("r-")
    with pytest.raises(TimeoutError, match="has not finished"):
        call.get(timeout=0.05)
    assert call.get() == 0.3
    assert call.get() == 0.3  # a result is kept
    assert nbmodal.FunctionCall.from_id(call.object_id).get() == 0.3
    long_call = sleepy.spawn(60)
    time.sleep(0.3)
    long_call.cancel()
    with pytest.raises(KeyboardInterrupt):
        long_call.get(timeout=20)
    assert nbmodal.FunctionCall.gather(add.spawn(1, 1), add.spawn(2, 2)) == [2, 4]


def test_aio_variants():
    async def main():
        a, b = await asyncio.gather(add.remote.aio(1, 2), add.remote.aio(3, 4))
        call = await sleepy.spawn.aio(0.01)
        return a, b, await call.get.aio()

    assert asyncio.run(main()) == (3, 7, 0.01)


def test_app_run_is_accepted_for_modal_code():
    with app.run():
        assert add.remote(1, 1) == 2
