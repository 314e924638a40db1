"""Schedules of deployed functions: one asyncio task per scheduled function, run by the agent alone.

Each task sleeps until its function's next time (``nbmodal_wire/schedules.py``: a Period counted from the
deploy, or a Cron expression in its timezone), then submits a run as a notebook's call would, labelled
``app.function() scheduled`` so it shows in ``nbmodal runs`` and the sidebar like any other. A run that
is still going when the next is due is not started twice: the skip is logged in the agent's log and the
app's. Times missed while the agent was down are not made up: the next one after it starts runs.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import time
from typing import TYPE_CHECKING

from nbmodal_wire import pb
from nbmodal_wire.deployed import DeployedRef, scheduled_payload
from nbmodal_wire.names import new_run_id
from nbmodal_wire.schedules import CronError, CronExpression, period_next

if TYPE_CHECKING:
    from remote_agent.deployments import Deployment, DeploymentStore
    from remote_agent.runs import Run

log = logging.getLogger(__name__)


def describe_schedule(schedule: pb.DeploySchedule) -> str:
    """How a schedule reads in listings: "every 1h30m", "cron 0 3 * * * (Europe/Paris)"."""
    if schedule.cron:
        return f"cron {schedule.cron} ({schedule.timezone or 'UTC'})"
    parts = [f"{schedule.period_months} months"] if schedule.period_months else []
    seconds = schedule.period_s
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            parts.append(f"{int(seconds // size)}{unit}")
            seconds -= (seconds // size) * size
    if seconds or not parts:
        parts.append(f"{seconds:g}s")
    return "every " + "".join(parts)


def next_time(schedule: pb.DeploySchedule, deployed_at: float, after: float) -> float:
    """The schedule's first time strictly after ``after``."""
    if schedule.cron:
        return CronExpression(schedule.cron).next_after(after, schedule.timezone or "UTC")
    return period_next(deployed_at, after, schedule.period_s, schedule.period_months)


class Scheduler:
    """The schedules of every deployed app on this agent."""

    def __init__(self, store: DeploymentStore) -> None:
        self.store = store
        self._tasks: dict[str, list[asyncio.Task]] = {}
        self._next: dict[tuple[str, str], float] = {}
        self._running: dict[tuple[str, str], Run] = {}

    def start(self, deployment: Deployment) -> None:
        tasks = []
        for function in deployment.functions.values():
            if function.is_class or not function.HasField("schedule"):
                continue
            try:
                due = next_time(function.schedule, deployment.deployed_at, time.time())
            except (CronError, ValueError) as exc:
                log.error("app %s: %s has a schedule that can't run: %s", deployment.name, function.name, exc)
                self.store.app_log(deployment.name, f"{function.name}: schedule can't run: {exc}")
                continue
            self._next[(deployment.name, function.name)] = due  # listed at once (the deploy's reply shows it)
            tasks.append(asyncio.ensure_future(self._run_forever(deployment, function, due)))
        self._tasks[deployment.name] = tasks

    def stop(self, app: str) -> None:
        for task in self._tasks.pop(app, []):
            task.cancel()
        for key in [key for key in self._next if key[0] == app]:
            del self._next[key]

    def next_run(self, app: str, function: str) -> float:
        return self._next.get((app, function), 0.0)

    async def _run_forever(self, deployment: Deployment, function: pb.DeployFunction, due: float) -> None:
        key = (deployment.name, function.name)
        while True:
            self._next[key] = due
            await asyncio.sleep(max(0.0, due - time.time()))
            try:
                self._fire(deployment, function)
            except Exception:  # a schedule outlives one bad firing (a full disk, say): the next one tries again
                log.exception("scheduled run of %s.%s failed to start", deployment.name, function.name)
            due = next_time(function.schedule, deployment.deployed_at, max(time.time(), due))

    def _fire(self, deployment: Deployment, function: pb.DeployFunction) -> None:
        key = (deployment.name, function.name)
        previous = self._running.get(key)
        if previous is not None and not previous.done:
            message = (f"scheduled run of {deployment.name}.{function.name} skipped: the previous one "
                       f"({previous.id}) is still running")
            log.warning("%s", message)
            self.store.app_log(deployment.name, message)
            return
        try:
            run = self.store.agent.submit(scheduled_request(deployment, function))
        except Exception as exc:  # the agent is draining, or the run was refused: the next time tries again
            log.warning("scheduled run of %s.%s not started: %s", deployment.name, function.name, exc)
            self.store.app_log(deployment.name, f"scheduled run of {function.name} not started: {exc}")
            return
        self._running[key] = run  # Agent.submit tracks it in the app's log


def scheduled_request(deployment: Deployment, function: pb.DeployFunction) -> pb.RunRequest:
    """The run a schedule starts: the deployed function with no arguments, detached (no one waits), retried
    in its container as ``retries=`` says. ``Agent.submit`` gives it the stored pickle (``deployed``)."""
    from remote_agent.worker.retrying import call_retrying

    delays = tuple(function.retry_delays)
    timeout = function.timeout_s
    if delays and not function.generator:
        payload = pickle.dumps((call_retrying, (DeployedRef(deployment.name, function.name), (), {}, delays), {}),
                               protocol=5)
        timeout = timeout * (len(delays) + 1) + sum(delays) if timeout else 0.0
    else:
        payload = scheduled_payload(deployment.name, function.name)
    return pb.RunRequest(
        kind=pb.FUNCTION, label=f"{deployment.name}.{function.name}() scheduled", payload=payload,
        spec=function.spec, timeout_s=timeout, detach=True, client_python=deployment.request.client_python,
        run_id=new_run_id(), generator=function.generator, app=deployment.name,
        deployed=pb.DeployRef(app=deployment.name, function=function.name))
