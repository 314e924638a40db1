"""Volumes: ``volume create|list|ls|put|get|rm|recover|delete`` (``%volume`` runs the same verbs)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

from nbmodal._cli.common import table
from nbmodal_wire import pb

if TYPE_CHECKING:
    from nbmodal._cli import Console


def register(commands: argparse._SubParsersAction) -> None:
    volume = commands.add_parser("volume", help="volumes: create, list, ls, put, get, rm, recover, delete")
    verbs = volume.add_subparsers(dest="verb", required=True)
    verbs.add_parser("create", help="create a volume").add_argument("name")
    verbs.add_parser("delete", help="delete a volume and its files").add_argument("name")
    verbs.add_parser("list", help="volumes (as `ls` without a name)")
    ls = verbs.add_parser("ls", help="volumes, or one's version on each host and its files")
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
    recover = verbs.add_parser("recover", help="put back a file the last commit overwrote (another host's)")
    recover.add_argument("name")
    recover.add_argument("remote")
    recover.add_argument("--to", default="", help="where to put it (default: its own path)")
    for verb in verbs.choices.values():
        verb.add_argument("--host", help="the host it lives on (default: see README)")
    volume.set_defaults(handler=_run)


def _run(args: argparse.Namespace, console: Console) -> None:
    console.echo(volume_command(args))


def volume_command(args: argparse.Namespace) -> str:
    """``volume create|list|ls|put|get|rm|delete``, parsed."""
    from nbmodal._runtime.connection import storage_connection
    from nbmodal.volume import Volume, upload_file

    if args.verb == "create":
        Volume.from_name(args.name, create_if_missing=True, host=args.host)
        return f"volume {args.name!r} ready"
    if args.verb == "delete":
        Volume.delete(args.name, host=args.host)
        return f"volume {args.name!r} deleted"
    if args.verb == "list" or (args.verb == "ls" and not args.name):
        reply = storage_connection(args.host).client().volume_call(pb.VolumeRequest(op=pb.VOLUME_LIST))
        rows = [("VOLUME", "SIZE")] + [(s.name, f"{s.length / 2**20:.1f} MiB") for s in reply.stores]
        return table(rows) if len(rows) > 1 else "no volumes"
    volume = Volume.from_name(args.name, host=args.host)
    if args.verb == "ls":
        rows = [("PATH", "TYPE", "SIZE", "MODIFIED")] + [
            (e.path, e.type, str(e.size), time.strftime("%Y-%m-%d %H:%M", time.localtime(e.mtime)))
            for e in volume.listdir(args.path)]
        files = table(rows) if len(rows) > 1 else "(empty)"
        return f"{copies_table(volume.versions())}\n\n{files}" if args.path == "/" else files
    if args.verb == "recover":
        volume._call(pb.VOLUME_RECOVER, path=args.remote, new_name=args.to)
        return f"recovered {args.name}:{args.remote}{f' at {args.to}' if args.to else ''} (a new version)"
    if args.verb == "put":
        local = Path(args.local)
        if local.is_dir():
            with volume.batch_upload(force=args.force, progress=True) as batch:
                batch.put_directory(local, args.remote)
            return f"uploaded {local}/ to {args.name}:{args.remote}"
        remote = args.remote.rstrip("/") + "/" + local.name if args.remote.endswith("/") else args.remote
        sent = upload_file(volume, local, remote, force=args.force, progress=True)
        return f"{'uploaded' if sent else 'already there:'} {local} -> {args.name}:{remote}"
    if args.verb == "get":
        target = Path(args.local)
        if target.is_dir():
            target = target / Path(args.remote).name
        with open(target, "wb") as f:
            size = volume.read_file_into_fileobj(args.remote, f, progress=True)
        return f"downloaded {args.name}:{args.remote} -> {target} ({size} bytes)"
    if args.verb == "rm":
        volume.remove_file(args.remote, recursive=args.recursive)
        return f"removed {args.name}:{args.remote}"
    raise ValueError(f"unknown verb {args.verb!r}: use create, list, ls, put, get, rm, recover or delete")


def copies_table(copies: dict) -> str:
    """HOST ROLE VERSION STATE: a volume's copy on each host (and what its last commit overwrote)."""
    rows = [("HOST", "ROLE", "VERSION", "STATE")]
    overwritten = []
    latest = max((c["version"] for c in copies.values() if c.get("role") == "home"), default=0)
    for host, copy in copies.items():
        if "error" in copy:
            rows.append((host, "?", "?", f"unreachable: {copy['error'][:60]}"))
            continue
        state = ("uncommitted writes" if copy["pending"] else "up to date" if copy["role"] == "home"
                 else f"behind (home at {latest})" if copy["version"] < latest else "synced")
        rows.append((host, copy["role"], str(copy["version"]), state))
        overwritten += [f"  {o['path']} (replaced by {o['host'] or '?'}'s commit, version {o['version']})"
                        for o in copy.get("overwritten", [])]
    text = table(rows)
    if overwritten:
        text += "\noverwritten by the last commit (`nbmodal volume recover NAME PATH`):\n" + "\n".join(overwritten)
    return text
