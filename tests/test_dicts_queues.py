"""Dicts and Queues: the Modal API, durability across kill -9, use from remote cells, limits, bad names."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import nbmodal
from kernels import kernel
from nbmodal import commands
from nbmodal._runtime.local_agent import ensure_local_agent, read_agent_json
from nbmodal_wire.pids import pid_alive
from waiting import wait_for

pytestmark = pytest.mark.agent


def test_dict_api():
    d = nbmodal.Dict.from_name("api-dict", create_if_missing=True)
    d.clear()
    d["a"] = 1
    assert d.put(("tuple", 2), {"nested": [1, 2]}) is True
    assert d.put("a", 99, skip_if_exists=True) is False and d["a"] == 1
    d.update({"b": 2}, c=3)
    assert d.get("missing") is None and d.get("missing", 5) == 5
    with pytest.raises(KeyError):
        d["missing"]
    assert "a" in d and d.contains(("tuple", 2)) and "zzz" not in d
    assert len(d) == 4 and d.len() == 4
    assert d.keys() == ["a", ("tuple", 2), "b", "c"]
    assert dict(d.items())["b"] == 2 and sorted(map(str, d.values()))[0] == "1"
    assert d.pop("b") == 2 and d.pop("b", "gone") == "gone"
    del d["c"]
    with pytest.raises(KeyError):
        d.pop("c")
    with pytest.raises(TypeError, match="hashable"):
        d[["a list"]] = 1
    d.clear()
    assert len(d) == 0
    with nbmodal.Dict.ephemeral() as scratch:
        scratch["x"] = 1
        name = scratch.name
    with pytest.raises(nbmodal.NotFoundError):
        nbmodal.Dict.from_name(name)


def test_queue_api_and_standard_library_semantics():
    q = nbmodal.Queue.from_name("api-queue", create_if_missing=True)
    q.clear(all=True)
    q.put(1)
    q.put_many([2, 3, 4])
    q.put("p", partition="side")
    assert len(q) == 4 and q.len(partition="side") == 1 and q.len(total=True) == 5
    assert q.peek(2) == [1, 2] and len(q) == 4
    assert q.get() == 1 and q.get_many(2) == [2, 3] and q.get_many(10) == [4]
    with pytest.raises(queue.Empty):
        q.get(block=False)
    started = time.monotonic()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.5)
    assert time.monotonic() - started >= 0.45  # it waited its timeout for an item
    assert q.get(partition="side") == "p"
    threading.Timer(0.3, lambda: nbmodal.Queue.from_name("api-queue").put("late")).start()
    assert q.get(timeout=10) == "late"  # a blocked get wakes when an item comes
    q.put_many(list(range(5)))
    assert list(q.iterate()) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="non-negative"):
        q.get(timeout=-1)


def test_limits_are_enforced_with_sizes_in_the_message():
    d = nbmodal.Dict.from_name("limits", create_if_missing=True)
    with pytest.raises(ValueError, match=r"a value of 16.\d MiB pickled is over the 16.0 MiB limit for Dict values"):
        d["big"] = b"x" * (16 * 1024 * 1024 + 10)
    q = nbmodal.Queue.from_name("limits", create_if_missing=True)
    with pytest.raises(ValueError, match=r"a queue item of 1.\d MiB pickled is over the 1.0 MiB limit"):
        q.put(b"x" * (1024 * 1024 + 10))


def test_queue_full_when_a_partition_has_no_room(monkeypatch):
    q = nbmodal.Queue.from_name("full-check", create_if_missing=True)
    q.clear(all=True)
    from remote_agent import storage

    # 100,000 items is the real limit; fill most of it in one write, then hit it.
    q.put_many([0] * (storage.QUEUE_PARTITION_MAX_ITEMS - 1))
    q.put(1)
    with pytest.raises(queue.Full):
        q.put(2, block=False)
    with pytest.raises(queue.Full):
        q.put(2, timeout=0.3)
    q.get()
    q.put(3, timeout=5)  # room again
    q.clear()
    assert len(q) == 0


def test_bad_names_are_refused_with_the_rule():
    for bad in ("", "a" * 65, "has space", "slash/name", "dots..ok?", "ünicode"):
        with pytest.raises(ValueError, match="use 1-64 characters of letters, digits, '-', '_' and '.'"):
            nbmodal.Dict.from_name(bad, create_if_missing=True)
        with pytest.raises(ValueError, match="use 1-64 characters"):
            nbmodal.Queue.from_name(bad, create_if_missing=True)
    nbmodal.Dict.from_name("ok-name_1.v2", create_if_missing=True)
    with pytest.raises(nbmodal.NotFoundError, match=r"no dict named 'never-made' on this host \(existing: .*"
                                                    r"ok-name_1.v2.*create_if_missing=True"):
        nbmodal.Dict.from_name("never-made")
    with pytest.raises(ValueError, match="partition 'bad partition'"):
        nbmodal.Queue.from_name("limits").put(1, partition="bad partition")


def test_acknowledged_puts_survive_kill_9_of_the_agent():
    d = nbmodal.Dict.from_name("durable", create_if_missing=True)
    q = nbmodal.Queue.from_name("durable", create_if_missing=True)
    q.clear()
    d["weights"] = list(range(100))
    q.put_many(["job-1", "job-2"])
    killed = read_agent_json().pid
    os.kill(killed, signal.SIGKILL)
    wait_for(lambda: not pid_alive(killed), 10, f"the killed agent (pid {killed}) to exit")
    ensure_local_agent()  # a new agent on the same state dir
    assert nbmodal.Dict.from_name("durable")["weights"] == list(range(100))
    assert nbmodal.Queue.from_name("durable").get_many(5) == ["job-1", "job-2"]


def test_producer_and_consumer_in_two_remote_cells(tmp_path):
    with kernel(tmp_path) as k:
        k.execute("import nbmodal\nwork = nbmodal.Queue.from_name('pipeline', create_if_missing=True)\n"
                  "work.clear()\nstats = nbmodal.Dict.from_name('pipeline-stats', create_if_missing=True)")
        producer = k.execute(textwrap.dedent("""
            %%remote --detach
            for i in range(200):
                work.put({"n": i})
            work.put(None)
            stats["produced"] = 200
        """))
        assert producer["error"] is None, producer
        consumer = k.execute(textwrap.dedent("""
            %%remote
            total = 0
            while (item := work.get(timeout=30)) is not None:
                total += item["n"]
            stats["total"] = total
        """))
        assert consumer["error"] is None, consumer
        assert k.execute("print(total, stats['total'])")["stdout"].split() == ["19900", "19900"]
        assert "pipeline" in k.execute("%nbmodal queue ls")["stdout"]
        assert k.execute("%nbmodal dict len pipeline-stats")["stdout"].strip() == "2"


def test_many_concurrent_producers_on_one_queue():
    q = nbmodal.Queue.from_name("concurrent", create_if_missing=True)
    q.clear()

    @nbmodal.App("producers").function()
    def produce(start: int, n: int) -> int:
        batch = list(range(start, start + n))
        for i in range(0, n, 50):
            q.put_many(batch[i:i + 50])
        return n

    calls = [produce.spawn(i * 1000, 1000) for i in range(4)]
    assert [c.get(timeout=120) for c in calls] == [1000] * 4
    items = q.get_many(5000)
    while len(items) < 4000:
        items += q.get_many(5000, timeout=5)
    assert sorted(items) == [i * 1000 + j for i in range(4) for j in range(1000)]


def test_containers_use_a_scoped_token_not_the_agent_token():
    @nbmodal.App("scoped").function()
    def environment() -> dict:
        import os

        return dict(os.environ)

    env = environment.remote()
    agent_token = json.loads((read_agent_json().state_dir / "agent.json").read_text())["token"]
    assert agent_token not in json.dumps(env)
    container_token = env["NBMODAL_CONTAINER_TOKEN"]
    # The container's token works for storage only, and not for running code.
    from nbmodal._runtime.client import AgentClient
    from nbmodal._runtime.local_agent import AgentAddress
    from nbmodal_wire import pb

    address = read_agent_json()
    scoped = AgentClient(AgentAddress(address.host, address.port, container_token, 0, "?", 0, address.state_dir))
    assert scoped.dict_call(pb.DictRequest(op=pb.LIST)) is not None
    with pytest.raises(nbmodal.AgentError, match="refused"):
        scoped.list_runs()
    scoped.close()


def test_cli_verbs():
    d = nbmodal.Dict.from_name("cli-dict", create_if_missing=True)
    d["k"] = "v"

    def run(*args):
        return subprocess.run([sys.executable, "-m", "nbmodal.cli", *args], capture_output=True, text=True,
                              timeout=60)

    assert "cli-dict" in run("dict", "ls").stdout
    assert run("dict", "peek", "cli-dict").stdout.strip() == "'k': 'v'"
    assert run("dict", "len", "cli-dict").stdout.strip() == "1"
    assert "cleared" in run("dict", "clear", "cli-dict").stdout
    assert "deleted" in run("dict", "delete", "cli-dict").stdout
    missing = run("queue", "len", "nope")
    assert missing.returncode == 1 and "no queue named 'nope'" in missing.stderr
    assert commands.store_command("queue", "ls") is not None


def test_modal_keywords_are_accepted_and_the_meaningful_ones_honoured():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the cloud-only keywords warn once per process
        d = nbmodal.Dict.from_name("keywords-dict", {"seed": 1}, environment_name="main", create_if_missing=True,
                                   client=None, namespace=None)
        assert d["seed"] == 1  # data= (deprecated in Modal) is put into the Dict
        assert nbmodal.Dict.lookup("keywords-dict", environment_name="main")["seed"] == 1
        assert d.hydrate() is d
        q = nbmodal.Queue.from_name("keywords-queue", environment_name="main", create_if_missing=True)
        q.clear(all=True)
        q.put(1, partition_ttl=60)
        q.put_many([2], partition="p", partition_ttl=60)
        assert q.get() == 1 and q.get(partition="p") == 2
        with nbmodal.Dict.ephemeral({"a": 1}, environment_name="main") as scratch:
            assert scratch["a"] == 1
        with nbmodal.Queue.ephemeral(client=None) as scratch_queue:
            scratch_queue.put("x")
    nbmodal.Dict.delete("keywords-dict")
    nbmodal.Dict.delete("keywords-dict", allow_missing=True)  # already gone: no error
    with pytest.raises(nbmodal.NotFoundError):
        nbmodal.Queue.delete("never-made-queue")
    nbmodal.Queue.delete("keywords-queue", allow_missing=True, environment_name=None)


def test_aio_twins_and_async_with_on_dicts_and_queues():
    import asyncio

    async def use() -> tuple:
        async with nbmodal.Dict.ephemeral() as d:
            await d.update.aio({"a": 1}, b=2)
            items = [pair async for pair in d.items.aio()]
            length, popped, present = await d.len.aio(), await d.pop.aio("a"), await d.contains.aio("a")
        async with nbmodal.Queue.ephemeral() as q:
            await q.put_many.aio([1, 2, 3])
            many = await q.get_many.aio(2)
            peeked = await q.peek.aio()
            size = await q.len.aio()
        await nbmodal.Dict.delete.aio(d.name, allow_missing=True)
        return items, length, popped, present, many, peeked, size

    assert asyncio.run(use()) == ([("a", 1), ("b", 2)], 2, 1, False, [1, 2], [3], 1)
