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

    runs = sub.add_parser("runs", help="recent runs")
    runs.add_argument("-n", "--limit", type=int, default=20)
    logs = sub.add_parser("logs", help="a run's output")
    logs.add_argument("run_id")
    logs.add_argument("-f", "--follow", action="store_true", help="keep following until the run ends")
    attach = sub.add_parser("attach", help="replay a run's output from the start and follow it to the end")
    attach.add_argument("run_id")
    stop = sub.add_parser("stop", help="cancel a run (r-…) or end a session (by name)")
    stop.add_argument("target")
    stop.add_argument("--force", action="store_true", help="kill the container now, no grace period")
    sub.add_parser("sessions", help="live sessions")
    sub.add_parser("containers", help="running and warm containers")

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
    elif args.command == "runs":
        print(commands.runs_table(args.limit))
    elif args.command == "logs":
        commands.show_logs(args.run_id, commands.plain_sink(), follow=args.follow)
    elif args.command == "attach":
        result = commands.attach(args.run_id, commands.plain_sink())
        if result is not None:
            print(repr(result))
    elif args.command == "stop":
        print(commands.stop(args.target, force=args.force))
    elif args.command == "sessions":
        print(commands.sessions_table())
    elif args.command == "containers":
        print(commands.containers_table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
