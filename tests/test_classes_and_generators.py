"""@app.cls (enter once per container, parameters as separate pools) and generator functions."""

from __future__ import annotations

import pytest

import nbmodal

pytestmark = pytest.mark.agent

app = nbmodal.App("classes")


@app.cls(max_containers=2)
class Counter:
    start: int = nbmodal.parameter(default=0)

    @nbmodal.enter()
    def load(self):
        import os

        nbmodal.Dict.from_name("cls-enters", create_if_missing=True)[os.getpid()] = self.start
        self.count = self.start

    @nbmodal.method()
    def bump(self, by=1):
        import os

        self.count += by
        return os.getpid(), self.count

    @nbmodal.exit()
    def goodbye(self):
        nbmodal.Dict.from_name("cls-enters")["exited"] = True


def test_enter_runs_once_per_container_and_state_is_kept():
    enters = nbmodal.Dict.from_name("cls-enters", create_if_missing=True)
    enters.clear()
    counter = Counter(start=10)
    first_pid, first = counter.bump.remote()
    second_pid, second = counter.bump.remote(5)
    assert first_pid == second_pid and (first, second) == (11, 16)  # the same warm instance
    assert dict(enters.items()) == {first_pid: 10}
    results = list(counter.bump.map([1] * 40))
    pids = {pid for pid, _ in results}
    assert len(pids) <= 2  # max_containers
    assert set(enters.keys()) == pids | {first_pid} and set(enters.values()) == {10}  # one enter per container


def test_parameters_create_separate_pools_and_bad_ones_are_refused():
    pid_a, value_a = Counter(start=100).bump.remote()
    pid_b, value_b = Counter(start=200).bump.remote()
    assert pid_a != pid_b and (value_a, value_b) == (101, 201)
    with pytest.raises(TypeError, match="has no parameter stop"):
        Counter(stop=1)
    assert Counter(start=3).bump.local(2)[1] == 5


def test_generators_stream_items_as_they_are_produced(capsys):
    @app.function()
    def countdown(n):
        for i in range(n, 0, -1):
            print("tick", i, flush=True)
            yield i
        yield b"x" * (2 * 1024 * 1024)  # a large item travels as a blob

    items = list(countdown.remote_gen(3))
    assert items[:3] == [3, 2, 1] and items[3] == b"x" * (2 * 1024 * 1024)
    assert "tick 3\ntick 2\ntick 1\n" in capsys.readouterr().out

    @app.function()
    def broken():
        yield 1
        raise ValueError("mid-stream")

    received = []
    with pytest.raises(ValueError, match="mid-stream"):
        for item in broken.remote_gen():
            received.append(item)
    assert received == [1]
