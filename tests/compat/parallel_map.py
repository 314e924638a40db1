"""Parallel fan-out: `map`, `starmap`, `kwargs=`, `order_outputs=False`, `return_exceptions=True`, `for_each`."""

import nbmodal as modal

app = modal.App("example-parallel-map")


@app.function()
def my_func(a):
    if a == 2:
        raise Exception("ohno")
    return a**2


@app.function()
def add(a, b, scale=1):
    return (a + b) * scale


@app.function(max_containers=4)
def slow_square(x):
    import time

    time.sleep(0.01 * (10 - x))
    return x * x


@app.local_entrypoint()
def main():
    assert list(my_func.map([0, 1, 3])) == [0, 1, 9]

    # failures in place, as values, instead of raising
    results = list(my_func.map(range(3), return_exceptions=True))
    assert results[:2] == [0, 1], results
    assert isinstance(results[2], Exception) and "ohno" in str(results[2]), results

    # the first failure raises without return_exceptions
    try:
        list(my_func.map(range(3)))
    except Exception as exc:
        assert "ohno" in str(exc), exc
    else:
        raise AssertionError("my_func.map should have raised")

    assert list(add.starmap([(1, 2), (3, 4)])) == [3, 7]
    assert list(add.starmap([(1, 2), (3, 4)], kwargs={"scale": 10})) == [30, 70]
    assert list(add.map([1, 2, 3], [10, 20, 30])) == [11, 22, 33]
    assert list(add.map([1, 2], [3, 4], kwargs={"scale": 2})) == [8, 12]

    unordered = list(slow_square.map(range(10), order_outputs=False))
    assert sorted(unordered) == [x * x for x in range(10)], unordered

    add.for_each([1, 2, 3], [4, 5, 6])
    my_func.for_each(range(4), ignore_exceptions=True)
    print("parallel map ok")
