"""The verbs shared by ``%nbmodal`` and the ``nbmodal`` CLI: runs, logs, attach, stop, sessions, agent."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from nbmodal._runtime import local_agent
from nbmodal._runtime.client import AgentClient
from nbmodal._runtime.connection import connection, existing_client, forget, locate_run, session_hosts
from nbmodal._runtime.execution import RunFollower
from nbmodal._runtime.transfer import BlobTransfer
from nbmodal.config import DEFAULT_CANCEL_GRACE_S, local_agent_dir
from nbmodal.exceptions import AgentLostError
from nbmodal.hosts import LOCAL, HostError, load_hosts
from nbmodal.output import OutputSink, StreamSink
from nbmodal.results import function_result, raise_for_state
from nbmodal_wire import pb
from nbmodal_wire.states import container_state_word, image_state_word

log = logging.getLogger(__name__)


def _reachable(host: str | None) -> list[tuple[str, AgentClient]]:
    """(name, client) of the given host, or of the local agent (if running) and every configured host."""
    if host:
        return [(host, connection(host).client())]
    found = []
    local = existing_client()
    if local is not None:
        found.append((LOCAL, local))
    for name in load_hosts():
        try:
            found.append((name, connection(name).client()))
        except (HostError, AgentLostError) as exc:
            log.warning("host %s is unreachable: %s", name, exc)
    if not found:
        found.append((LOCAL, connection(LOCAL).client()))
    return found


def runs_table(limit: int = 20, host: str | None = None) -> str:
    rows = [("RUN", "HOST", "STATE", "KIND", "SESSION", "STARTED", "DURATION", "WHAT")]
    now = time.time()
    for name, client in _reachable(host):
        for info in client.list_runs(limit):
            end = info.finished or now
            duration = f"{end - info.started:.1f}s" if info.started else "-"
            rows.append((info.run_id, name, pb.RunState.Name(info.state), pb.RunKind.Name(info.kind).lower(),
                         info.session or "-", time.strftime("%H:%M:%S", time.localtime(info.created)),
                         duration, info.label[:60]))
    return _table(rows) if len(rows) > 1 else "no runs yet"


def sessions_table(host: str | None = None) -> str:
    rows = [("SESSION", "HOST", "CONTAINER", "PID", "BUSY", "IDLE", "NAMES")]
    now = time.time()
    for name, client in _reachable(host):
        for s in client.list_sessions():
            rows.append((s.name, name, s.container_id, str(s.pid), "yes" if s.busy else "no",
                         f"{now - s.last_used:.0f}s", ", ".join(s.names)[:60]))
    return _table(rows) if len(rows) > 1 else "no sessions"


def containers_table(host: str | None = None) -> str:
    rows = [("CONTAINER", "HOST", "PID", "STATE", "SESSION", "RUN", "AGE")]
    now = time.time()
    for name, client in _reachable(host):
        for c in client.list_containers():
            rows.append((c.container_id, name, str(c.pid), container_state_word(c.state), c.session or "-", c.run_id or "-",
                         f"{now - c.created:.0f}s"))
    return _table(rows) if len(rows) > 1 else "no containers"


def gpus_table(host: str | None = None) -> str:
    """Every reachable host's GPUs: figures, and the run or session holding each."""
    rows = [("HOST", "GPU", "NAME", "UTIL", "MEMORY", "TEMP", "POWER", "HELD BY")]
    for name, client in _reachable(host):
        for g in client.list_gpus():
            if g.partition:  # a Slurm cluster's card: no telemetry from the login node, only who holds it
                rows.append((name, f"{g.partition}/{g.node}:{g.index}", g.name, "-", "-", "-", "-",
                             "a Slurm job" if g.in_use else "-"))
                continue
            holder = (f"run {g.run_id}" if g.run_id else f"session {g.session}" if g.session
                      else f"container {g.container_id}" if g.container_id else "-")
            rows.append((name, str(g.index), g.name, f"{g.utilization}%",
                         f"{g.memory_used / 2**30:.1f}/{g.memory_total / 2**30:.0f} GiB", f"{g.temperature}C",
                         f"{g.power_w:.0f}W", holder))
    return _table(rows) if len(rows) > 1 else "no GPUs on the local agent or any reachable host"


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

    follower = RunFollower(locate_run(run_id), sink, DEFAULT_CANCEL_GRACE_S)
    client = follower.client
    info = client.get_run(run_id)
    finished = follower.attach(run_id)
    if finished.results_dropped:
        sink.notice(f"run {run_id}'s results were delivered to the client that started it and not kept")
    transfer = BlobTransfer.for_connection(follower.connection, client)
    keep = info.detach  # a detached run's results stay for other attaches (for a day)
    if info.kind == pb.CELL and shell is not None:
        execute_result = getattr(sink, "execute_result", None)
        return apply_cell_result(shell, transfer, finished, info.session, execute_result, keep_blobs=keep)
    raise_for_state(finished)
    if info.kind != pb.FUNCTION or not (finished.return_value or finished.return_blob):
        return None
    return function_result(finished, lambda blob_id: transfer.fetch(blob_id, delete=not keep))


