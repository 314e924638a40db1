"""Retries: a flaky function succeeds on its third attempt with `modal.Retries`, and with `retries=N`."""

import nbmodal as modal

app = modal.App("example-retries")
attempts = modal.Dict.from_name("compat-retries-attempts", create_if_missing=True)


@app.function(retries=modal.Retries(max_retries=3, backoff_coefficient=1.0, initial_delay=0.1))
def flaky(key: str) -> int:
    n = attempts.get(key, 0) + 1
    attempts[key] = n
    if n < 3:
        raise RuntimeError(f"attempt {n} of {key} fails")
    return n


@app.function(retries=2)
def always_fails(key: str) -> None:
    attempts[key] = attempts.get(key, 0) + 1
    raise ValueError(f"{key} never works")


@app.local_entrypoint()
def main():
    import uuid

    run = uuid.uuid4().hex[:8]
    assert flaky.remote(f"remote-{run}") == 3  # retries apply to .remote()
    assert flaky.spawn(f"spawn-{run}").get() == 3  # and to .spawn()
    assert list(flaky.map([f"map-a-{run}", f"map-b-{run}"])) == [3, 3]

    try:
        always_fails.remote(f"never-{run}")
    except ValueError as exc:
        assert "never works" in str(exc)
    else:
        raise AssertionError("always_fails should raise after its retries")
    assert attempts[f"never-{run}"] == 3, attempts[f"never-{run}"]  # 1 try + 2 retries
    print("retries ok")
