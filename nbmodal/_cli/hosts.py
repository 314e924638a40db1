"""SSH hosts and Slurm login nodes: ``host add|ls|rm|doctor``; ``ls`` and ``doctor --all`` ask every host at once."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from nbmodal._cli.common import table
from nbmodal._runtime.connection import forget
from nbmodal.hosts import SLURM_KEYS, Host, HostError

if TYPE_CHECKING:
    from nbmodal._cli import Console


def register(commands: argparse._SubParsersAction) -> None:
    host = commands.add_parser("host", help="SSH hosts: add, ls, rm, doctor")
    verbs = host.add_subparsers(dest="verb", required=True)
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
    add.add_argument("--job-volumes", default="", choices=["", "auto", "shared", "copy"],
                     help="--slurm: volumes in jobs: linked from the shared filesystem (shared), copied to the "
                          "job's node (copy), or linked where the node sees the agent's state dir, else copied "
                          "(auto, the default)")
    add.set_defaults(handler=_add)
    verbs.add_parser("ls", aliases=["list"], help="configured hosts, with each one's health (checked in parallel)") \
        .set_defaults(handler=_list)
    rm = verbs.add_parser("rm", help="forget a host")
    rm.add_argument("name")
    rm.set_defaults(handler=_remove)
    doctor = verbs.add_parser("doctor", help="check a host: ssh, host key, auth, python, disk, agent, latency")
    doctor.add_argument("name", nargs="?", default="")
    doctor.add_argument("--all", action="store_true", help="check every configured host at once")
    doctor.set_defaults(handler=_doctor)


def _add(args: argparse.Namespace, console: Console) -> None:
    slurm = {key: getattr(args, key) for key in SLURM_KEYS} if args.slurm else None
    console.echo(host_add(args.name, args.target, args.ssh_config, args.accept_new_host_key,
                          check=not args.no_check, python=args.python, slurm=slurm))


def _list(args: argparse.Namespace, console: Console) -> None:
    console.echo(host_list())


def _remove(args: argparse.Namespace, console: Console) -> None:
    console.echo(host_remove(args.name))


def _doctor(args: argparse.Namespace, console: Console) -> None:
    if args.all == bool(args.name):
        raise HostError("host doctor: name one host, or pass --all for every configured host")
    console.echo(host_doctor_all() if args.all else host_doctor(args.name))


def host_add(name: str, target: str, ssh_config: str = "", accept_new_host_key: bool = False,
             check: bool = True, python: str = "", slurm: dict | None = None) -> str:
    """Add a host; by default connect once to check it (and accept a new host key if asked).

    ``slurm`` (partition, account, qos, time, sbatch_flags, gres_types, callback_host, slurm_env, job_volumes) makes it
    a Slurm cluster's login node: its containers run as Slurm jobs.
    """
    from nbmodal import hosts
    from nbmodal._runtime import bootstrap
    from nbmodal._runtime.ssh import SSHConnection

    extra = {"slurm": True, **{k: v for k, v in slurm.items() if v}} if slurm is not None else {}
    host = hosts.Host(name, target, str(Path(ssh_config).expanduser().resolve()) if ssh_config else "",
                      {**({"python": python} if python else {}), **extra})
    hosts.slurm_settings(host)  # bad settings fail now
    if check:
        ssh = SSHConnection.open(host, accept_new_host_key)
        try:
            facts = bootstrap.probe(ssh)
        finally:
            ssh.close()
        summary = f"; reachable, Python {facts.python_version} on {facts.machine}"
    else:
        summary = ""
    hosts.add_host(name, target, ssh_config, python, extra)
    forget(name)
    return f"host {name!r} added ({target}){summary}"


def host_list() -> str:
    from nbmodal import hosts

    configured = hosts.load_hosts()
    if not configured:
        return "no hosts (runs go to the local agent); add one with `nbmodal host add NAME user@host`"
    health = host_health(list(configured.values()))
    rows = [("HOST", "TARGET", "SSH CONFIG", "HEALTH")]
    rows += [(h.name, h.target, h.ssh_config or "~/.ssh/config", health[h.name]) for h in configured.values()]
    return table(rows)


def host_health(configured: list[Host]) -> dict[str, str]:
    """A few words per host on whether it answers and its agent runs (all hosts checked at once)."""
    from nbmodal._runtime import bootstrap
    from nbmodal._runtime.ssh import run_on_hosts

    health = {}
    for name, reply in run_on_hosts(configured, bootstrap.AGENT_JSON_COMMAND).items():
        if reply.error:
            health[name] = _failed_step(reply.error)
            continue
        try:
            agent = bootstrap.parse_agent_json(name, reply.status, reply.stdout)
        except HostError:
            health[name] = "agent.json malformed (see host doctor)"
            continue
        health[name] = f"ok, agent {agent.version} (pid {agent.pid})" if agent is not None else "ok, no agent yet"
    return health


def _failed_step(error: str) -> str:
    if "host key" in error or "known_hosts" in error:
        return "host key refused (see host doctor)"
    if "refused every key" in error:
        return "login refused (see host doctor)"
    if "can't resolve" in error:
        return "ssh config error (see host doctor)"
    return "unreachable"


def host_remove(name: str) -> str:
    from nbmodal import hosts

    hosts.remove_host(name)
    forget(name)
    return f"host {name!r} removed (its agent keeps running there until it is stopped)"


def host_doctor(name: str) -> str:
    from nbmodal.doctor import doctor

    return "\n".join(check.line() for check in doctor(name))


def host_doctor_all() -> str:
    """Every configured host checked at once: SSH, Python, disk, agent (``host doctor NAME`` for latency)."""
    from nbmodal.doctor import doctor_all

    reports = doctor_all()
    if not reports:
        return "no hosts (runs go to the local agent); add one with `nbmodal host add NAME user@host`"
    return "\n\n".join(f"{name}:\n" + "\n".join("  " + check.line() for check in checks)
                       for name, checks in reports.items())
