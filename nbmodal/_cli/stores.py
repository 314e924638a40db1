"""Named Dicts and Queues: ``dict|queue list|ls|peek|len|clear|delete`` (the two share their verbs)."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, Any

from nbmodal._cli.common import table
from nbmodal_wire import pb

if TYPE_CHECKING:
    from nbmodal._cli import Console

_VERBS = ("ls", "list", "peek", "len", "clear", "delete")


def register(commands: argparse._SubParsersAction) -> None:
    for kind in ("dict", "queue"):
        parser = commands.add_parser(kind, help=f"named {kind.capitalize()}s: ls, peek, len, clear, delete")
        parser.add_argument("verb", choices=_VERBS, help="list is ls, as Modal spells it")
        parser.add_argument("name", nargs="?")
        parser.add_argument("--host", help="the host it lives on (default: see README)")
        parser.add_argument("-n", type=int, default=10, help="peek: how many items")
        parser.set_defaults(handler=_run, kind=kind)


def _run(args: argparse.Namespace, console: Console) -> None:
    verb = "ls" if args.verb == "list" else args.verb
    console.echo(store_command(args.kind, verb, args.name, args.host, args.n))


def peek(store: Any, n: int = 10) -> list[str]:
    """The first ``n`` items of a Dict (``key: value``) or Queue, as reprs."""
    from nbmodal.dict import Dict

    if isinstance(store, Dict):
        return [f"{k!r}: {v!r}" for k, v in store.items()[:n]]
    return [repr(v) for v in store.peek(n)]


def store_command(kind: str, verb: str, name: str | None = None, host: str | None = None, n: int = 10) -> str:
    """``dict|queue ls|peek|len|clear|delete``."""
    from nbmodal._runtime.connection import storage_connection
    from nbmodal.dict import Dict
    from nbmodal.queue import Queue

    if verb == "ls":
        client = storage_connection(host).client()
        call = client.dict_call(pb.DictRequest(op=pb.LIST)) if kind == "dict" else \
            client.queue_call(pb.QueueRequest(op=pb.LIST))
        rows = [("NAME", "ITEMS", "CREATED")] + [
            (s.name + (" (ephemeral)" if s.ephemeral else ""), str(s.length),
             time.strftime("%Y-%m-%d %H:%M", time.localtime(s.created))) for s in call.stores]
        return table(rows) if len(rows) > 1 else f"no {kind}s"
    if not name:
        raise ValueError(f"{kind} {verb} needs a name")
    store = (Dict if kind == "dict" else Queue).from_name(name, host=host)
    if verb == "len":
        return str(len(store))
    if verb == "peek":
        return "\n".join(peek(store, n)) or "(empty)"
    if verb == "clear":
        store.clear()
        return f"{kind} {name!r} cleared"
    if verb == "delete":
        (Dict if kind == "dict" else Queue).delete(name, host=host)
        return f"{kind} {name!r} deleted"
    raise ValueError(f"unknown verb {verb!r}: use ls, peek, len, clear or delete")
