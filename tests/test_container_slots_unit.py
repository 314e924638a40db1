"""The cap on live containers (remote_agent/container_slots.py) on a fake launcher: runs past it wait in order
and hear why, idle containers are reclaimed least recently used first (never a min_containers pin), a waiter
takes an idle container of its own spec, prewarming never passes the cap, and nested calls can't deadlock.

No process starts (tests/fakelauncher.py); every test waits on conditions, never on the wall clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from fakelauncher import FakeLauncher

from nbmodal_wire import pb
from remote_agent import container_slots
from remote_agent.allocator import Allocator
from remote_agent.container_slots import NoContainerSlot, default_limit, limit_setting
from remote_agent.containers import Container, ContainerPool
from remote_agent.gpus import FakeInventory

pytestmark = pytest.mark.unit


class CountingLauncher(FakeLauncher):
    """Records how many containers were live each time one was launched."""

    def __init__(self) -> None:
        super().__init__()
        self.pool: ContainerPool | None = None
        self.live_at_launch: list[int] = []

    async def launch(self, request):
        assert self.pool is not None
        self.live_at_launch.append(1 + sum(1 for c in self.pool.containers() if c.alive))
        return await super().launch(request)


def make_pool(tmp_path: Path, cap: int) -> ContainerPool:
    allocator = Allocator(FakeInventory("H100:1"), cores=[0, 1, 2, 3], memory_mib=4096)
    launcher = CountingLauncher()
    pool = ContainerPool(tmp_path / "logs", tmp_path / "blobs", 600.0, allocator, launcher, max_containers=cap)
    launcher.pool = pool
    return pool


def spec(tag: str, **kwargs) -> pb.ContainerSpec:
    return pb.ContainerSpec(env={"TAG": tag}, **kwargs)


def live(pool: ContainerPool) -> int:
    return sum(1 for container in pool.containers() if container.alive)


async def until(condition: Callable[[], bool], what: str, turns: int = 2_000) -> None:
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never happened: {what}")


def run(test) -> None:
    asyncio.run(asyncio.wait_for(test(), 30))


async def busy(pool: ContainerPool, *tags: str) -> list[Container]:
    """Containers of distinct specs, each taken by a run (not released: they count as running)."""
    return [(await pool.acquire(spec(tag)))[0] for tag in tags]


def test_a_run_past_the_cap_waits_in_order_hears_why_and_starts_when_a_slot_frees(tmp_path):
    async def test():
        pool = make_pool(tmp_path, cap=3)
        a, b, c = await busy(pool, "a", "b", "c")
        notices: dict[str, list[str]] = {"d": [], "e": []}
        d = asyncio.create_task(pool.acquire(spec("d"), notify=notices["d"].append))
        e = asyncio.create_task(pool.acquire(spec("e"), notify=notices["e"].append))
        await until(lambda: pool.slots.waiting == 2, "both runs wait for a slot")
        assert notices["d"][-1].startswith("waiting for a container slot: 3 of 3 live (next in line")
        assert notices["e"][-1].startswith("waiting for a container slot: 3 of 3 live (1 ahead")
        assert "NBMODAL_MAX_CONTAINERS" in notices["d"][-1]
        assert len(pool.launcher.launched) == 3 and live(pool) == 3

        a.kill()  # its slot frees when it has exited: the first in line gets it
        await until(d.done, "the first waiter starts")
        assert not e.done() and live(pool) == 3
        container_d, started = d.result()
        assert started and container_d.spec.env["TAG"] == "d"
        assert notices["e"][-1].startswith("waiting for a container slot: 3 of 3 live (next in line")

        b.kill()
        container_e, _ = await e
        assert container_e.spec.env["TAG"] == "e" and live(pool) == 3
        assert max(pool.launcher.live_at_launch) <= 3
        for container in (c, container_d, container_e):
            container.kill()
        await pool.shutdown()

    run(test)


def test_idle_containers_are_reclaimed_least_recently_used_first_but_never_a_min_containers_pin(tmp_path):
    async def test():
        pool = make_pool(tmp_path, cap=3)
        pinned_spec = spec("pinned", min_containers=1)
        pool.note_spec(pinned_spec)  # its standing container starts in the background
        await until(lambda: live(pool) == 1 and pool.is_idle(pool.containers()[0]), "the pinned container idles")
        pinned = pool.containers()[0]
        older, newer = await busy(pool, "older", "newer")
        pool.release(older)
        pool.release(newer)  # both idle now, `older` the least recently used
        assert pool.is_idle(older) and pool.is_idle(newer)
        notices: list[str] = []
        waiting = asyncio.create_task(pool.acquire(spec("new"), notify=notices.append))
        container, started = await waiting
        assert started and container.spec.env["TAG"] == "new"
        assert not older.alive, "the least recently used idle container was reclaimed"
        assert newer.alive and pool.is_idle(newer)
        assert pinned.alive and pool.is_idle(pinned), "min_containers pins its container"

        # Only the pin is left idle besides `newer`: the next run takes `newer`'s slot, never the pin's.
        await pool.acquire(spec("next"))
        assert not newer.alive and pinned.alive
        third = asyncio.create_task(pool.acquire(spec("third")))
        await until(lambda: pool.slots.waiting == 1, "nothing left to reclaim: it waits")
        assert pinned.alive
        third.cancel()
        await until(third.done, "the cancel lands")
        assert pool.slots.waiting == 0
        await pool.shutdown()

    run(test)


def test_a_waiter_takes_an_idle_container_of_its_own_spec_rather_than_reclaiming_one(tmp_path):
    async def test():
        pool = make_pool(tmp_path, cap=2)
        a, b = await busy(pool, "a", "b")
        waiting = asyncio.create_task(pool.acquire(spec("a")))
        await until(lambda: pool.slots.waiting == 1, "it waits")
        pool.release(a)  # idle: of the waiter's spec, so handed over, not stopped
        container, started = await waiting
        assert container is a and not started and a.alive
        assert len(pool.launcher.launched) == 2
        await pool.shutdown()

    run(test)


def test_prewarming_never_passes_the_cap_nor_takes_a_slot_a_run_waits_for(tmp_path):
    async def test():
        pool = make_pool(tmp_path, cap=2)
        await busy(pool, "a", "b")
        pool.prewarm(spec("warm"))
        pool.note_spec(spec("standing", min_containers=3))
        for _ in range(50):  # what a prewarm would need to launch (a fake container is ready in a few turns)
            await asyncio.sleep(0)
        assert len(pool.launcher.launched) == 2 and len(pool.slots) == 2
        pool.warm.keep_minimums()
        assert len(pool.launcher.launched) == 2
        await pool.shutdown()

    run(test)


def test_a_slot_wait_with_a_timeout_ends_with_a_clear_error_and_leaves_the_queue(tmp_path):
    async def test():
        pool = make_pool(tmp_path, cap=1)
        await busy(pool, "a")
        with pytest.raises(NoContainerSlot, match=r"no container slot freed within 0.2 s: 1 of 1 live"):
            await pool.start_dedicated(spec("sandbox"), slot_timeout_s=0.2)
        assert pool.slots.waiting == 0 and len(pool.slots) == 1
        await pool.shutdown()

    run(test)


def test_a_nested_run_borrows_the_slot_of_the_caller_that_waits_for_it(tmp_path):
    async def test():
        pool = make_pool(tmp_path, cap=2)
        parent, other = await busy(pool, "parent", "other")
        # Not nested: it waits like any run.
        plain = asyncio.create_task(pool.acquire(spec("plain"), run_id="r-plain"))
        await until(lambda: pool.slots.waiting == 1, "a plain run waits")
        # The parent's code calls f.remote(): while it waits, its slot is lent to that run.
        with pool.slots.lent(parent.id, "r-child"):
            child, started = await pool.acquire(spec("child"), run_id="r-child")
            assert started and live(pool) == 3  # over the cap by the one slot lent
            assert not plain.done(), "a lent slot is for the nested run, not the queue"
            # The child calls a grandchild: it lends in turn; the ceiling (twice the cap) still leaves room
            # for one more, and past it the nested call is refused, not left waiting for its own callers.
            with pool.slots.lent(child.id, "r-grandchild"):
                grandchild, _ = await pool.acquire(spec("grandchild"), run_id="r-grandchild")
                assert live(pool) == 4
                with pool.slots.lent(grandchild.id, "r-deeper"):
                    with pytest.raises(NoContainerSlot, match="no container slot for a nested call: 4 of 2 live"):
                        await pool.acquire(spec("deeper"), run_id="r-deeper")
                grandchild.kill()
            child.kill()
        other.kill()
        parent.kill()
        # 4 live containers were over the cap: the plain run waits until fewer than 2 are live.
        await plain
        assert live(pool) <= 2
        await pool.shutdown()

    run(test)


def test_a_nested_run_waits_while_containers_that_are_not_its_callers_hold_the_slots(tmp_path):
    async def test():
        pool = make_pool(tmp_path, cap=2)
        parent, other = await busy(pool, "parent", "other")
        with pool.slots.lent(parent.id, "r-child"):
            first, _ = await pool.acquire(spec("child-1"), run_id="r-child")  # the lent slot
            second = asyncio.create_task(pool.acquire(spec("child-2"), run_id="r-child"))
            await until(lambda: pool.slots.waiting == 1, "a second nested run waits: running ones hold the slots")
            first.kill()  # a running, non-waiting container ended: the nested run gets its slot
            await second
        await pool.shutdown()

    run(test)


def test_an_adopted_container_counts_and_a_slot_is_freed_when_a_start_fails(tmp_path):
    async def test():
        pool = make_pool(tmp_path, cap=2)
        pool.launcher.crash_at_start = True
        with pytest.raises(RuntimeError, match="before it was ready"):
            await pool.acquire(spec("crash"))
        assert len(pool.slots) == 0
        pool.launcher.crash_at_start = False
        await busy(pool, "a", "b")
        assert len(pool.slots) == 2
        await pool.shutdown()

    run(test)


def test_the_default_cap_comes_from_cores_and_memory(monkeypatch):
    assert default_limit(cpus=2, memory_mib=24_105) == 16  # this development VM: 8 per core
    assert default_limit(cpus=16, memory_mib=131_072) == 128  # a GPU host: 8 per core, 256 by memory
    assert default_limit(cpus=64, memory_mib=16_384) == 32  # many cores, little memory: 512 MiB each
    assert default_limit(cpus=1, memory_mib=1_024) == container_slots.FLOOR
    monkeypatch.setenv("NBMODAL_MAX_CONTAINERS", "5")
    assert limit_setting() == 5
    monkeypatch.setenv("NBMODAL_MAX_CONTAINERS", "0")
    assert limit_setting() == 0  # no cap
    monkeypatch.setenv("NBMODAL_MAX_CONTAINERS", "lots")
    assert limit_setting(default=7) == 7
    monkeypatch.delenv("NBMODAL_MAX_CONTAINERS")
    assert limit_setting(default=0) == 0 and limit_setting() == default_limit()


def test_a_gang_with_more_ranks_here_than_the_cap_is_refused_at_once_not_left_to_assemble_for_ever():
    from types import SimpleNamespace

    from remote_agent.gangs import Gangs

    agent = SimpleNamespace(pool=SimpleNamespace(slots=SimpleNamespace(limit=2)))
    member = SimpleNamespace(run=SimpleNamespace(emit=lambda **_: None), waiting="")
    request = pb.RunRequest(cluster=pb.ClusterMember(rank=0, size=3, ranks_here=3))
    finished = asyncio.run(Gangs(agent)._run_member(member, request))
    assert finished.state == pb.FAILED and finished.error.type_name == "nbmodal.ResourcesUnavailable"
    assert "starts 3 containers on this host at once, but its agent keeps at most 2" in finished.error.message
