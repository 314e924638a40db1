"""Dicts and Queues shared between the entrypoint and remote functions: named, and ephemeral."""

import queue
import uuid

import nbmodal as modal

app = modal.App("example-dicts-and-queues")
results = modal.Dict.from_name("compat-results", create_if_missing=True)


@app.function()
def producer(q: modal.Queue, n: int) -> None:
    for i in range(n):
        q.put(i)
    q.put(None)


@app.function()
def consumer(q: modal.Queue, run: str) -> int:
    total = 0
    while (item := q.get(timeout=30)) is not None:
        total += item
    results[run] = total
    return total


@app.function()
def record(d: modal.Dict, key: str, value: int) -> None:
    d[key] = value


@app.local_entrypoint()
def main():
    run = uuid.uuid4().hex[:8]
    with modal.Queue.ephemeral() as q:
        producer.remote(q, 10)
        assert consumer.remote(q, run) == 45
        assert q.len() == 0
        try:
            q.get(block=False)
        except queue.Empty:
            pass
        else:
            raise AssertionError("the queue should be empty")
        q.put_many([1, 2, 3], partition="p")
        assert q.get_many(3, partition="p") == [1, 2, 3]

    assert results[run] == 45
    assert results.get("missing-key", "default") == "default"
    assert run in results

    with modal.Dict.ephemeral() as d:
        record.remote(d, "a", 1)
        list(record.starmap([(d, "b", 2), (d, "c", 3)]))
        assert dict(d.items()) == {"a": 1, "b": 2, "c": 3}
        assert d.len() == 3
        d.put("a", 10, skip_if_exists=True)
        assert d["a"] == 1
        d.update(x=5)
        assert d.pop("x") == 5
    results.pop(run)
    print("dicts and queues ok")
