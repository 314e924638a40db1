"""Fan-out: one function over many inputs, in batches, over warm containers.

The client keeps at most ``max_containers`` batch runs in flight; each batch
run executes the function on its inputs one after another inside a container
(``remote_agent.worker.batch.run_batch``), so the per-input cost is a Python
call, not a round trip. A failed input is retried alone (``retries``); a
batch whose container died has all its unfinished inputs retried. Every input
is returned once, in input order or as completed.

Inputs are read from their iterator as capacity frees up, never all at once:
an endless iterator (``f.map(itertools.count())``) works, and the consumer
stopping early (``break``) stops reading it and cancels the batches in flight.
"""

from __future__ import annotations

import itertools
import math
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from nbmodal._runtime.batching import batched_size
from nbmodal._runtime.invocation import RunTarget, batch_request, follow, spread_targets
from nbmodal._runtime.returned_exceptions import wrap_returned
from nbmodal.exceptions import RemoteError, RunLostError
from nbmodal.output import LineRedraws, default_sink, visible_line
from nbmodal.results import function_result, raise_for_state, rebuild_error_record

DEFAULT_MAX_CONTAINERS = 8
MAX_BATCH = 256
# A batch's size when the number of inputs isn't known (a lazy or endless iterator): small, so that a
# consumer that stops early wastes little, and inputs are read only a few batches ahead.
UNSIZED_BATCH = 4
# How many batches' worth of inputs per container are read ahead of the results.
READ_AHEAD_BATCHES = 2


def concurrent(*, max_inputs: int, target_inputs: int | None = None):
    """Let one container run up to ``max_inputs`` inputs of a map at once (on threads), as in Modal.

    ``target_inputs`` is the concurrency Modal's autoscaler aims for below ``max_inputs``; a map
    here fills each container up to ``max_inputs`` and accepts ``target_inputs`` without effect.

    Example::

        @app.function()
        @nbmodal.concurrent(max_inputs=16)
        def fetch(url): ...
    """
    if max_inputs < 1:
        raise ValueError("max_inputs must be at least 1")
    if target_inputs is not None and not 1 <= target_inputs <= max_inputs:
        raise ValueError(f"target_inputs={target_inputs} must be between 1 and max_inputs={max_inputs}")

    def mark(fn):
        fn._nbmodal_max_inputs = max_inputs
        return fn

    return mark


@dataclass
class Retries:
    """How failed inputs are retried, as in Modal.

    Example::

        @app.function(retries=nbmodal.Retries(max_retries=3, backoff_coefficient=2.0, initial_delay=1.0))
    """

    max_retries: int = 0
    backoff_coefficient: float = 2.0
    initial_delay: float = 1.0
    max_delay: float = 60.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1 for the first retry)."""
        return min(self.max_delay, self.initial_delay * self.backoff_coefficient ** max(0, attempt - 1))

    def delays(self) -> tuple[float, ...]:
        """The wait before each retry, in order (as many as ``max_retries``)."""
        return tuple(self.delay(attempt) for attempt in range(1, self.max_retries + 1))

    @classmethod
    def of(cls, retries: int | Retries | None) -> Retries:
        if isinstance(retries, Retries):
            return retries
        return cls(max_retries=int(retries or 0), initial_delay=0.0)


class _Progress:
    """done/total, failures, rate, ETA and containers in use: a widget in a notebook, else one
    redrawn line on stderr."""

    def __init__(self, label: str, total: int | None) -> None:
        self.label, self.total, self.started = label, total, time.monotonic()
        self.done = self.failed = self.retried = self.running = 0
        self._drawn = 0.0
        self._widget = _progress_widget(total)
        self._line = LineRedraws(lambda text: (sys.stderr.write(text), sys.stderr.flush()))

    def draw(self, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self._drawn < 0.1:
            return
        self._drawn = now
        rate = self.done / max(now - self.started, 1e-6)
        eta = f"{(self.total - self.done) / rate:.0f}s" if rate and self.total is not None else "?"
        total = "?" if self.total is None else self.total  # inputs from an iterator of unknown length
        text = (f"{self.label}: {self.done}/{total} done, {self.failed} failed, {self.retried} retried, "
                f"{rate:.0f}/s, ETA {eta}, {self.running} containers")
        if self._widget is not None:
            bar, caption = self._widget
            bar.max = max(bar.max, self.done)  # unknown totals grow as inputs arrive
            bar.value = self.done
            bar.bar_style = "danger" if self.failed else "success" if final else "info"
            caption.value = text
        else:
            self._line.feed("\r" + text + ("\n" if final else ""))


def _progress_widget(total: int | None):
    """An IntProgress bar and a caption, shown in the cell (None outside a notebook kernel)."""
    from nbmodal.output import in_kernel

    if not in_kernel():
        return None
    try:
        import ipywidgets as widgets
        from IPython.display import display
    except ImportError:
        return None
    bar = widgets.IntProgress(min=0, max=max(total or 0, 1), value=0)
    caption = widgets.HTML()
    display(widgets.HBox([bar, caption]))
    return bar, caption


def map_inputs(iterables: tuple[Iterable, ...], kwargs: dict | None = None) -> Iterator[tuple[tuple, dict]]:
    """``.map``'s inputs, lazily: one tuple of arguments per step of the zipped iterables, with ``kwargs``."""
    extra = dict(kwargs or {})
    return ((args, dict(extra)) for args in zip(*iterables))


