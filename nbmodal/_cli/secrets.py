"""Named secrets: ``secret create NAME K=V … [--from-dotenv FILE] [--host H|--all-hosts] [--force]``,
``secret list|ls``, ``secret delete NAME``. Values are never shown: ``list`` gives names, keys and
creation times."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

from nbmodal._cli.common import table
from nbmodal.exceptions import InvalidError

if TYPE_CHECKING:
    from nbmodal._cli import Console

_DEFAULT_HOST = "default: the local agent when no hosts are configured, else the first configured host"


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("secret", help="named secrets on the hosts: create, list, delete")
    verbs = parser.add_subparsers(dest="secret_verb", required=True, metavar="VERB")

    create = verbs.add_parser("create", help="store a named secret on a host (values never shown again)")
    create.add_argument("name")
    create.add_argument("pairs", nargs="*", metavar="KEY=VALUE")
    create.add_argument("--from-dotenv", metavar="FILE", help="also take the variables of this .env file")
    create.add_argument("--force", action="store_true", help="replace a secret of that name")
    _add_where(create)
    create.set_defaults(handler=_create)

    for name in ("list", "ls"):
        listing = verbs.add_parser(name, help="names, keys and creation times (never values)")
        _add_where(listing)
        listing.set_defaults(handler=_list)

    delete = verbs.add_parser("delete", help="delete a named secret")
    delete.add_argument("name")
    _add_where(delete)
    delete.set_defaults(handler=_delete)


def _add_where(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--host", help=f"the host ({_DEFAULT_HOST})")
    where.add_argument("--all-hosts", action="store_true", help="the local agent and every configured host")


def parse_pairs(pairs: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` arguments as a dict; one without ``=`` is an error naming it."""
    values: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidError(f"secret create: expected KEY=VALUE, got {pair.split('=')[0]!r} with no '='")
        values[key] = value
    return values


def _create(args: argparse.Namespace, console: Console) -> None:
    from nbmodal._dotenv import read_dotenv
    from nbmodal.secret import create_secret

    values = read_dotenv(Path(args.from_dotenv).expanduser()) if args.from_dotenv else {}
    values.update(parse_pairs(args.pairs))
    hosts = create_secret(args.name, values, host=args.host, all_hosts=args.all_hosts, force=args.force)
    console.echo(f"secret {args.name!r} ({', '.join(sorted(values))}) stored on {', '.join(hosts)}")


def _list(args: argparse.Namespace, console: Console) -> None:
    from nbmodal.secret import list_secrets

    found = list_secrets(args.host, args.all_hosts)
    if not found:
        console.echo("no secrets")
        return
    rows = [("HOST", "NAME", "KEYS", "CREATED")] + [
        (host, info.name, ", ".join(info.keys), time.strftime("%Y-%m-%d %H:%M", time.localtime(info.created)))
        for host, info in found]
    console.echo(table(rows))


def _delete(args: argparse.Namespace, console: Console) -> None:
    from nbmodal.secret import delete_secret

    hosts = delete_secret(args.name, host=args.host, all_hosts=args.all_hosts)
    console.echo(f"secret {args.name!r} deleted from {', '.join(hosts)}")
