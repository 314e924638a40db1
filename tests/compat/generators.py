"""Generator functions: items stream back with `remote_gen` as the container yields them."""

import nbmodal as modal

app = modal.App("example-generators")


@app.function()
def f(i):
    for j in range(i):
        yield j


@app.function()
def countdown(start: int, step: int = 1):
    n = start
    while n > 0:
        yield {"n": n, "square": n * n}
        n -= step


@app.local_entrypoint()
def main():
    items = []
    for r in f.remote_gen(10):
        items.append(r)
    assert items == list(range(10)), items

    rows = list(countdown.remote_gen(6, step=2))
    assert rows == [{"n": 6, "square": 36}, {"n": 4, "square": 16}, {"n": 2, "square": 4}], rows
    print("generators ok:", len(items), len(rows))
