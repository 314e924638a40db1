"""`@modal.concurrent`: one container serves several inputs at once."""

import nbmodal as modal

app = modal.App("example-concurrent")


@app.function(max_containers=1)
@modal.concurrent(max_inputs=4)
def wait_a_bit(i: int) -> tuple:
    import os
    import time

    start = time.time()
    time.sleep(1.0)
    return os.getpid(), start, time.time()


@app.local_entrypoint()
def main():
    spans = list(wait_a_bit.map(range(4)))
    assert len({pid for pid, _, _ in spans}) == 1, spans  # one container
    # concurrent inputs overlap in time; one at a time, none would
    overlapping = sum(1 for i, a in enumerate(spans) for b in spans[i + 1:] if a[1] < b[2] and b[1] < a[2])
    assert overlapping >= 3, spans
    print("concurrent ok:", overlapping, "overlapping pairs")
