"""The ``nbmodal`` command: run notebooks headless, manage the agent, runs and sessions."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nbmodal import commands


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nbmodal", description="Run notebook cells and functions on your own machines.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="execute a notebook headless, streaming its output; saves it executed")
    run.add_argument("notebook", type=Path)
    run.add_argument("-o", "--output", type=Path, help="where to save the executed notebook "
                                                        "(default: NAME.executed.ipynb beside it)")
    run.add_argument("--timeout", type=float, default=None, help="per-cell timeout in seconds (default: none)")

    agent = sub.add_parser("agent", help="the embedded local agent")
    agent.add_argument("action", choices=["start", "stop", "status"])

    host = sub.add_parser("host", help="SSH hosts: add, ls, rm, doctor")
    add_host_arguments(host)

    runs = sub.add_parser("runs", help="recent runs (of the local agent and every host)")
    runs.add_argument("-n", "--limit", type=int, default=20)
    runs.add_argument("--host", help="only this host")
    logs = sub.add_parser("logs", help="a run's output")
    logs.add_argument("run_id")
    logs.add_argument("-f", "--follow", action="store_true", help="keep following until the run ends")
    attach = sub.add_parser("attach", help="replay a run's output from the start and follow it to the end")
    attach.add_argument("run_id")
    stop = sub.add_parser("stop", help="cancel a run (r-…) or end a session (by name)")
    stop.add_argument("target")
    stop.add_argument("--force", action="store_true", help="kill the container now, no grace period")
    sub.add_parser("sessions", help="live sessions").add_argument("--host", help="only this host")
    sub.add_parser("containers", help="running and warm containers").add_argument("--host", help="only this host")
    sub.add_parser("gpus", help="GPUs of every host: figures and who holds them").add_argument(
        "--host", help="only this host")
    add_volume_arguments(sub.add_parser("volume", help="volumes: create, ls, put, get, rm, delete"))
    image = sub.add_parser("image", help="images on a host: ls, build FILE (in the %%image language), rm NAME")
    add_image_arguments(image)
    for kind in ("dict", "queue"):
        add_store_arguments(sub.add_parser(kind, help=f"named {kind.capitalize()}s: ls, peek, len, clear, delete"))

    args = parser.parse_args(argv)
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        return 130
    except (KeyError, Exception) as exc:  # one clear line, not our stack
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"nbmodal {args.command}: {message}", file=sys.stderr)
        return 1


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "run":
        from nbmodal.notebook_runner import run_notebook

        if not args.notebook.is_file():
            raise FileNotFoundError(f"no notebook at {args.notebook}")
        return run_notebook(args.notebook, args.output, args.timeout)
    if args.command == "agent":
        print({"start": commands.agent_start, "stop": commands.agent_stop, "status": commands.agent_status}[args.action]())
    elif args.command == "host":
        print(run_host_command(args))
    elif args.command == "runs":
        print(commands.runs_table(args.limit, args.host))
    elif args.command == "logs":
        commands.show_logs(args.run_id, commands.plain_sink(), follow=args.follow)
    elif args.command == "attach":
        result = commands.attach(args.run_id, commands.plain_sink())
        if result is not None:
            print(repr(result))
    elif args.command == "stop":
        print(commands.stop(args.target, force=args.force))
    elif args.command == "sessions":
        print(commands.sessions_table(args.host))
    elif args.command == "containers":
        print(commands.containers_table(args.host))
    elif args.command == "gpus":
        print(commands.gpus_table(args.host))
    elif args.command == "volume":
        print(run_volume_command(args))
    elif args.command in ("dict", "queue"):
        print(commands.store_command(args.command, args.verb, args.name, args.host, args.n))
    elif args.command == "image":
        print(commands.image_command(args.verb, args.name, args.host, force=args.force))
    return 0


def add_image_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("verb", choices=["ls", "build", "rm"])
    parser.add_argument("name", nargs="?", help="build: a file of %%%%image lines; rm: an image's name or id")
    parser.add_argument("--host", help="the host (default: the local agent; ls: every host)")
    parser.add_argument("--force", action="store_true", help="build: rebuild every step, ignoring the cache")


def add_volume_arguments(parser: argparse.ArgumentParser) -> None:
    """The `volume` verbs; shared with the %volume magic."""
    verbs = parser.add_subparsers(dest="verb", required=True)
    for verb, helptext in (("create", "create a volume"), ("delete", "delete a volume and its files")):
        verbs.add_parser(verb, help=helptext).add_argument("name")
    ls = verbs.add_parser("ls", help="volumes, or the files of one")
    ls.add_argument("name", nargs="?")
    ls.add_argument("path", nargs="?", default="/")
    put = verbs.add_parser("put", help="upload a file or directory")
    put.add_argument("name")
    put.add_argument("local")
    put.add_argument("remote", nargs="?", default="/")
    put.add_argument("--force", action="store_true", help="upload even if the content is already there")
    get = verbs.add_parser("get", help="download a file")
    get.add_argument("name")
    get.add_argument("remote")
    get.add_argument("local", nargs="?", default=".")
    rm = verbs.add_parser("rm", help="remove a file or directory")
    rm.add_argument("name")
    rm.add_argument("remote")
    rm.add_argument("-r", "--recursive", action="store_true")
    for sub in verbs.choices.values():
        sub.add_argument("--host", help="the host it lives on (default: see README)")


def run_volume_command(args: argparse.Namespace) -> str:
    return commands.volume_command(args)


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    """The `dict` / `queue` verbs; shared with the %nbmodal magic."""
    parser.add_argument("verb", choices=["ls", "peek", "len", "clear", "delete"])
    parser.add_argument("name", nargs="?")
    parser.add_argument("--host", help="the host it lives on (default: see README)")
    parser.add_argument("-n", type=int, default=10, help="peek: how many items")


def add_host_arguments(parser: argparse.ArgumentParser) -> None:
    """The `host` verbs; shared with the %nbmodal magic."""
    verbs = parser.add_subparsers(dest="verb", required=True)
    add = verbs.add_parser("add", help="add a host: NAME user@host[:port] or NAME SSH_ALIAS")
    add.add_argument("name")
    add.add_argument("target", help="user@host[:port], or a Host alias from your ssh config")
    add.add_argument("--ssh-config", default="", help="an ssh config file other than ~/.ssh/config")
    add.add_argument("--accept-new-host-key", action="store_true",
                     help="trust the host's key if known_hosts doesn't have it yet (a changed key is always refused)")
    add.add_argument("--python", default="", help="the Python to run the agent with there "
                                                   "(default: python3.X like this client, else python3)")
    add.add_argument("--no-check", action="store_true", help="don't connect to check the host now")
    add.add_argument("--slurm", action="store_true",
                     help="a Slurm cluster's login node: the agent runs there, containers run as Slurm jobs")
    add.add_argument("--partition", default="", help="--slurm: the partition jobs go to")
    add.add_argument("--account", default="", help="--slurm: the account jobs are charged to")
    add.add_argument("--qos", default="", help="--slurm: the QOS of the jobs")
    add.add_argument("--time", default="", help="--slurm: a job's walltime, e.g. 02:00:00 (default 01:00:00)")
    add.add_argument("--sbatch-flags", default="", help="--slurm: more sbatch flags, e.g. '--constraint=ib'")
    add.add_argument("--gres-types", default="",
                     help="--slurm: GPU names as this cluster's GRES types, e.g. 'A100-80GB=a100_80g,H100=h100'")
    add.add_argument("--callback-host", default="",
                     help="--slurm: the login node's address as compute nodes reach it (default: its FQDN)")
    add.add_argument("--slurm-env", default="", help="--slurm: environment for sbatch/squeue, e.g. 'SLURM_CONF=/x'")
    verbs.add_parser("ls", help="configured hosts")
    rm = verbs.add_parser("rm", help="forget a host")
    rm.add_argument("name")
    doctor = verbs.add_parser("doctor", help="check a host: ssh, host key, auth, python, disk, agent, latency")
    doctor.add_argument("name")


def run_host_command(args: argparse.Namespace) -> str:
    if args.verb == "add":
        slurm = None
        if args.slurm:
            slurm = {key: getattr(args, key) for key in ("partition", "account", "qos", "time", "sbatch_flags",
                                                         "gres_types", "callback_host", "slurm_env")}
        return commands.host_add(args.name, args.target, args.ssh_config, args.accept_new_host_key,
                                 check=not args.no_check, python=args.python, slurm=slurm)
    if args.verb == "ls":
        return commands.host_list()
    if args.verb == "rm":
        return commands.host_remove(args.name)
    return commands.host_doctor(args.name)


if __name__ == "__main__":
    sys.exit(main())
