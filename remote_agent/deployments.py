"""Deployed apps on this host: their versions on disk, the current one in memory, their history and log.

Layout, in the agent's state dir::

    deployments/<app>/<version>/deploy.pb   the DeployRequest: definitions and pickles (written, then renamed)
    deployments/<app>/current               the current version's name ("v3"), replaced atomically
    deployments/<app>/history.jsonl         one line per deploy and stop
    deployments/<app>/app.log               what `nbmodal app logs` shows: deploys, schedules, runs' output

A new version is written in full before ``current`` points at it (``os.replace``), and the in-memory
table is swapped in one assignment: a call sees the old version or the new one, never a mix. A call's
payload gets its function's pickle when the agent accepts it (``prepare``), so calls in flight finish on
the version they started with. When the agent starts, every app whose ``current`` exists is resumed: its
``min_containers`` pools and its schedules (``schedules.py``). ``stop`` removes ``current`` and keeps the
versions, history and log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from nbmodal_wire import pb
from nbmodal_wire.deployed import wrap_call
from nbmodal_wire.names import NAME, NAME_RULE
from remote_agent import request_errors
from remote_agent.request_errors import RequestError
from remote_agent.schedules import Scheduler, describe_schedule
from remote_agent.web_deployments import DeployedEndpoints

if TYPE_CHECKING:
    from remote_agent.agent import Agent
    from remote_agent.runs import Run

log = logging.getLogger(__name__)

LOG_POLL_S = 0.2


@dataclass
class Deployment:
    """One app's current version, as loaded."""

    name: str
    version: str
    request: pb.DeployRequest
    deployed_at: float
    functions: dict[str, pb.DeployFunction] = field(default_factory=dict)

    @classmethod
    def of(cls, request: pb.DeployRequest, version: str, deployed_at: float) -> Deployment:
        return cls(request.app, version, request, deployed_at, {f.name: f for f in request.functions})


