"""Images defined in code: env vars and shell steps (built offline on the host), `image.imports()`."""

import nbmodal as modal

image = (
    modal.Image.debian_slim()
    .env({"GREETING": "hello from the image", "STAGE": "compat"})
    .run_commands("echo building the compat image", "mkdir -p /tmp/compat-image-step")
    .workdir("/tmp")
)

app = modal.App("example-images", image=image)

with image.imports():
    import json


@app.function()
def inside() -> dict:
    import os
    import sys

    return {"greeting": os.environ["GREETING"], "stage": os.environ["STAGE"],
            "python": sys.version_info[:2], "json": json.dumps([1, 2])}


@app.function(image=modal.Image.debian_slim().env({"GREETING": "per-function image"}))
def other() -> str:
    import os

    return os.environ["GREETING"]


@app.local_entrypoint()
def main():
    import sys

    got = inside.remote()
    assert got["greeting"] == "hello from the image" and got["stage"] == "compat", got
    assert tuple(got["python"]) == sys.version_info[:2], got
    assert got["json"] == "[1, 2]"
    assert other.remote() == "per-function image"
    print("images ok")
