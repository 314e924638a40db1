"""``python -m remote_agent serve --state-dir DIR [--daemon]``: run the agent."""

import argparse
import os
import sys
from pathlib import Path

from remote_agent.daemon import serve


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m remote_agent", description="The nbmodal agent daemon.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve_parser = sub.add_parser("serve", help="serve runs from this state dir")
    serve_parser.add_argument("--state-dir", type=Path, required=True)
    serve_parser.add_argument("--daemon", action="store_true", help="detach and return at once")
    serve_parser.add_argument(
        "--scaledown-window", type=float,
        default=float(os.environ.get("NBMODAL_SCALEDOWN_WINDOW", 600)),
        help="seconds an idle container stays warm (default 600, or $NBMODAL_SCALEDOWN_WINDOW)")
    args = parser.parse_args()
    return serve(args.state_dir.expanduser().resolve(), args.daemon, args.scaledown_window)


sys.exit(main())