def starmap_inputs(input_iterator: Iterable, kwargs: dict | None = None) -> Iterator[tuple[tuple, dict]]:
    """``.starmap``'s inputs, lazily: each item a sequence of arguments, with ``kwargs``."""
    extra = dict(kwargs or {})
    return ((tuple(args), dict(extra)) for args in input_iterator)


def known_length(*iterables: Any) -> int | None:
    """How many inputs zipping ``iterables`` gives, when each has a length (lists, ranges); else None."""
    try:
        return min(len(iterable) for iterable in iterables) if iterables else 0
    except TypeError:  # an iterator or generator: read lazily, length unknown
        return None


class MapRunner:
    """A map in progress: iterate it for the results (once), ``logs(i)`` for an input's output.

    ``inputs`` yields ``(args, kwargs)`` per input and is read as capacity frees up; ``total`` is its
    length where known (it sizes the batches and the progress bar).
    """

    def __init__(self, function, inputs: Iterable[tuple[tuple, dict]], order_outputs: bool = True,
                 return_exceptions: bool = False, progress: bool = True, *, total: int | None = None,
                 wrap_returned_exceptions: bool = True) -> None:
        if total is None and isinstance(inputs, (list, tuple)):
            total = len(inputs)
        self.function = function
        self.total = total
        self._source: Iterator[tuple[tuple, dict]] = iter(inputs)
        self._next_index = itertools.count()
        self.inputs: dict[int, tuple[tuple, dict]] = {}  # read and not yet delivered, by index
        self.order_outputs = order_outputs
        self.return_exceptions = return_exceptions
        self.wrap_returned_exceptions = wrap_returned_exceptions
        self.retries = Retries.of(function.retries)
        cap = function.max_containers or DEFAULT_MAX_CONTAINERS
        self.concurrency = max(1, min(cap, total or 1)) if total is not None else max(1, cap)
        # A batch feeds a container's concurrent inputs (@nbmodal.concurrent) and one call of a
        # @nbmodal.batched function at least.
        floor = max(function.max_inputs, batched_size(function.raw_f))
        spread_size = math.ceil(total / (self.concurrency * 4)) if total is not None else UNSIZED_BATCH
        self.batch_size = max(floor, min(MAX_BATCH, spread_size))
        self.read_ahead = self.concurrency * self.batch_size * READ_AHEAD_BATCHES
        self.progress = _Progress(f"map {function.name}", total) if progress else None
        self.output_tail: deque[str] = deque(maxlen=20)
        self.input_logs: dict[int, list[str]] = {}  # the output of each input, as its batch ran it
        self._started = False
        self._exhausted = False
        self._iterator: Iterator[Any] | None = None
        self._running: dict[str, Any] = {}  # run id -> connection, of the batches in flight
        self._running_lock = threading.Lock()
        self._stopping = False  # set once the map stops early: batches not yet submitted never start

    def __iter__(self) -> Iterator[Any]:
        if self._started:
            raise RuntimeError("a map runs once: keep its results (e.g. list(run)) to use them again")
        self._started = True
        return self._run()

    def __next__(self) -> Any:
        """``next(f.map(xs))`` works as on Modal's map, whose result is an iterator."""
        if self._iterator is None:
            self._iterator = iter(self)
        return next(self._iterator)

    def _run(self) -> Iterator[Any]:
        targets = spread_targets(host=self.function.host, spec=self.function.spec, image=self.function.image,
                                 sink=default_sink())  # images built first
        busy = {target.connection.name: 0 for target in targets}  # batches in flight per host
        pending: deque[tuple[int, int]] = deque()  # (input index, attempts so far), read and not yet sent
        results: dict[int, tuple[bool, Any]] = {}
        not_before: dict[int, float] = {}
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="nbmodal-map") as pool:
            in_flight: dict[Future, list[tuple[int, int]]] = {}
            try:
                yield from self._schedule(pool, in_flight, targets, busy, pending, results, not_before)
            except BaseException:  # an interrupt, a break, or an error raised here: stop the batches in flight
                self._cancel_running()
                raise
        self._draw(0, final=True)
        if self.output_tail:
            print("[nbmodal] last lines of the map's output:\n" + "".join(self.output_tail), end="")

    def _read_inputs(self, pending: deque) -> None:
        """Read inputs from the source while fewer than ``read_ahead`` are read and not yet delivered
        (waiting, running, or done and waiting for an earlier one in order)."""
        while not self._exhausted and len(self.inputs) < self.read_ahead:
            try:
                args, kwargs = next(self._source)
            except StopIteration:
                self._exhausted = True
                return
            index = next(self._next_index)
            self.inputs[index] = (args, kwargs)  # map_inputs/starmap_inputs made them: a tuple and a fresh dict
            pending.append((index, 0))

    def _schedule(self, pool, in_flight, targets, busy, pending, results, not_before) -> Iterator[Any]:
        """Keep batches in flight on the least busy hosts, retry what failed, yield what came back."""
        next_to_yield = 0
        self._read_inputs(pending)
        while pending or in_flight or not self._exhausted:
            while len(in_flight) < self.concurrency:
                self._read_inputs(pending)
                batch = self._take_batch(pending, not_before)
                if not batch:
                    break
                target = min(targets, key=lambda t: busy[t.connection.name])  # the least busy host
                name = target.connection.name
                busy[name] += 1
                future = pool.submit(self._run_batch, target, batch)
                future.add_done_callback(lambda _, name=name: busy.__setitem__(name, busy[name] - 1))
                in_flight[future] = batch
            if not in_flight and not pending and self._exhausted:
                break
            self._draw(len(in_flight))
            done, _ = wait(in_flight, timeout=0.1, return_when=FIRST_COMPLETED) if in_flight else ((), ())
            if not in_flight:  # only retries waiting for their backoff
                time.sleep(min(0.1, max(0.0, min(not_before.values(), default=0) - time.monotonic())))
            for future in done:
                batch = in_flight.pop(future)
                for index, attempts, ok, value in self._outcomes(future, batch):
                    if not ok and attempts < self.retries.max_retries:
                        not_before[index] = time.monotonic() + self.retries.delay(attempts + 1)
                        pending.append((index, attempts + 1))
                        if self.progress:
                            self.progress.retried += 1
                        continue
                    not_before.pop(index, None)
                    results[index] = (ok, value)
                    if self.progress:
                        self.progress.done += 1
                        self.progress.failed += not ok
            if self.order_outputs:
                while next_to_yield in results:
                    yield self._deliver(results.pop(next_to_yield), next_to_yield)
                    next_to_yield += 1
            else:
                for index in list(results):
                    yield self._deliver(results.pop(index), index)

    def _cancel_running(self) -> None:
        with self._running_lock:
            self._stopping = True
            running = list(self._running.items())
        for run_id, connection in running:
            try:
                connection.client().cancel(run_id, force=True)
            except Exception:  # the host may be the reason we stopped
                pass

    def logs(self, index: int) -> str:
        """The output input ``index`` printed (once the map has run it)."""
        return "".join(self.input_logs.get(index, []))

    def _take_batch(self, pending: deque, not_before: dict[int, float]) -> list[tuple[int, int]]:
        batch: list[tuple[int, int]] = []
        skipped: list[tuple[int, int]] = []
        now = time.monotonic()
        while pending and len(batch) < self.batch_size:
            index, attempts = pending.popleft()
            if not_before.get(index, 0) > now:
                skipped.append((index, attempts))
                continue
            batch.append((index, attempts))
        pending.extendleft(reversed(skipped))
        return batch

    def _run_batch(self, target: RunTarget, batch: list[tuple[int, int]]) -> list:
        target = target.current()  # a batch after a reconnect goes through the new client
        work = [(index, *self.inputs[index]) for index, _ in batch]
        request = batch_request(target, self.function.name, self.function.raw_f, work, self.function.max_inputs,
                                self.function.run_options())
        sink = TailSink(self.output_tail, self.input_logs)
        with self._running_lock:
            if self._stopping:
                raise RunLostError("the map stopped before this batch started")
            # Registered before it is sent: a cancel that overtakes the submit is kept by the agent.
            self._running[request.run_id] = target.connection
        try:
            finished, transfer = follow(target, request, sink)
        finally:
            self._running.pop(request.run_id, None)
        raise_for_state(finished)
        return function_result(finished, transfer.fetch)

    def _outcomes(self, future: Future, batch: list[tuple[int, int]]):
        attempts = dict(batch)
        try:
            outcomes = future.result()
        except (RunLostError, RemoteError, Exception) as exc:  # the batch's container died, or worse
            for index, tries in batch:
                yield index, tries, False, exc
            return
        for index, ok, value in outcomes:
            yield index, attempts[index], ok, value

    def _deliver(self, result: tuple[bool, Any], index: int | None = None) -> Any:
        if index is not None:
            self.inputs.pop(index, None)  # delivered: an endless map keeps only the inputs in flight
        ok, value = result
        if ok:
            return value
        error = value if isinstance(value, BaseException) else rebuild_error_record(value)
        if self.return_exceptions:
            # Modal's wrapper (``UserCodeException``), which is also an instance of the error's own type.
            return wrap_returned(error) if self.wrap_returned_exceptions else error
        raise error

    def _draw(self, running: int, final: bool = False) -> None:
        if self.progress:
            self.progress.running = running
            self.progress.draw(final)


