"""The verbs of ``nbmodal`` (the shell command) and ``%nbmodal`` (the line magic), parsed by one parser.

The verbs are split per resource, as Modal's CLI splits them: one module each for runs, sessions,
containers, GPUs, hosts, the agent, volumes, Dicts and Queues, images, and ``run`` (a notebook headless,
or a Modal-style program's local entrypoint or function: ``run file.py[::NAME]``). Each module's
``register`` adds its subcommands to the parser and names, with ``set_defaults(handler=…)``, the
function that runs each one; the verb functions themselves live beside it. A handler takes the parsed
arguments and a ``Console`` (where output goes: the terminal for the command, the running cell for the
magic) and returns the verb's result where it has one (``attach``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nbmodal._cli import agent, apps, containers, gpus, hosts, image, notebook, runs, secrets, sessions, stores, volume
from nbmodal._cli import forward as forward_verb  # nbmodal forward: a container's port here
from nbmodal.output import OutputSink

_RESOURCES: tuple[Any, ...] = (notebook, agent, hosts, runs, sessions, containers, gpus, volume, image, stores, secrets,
                               apps)
_RESOURCES += (forward_verb,)


@dataclass
class Console:
    """Where a verb's output goes, and what it may touch besides."""

    sink: OutputSink    # a run's streamed output (logs, attach, image builds)
    shell: Any = None   # the notebook's shell for %nbmodal: attach sets a cell run's names in it
    exit_code: int = 0  # set by a verb that failed after reporting why (a headless notebook's failing cell)

    def echo(self, text: str) -> None:
        """Show a verb's text: printed, which in a kernel writes to the running cell."""
        print(text)


Handler = Callable[[argparse.Namespace, Console], Any]


def build_parser(prog: str = "nbmodal",
                 parser_class: type[argparse.ArgumentParser] = argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The parser of every verb; ``parser_class`` lets the magic turn argparse's exits into usage errors."""
    parser = parser_class(prog=prog, description="Run notebook cells and functions on your own machines.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=parser_class)
    for resource in _RESOURCES:
        resource.register(commands)
    return parser


def run_verb(args: argparse.Namespace, console: Console) -> Any:
    """Run the verb ``args`` was parsed for; returns its result (None for verbs that only show text)."""
    handler: Handler = args.handler
    return handler(args, console)
