"""Headless notebooks: ``run NOTEBOOK``, executed with a real kernel and saved with its outputs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nbmodal._cli import Console


def register(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser("run", help="execute a notebook headless, streaming its output; saves it executed")
    run.add_argument("notebook", type=Path)
    run.add_argument("-o", "--output", type=Path, help="where to save the executed notebook "
                                                        "(default: NAME.executed.ipynb beside it)")
    run.add_argument("--timeout", type=float, default=None, help="per-cell timeout in seconds (default: none)")
    run.set_defaults(handler=_run)


def _run(args: argparse.Namespace, console: Console) -> None:
    # Imported here: nbclient and jupyter_client are slow to load and only this verb needs them.
    from nbmodal.notebook_runner import run_notebook

    if not args.notebook.is_file():
        raise FileNotFoundError(f"no notebook at {args.notebook}")
    console.exit_code = run_notebook(args.notebook, args.output, args.timeout)