def stop(target: str, force: bool = False) -> str:
    """Cancel a run (``r-…``) or end a session by name."""
    if target.startswith("r-"):
        info = locate_run(target).client().cancel(target, force=force)
        return f"run {target}: {'stop requested' if info.state in (pb.PENDING, pb.RUNNING) else pb.RunState.Name(info.state)}"
    from nbmodal.remote_cell import forget_session

    for _, client in _reachable(session_hosts.get(target)):
        try:
            client.stop_session(target)
            break
        except KeyError:
            continue
    else:
        raise KeyError(f"no run or session named {target!r} (runs look like r-1a2b3c4d; see `nbmodal runs`, "
                       f"`nbmodal sessions`)")
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
    forget(LOCAL)
    address = local_agent.stop_local_agent()
    return "no agent was running" if address is None else f"agent (pid {address.pid}) stopped"


def plain_sink() -> StreamSink:
    return StreamSink(rich=False)


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def host_add(name: str, target: str, ssh_config: str = "", accept_new_host_key: bool = False,
             check: bool = True, python: str = "", slurm: dict | None = None) -> str:
    """Add a host; by default connect once to check it (and accept a new host key if asked).

    ``slurm`` (partition, account, qos, time, sbatch_flags, gres_types, callback_host, slurm_env) makes it
    a Slurm cluster's login node: its containers run as Slurm jobs.
    """
    from nbmodal import hosts
    from nbmodal._runtime import bootstrap
    from nbmodal._runtime.ssh import SSHConnection

    extra = {"slurm": True, **{k: v for k, v in slurm.items() if v}} if slurm is not None else {}
    host = hosts.Host(name, target, str(Path(ssh_config).expanduser().resolve()) if ssh_config else "",
                      {**({"python": python} if python else {}), **extra})
    hosts.slurm_settings(host)  # bad settings fail now
    if check:
        ssh = SSHConnection.open(host, accept_new_host_key)
        try:
            facts = bootstrap.probe(ssh)
        finally:
            ssh.close()
        summary = f"; reachable, Python {facts.python_version} on {facts.machine}"
    else:
        summary = ""
    hosts.add_host(name, target, ssh_config, python, extra)
    forget(name)
    return f"host {name!r} added ({target}){summary}"


def host_list() -> str:
    from nbmodal import hosts

    configured = hosts.load_hosts()
    if not configured:
        return "no hosts (runs go to the local agent); add one with `nbmodal host add NAME user@host`"
    rows = [("HOST", "TARGET", "SSH CONFIG")]
    rows += [(h.name, h.target, h.ssh_config or "~/.ssh/config") for h in configured.values()]
    return _table(rows)


def host_remove(name: str) -> str:
    from nbmodal import hosts

    hosts.remove_host(name)
    forget(name)
    return f"host {name!r} removed (its agent keeps running there until it is stopped)"


def host_doctor(name: str) -> str:
    from nbmodal.doctor import doctor

    return "\n".join(check.line() for check in doctor(name))


def peek(store, n: int = 10) -> list[str]:
    """The first ``n`` items of a Dict (``key: value``) or Queue, as reprs."""
    from nbmodal.dict import Dict

    if isinstance(store, Dict):
        return [f"{k!r}: {v!r}" for k, v in store.items()[:n]]
    return [repr(v) for v in store.peek(n)]


def store_command(kind: str, verb: str, name: str | None = None, host: str | None = None, n: int = 10) -> str:
    """``dict|queue ls|peek|len|clear|delete``: what the CLI and %nbmodal run."""
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
        return _table(rows) if len(rows) > 1 else f"no {kind}s"
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


