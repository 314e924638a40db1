"""``run``: a notebook headless with a real kernel (``run NOTEBOOK.ipynb``), or a Modal-style program
(``run file.py[::NAME] [ARGS]``, as Modal's ``modal run``: see ``nbmodal._script_runner``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nbmodal._cli import Console


def register(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser(
        "run", help="run a notebook headless (saved executed), or a program's local entrypoint or function",
        description="nbmodal run NOTEBOOK.ipynb [-o OUT] [--timeout S] executes a notebook headless, streaming "
                    "its output, and saves it executed. nbmodal run [--host H] FILE.py[::NAME] [ARGS] runs the "
                    "app's local entrypoint (or the function, entrypoint or Cls.method NAME) with ARGS as its "
                    "parameters (--n 5), as Modal's `modal run` does.")
    run.add_argument("target", metavar="NOTEBOOK.ipynb | FILE.py[::NAME]")
    run.add_argument("-o", "--output", type=Path, help="a notebook: where to save it executed "
                                                        "(default: NAME.executed.ipynb beside it)")
    run.add_argument("--timeout", type=float, default=None, help="a notebook: per-cell timeout in seconds "
                                                                 "(default: none)")
    run.add_argument("--host", default=None, help="a program: run its functions on this configured host "
                                                  "(those without a host= of their own)")
    run.add_argument("--detach", action="store_true",
                     help="a program: its runs go on after it ends or is interrupted (Modal's `modal run --detach`); "
                          "without it, runs it spawned that are still going when it ends are stopped")
    run.add_argument("args", nargs=argparse.REMAINDER, help="a program: its entrypoint's options (--n 5)")
    run.set_defaults(handler=_run)


def _run(args: argparse.Namespace, console: Console) -> None:
    if args.target.partition("::")[0].endswith(".py"):
        # Imported here: the runner imports the whole client API.
        from nbmodal._script_runner import run_script

        if args.output is not None or args.timeout is not None:
            raise ValueError("-o and --timeout are for notebooks; a program takes its own options after FILE.py")
        if args.args[:1] == ["--detach"]:  # also right after FILE.py, before the program's own options
            args.detach, args.args = True, args.args[1:]
        console.exit_code = run_script(args.target, list(args.args), host=args.host, detach=args.detach)
        return
    notebook_args = _notebook_options(args)
    # Imported here: nbclient and jupyter_client are slow to load and only notebooks need them.
    from nbmodal.notebook_runner import run_notebook

    notebook = Path(args.target)
    if not notebook.is_file():
        raise FileNotFoundError(f"no notebook at {notebook} (run takes NOTEBOOK.ipynb or FILE.py[::NAME])")
    console.exit_code = run_notebook(notebook, notebook_args.output, notebook_args.timeout)


def _notebook_options(args: argparse.Namespace) -> argparse.Namespace:
    """A notebook's -o/--timeout, also where they follow its path (``run nb.ipynb -o out.ipynb``)."""
    if args.host is not None:
        raise ValueError("--host is for programs (FILE.py); a notebook picks hosts in its cells")
    if args.detach:
        raise ValueError("--detach is for programs (FILE.py); a notebook detaches cells with %%remote --detach")
    trailing = argparse.ArgumentParser(prog=f"nbmodal run {args.target}", add_help=False)
    trailing.add_argument("-o", "--output", type=Path, default=args.output)
    trailing.add_argument("--timeout", type=float, default=args.timeout)
    return trailing.parse_args(args.args)
