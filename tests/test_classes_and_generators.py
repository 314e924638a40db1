"""@app.cls (enter once per container, parameters as separate pools, inherited methods, with_options),
generator functions, and the call and input ids code sees in its container."""

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


class _Scaler:
    """A base class: its parameter, hook and method are inherited by the decorated class."""

    factor: int = nbmodal.parameter(default=2)

    @nbmodal.enter()
    def prepare(self):
        self.ready = self.factor

    @nbmodal.method()
    def scale(self, x):
        return self.ready * x


@app.cls()
class Scaler(_Scaler):
    @nbmodal.method()
    def where(self):
        return nbmodal.is_local(), nbmodal.current_function_call_id()


def test_inherited_methods_and_with_options_run_remotely():
    assert Scaler(factor=3).scale.remote(5) == 15  # the base's @enter and @method, in a container
    assert list(Scaler().scale.map([1, 2])) == [2, 4]
    patient = Scaler.with_options(timeout=60)
    is_local, call_id = patient().where.remote()
    assert is_local is False and call_id.startswith("r-")
    assert patient().where.timeout == 60.0


def test_function_call_and_input_ids_inside_containers():
    @app.function()
    def ids(x):
        return nbmodal.current_function_call_id(), nbmodal.current_input_id()

    call = ids.spawn(0)
    call_id, input_id = call.get(timeout=60)
    assert call_id == call.object_id and input_id == f"in-{call.object_id}-0"
    mapped = list(ids.map(range(6)))
    assert [input_id.rsplit("-", 1)[1] for _, input_id in mapped] == [str(i) for i in range(6)]
    assert all(input_id.startswith(f"in-{call_id}-") for call_id, input_id in mapped)
    assert nbmodal.current_function_call_id() is None and nbmodal.is_local()


@app.cls()
@nbmodal.concurrent(max_inputs=4)
class Adder:
    @nbmodal.method()
    def add(self, xs, ys):
        return [(x + y, len(xs)) for x, y in zip(xs, ys)]


def test_with_batching_calls_a_method_once_per_group_and_concurrent_classes_map():
    grouped = Adder.with_batching(max_batch_size=4, wait_ms=20)
    results = list(grouped().add.map([1, 2, 3, 4, 5, 6, 7, 8], [10] * 8))
    assert [total for total, _ in results] == [11, 12, 13, 14, 15, 16, 17, 18]
    assert all(1 <= size <= 4 for _, size in results) and max(size for _, size in results) > 1
    assert grouped().add.remote(1, 2) == (3, 1)  # a lone call is a group of one
    assert Adder().add.max_inputs == 4