def volume_command(args) -> str:
    """``volume create|ls|put|get|rm|delete``: what the CLI and %volume run."""
    from nbmodal._runtime.connection import storage_connection
    from nbmodal.volume import Volume, upload_file

    if args.verb == "create":
        Volume.from_name(args.name, create_if_missing=True, host=args.host)
        return f"volume {args.name!r} ready"
    if args.verb == "delete":
        Volume.delete(args.name, host=args.host)
        return f"volume {args.name!r} deleted"
    if args.verb == "ls" and not args.name:
        reply = storage_connection(args.host).client().volume_call(pb.VolumeRequest(op=pb.VOLUME_LIST))
        rows = [("VOLUME", "SIZE")] + [(s.name, f"{s.length / 2**20:.1f} MiB") for s in reply.stores]
        return _table(rows) if len(rows) > 1 else "no volumes"
    volume = Volume.from_name(args.name, host=args.host)
    if args.verb == "ls":
        rows = [("PATH", "TYPE", "SIZE", "MODIFIED")] + [
            (e.path, e.type, str(e.size), time.strftime("%Y-%m-%d %H:%M", time.localtime(e.mtime)))
            for e in volume.listdir(args.path)]
        return _table(rows) if len(rows) > 1 else "(empty)"
    if args.verb == "put":
        local = Path(args.local)
        if local.is_dir():
            with volume.batch_upload(force=args.force, progress=True) as batch:
                batch.put_directory(local, args.remote)
            return f"uploaded {local}/ to {args.name}:{args.remote}"
        remote = args.remote.rstrip("/") + "/" + local.name if args.remote.endswith("/") else args.remote
        sent = upload_file(volume, local, remote, force=args.force, progress=True)
        return f"{'uploaded' if sent else 'already there:'} {local} -> {args.name}:{remote}"
    if args.verb == "get":
        target = Path(args.local)
        if target.is_dir():
            target = target / Path(args.remote).name
        with open(target, "wb") as f:
            size = volume.read_file_into_fileobj(args.remote, f, progress=True)
        return f"downloaded {args.name}:{args.remote} -> {target} ({size} bytes)"
    if args.verb == "rm":
        volume.remove_file(args.remote, recursive=args.recursive)
        return f"removed {args.name}:{args.remote}"
    raise ValueError(f"unknown verb {args.verb!r}")


def image_command(verb: str, name: str | None = None, host: str | None = None, sink: OutputSink | None = None,
                  force: bool = False) -> str:
    """``image ls|build|rm``: what the CLI and ``%nbmodal image`` run.

    ``build`` takes a file in the ``%%image`` language (its name is the file's stem); cached steps are
    reused unless ``force``.
    """
    from nbmodal._runtime.images import ensure_built

    if verb == "ls":
        rows = [("HOST", "NAME", "IMAGE", "STATE", "PYTHON", "SIZE", "LAST USED")]
        for host_name, client in _reachable(host):
            for image in client.image_call(pb.ImageRequest(op=pb.IMAGE_LIST)).images:
                used = time.strftime("%Y-%m-%d %H:%M", time.localtime(image.last_used)) if image.last_used else "-"
                state = image_state_word(image.state) + (f": {image.error[:60]}" if image.error else "")
                rows.append((host_name, image.name or "-", image.image_id[:12], state, image.python or "-",
                             f"{image.size_bytes / 2**20:.1f} MiB" if image.size_bytes else "-", used))
        return _table(rows) if len(rows) > 1 else "no images"
    if not name:
        raise ValueError(f"image {verb} needs a name")
    if verb == "rm":
        target = connection(host or LOCAL)
        reply = target.client().image_call(pb.ImageRequest(op=pb.IMAGE_REMOVE, name_or_id=name))
        return f"removed {len(reply.images)} image(s) named {name!r} from {target.name}"
    if verb == "build":
        from nbmodal.image import parse_image_cell

        path = Path(name)
        if not path.is_file():
            raise FileNotFoundError(f"no image definition at {path} (a file of %%image lines)")
        image = parse_image_cell(path.stem, path.read_text(), path.parent.resolve())
        image.name = path.stem
        target = connection(host or LOCAL)
        image_id = ensure_built(image, target, sink or plain_sink(), force=force)
        return f"image {image.name} built on {target.name}: {image_id[:12]}"
    raise ValueError(f"unknown image verb {verb!r} (ls, build, rm)")
