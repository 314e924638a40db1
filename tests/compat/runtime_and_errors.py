"""Where code runs and how errors come back: `modal.is_local()`, the call and input ids, remote exceptions
with their own types, `modal.exception.NotFoundError`."""

import nbmodal as modal

app = modal.App("example-runtime-and-errors")


class CustomError(Exception):
    pass


@app.function()
def where() -> dict:
    return {"local": modal.is_local(), "call_id": modal.current_function_call_id(),
            "input_id": modal.current_input_id()}


@app.function()
def fails(kind: str):
    if kind == "key":
        return {}["missing"]
    raise CustomError(f"custom failure: {kind}")


@app.local_entrypoint()
def main():
    assert modal.is_local()
    info = where.remote()
    assert info["local"] is False and info["call_id"] and info["input_id"], info

    call = where.spawn()
    assert call.get()["call_id"] == call.object_id

    try:
        fails.remote("key")
    except KeyError as exc:
        assert "missing" in str(exc)
    else:
        raise AssertionError("fails('key') should raise KeyError")
    try:
        fails.remote("custom")
    except CustomError as exc:
        assert "custom failure" in str(exc)
    else:
        raise AssertionError("fails('custom') should raise CustomError")

    try:
        modal.Dict.from_name("compat-no-such-dict-anywhere").len()
    except modal.exception.NotFoundError:
        pass
    else:
        raise AssertionError("a missing Dict should raise NotFoundError")
    assert issubclass(modal.exception.NotFoundError, modal.Error)
    print("runtime and errors ok")
