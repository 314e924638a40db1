"""Modal's "hello world": a function run remotely, locally and over a map, from a local entrypoint."""

import sys

import nbmodal as modal

app = modal.App("example-get-started")


@app.function()
def f(i):
    if i % 2 == 0:
        print("hello", i)
    else:
        print("world", i, file=sys.stderr)

    return i * i


@app.local_entrypoint()
def main():
    # run the function locally
    assert f.local(1000) == 1000000

    # run the function remotely on Modal
    assert f.remote(1000) == 1000000

    # run the function in parallel and remotely on Modal
    total = 0
    for ret in f.map(range(200)):
        total += ret

    assert total == sum(i * i for i in range(200)), total
    print("hello world ok, total:", total)
