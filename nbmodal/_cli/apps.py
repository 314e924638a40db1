"""Deployed apps: ``deploy FILE[::APP]``, and ``app list | logs NAME [-f] | stop NAME | history NAME``.

``deploy`` imports a Modal-style program (as ``run file.py`` does: its code travels by value) and deploys
its App on the hosts its functions target (``--host`` for those that name none); ``app`` lists and manages
what is deployed on the local agent and every configured host (``remote_agent/deployments.py``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

from nbmodal._cli.common import HOST_HELP, table
from nbmodal.exceptions import InvalidError, NotFoundError
from nbmodal_wire import pb

if TYPE_CHECKING:
    from nbmodal._cli import Console
    from nbmodal._runtime.client import AgentClient
    from nbmodal.app import App


def register(commands: argparse._SubParsersAction) -> None:
    deploy = commands.add_parser("deploy", help="deploy a program's App on its hosts (Modal's `modal deploy`)")
    deploy.add_argument("target", metavar="FILE[::APP]", help="a Python file; ::APP picks one of several apps")
    deploy.add_argument("--name", help="deploy under this app name instead of the App's own")
    deploy.add_argument("--host", help="where functions and classes without a host= of their own go")
    deploy.set_defaults(handler=_deploy)

    app = commands.add_parser("app", help="deployed apps: list, logs NAME [-f], stop NAME, history NAME")
    verbs = app.add_subparsers(dest="verb", required=True)
    listing = verbs.add_parser("list", help="apps deployed on the local agent and every host (stopped ones too)")
    listing.add_argument("--host", help=HOST_HELP)
    listing.set_defaults(handler=_list)
    logs = verbs.add_parser("logs", help="an app's log: deploys, schedules, and its runs' output")
    logs.add_argument("name")
    logs.add_argument("-f", "--follow", action="store_true", help="keep following new lines (Ctrl-C to stop)")
    logs.set_defaults(handler=_logs)
    stop = verbs.add_parser("stop", help="un-deploy: its schedules and warm containers stop; its history stays")
    stop.add_argument("name")
    stop.set_defaults(handler=_stop)
    history = verbs.add_parser("history", help="an app's deploys and stops")
    history.add_argument("name")
    history.set_defaults(handler=_history)


def _deploy(args: argparse.Namespace, console: Console) -> None:
    console.echo(deploy_file(args.target, name=args.name, host=args.host))


def _list(args: argparse.Namespace, console: Console) -> None:
    console.echo(apps_table(args.host))


def _logs(args: argparse.Namespace, console: Console) -> None:
    for line in app_log_lines(args.name, follow=args.follow):
        console.echo(line)


def _stop(args: argparse.Namespace, console: Console) -> None:
    console.echo(stop_app(args.name))


def _history(args: argparse.Namespace, console: Console) -> None:
    console.echo(history_table(args.name))


def deploy_file(target: str, name: str | None = None, host: str | None = None) -> str:
    """Import ``FILE[::APP]`` and deploy its App; returns what was deployed where."""
    from nbmodal import schedule
    from nbmodal._runtime.deployed import deploy_app, describe_deploy
    from nbmodal._script_runner import load_script, split_target

    path, selector = split_target(target)
    schedule.deploying = True  # its schedules are being deployed: no "only deployed functions" warning
    try:
        module = load_script(path)
    finally:
        schedule.deploying = False
    app = _the_app(module, path, selector)
    deployed = deploy_app(app, name=name, host=host, deployed_from=str(Path(path).resolve()))
    return describe_deploy(name or app.name or "", deployed)


def _the_app(module, path: Path, selector: str) -> App:
    from nbmodal.app import App

    apps = {variable: value for variable, value in vars(module).items() if isinstance(value, App)}
    if selector:
        chosen = apps.get(selector) or next((a for a in apps.values() if a.name == selector), None)
        if chosen is None:
            raise InvalidError(f"{path} has no App {selector!r} (its apps: {', '.join(apps) or 'none'})")
        return chosen
    if not apps:
        raise InvalidError(f"{path} defines no nbmodal.App (or modal.App) to deploy")
    if len(apps) > 1:
        raise InvalidError(f"{path} defines several apps ({', '.join(apps)}): pick one with {path}::NAME")
    return next(iter(apps.values()))


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds)) if seconds else "-"


def apps_table(host: str | None = None) -> str:
    """Every app deployed (or stopped) on each agent: version, functions, schedules and their next runs."""
    from nbmodal._runtime.deployed import agents_to_ask

    rows = [("APP", "HOST", "VERSION", "STATE", "DEPLOYED", "FUNCTIONS", "SCHEDULES")]
    for host_name, client in agents_to_ask(host):
        for info in client.app_call(pb.APP_LIST).apps:
            schedules = "; ".join(f"{f.name}: {f.schedule}, next {_when(f.next_run)}"
                                  for f in info.functions if f.schedule)
            rows.append((info.name, host_name, info.version, "deployed" if info.deployed else "stopped",
                         _when(info.deployed_at), ", ".join(f.name for f in info.functions), schedules or "-"))
    return table(rows) if len(rows) > 1 else "no apps deployed (deploy one: app.deploy(), `nbmodal deploy FILE`)"


def _agents_knowing(name: str) -> list[tuple[str, AgentClient]]:
    """The agents that have (or had) the app; ``NotFoundError`` listing the apps they know otherwise."""
    from nbmodal._runtime.deployed import agents_to_ask

    found, known = [], []
    for host_name, client in agents_to_ask():
        apps = client.app_call(pb.APP_LIST).apps
        if any(info.name == name for info in apps):
            found.append((host_name, client))
        known += [f"{info.name} ({host_name})" for info in apps]
    if not found:
        raise NotFoundError(f"no app {name!r} was ever deployed here (apps: {', '.join(known) or 'none'})")
    return found


def app_log_lines(name: str, follow: bool = False):
    """The app's log lines, stamped, from each agent that has it; with ``follow``, new ones as they come."""
    agents = _agents_knowing(name)
    many = len(agents) > 1
    for host_name, client in agents:
        for line in client.app_logs(name, follow=follow and not many):
            where = f"{host_name} " if many else ""
            yield f"{where}{_when(line.time)}  {line.text}"


def stop_app(name: str) -> str:
    """Un-deploy ``name`` on every agent that has it deployed."""
    stopped = []
    for host_name, client in _agents_knowing(name):
        try:
            info = client.app_call(pb.APP_STOP, name).apps[0]
        except NotFoundError:
            continue  # stopped there already
        stopped.append(f"app {name!r} stopped on {host_name} ({info.version}): its schedules and warm containers "
                       f"end; `nbmodal app history {name}` keeps its record")
    if not stopped:
        raise NotFoundError(f"app {name!r} is not deployed (it was stopped before; see `nbmodal app history {name}`)")
    return "\n".join(stopped)


def history_table(name: str) -> str:
    rows = [("VERSION", "EVENT", "TIME", "HOST", "FUNCTIONS", "FROM")]
    for host_name, client in _agents_knowing(name):
        for entry in client.app_call(pb.APP_HISTORY, name).history:
            rows.append((entry.version, entry.event, _when(entry.time), host_name, ", ".join(entry.functions),
                         entry.deployed_from or "-"))
    return table(rows)