class TailSink:
    """Keeps the last lines of a map's output instead of flooding the cell (and, given a dict,
    each input's own output, up to ``MAX_INPUT_LOG`` characters)."""

    MAX_INPUT_LOG = 1 << 20
    MAX_UNSHOWN_PIECES = 200

    def __init__(self, tail: deque, input_logs: dict[int, list[str]] | None = None) -> None:
        self.tail = tail
        self.input_logs = input_logs
        self._partial = ""
        self._input: int | None = None
        self._lock = threading.Lock()
        # What came since the last debugger prompt (or the input's start): a prompt shows it first.
        self._unshown: deque[str] = deque(maxlen=self.MAX_UNSHOWN_PIECES)

    def input_started(self, index: int) -> None:
        with self._lock:
            self._flush_partial()
            self._input = index
            self._unshown.clear()  # a debugger's prompt shows the output of its own input
            if self.input_logs is not None:
                self.input_logs[index] = []  # a retried input's log starts over

    def output(self, stream: int, text: str) -> None:
        with self._lock:
            self._unshown.append(text)
            *lines, self._partial = (self._partial + text).split("\n")
            self._keep([visible_line(line) + "\n" for line in lines])

    def _keep(self, lines: list[str]) -> None:
        self.tail.extend(lines)
        if self.input_logs is not None and self._input is not None:
            log = self.input_logs.setdefault(self._input, [])
            if sum(map(len, log)) < self.MAX_INPUT_LOG:
                log.extend(lines)

    def _flush_partial(self) -> None:
        if self._partial:
            self._keep([visible_line(self._partial) + "\n"])
            self._partial = ""

    def before_prompt(self) -> None:
        """A breakpoint in one of the map's inputs: what it printed since its start (or the last
        prompt) shows in the cell, so that the debugger's own output is seen."""
        with self._lock:
            text, self._unshown = "".join(self._unshown), deque(maxlen=self.MAX_UNSHOWN_PIECES)
        if text:
            sys.stdout.write(text)
            sys.stdout.flush()

    def display(self, data: dict, metadata: dict, execute_result: bool) -> None:
        pass

    def notice(self, text: str) -> None:
        pass

    def item(self, item) -> None:
        pass

    def close(self) -> None:
        with self._lock:
            self._flush_partial()
