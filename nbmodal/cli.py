"""The ``nbmodal`` command: run notebooks headless, manage the agent, hosts, runs, sessions and stores.

The parser and the verbs are ``nbmodal._cli``'s, shared with the ``%nbmodal`` magic; this module only
runs them in a terminal: a run's output goes to stdout, an error is one line on stderr and exit code 1.
"""

from __future__ import annotations

import sys

from nbmodal._cli import Console, build_parser, run_verb
from nbmodal._cli.common import plain_sink


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: the command line), run the verb; returns the process's exit code."""
    args = build_parser("nbmodal").parse_args(argv)
    console = Console(sink=plain_sink())
    try:
        result = run_verb(args, console)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # one clear line, not our stack
        print(f"nbmodal {args.command}: {exc}", file=sys.stderr)
        return 1
    if result is not None:
        print(repr(result))
    return console.exit_code


if __name__ == "__main__":
    sys.exit(main())
