"""`@modal.batched`: individual calls are grouped into lists of up to `max_batch_size`."""

import nbmodal as modal

app = modal.App("example-batched")


@app.function(max_containers=1)
@modal.batched(max_batch_size=4, wait_ms=200)
def batched_multiply(xs: list[int], ys: list[int]) -> list[tuple]:
    return [(x * y, len(xs)) for x, y in zip(xs, ys)]


@app.cls()
class BatchedModel:
    @modal.batched(max_batch_size=3, wait_ms=200)
    def embed(self, texts: list[str]) -> list[int]:
        return [len(t) for t in texts]


@app.local_entrypoint()
def main():
    # the batched function is called with individual inputs
    product, size = batched_multiply.remote(3, 4)
    assert product == 12 and size == 1

    results = list(batched_multiply.map(range(10), range(10)))
    assert [p for p, _ in results] == [x * x for x in range(10)], results
    sizes = [s for _, s in results]
    assert max(sizes) <= 4 and max(sizes) > 1, sizes

    words = ["a", "bb", "ccc", "dddd", "eeeee"]
    assert list(BatchedModel().embed.map(words)) == [1, 2, 3, 4, 5]
    print("batched ok: batch sizes", sorted(set(sizes)))
