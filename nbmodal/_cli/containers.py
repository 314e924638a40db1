"""Containers: ``containers`` (or ``container list``), ``container exec|logs|stop``, and ``shell``.

``exec`` and ``shell`` start a process inside a running container (ContainerExec: it shares the
container's namespaces, environment and GPUs); the terminal is joined to it by ``exec_terminal``. A
container id is looked for on ``--host`` or on every reachable host.
"""

from __future__ import annotations

import argparse
import codecs
import os
import sys
import time
from typing import TYPE_CHECKING

import grpc

from nbmodal._cli import exec_terminal, new_shell
from nbmodal._cli.common import HOST_HELP, add_host_listing, reachable, table
from nbmodal._runtime.client import AgentClient, translate_rpc_error
from nbmodal._runtime.container_exec import ExecExit, ExecProcess
from nbmodal.exceptions import NotFoundError
from nbmodal_wire.states import container_state_word

if TYPE_CHECKING:
    from nbmodal._cli import Console

SHELLS = ("bash", "sh")  # what `nbmodal shell` runs: the first the container has


def register(commands: argparse._SubParsersAction) -> None:
    add_host_listing(commands, "containers", "running and warm containers", _list)
    container = commands.add_parser("container", help="containers, as Modal spells it: list, exec, logs, stop")
    verbs = container.add_subparsers(dest="verb", required=True)
    add_host_listing(verbs, "list", "running and warm containers", _list)

    run = verbs.add_parser("exec", help="run a command inside a running container",
                           description="Run CMD inside a running container: its output streams here, stdin is "
                                       "forwarded, and its exit code is this command's.")
    run.add_argument("container_id", metavar="ID")
    run.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD...")
    tty_choice = run.add_mutually_exclusive_group()
    tty_choice.add_argument("-t", "--tty", dest="pty", action="store_true", default=None,
                            help="a pseudo-terminal (default when stdin is a terminal)")
    tty_choice.add_argument("--no-tty", dest="pty", action="store_false", help="plain pipes, stdout and stderr apart")
    run.add_argument("-w", "--workdir", default="", help="working directory inside the container")
    run.add_argument("-e", "--env", action="append", default=[], metavar="KEY=VALUE", help="an environment variable")
    run.add_argument("--timeout", type=float, default=0, help="kill it after this many seconds")
    run.add_argument("--host", help=HOST_HELP)
    run.set_defaults(handler=_exec)

    logs = verbs.add_parser("logs", help="a container's log")
    logs.add_argument("container_id", metavar="ID")
    logs.add_argument("-f", "--follow", action="store_true", help="follow it until the container ends")
    logs.add_argument("--host", help=HOST_HELP)
    logs.set_defaults(handler=_logs)

    stop = verbs.add_parser("stop", help="stop a container (its run is cancelled, its session ends)")
    stop.add_argument("container_id", metavar="ID")
    stop.add_argument("--host", help=HOST_HELP)
    stop.set_defaults(handler=_stop)

    shell = commands.add_parser("shell", help="an interactive shell in a running container, or in a new one",
                                description="With ID: a shell (bash, else sh) on a real terminal inside that "
                                            "running container. Without: a new container with this spec, "
                                            "stopped when the shell exits.")
    shell.add_argument("container_id", nargs="?", metavar="ID")
    shell.add_argument("--cmd", default="", help="run this command line instead of an interactive shell")
    shell.add_argument("--host", help=HOST_HELP)
    new_shell.add_spec_arguments(shell)
    shell.set_defaults(handler=_shell)


def _list(args: argparse.Namespace, console: Console) -> None:
    console.echo(containers_table(args.host))


def containers_table(host: str | None = None) -> str:
    """Every container of each reachable host (or of ``host`` only): state, session, run, age."""
    rows = [("CONTAINER", "HOST", "PID", "STATE", "SESSION", "RUN", "AGE")]
    now = time.time()
    for name, client in reachable(host):
        for c in client.list_containers():
            rows.append((c.container_id, name, str(c.pid), container_state_word(c.state), c.session or "-",
                         c.run_id or c.sandbox_id or "-", f"{now - c.created:.0f}s"))  # a Sandbox's: its id
    return table(rows) if len(rows) > 1 else "no containers"


def find_container(container_id: str, host: str | None = None) -> tuple[str, AgentClient]:
    """(host name, client) of the host running ``container_id``: ``host``, else each reachable one."""
    hosts = reachable(host)
    for name, client in hosts:
        if any(c.container_id == container_id for c in client.list_containers()):
            return name, client
    where = f"on {host}" if host else f"on any reachable host ({', '.join(name for name, _ in hosts)})"
    raise NotFoundError(f"no running container {container_id!r} {where}; `nbmodal container list` shows them")


