"""The container pool on a fake launcher: admission order, eviction, warm reuse, scale-down, sessions.

No process starts (tests/fakelauncher.py); every test runs its own event loop
and waits on conditions, never on the wall clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from fakelauncher import FakeLauncher

from nbmodal_wire import pb
from remote_agent.agent import no_container_result
from remote_agent.allocator import Allocator, GpuUnsatisfiable, Unsatisfiable
from remote_agent.containers import Container, ContainerPool
from remote_agent.gpus import FakeInventory
from remote_agent.slurm import SlurmError

pytestmark = pytest.mark.unit

WINDOW_S = 60.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def make_pool(tmp_path: Path, gpus: str = "H100:1", launcher: FakeLauncher | None = None,
              clock: Callable[[], float] | None = None) -> ContainerPool:
    allocator = Allocator(FakeInventory(gpus), cores=[0, 1, 2, 3], memory_mib=4096)
    kwargs = {"clock": clock} if clock is not None else {}
    return ContainerPool(tmp_path / "logs", tmp_path / "blobs", WINDOW_S, allocator, launcher or FakeLauncher(),
                         **kwargs)


async def until(condition: Callable[[], bool], what: str, turns: int = 1_000) -> None:
    """Let the loop run until the condition holds (fake containers need a few turns, never wall time)."""
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never happened: {what}")


def gpu_spec(tag: str, gpu: str = "H100") -> pb.ContainerSpec:
    return pb.ContainerSpec(gpu=gpu, env={"TAG": tag})


def run(test) -> None:
    asyncio.run(asyncio.wait_for(test(), 30))


# -- the admission queue ---------------------------------------------------------------------------


def test_a_gpu_run_waits_while_the_card_is_busy_and_runs_are_admitted_in_arrival_order(tmp_path):
    async def test():
        pool = make_pool(tmp_path)
        first, started = await pool.acquire(gpu_spec("a"))
        assert started and pool.allocator.held_by(first.id) == [0]

        notices: dict[str, list[str]] = {"b": [], "c": []}
        second = asyncio.create_task(pool.acquire(gpu_spec("b"), notify=notices["b"].append))
        third = asyncio.create_task(pool.acquire(gpu_spec("c"), notify=notices["c"].append))
        await until(lambda: len(pool.admission) == 2, "both runs queue")
        assert notices["b"][-1] == "waiting for gpu=H100 (next in line)"
        assert notices["c"][-1] == "waiting for gpu=H100 (1 ahead)"
        assert not second.done() and not third.done()

        first.kill()  # the card comes free when its container has exited
        await until(second.done, "the first in line is admitted")
        assert not third.done()
        assert notices["c"][-1] == "waiting for gpu=H100 (next in line)"
        container_b, _ = second.result()
        assert container_b.spec.env["TAG"] == "b" and pool.allocator.held_by(container_b.id) == [0]

        container_b.kill()
        container_c, started = await third
        assert started and container_c.spec.env["TAG"] == "c"
        assert pool.allocator.held_by(container_c.id) == [0]
        await pool.shutdown()

    run(test)


def test_a_run_cancelled_while_it_waits_leaves_the_queue(tmp_path):
    async def test():
        pool = make_pool(tmp_path)
        first, _ = await pool.acquire(gpu_spec("a"))
        waiting = asyncio.create_task(pool.acquire(gpu_spec("b")))
        await until(lambda: len(pool.admission) == 1, "the run queues")
        waiting.cancel()
        await until(waiting.done, "the cancel lands")
        assert len(pool.admission) == 0
        assert pool.allocator.held_by(first.id) == [0]
        await pool.shutdown()

    run(test)


def test_a_request_this_host_can_never_meet_fails_at_once(tmp_path):
    async def test():
        pool = make_pool(tmp_path)
        with pytest.raises(GpuUnsatisfiable, match="can never be met on this host"):
            await pool.acquire(gpu_spec("a", gpu="H100:2"))
        with pytest.raises(Unsatisfiable, match="CPU cores"):
            await pool.acquire(pb.ContainerSpec(cpu=64))
        await pool.shutdown()

    run(test)


def test_an_idle_warm_container_is_evicted_for_a_run_that_needs_its_card(tmp_path):
    async def test():
        pool = make_pool(tmp_path)
        warm, _ = await pool.acquire(gpu_spec("a"))
        pool.release(warm)
        assert pool.is_idle(warm) and pool.allocator.held_by(warm.id) == [0]

        other, started = await pool.acquire(gpu_spec("b"))
        assert started and other is not warm
        assert not warm.alive and warm.killed_by_agent
        assert pool.allocator.held_by(other.id) == [0] and warm not in pool.containers()
        await pool.shutdown()

    run(test)


def test_an_idle_container_that_holds_nothing_needed_is_kept(tmp_path):
    async def test():
        pool = make_pool(tmp_path, gpus="H100:1,A10G:1")
        warm, _ = await pool.acquire(gpu_spec("a", gpu="A10G"))
        pool.release(warm)
        other, _ = await pool.acquire(gpu_spec("b", gpu="H100"))
        assert warm.alive and pool.is_idle(warm)
        assert pool.allocator.held_by(other.id) == [0] and pool.allocator.held_by(warm.id) == [1]
        await pool.shutdown()

    run(test)


def test_a_container_that_dies_before_it_is_ready_gives_its_card_back(tmp_path):
    async def test():
        launcher = FakeLauncher()
        pool = make_pool(tmp_path, launcher=launcher)
        launcher.crash_at_start = True
        with pytest.raises(RuntimeError, match="before it was ready"):
            await pool.acquire(gpu_spec("a"))
        assert pool.allocator.holders == {} and pool.containers() == []

        launcher.crash_at_start = False
        container, started = await pool.acquire(gpu_spec("a"))
        assert started and pool.allocator.held_by(container.id) == [0]
        await pool.shutdown()

    run(test)


# -- the warm pool ----------------------------------------------------------------------------------


def test_a_warm_container_serves_the_next_run_of_an_equal_spec_only(tmp_path):
    async def test():
        launcher = FakeLauncher()
        pool = make_pool(tmp_path, launcher=launcher)
        spec = pb.ContainerSpec(env={"TAG": "x"})
        first, started = await pool.acquire(spec)
        assert started
        pool.release(first)

        again, started = await pool.acquire(pb.ContainerSpec(env={"TAG": "x"}))
        assert again is first and not started
        pool.release(again)

        different, started = await pool.acquire(pb.ContainerSpec(env={"TAG": "y"}))
        assert different is not first and started
        assert pool.is_idle(first)
        assert [request.container_id for request in launcher.launched] == [first.id, different.id]
        await pool.shutdown()

    run(test)


def test_a_warm_gpu_container_serves_an_equal_spec_without_new_reservation(tmp_path):
    async def test():
        pool = make_pool(tmp_path)
        first, _ = await pool.acquire(gpu_spec("a"))
        pool.release(first)
        again, started = await pool.acquire(gpu_spec("a"))
        assert again is first and not started and pool.allocator.held_by(first.id) == [0]
        await pool.shutdown()

    run(test)


def test_an_idle_container_scales_down_after_its_window(tmp_path):
    async def test():
        clock = Clock()
        launcher = FakeLauncher()
        pool = make_pool(tmp_path, launcher=launcher, clock=clock)
        container, _ = await pool.acquire(pb.ContainerSpec())
        pool.release(container)

        clock.now += WINDOW_S - 1
        pool.warm.scale_down()
        assert pool.is_idle(container) and container.alive

        clock.now += 1
        pool.warm.scale_down()
        assert not pool.is_idle(container)
        await container.wait_exited()  # retired: its socket closed
        assert not container.alive and not container.killed_by_agent
        await until(lambda: container not in pool.containers(), "the pool forgets it")
        assert launcher.forgotten == [container.id]
        await pool.shutdown()

    run(test)


def test_a_spec_window_overrides_the_agent_default_and_min_containers_stay(tmp_path):
    async def test():
        clock = Clock()
        pool = make_pool(tmp_path, clock=clock)
        short = pb.ContainerSpec(scaledown_window_s=5, env={"TAG": "short"})
        kept = pb.ContainerSpec(scaledown_window_s=5, min_containers=1, env={"TAG": "kept"})
        pool.note_spec(kept)
        await until(lambda: len(pool.containers()) == 1 and pool.is_idle(pool.containers()[0]), "a standing one")
        standing = pool.containers()[0]
        brief, _ = await pool.acquire(short)
        pool.release(brief)

        clock.now += 5
        pool.warm.scale_down()
        await brief.wait_exited()
        assert standing.alive and pool.is_idle(standing)
        await pool.shutdown()

    run(test)


# -- sessions -----------------------------------------------------------------------------------------


def test_a_session_keeps_its_container_and_its_runs_take_turns(tmp_path):
    async def test():
        pool = make_pool(tmp_path)
        spec = pb.ContainerSpec()
        container, started = await pool.acquire(spec, session="s1")
        assert started and container.session == "s1"

        turn = asyncio.create_task(pool.acquire(spec, session="s1"))
        await until(lambda: pool.sessions()["s1"].lock.locked(), "the session is busy")
        await asyncio.sleep(0)
        assert not turn.done()  # the session's run in progress holds it

        pool.release(container)
        again, started = await turn
        assert again is container and not started
        assert not pool.is_idle(container)  # a session's container is never handed to other runs

        other, _ = await pool.acquire(spec, session="s2")
        assert other is not container
        pool.release(again)
        pool.release(other)

        assert await pool.stop_session("s1")
        assert not container.alive and "s1" not in pool.sessions()
        assert not await pool.stop_session("s1")
        await pool.shutdown()

    run(test)


def test_a_session_run_with_another_spec_replaces_its_container(tmp_path):
    async def test():
        pool = make_pool(tmp_path)
        first, _ = await pool.acquire(gpu_spec("a"), session="s")
        pool.release(first)
        second, started = await pool.acquire(gpu_spec("b"), session="s")
        assert started and second is not first and not first.alive
        assert pool.allocator.held_by(second.id) == [0]
        await pool.shutdown()

    run(test)


# -- the launcher decides who reserves -----------------------------------------------------------------


def test_a_launcher_that_reserves_for_itself_bypasses_the_queue(tmp_path):
    async def test():
        pool = make_pool(tmp_path, launcher=FakeLauncher(reserves_resources=False))
        first, _ = await pool.acquire(gpu_spec("a"))
        second, _ = await pool.acquire(gpu_spec("b"))  # the backend schedules the card, not this agent
        assert first.alive and second.alive and len(pool.admission) == 0
        assert pool.allocator.held_by(first.id) == [] and first.allocation.gpus == []
        await pool.shutdown()

    run(test)


def test_a_container_of_the_pool_is_a_container(tmp_path):
    async def test():
        pool = make_pool(tmp_path)
        container, _ = await pool.acquire(pb.ContainerSpec())
        assert isinstance(container, Container) and container.worker_pid == container.pid
        container.interrupt()
        assert container.process.interrupts == 1
        await pool.shutdown()
        assert not container.alive

    run(test)


# -- why a run got no container --------------------------------------------------------------------------


@pytest.mark.parametrize("exc, state, type_name, kind", [
    (GpuUnsatisfiable("gpu=H100:9 can never be met"), pb.FAILED, "nbmodal.GpuUnavailable", pb.ERROR_GPU_UNAVAILABLE),
    (Unsatisfiable("cpu", "cpu=99 can never be met"), pb.FAILED, "nbmodal.ResourcesUnavailable",
     pb.ERROR_RESOURCES_UNAVAILABLE),
    (SlurmError("sbatch refused the job: no"), pb.FAILED, "nbmodal.SlurmError", pb.ERROR_LAUNCH_REFUSED),
    (RuntimeError("boom"), pb.LOST, "RuntimeError", pb.ERROR_AGENT),
])
def test_what_stopped_a_run_before_its_container_decides_how_it_ends(exc, state, type_name, kind):
    finished = no_container_result(exc)
    assert (finished.state, finished.error.type_name, finished.error.kind) == (state, type_name, kind)
    assert str(exc) in finished.error.message
