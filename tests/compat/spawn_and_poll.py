"""Spawn a call, poll it with `FunctionCall.get(timeout=)`, find it again by id, gather several."""

import time

import nbmodal as modal

app = modal.App("example-spawn-and-poll")


@app.function()
def slow_add(a: int, b: int, delay: float = 0.0) -> int:
    time.sleep(delay)
    return a + b


@app.local_entrypoint()
def main():
    call = slow_add.spawn(1, 2, delay=3.0)
    assert isinstance(call, modal.FunctionCall)
    call_id = call.object_id

    # still running: get(timeout=0) raises TimeoutError and the call goes on
    try:
        call.get(timeout=0)
    except TimeoutError:
        pass
    else:
        raise AssertionError("a 3 s call finished at once")

    # another process (say, a web handler) finds the call again by its id
    again = modal.FunctionCall.from_id(call_id)
    assert again.get(timeout=60) == 3
    assert call.get() == 3

    calls = [slow_add.spawn(i, i) for i in range(4)]
    assert modal.FunctionCall.gather(*calls) == [0, 2, 4, 6]
    print("spawn and poll ok:", call_id)
