"""The verbs shared by ``%nbmodal`` and the ``nbmodal`` CLI: runs, logs, attach, stop, sessions, agent."""

from __future__ import annotations

import time
from typing import Any

from nbmodal._runtime import local_agent
from nbmodal._runtime.connection import existing_client, forget_client, get_client
from nbmodal._runtime.execution import RunFollower
from nbmodal.config import DEFAULT_CANCEL_GRACE_S, local_agent_dir
from nbmodal.output import OutputSink, StreamSink
from nbmodal.results import function_result, raise_for_state
from remote_agent.proto import agent_pb2 as pb


def runs_table(limit: int = 20) -> str:
    infos = get_client().list_runs(limit)
    if not infos:
        return "no runs yet"
    rows = [("RUN", "STATE", "KIND", "SESSION", "STARTED", "DURATION", "WHAT")]
    now = time.time()
    for info in infos:
        end = info.finished or now
        duration = f"{end - info.started:.1f}s" if info.started else "-"
        rows.append((info.run_id, pb.RunState.Name(info.state), pb.RunKind.Name(info.kind).lower(),
                     info.session or "-", time.strftime("%H:%M:%S", time.localtime(info.created)),
                     duration, info.label[:60]))
    return _table(rows)


def sessions_table() -> str:
    sessions = get_client().list_sessions()
    if not sessions:
        return "no sessions"
    rows = [("SESSION", "CONTAINER", "PID", "BUSY", "IDLE", "NAMES")]
    now = time.time()
    for s in sessions:
        rows.append((s.name, s.container_id, str(s.pid), "yes" if s.busy else "no",
                     f"{now - s.last_used:.0f}s", ", ".join(s.names)[:60]))
    return _table(rows)


def containers_table() -> str:
    containers = get_client().list_containers()
    if not containers:
        return "no containers"
    rows = [("CONTAINER", "PID", "STATE", "SESSION", "RUN", "AGE")]
    now = time.time()
    for c in containers:
        rows.append((c.container_id, str(c.pid), c.state, c.session or "-", c.run_id or "-", f"{now - c.created:.0f}s"))
    return _table(rows)


def show_logs(run_id: str, sink: OutputSink, follow: bool = False) -> pb.RunInfo:
    """Write a run's output so far (and, with ``follow``, until it ends) to ``sink``."""
    client = get_client()
    RunFollower(client, sink, DEFAULT_CANCEL_GRACE_S, cancel_on_interrupt=False).attach(run_id, follow=follow)
    return client.get_run(run_id)


def attach(run_id: str, sink: OutputSink, shell: Any = None) -> Any:
    """Replay a run from its start, follow it to the end, and return or apply its results.

    A cell run's assigned names are set in ``shell``'s namespace; a function
    run's return value is returned.
    """
    from nbmodal.remote_cell import apply_cell_result

    client = get_client()
    info = client.get_run(run_id)
    finished = RunFollower(client, sink, DEFAULT_CANCEL_GRACE_S).attach(run_id)
    if finished.results_dropped:
        sink.notice(f"run {run_id}'s results were delivered to the client that started it and not kept")
    if info.kind == pb.CELL and shell is not None:
        execute_result = getattr(sink, "execute_result", None)
        return apply_cell_result(shell, client, finished, info.session, execute_result)
    raise_for_state(finished)
    return function_result(finished) if info.kind == pb.FUNCTION and finished.return_value else None


def stop(target: str, force: bool = False) -> str:
    """Cancel a run (``r-…``) or end a session by name."""
    client = get_client()
    if target.startswith("r-"):
        info = client.cancel(target, force=force)
        return f"run {target}: {'stop requested' if info.state in (pb.PENDING, pb.RUNNING) else pb.RunState.Name(info.state)}"
    from nbmodal.remote_cell import forget_session

    try:
        client.stop_session(target)
    except KeyError:
        raise KeyError(f"no run or session named {target!r} (runs look like r-1a2b3c4d; see `nbmodal runs`, "
                       f"`nbmodal sessions`)") from None
    forget_session(target)
    return f"session {target!r} stopped"


def agent_status() -> str:
    client = existing_client()
    if client is None:
        return f"no agent running for {local_agent_dir()} (the first remote cell starts one)"
    h = client.hello
    return (f"agent {h.agent_version} running: pid {h.pid}, 127.0.0.1:{client.address.port}, python "
            f"{h.container_python}, state {h.state_dir}")


def agent_start() -> str:
    address = local_agent.ensure_local_agent()
    return f"agent running: pid {address.pid}, 127.0.0.1:{address.port}, state {address.state_dir}"


def agent_stop() -> str:
    client = existing_client()
    if client is not None:
        forget_client(client)
    address = local_agent.stop_local_agent()
    return "no agent was running" if address is None else f"agent (pid {address.pid}) stopped"


def plain_sink() -> StreamSink:
    return StreamSink(rich=False)


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)
