"""A Volume written by remote functions and read here: commit, reload, listdir, read_file, batch_upload."""

import os
import tempfile
import uuid

import nbmodal as modal

app = modal.App("example-volumes")
vol = modal.Volume.from_name("compat-volume", create_if_missing=True)


@app.function(volumes={"/data": vol})
def write(run: str, i: int) -> str:
    path = f"/data/{run}/part-{i}.txt"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(f"part {i}\n")
    vol.commit()  # persist changes
    return path


@app.function(volumes={"/data": vol})
def read_all(run: str) -> list:
    vol.reload()  # fetch the latest changes
    return sorted(open(os.path.join(f"/data/{run}", name)).read() for name in os.listdir(f"/data/{run}"))


@app.local_entrypoint()
def main():
    run = uuid.uuid4().hex[:8]
    list(write.map([run] * 3, range(3)))
    assert read_all.remote(run) == ["part 0\n", "part 1\n", "part 2\n"]

    names = sorted(entry.path for entry in vol.listdir(f"/{run}"))
    assert [os.path.basename(n) for n in names] == ["part-0.txt", "part-1.txt", "part-2.txt"], names
    assert b"".join(vol.read_file(f"{run}/part-1.txt")) == b"part 1\n"

    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, "config.yaml")
        with open(local, "w") as f:
            f.write("lr: 0.1\n")
        with vol.batch_upload() as batch:
            batch.put_file(local, f"/{run}/config.yaml")
    assert any(e.path.endswith("config.yaml") for e in vol.listdir(f"/{run}"))
    vol.remove_file(f"/{run}", recursive=True)

    with modal.Volume.ephemeral() as scratch:
        with tempfile.TemporaryDirectory() as tmp:
            with open(os.path.join(tmp, "hello.txt"), "w") as f:
                f.write("hi")
            with scratch.batch_upload() as batch:
                batch.put_directory(tmp, "/greetings")
        assert [os.path.basename(e.path) for e in scratch.listdir("/greetings")] == ["hello.txt"]
        assert b"".join(scratch.read_file("greetings/hello.txt")) == b"hi"
    print("volumes ok")
