"""Resources and timeouts: `cpu=(request, limit)`, `memory=(request, limit)`, and `timeout=` enforced."""

import time

import nbmodal as modal

app = modal.App("example-resources")


@app.function(cpu=(0.5, 2.0), memory=(128, 1024), timeout=60)
def within_limits(n: int) -> int:
    data = bytearray(n * 1024 * 1024)  # n MiB, well under the limit
    return len(data) // (1024 * 1024)


@app.function(timeout=1)
def too_slow() -> str:
    time.sleep(30)
    return "never"


@app.local_entrypoint()
def main():
    assert within_limits.remote(16) == 16
    start = time.monotonic()
    try:
        too_slow.remote()
    except (modal.exception.FunctionTimeoutError, TimeoutError):
        pass
    else:
        raise AssertionError("too_slow should have timed out")
    assert time.monotonic() - start < 20, "the timeout was not enforced"
    print("resources and timeouts ok")
