"""The sidebar's REST API through a real Jupyter server and the real local agent."""

from __future__ import annotations

import json
import time

import pytest

import nbmodal
from jupyterserver import jupyter_server
from nbmodal._runtime.connection import get_client

pytestmark = pytest.mark.agent

app = nbmodal.App("sidebar-api")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with jupyter_server(tmp_path_factory.mktemp("lab-root")) as running:
        yield running


def get_json(server, path: str):
    status, body = server.request("GET", path)
    assert status == 200, (status, body)
    return json.loads(body)


def test_requests_without_jupyters_token_are_refused(server):
    status, _ = server.request("GET", "overview", token=False)
    assert status == 403


def test_overview_runs_log_and_stop(server, agent_address):
    @app.function()
    def chatty(n: int) -> int:
        import time

        for i in range(n):
            print(f"line {i}", flush=True)
            time.sleep(0.2)
        return n

    done = chatty.spawn(2)
    done.get(timeout=60)
    slow = chatty.spawn(300)
    view = get_json(server, "overview")
    local = next(h for h in view["hosts"] if h["name"] == "local")
    assert local["reachable"] and local["agent_version"] == nbmodal.__version__
    assert local["cpus"] >= 1 and 0 < local["memory_used"] <= local["memory_total"]
    runs = {r["run_id"]: r for r in view["runs"]}
    assert runs[done.object_id]["state"] == "SUCCEEDED" and runs[done.object_id]["duration_s"] > 0

    log = get_json(server, f"runs/local/{done.object_id}/log")
    assert "line 0\nline 1\n" in log["text"] and log["done"] and log["state"] == "SUCCEEDED"
    again = get_json(server, f"runs/local/{done.object_id}/log?after={log['last_seq']}")
    assert again["text"] == ""  # nothing after the last event seen

    deadline = time.monotonic() + 30
    while "line 0" not in get_json(server, f"runs/local/{slow.object_id}/log")["text"]:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    busy = [c for c in get_json(server, "overview")["containers"] if c["run_id"] == slow.object_id]
    assert busy and busy[0]["state"] == "busy"
    status, body = server.request("POST", f"runs/local/{slow.object_id}/stop", data=b"")
    assert status == 200, body
    deadline = time.monotonic() + 30
    while get_json(server, f"runs/local/{slow.object_id}/log")["state"] != "CANCELLED":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert server.request("GET", "runs/local/r-00000000/log")[0] == 404


def test_volumes_dicts_queues_and_containers(server, agent_address, tmp_path):
    volume = nbmodal.Volume.from_name("sidebar-vol", create_if_missing=True)
    local_file = tmp_path / "weights.bin"
    local_file.write_bytes(b"\x00\x01weights")
    with volume.batch_upload() as batch:
        batch.put_file(local_file, "/ckpt/weights.bin")
    nbmodal.Dict.from_name("sidebar-dict", create_if_missing=True)["lr"] = 0.1
    nbmodal.Queue.from_name("sidebar-queue", create_if_missing=True).put_many([1, 2, 3])

    view = get_json(server, "overview")
    assert {"host": "local", "name": "sidebar-dict", "length": 1, "home": "local"} in view["dicts"]
    assert {"host": "local", "name": "sidebar-queue", "length": 3, "home": "local"} in view["queues"]
    assert any(v["name"] == "sidebar-vol" and v["size"] > 0 and v["role"] == "home" and v["version"] >= 1
               for v in view["volumes"])  # batch_upload committed a version

    [directory] = get_json(server, "volumes/local/sidebar-vol?path=/")["entries"]
    assert (directory["path"], directory["type"]) == ("/ckpt", "dir")  # the sidebar's word: it opens, not downloads
    entries = get_json(server, "volumes/local/sidebar-vol?path=/ckpt")["entries"]
    assert [(e["path"], e["type"], e["size"]) for e in entries] == [("/ckpt/weights.bin", "file", 9)]
    status, body = server.request("GET", "volumes/local/sidebar-vol/download?path=/ckpt/weights.bin")
    assert status == 200 and body == b"\x00\x01weights"
    assert get_json(server, "dicts/local/sidebar-dict/peek")["items"] == ["'lr': 0.1"]
    assert get_json(server, "queues/local/sidebar-queue/peek")["items"] == ["1", "2", "3"]
    status, _ = server.request("DELETE", "volumes/local/sidebar-vol?path=/ckpt")
    assert status == 200 and get_json(server, "volumes/local/sidebar-vol?path=/")["entries"] == []
    status, body = server.request("GET", "volumes/local/no-such-volume?path=/")
    assert status == 404 and "no-such-volume" in json.loads(body)["error"]

    @app.function(scaledown_window=600)
    def idle() -> int:
        return 1

    idle.remote()
    # Other tests' idle containers may be at the end of their window (0 s left, about to be reclaimed):
    # this one's 600 s window has just begun.
    idle_rows = [c for c in get_json(server, "overview")["containers"] if c["state"] == "idle"]
    container = max(idle_rows, key=lambda c: c["idle_left_s"] or 0)
    assert container["idle_left_s"] > 500
    status, _ = server.request("POST", f"containers/local/{container['container_id']}/stop", data=b"")
    assert status == 200
    deadline = time.monotonic() + 15
    while any(c.container_id == container["container_id"] for c in get_client().list_containers()):
        assert time.monotonic() < deadline, "the stopped container is still there"
        time.sleep(0.2)


def test_an_unreachable_host_is_one_row_with_its_error(server, agent_address, monkeypatch, nbmodal_home):
    config = nbmodal_home / "config.toml"
    before = config.read_text() if config.exists() else None
    config.write_text(before or "")
    with open(config, "a") as f:
        f.write('\n[hosts.ghost]\ntarget = "nobody@127.0.0.1:1"\n')
    try:
        view = get_json(server, "overview")
    finally:
        if before is None:
            config.unlink()
        else:
            config.write_text(before)
    ghost = next(h for h in view["hosts"] if h["name"] == "ghost")
    assert not ghost["reachable"] and ghost["error"]
    assert any(h["name"] == "local" and h["reachable"] for h in view["hosts"])


def test_images_show_their_log_rebuild_and_go(server, agent_address):
    import uuid

    from nbmodal._runtime.connection import connection
    from nbmodal._runtime.images import ensure_built

    image = nbmodal.Image.debian_slim().env({"SIDEBAR": uuid.uuid4().hex}).run_commands("echo built-for-the-sidebar")
    image.name = "sidebar-image"
    image_id = ensure_built(image, connection("local"))
    row = next(i for i in get_json(server, "overview")["images"] if i["image_id"] == image_id)
    assert row["name"] == "sidebar-image" and row["state"] == "ready" and row["python"]
    assert "built-for-the-sidebar" in get_json(server, f"images/local/{image_id}/log")["text"]

    status, body = server.request("POST", f"images/local/{image_id}/rebuild", data=b"")
    assert status == 200, body
    deadline = time.monotonic() + 60
    while not any(i["image_id"] == image_id and i["state"] == "ready" and i["created"] > row["created"]
                  for i in get_json(server, "overview")["images"]):
        assert time.monotonic() < deadline, "the rebuild didn't finish"
        time.sleep(0.3)
    assert "(cached)" not in get_json(server, f"images/local/{image_id}/log")["text"]  # every step again

    status, _ = server.request("DELETE", f"images/local/{image_id}")
    assert status == 200
    assert not any(i["image_id"] == image_id for i in get_json(server, "overview")["images"])
    assert server.request("GET", "images/local/0123456789abcdef/log")[0] == 404