def _exec(args: argparse.Namespace, console: Console) -> None:
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        raise ValueError("no command given: nbmodal container exec [OPTIONS] ID -- CMD...")
    if cmd[0].startswith("-") and "--" in cmd:
        # `exec ID -t -- CMD`: after the id everything is the command's, so this would run `-t`.
        options, command = cmd[:cmd.index("--")], cmd[cmd.index("--") + 1:]
        raise ValueError(f"options go before the container id: nbmodal container exec {' '.join(options)} "
                         f"{args.container_id} -- {' '.join(command)}")
    env = {}
    for pair in args.env:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--env {pair!r}: give KEY=VALUE")
        env[key] = value
    _, client = find_container(args.container_id, args.host)
    if console.shell is not None:  # %nbmodal in a cell: no terminal; the output goes into the cell
        process = ExecProcess(client, args.container_id, cmd, env=env, workdir=args.workdir, timeout=args.timeout)
        console.exit_code = _report(_into_cell(process, console), "container exec", console)
        return
    console.exit_code = _interactive(client, args.container_id, cmd, args.pty, "container exec",
                                     env=env, workdir=args.workdir, timeout=args.timeout)


def _shell(args: argparse.Namespace, console: Console) -> None:
    if console.shell is not None:
        raise ValueError("`shell` needs a terminal: run `nbmodal shell` in one (the sidebar's Open terminal "
                         "does), or `%nbmodal container exec ID -- CMD` for one command")
    if args.container_id:
        new_shell.refuse_spec_options(args)
        _, client = find_container(args.container_id, args.host)
        console.exit_code = join_shell(client, args.container_id, args.cmd)
        return
    with new_shell.new_container(args) as (client, container_id):
        console.exit_code = join_shell(client, container_id, args.cmd)


def join_shell(client: AgentClient, container_id: str, command: str = "") -> int:
    """An interactive shell (or ``command`` in one) on a PTY in the container; the shell's exit code."""
    script = (" || ".join(f"{{ command -v {shell} >/dev/null && exec {shell} -l; }}" for shell in SHELLS)
              if not command else command)
    return _interactive(client, container_id, ["/bin/sh", "-c", script], True, "shell")


def _interactive(client: AgentClient, container_id: str, cmd: list[str], pty: bool | None, verb: str,
                 **options) -> int:
    if pty is None:
        pty = sys.stdin is not None and sys.stdin.isatty()
    rows, cols = exec_terminal.window_size() if pty else (0, 0)
    if pty:  # the remote terminal speaks what this one does (colours, key codes)
        options["env"] = {"TERM": os.environ.get("TERM") or "xterm-256color", **options.get("env", {})}
    process = ExecProcess(client, container_id, cmd, pty=pty, rows=rows, cols=cols, **options)
    return _report(exec_terminal.drive(process, pty), verb, None)


def _report(ended: ExecExit, verb: str, console: Console | None) -> int:
    if ended.error:
        message = f"nbmodal {verb}: {ended.error}"
        if console is not None:
            console.echo(message)
        else:
            print(message, file=sys.stderr)
    return ended.code


def _into_cell(process: ExecProcess, console: Console) -> ExecExit:
    process.write_eof()  # a cell has no stdin to give
    decoders: dict[int, codecs.IncrementalDecoder] = {}
    for stream, data in process.output():
        decoder = decoders.setdefault(stream, codecs.getincrementaldecoder("utf-8")(errors="replace"))
        text = decoder.decode(data)
        if text:
            console.sink.output(stream, text)
    return process.wait()


def _logs(args: argparse.Namespace, console: Console) -> None:
    for _, client in reachable(args.host):
        call = client.container_logs(args.container_id, follow=args.follow)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        try:
            for chunk in call:
                console.sink.output(0, decoder.decode(chunk.data))
        except grpc.RpcError as exc:
            error = translate_rpc_error(exc, client)
            if isinstance(error, NotFoundError) and not args.host:
                continue  # not this host's
            raise error from None
        return
    raise NotFoundError(f"no container {args.container_id!r} on any reachable host; `nbmodal container list` "
                        f"shows the running ones")


def _stop(args: argparse.Namespace, console: Console) -> None:
    name, client = find_container(args.container_id, args.host)
    client.stop_container(args.container_id)
    console.echo(f"container {args.container_id} on {name} stopped")