class DeploymentStore:
    """Every app deployed on this agent; ``prepare`` turns a call by name into a runnable payload."""

    def __init__(self, root: Path, agent: Agent) -> None:
        self.root = root
        self.root.mkdir(mode=0o700, exist_ok=True)  # deploys hold their functions' inline secrets
        os.chmod(self.root, 0o700)
        self.agent = agent
        self.apps: dict[str, Deployment] = {}
        self.last_runs: dict[tuple[str, str], Run] = {}
        self.scheduler = Scheduler(self)
        self.endpoints = DeployedEndpoints(self)  # web endpoints of deployed apps, kept served
        self._trackers: set[asyncio.Task] = set()

    # -- starting -------------------------------------------------------------

    def resume(self) -> None:
        """Load every app that is deployed (its ``current`` exists) and start its pools and schedules."""
        for app_dir in sorted(self.root.iterdir()):
            current = app_dir / "current"
            if not current.is_file():
                continue
            version = current.read_text().strip()
            try:
                request = pb.DeployRequest.FromString((app_dir / version / "deploy.pb").read_bytes())
            except (OSError, ValueError) as exc:
                log.error("deployed app %s: can't load version %s (%s); it stays stopped", app_dir.name, version, exc)
                continue
            deployed_at = _deployed_at(app_dir, version)
            deployment = Deployment.of(request, version, deployed_at)
            self.apps[deployment.name] = deployment
            self._start(deployment)
            log.info("resumed deployed app %s %s: %s", deployment.name, version, ", ".join(deployment.functions))
            self.app_log(deployment.name, f"agent started: resumed {version}")

    def _start(self, deployment: Deployment) -> None:
        for function in deployment.functions.values():
            if not function.is_class and (function.spec.min_containers or function.spec.buffer_containers):
                self.agent.pool.note_spec(function.spec)
        self.scheduler.start(deployment)
        self.endpoints.start(deployment)

    def _stop(self, deployment: Deployment, replaced_by: Deployment | None = None) -> None:
        """Its schedules end; its standing pools go unless the new version asks for the same ones."""
        self.scheduler.stop(deployment.name)
        self.endpoints.stop(deployment.name)
        keep = {f.spec.SerializeToString(deterministic=True) for f in (replaced_by.functions.values()
                                                                         if replaced_by else ())}
        for function in deployment.functions.values():
            if function.spec.SerializeToString(deterministic=True) not in keep:
                self.agent.pool.warm.forget_spec(function.spec)

    # -- deploying ------------------------------------------------------------

    def deploy(self, request: pb.DeployRequest) -> pb.AppInfo:
        """Write a new version of ``request.app``, point ``current`` at it, and start it."""
        name = request.app
        _check_app_name(name)
        if not request.functions:
            raise RequestError(f"app {name!r} has no functions or classes to deploy", request_errors.INVALID)
        seen: set[str] = set()
        for function in request.functions:
            if function.name in seen:
                raise RequestError(f"app {name!r} defines {function.name!r} twice", request_errors.INVALID)
            seen.add(function.name)
        app_dir = self.root / name
        app_dir.mkdir(exist_ok=True)
        version = f"v{_last_version(app_dir) + 1}"
        staging = app_dir / f".{version}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        _write_synced(staging / "deploy.pb", request.SerializeToString())
        os.rename(staging, app_dir / version)
        _write_synced(app_dir / ".current.tmp", version.encode())
        os.replace(app_dir / ".current.tmp", app_dir / "current")  # the switch: atomic
        now = time.time()
        self._history(name, {"version": version, "time": now, "event": "deployed",
                             "functions": [f.name for f in request.functions],
                             "client_version": request.client_version, "deployed_from": request.deployed_from})
        deployment = Deployment.of(request, version, now)
        previous = self.apps.get(name)
        self.apps[name] = deployment  # calls from now on get the new version
        if previous is not None:
            self._stop(previous, replaced_by=deployment)
        self._start(deployment)
        log.info("deployed app %s %s: %s", name, version, ", ".join(deployment.functions))
        self.app_log(name, f"deployed {version}: {', '.join(deployment.functions)}"
                     + (f" (replacing {previous.version})" if previous else ""))
        return self.info(name)

    def stop(self, name: str) -> pb.AppInfo:
        """Un-deploy: no more calls by name, schedules and warm pools end; versions, history and log stay."""
        deployment = self.apps.pop(name, None)
        if deployment is None:
            raise RequestError(self.not_deployed(name), request_errors.NOT_FOUND)
        (self.root / name / "current").unlink(missing_ok=True)
        self._history(name, {"version": deployment.version, "time": time.time(), "event": "stopped",
                             "functions": list(deployment.functions)})
        self._stop(deployment)
        for container in list(self.agent.pool.warm.idle_containers()):
            if any(container.spec == f.spec for f in deployment.functions.values()):
                self.agent.pool.retire(container)
        log.info("stopped app %s (%s)", name, deployment.version)
        self.app_log(name, f"stopped {deployment.version}")
        return self.info(name)

    # -- calls ----------------------------------------------------------------

    def prepare(self, request: pb.RunRequest) -> str:
        """A call of a deployed function: its payload gets the current version's pickle. Returns the app."""
        ref = request.deployed
        deployment = self.apps.get(ref.app)
        if deployment is None:
            raise RequestError(self.not_deployed(ref.app), request_errors.NOT_FOUND)
        function = deployment.functions.get(ref.function)
        if function is None:
            raise RequestError(f"app {ref.app!r} ({deployment.version}) has no function or class {ref.function!r} "
                               f"(it has: {', '.join(sorted(deployment.functions))})", request_errors.NOT_FOUND)
        request.payload = wrap_call(ref.app, ref.function, function.pickle, request.payload, request.payload_blob)
        request.payload_blob = ""  # the container reads (and removes) the caller's blob itself
        request.secrets.extend(function.secrets)  # its secrets= as deployed
        return ref.app

    def track(self, run: Run, app: str, function: str) -> None:
        """Follow a run of the app: its start, output and end go to the app's log."""
        self.last_runs[(app, function)] = run
        task = asyncio.ensure_future(self._follow(run, app))
        self._trackers.add(task)
        task.add_done_callback(self._trackers.discard)

    async def _follow(self, run: Run, app: str) -> None:
        label = run.info.label
        self.app_log(app, f"run {run.id} {label}: started")
        async for event in run.follow(after_seq=0):
            if event.HasField("output"):
                text = event.output.data.decode("utf-8", "replace")
                for line in text.splitlines():
                    self.app_log(app, f"[{run.id}] {line}")
            elif event.HasField("notice"):
                self.app_log(app, f"[{run.id}] {event.notice.text}")
        error = f" ({run.info.error})" if run.info.error else ""
        self.app_log(app, f"run {run.id} {label}: {pb.RunState.Name(run.info.state).lower()}{error}")

    # -- listing --------------------------------------------------------------

    def info(self, name: str, with_definitions: bool = False) -> pb.AppInfo:
        deployment = self.apps.get(name)
        app_dir = self.root / name
        if deployment is None:
            history = self.history(name)
            if not history:
                raise RequestError(self.not_deployed(name), request_errors.NOT_FOUND)
            last = history[-1]
            stopped = next((h for h in reversed(history) if h.event == "stopped"), None)
            return pb.AppInfo(name=name, version=last.version, deployed=False,
                              deployed_at=_deployed_at(app_dir, last.version),
                              stopped_at=stopped.time if stopped else 0.0,
                              functions=[pb.AppFunctionInfo(name=f) for f in last.functions])
        functions = []
        for function in deployment.functions.values():
            info = pb.AppFunctionInfo(name=function.name, is_class=function.is_class,
                                      schedule=describe_schedule(function.schedule)
                                      if function.HasField("schedule") else "",
                                      next_run=self.scheduler.next_run(name, function.name))
            last_run = self.last_runs.get((name, function.name))
            if last_run is not None:
                info.last_run_id, info.last_run_state = last_run.id, last_run.info.state
                info.last_run_time = last_run.info.created
            if with_definitions:
                info.definition.CopyFrom(function)
                info.definition.ClearField("pickle")
                info.definition.ClearField("secrets")  # values never leave the agent
            functions.append(info)
        return pb.AppInfo(name=name, version=deployment.version, deployed=True, deployed_at=deployment.deployed_at,
                          functions=functions, deployed_from=deployment.request.deployed_from)

    def list_apps(self) -> list[pb.AppInfo]:
        apps = []
        for app_dir in sorted(self.root.iterdir()):
            if app_dir.is_dir() and (app_dir.name in self.apps or (app_dir / "history.jsonl").is_file()):
                apps.append(self.info(app_dir.name))
        return apps

    def history(self, name: str) -> list[pb.AppHistoryEntry]:
        path = self.root / name / "history.jsonl"
        if not NAME.fullmatch(name) or name.startswith(".") or not path.is_file():
            return []
        entries = []
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue  # a line cut short by a crash
            entries.append(pb.AppHistoryEntry(
                version=row.get("version", ""), time=row.get("time", 0.0), event=row.get("event", ""),
                functions=row.get("functions", []), client_version=row.get("client_version", ""),
                deployed_from=row.get("deployed_from", "")))
        return entries

    def known(self, name: str) -> bool:
        return name in self.apps or bool(self.history(name))

    async def logs(self, name: str, follow: bool, stopped: Callable[[], bool]) -> AsyncIterator[pb.AppLogLine]:
        """The app's log lines; with ``follow``, new ones as they come (until the caller goes)."""
        if not self.known(name):
            raise RequestError(self.not_deployed(name), request_errors.NOT_FOUND)
        path = self.root / name / "app.log"
        offset = 0
        while True:
            if path.is_file():
                with path.open("rb") as handle:
                    handle.seek(offset)
                    data = handle.read()
                complete = data[:data.rfind(b"\n") + 1]
                offset += len(complete)
                for line in complete.decode("utf-8", "replace").splitlines():
                    stamp, _, text = line.partition(" ")
                    try:
                        when = float(stamp)
                    except ValueError:
                        when, text = 0.0, line
                    yield pb.AppLogLine(time=when, text=text)
            if not follow or stopped():
                return
            await asyncio.sleep(LOG_POLL_S)

    # -- records --------------------------------------------------------------

    def app_log(self, name: str, text: str) -> None:
        """One line of the app's log (`nbmodal app logs`), stamped with the time."""
        app_dir = self.root / name
        app_dir.mkdir(exist_ok=True)
        with (app_dir / "app.log").open("a", encoding="utf-8") as handle:
            handle.write(f"{time.time():.3f} {text}\n")

    def _history(self, name: str, row: dict) -> None:
        with (self.root / name / "history.jsonl").open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def not_deployed(self, name: str) -> str:
        deployed = ", ".join(sorted(self.apps)) or "none"
        return f"no app {name!r} is deployed on this agent (deployed apps: {deployed})"


def _check_app_name(name: str) -> None:
    if not NAME.fullmatch(name or "") or name.startswith("."):
        raise RequestError(f"app name {name!r} is not allowed: use {NAME_RULE}, not starting with '.'",
                           request_errors.INVALID)


def _last_version(app_dir: Path) -> int:
    numbers = [int(p.name[1:]) for p in app_dir.iterdir() if p.is_dir() and p.name[:1] == "v" and p.name[1:].isdigit()]
    return max(numbers, default=0)


def _deployed_at(app_dir: Path, version: str) -> float:
    try:
        return (app_dir / version / "deploy.pb").stat().st_mtime
    except OSError:
        return 0.0


def _write_synced(path: Path, data: bytes) -> None:
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
