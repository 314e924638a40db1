"""Runs: ``runs`` (the list), ``logs``, ``attach`` and ``stop``."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, Any

from nbmodal._cli.common import HOST_HELP, reachable, table
from nbmodal._runtime.connection import locate_run
from nbmodal._runtime.execution import RunFollower
from nbmodal._runtime.stdin_answers import StdinAnswers
from nbmodal._runtime.transfer import BlobTransfer
from nbmodal.config import DEFAULT_CANCEL_GRACE_S
from nbmodal.output import OutputSink
from nbmodal.results import function_result, raise_for_state
from nbmodal_wire import pb

if TYPE_CHECKING:
    from nbmodal._cli import Console


def register(commands: argparse._SubParsersAction) -> None:
    runs = commands.add_parser("runs", help="recent runs (of the local agent and every host)")
    runs.add_argument("-n", "--limit", type=int, default=20, help="at most this many runs per host (default 20)")
    runs.add_argument("--host", help=HOST_HELP)
    runs.set_defaults(handler=_runs)

    logs = commands.add_parser("logs", help="a run's output")
    logs.add_argument("run_id")
    logs.add_argument("-f", "--follow", action="store_true", help="keep following until the run ends")
    logs.set_defaults(handler=_logs)

    attach_parser = commands.add_parser("attach", help="replay a run's output from the start and follow it to the end, "
                                                 "answering its debugger (breakpoint()) here")
    attach_parser.add_argument("run_id")
    attach_parser.set_defaults(handler=_attach)

    stop_parser = commands.add_parser("stop", help="cancel a run (r-…) or end a session (by name)")
    stop_parser.add_argument("target")
    stop_parser.add_argument("--force", action="store_true", help="kill the container now, no grace period")
    stop_parser.set_defaults(handler=_stop)


def _runs(args: argparse.Namespace, console: Console) -> None:
    console.echo(runs_table(args.limit, args.host))


def _logs(args: argparse.Namespace, console: Console) -> None:
    show_logs(args.run_id, console.sink, follow=args.follow)


def _attach(args: argparse.Namespace, console: Console) -> Any:
    return attach(args.run_id, console.sink, console.shell)


def _stop(args: argparse.Namespace, console: Console) -> None:
    console.echo(stop(args.target, force=args.force))


def runs_table(limit: int = 20, host: str | None = None) -> str:
    """The last ``limit`` runs of each reachable host (or of ``host`` only), newest first."""
    rows = [("RUN", "HOST", "STATE", "KIND", "SESSION", "STARTED", "DURATION", "WHAT")]
    now = time.time()
    for name, client in reachable(host):
        for info in client.list_runs(limit):
            end = info.finished or now
            duration = f"{end - info.started:.1f}s" if info.started else "-"
            rows.append((info.run_id, name, pb.RunState.Name(info.state), pb.RunKind.Name(info.kind).lower(),
                         info.session or "-", time.strftime("%H:%M:%S", time.localtime(info.created)),
                         duration, info.label[:60]))
    return table(rows) if len(rows) > 1 else "no runs yet"


def show_logs(run_id: str, sink: OutputSink, follow: bool = False) -> pb.RunInfo:
    """Write a run's output so far (and, with ``follow``, until it ends) to ``sink``."""
    follower = RunFollower(locate_run(run_id), sink, DEFAULT_CANCEL_GRACE_S, cancel_on_interrupt=False)
    follower.attach(run_id, follow=follow)
    return follower.client.get_run(run_id)


def attach(run_id: str, sink: OutputSink, shell: Any = None) -> Any:
    """Replay a run from its start, follow it to the end, and return or apply its results.

    A cell run's assigned names are set in ``shell``'s namespace; a function
    run's return value is returned.
    """
    from nbmodal.remote_cell import apply_cell_result

    # Attached, it is the run's debugger: a breakpoint's prompt is answered here (the terminal, or the notebook).
    follower = RunFollower(locate_run(run_id), sink, DEFAULT_CANCEL_GRACE_S, answer_input=StdinAnswers())
    client = follower.client
    info = client.get_run(run_id)
    finished = follower.attach(run_id)
    assert finished is not None  # followed to the end: a run that ends without a result raises RunLostError
    if finished.results_dropped:
        sink.notice(f"run {run_id}'s results were delivered to the client that started it and not kept")
    transfer = BlobTransfer.for_connection(follower.connection, client)
    keep = info.detach  # a detached run's results stay for other attaches (for a day)
    if info.kind == pb.CELL and shell is not None:
        execute_result = getattr(sink, "execute_result", None)
        return apply_cell_result(shell, transfer, finished, info.session, execute_result, keep_blobs=keep)
    raise_for_state(finished, cell=info.kind == pb.CELL)
    if info.kind != pb.FUNCTION or not (finished.return_value or finished.return_blob):
        return None
    return function_result(finished, lambda blob_id: transfer.fetch(blob_id, delete=not keep))


def stop(target: str, force: bool = False) -> str:
    """Cancel a run (``r-…``) or end a session by name."""
    if not target.startswith("r-"):
        from nbmodal._cli.sessions import stop_session

        return stop_session(target)
    info = locate_run(target).client().cancel(target, force=force)
    outcome = ("stop requested" if info.state in (pb.PENDING, pb.RUNNING, pb.WAITING_FOR_DEBUGGER)
               else pb.RunState.Name(info.state))
    return f"run {target}: {outcome}"
