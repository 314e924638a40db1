"""What the JupyterLab sidebar shows, gathered from every host's agent.

One ``Dashboard`` per Jupyter server. Each host is asked in a thread of its
own with a deadline, so an unreachable host costs the sidebar one row with
its error, never a stalled or broken panel: its last attempt keeps running in
the background and later polls report "still connecting" instead of piling
up more attempts.

Each kind of row the sidebar reads is built by one function here (``host_row``,
``gpu_row``, ``container_row``, ``run_row``, ``volume_row``, ``store_row``,
``image_row``, ``volume_entry_row``), named after the interface of
``labextension/src/types.ts`` it must match; tests/test_sidebar_shapes.py
checks each against that file.
"""

from __future__ import annotations

import logging
import shlex
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

from nbmodal._runtime.client import iterate_events
from nbmodal._runtime.connection import connection, existing_client
from nbmodal._runtime.run_events import read_log_page
from nbmodal.hosts import LOCAL, load_hosts
from nbmodal_wire import pb
from nbmodal_wire.states import container_state_word, image_state_word, run_state_word

log = logging.getLogger(__name__)

HOST_DEADLINE_S = 3.0
RECENT_RUNS = 200
_STATES = {value: name for name, value in pb.RunState.items()}


class HostUnavailable(Exception):
    pass


class Dashboard:
    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="nbmodal-dashboard")
        self._in_flight: dict[str, Future] = {}

    # -- the overview --------------------------------------------------------

    def overview(self) -> dict[str, Any]:
        """Every host's agent, GPUs, containers, runs, volumes, Dicts, Queues and images."""
        view: dict[str, list] = {key: [] for key in
                                 ("hosts", "gpus", "containers", "runs", "volumes", "dicts", "queues", "images",
                                  "endpoints", "apps")}
        for name in [LOCAL, *load_hosts()]:
            future = self._in_flight.get(name)
            if future is None or future.done():
                future = self._in_flight[name] = self._pool.submit(self._host_view, name)
            try:
                host_view = future.result(timeout=HOST_DEADLINE_S)
            except FutureTimeout:
                waited = f"no answer within {HOST_DEADLINE_S:g} s (still trying)"
                view["hosts"].append(unreachable_host_row(name, waited))
                continue
            except Exception as exc:  # the host's row says what went wrong
                view["hosts"].append(unreachable_host_row(name, str(exc) or type(exc).__name__))
                continue
            for key, rows in host_view.items():
                view[key].extend(rows)
        view["runs"] = merge_cluster_runs(view["runs"])  # newest first
        view["volumes"] = merge_volume_copies(view["volumes"])
        return {**view, "time": time.time()}

    def _host_view(self, name: str) -> dict[str, list]:
        client = self.client(name)
        now = time.time()
        return {
            "hosts": [host_row(name, client.hello, client.host_stats())],
            "gpus": [gpu_row(name, g) for g in client.list_gpus()],
            "containers": [container_row(name, c, now) for c in client.list_containers()],
            "runs": [run_row(name, r, now) for r in client.list_runs(RECENT_RUNS)],
            "volumes": [volume_row(name, s) for s in client.volume_call(pb.VolumeRequest(op=pb.VOLUME_LIST)).stores],
            "dicts": [store_row(name, s) for s in client.dict_call(pb.DictRequest(op=pb.LIST)).stores],
            "queues": [store_row(name, s) for s in client.queue_call(pb.QueueRequest(op=pb.LIST)).stores],
            "images": [image_row(name, i) for i in client.image_call(pb.ImageRequest(op=pb.IMAGE_LIST)).images],
            "endpoints": [endpoint_row(name, t) for t in _tunnels(client, now)],
            "apps": [app_row(name, a) for a in _apps(client)],
        }

    @staticmethod
    def client(name: str):
        if name == LOCAL:
            client = existing_client()  # the sidebar doesn't start the local agent: a %%remote cell does
            if client is None:
                raise HostUnavailable("the local agent isn't running; the first %%remote cell starts it")
            return client
        return connection(name).client()

    # -- one run, container, volume, store, image ---------------------------------

    def run_log(self, host: str, run_id: str, after_seq: int = 0) -> dict[str, Any]:
        """A run's output after ``after_seq``, for a log view that polls."""
        client = self.client(host)
        # The state is read before the events: a run that had ended then has all its events in the reply,
        # so the page can release a character left unfinished, and "done" never skips events.
        info = client.get_run(run_id)
        ended = info.state not in (pb.PENDING, pb.RUNNING, pb.WAITING_FOR_DEBUGGER)
        events = iterate_events(client.attach(run_id, after_seq, follow=False, timeout=10), client)
        page = read_log_page(events, after_seq, final=ended)  # its last_seq stops before a split character
        if page.done and not ended:
            info = client.get_run(run_id)  # it ended meanwhile: show its final state
        return {"text": page.text, "last_seq": page.last_seq, "state": _STATES[info.state],
                "done": page.done or ended}

    def stop_run(self, host: str, run_id: str) -> dict[str, Any]:
        info = self.client(host).cancel(run_id)
        return {"state": run_state_word(info.state)}

    def stop_container(self, host: str, container_id: str) -> dict[str, Any]:
        self.client(host).stop_container(container_id)
        return {"stopped": container_id}

    def volume_entries(self, host: str, name: str, path: str) -> dict[str, Any]:
        from nbmodal.volume import Volume

        entries = Volume.from_name(name, host=host).listdir(path or "/")
        return {"entries": [volume_entry_row(e.path, e.type, e.size, e.mtime) for e in entries]}

    def volume_file(self, host: str, name: str, path: str, fileobj) -> int:
        from nbmodal.volume import Volume

        return Volume.from_name(name, host=host).read_file_into_fileobj(path, fileobj)

    def volume_remove(self, host: str, name: str, path: str) -> dict[str, Any]:
        from nbmodal.volume import Volume

        Volume.from_name(name, host=host).remove_file(path, recursive=True)
        return {"removed": path}

    def peek(self, kind: str, host: str, name: str, n: int = 10) -> dict[str, Any]:
        from nbmodal.commands import peek
        from nbmodal.dict import Dict
        from nbmodal.queue import Queue

        store = (Dict if kind == "dicts" else Queue).from_name(name, host=host)
        try:
            return {"items": peek(store, n)}
        except Exception as exc:  # e.g. a value of a class only the notebook has
            return {"items": [], "error": f"can't show its items here: {type(exc).__name__}: {exc}"}

    def stop_app(self, host: str, name: str) -> dict[str, Any]:
        """Un-deploy an app on one host (its schedules and warm containers stop; its history stays)."""
        info = self.client(host).app_call(pb.APP_STOP, name).apps[0]
        return {"stopped": name, "version": info.version}

    def image_log(self, host: str, image_id: str) -> dict[str, Any]:
        reply = self.client(host).image_call(pb.ImageRequest(op=pb.IMAGE_LOG, name_or_id=image_id))
        return {"text": reply.log}

    def rebuild_image(self, host: str, image_id: str) -> dict[str, Any]:
        self.client(host).image_call(pb.ImageRequest(op=pb.IMAGE_REBUILD, name_or_id=image_id))
        return {"rebuilding": image_id}

    def remove_image(self, host: str, image_id: str) -> dict[str, Any]:
        self.client(host).image_call(pb.ImageRequest(op=pb.IMAGE_REMOVE, name_or_id=image_id))
        return {"removed": image_id}


# -- the rows, one function per interface of labextension/src/types.ts ------------


def host_row(name: str, hello: pb.HelloReply, stats: pb.HostStatsReply) -> dict[str, Any]:
    """``HostInfo``: a reachable host's agent and load."""
    return {"name": name, "reachable": True, "error": "", "agent_version": hello.agent_version,
            "load1": round(stats.load1, 2), "cpus": stats.cpus,
            "memory_used": stats.memory_total - stats.memory_available, "memory_total": stats.memory_total}


def unreachable_host_row(name: str, error: str) -> dict[str, Any]:
    """``HostInfo``: a host that didn't answer, and why."""
    return {"name": name, "reachable": False, "error": error, "agent_version": "", "load1": 0.0, "cpus": 0,
            "memory_used": 0, "memory_total": 0}


def gpu_row(host: str, gpu: pb.GpuInfo) -> dict[str, Any]:
    """``GpuInfo``: one card, and the container, run or session holding it."""
    return {"host": host, "index": gpu.index, "name": gpu.name, "utilization": gpu.utilization,
            "memory_used": gpu.memory_used, "memory_total": gpu.memory_total, "run_id": gpu.run_id,
            "session": gpu.session, "container_id": gpu.container_id, "partition": gpu.partition, "node": gpu.node,
            "in_use": gpu.in_use}


def container_row(host: str, container: pb.ContainerInfo, now: float) -> dict[str, Any]:
    """``ContainerInfo``: its state as a word, and how long an idle one stays warm."""
    window = container.spec.scaledown_window_s or 0
    idle = container.state == pb.CONTAINER_IDLE and window
    return {"host": host, "container_id": container.container_id, "pid": container.pid,
            "state": container_state_word(container.state), "image": container.spec.image,
            "gpus": list(container.gpus), "session": container.session, "run_id": container.run_id,
            "created": container.created, "idle_since": container.idle_since,
            "idle_left_s": max(0.0, window - (now - container.idle_since)) if idle else None,
            "kind": container.kind or "function", "sandbox_id": container.sandbox_id,
            "shell_command": shell_command(host, container.container_id)}


def shell_command(host: str, container_id: str) -> str:
    """The command line the sidebar's Open terminal types: ``nbmodal shell`` of this server's nbmodal."""
    script = Path(sys.executable).parent / "nbmodal"
    nbmodal = shlex.quote(str(script)) if script.exists() else f"{shlex.quote(sys.executable)} -m nbmodal.cli"
    return f"{nbmodal} shell --host {shlex.quote(host)} {shlex.quote(container_id)}"


def run_row(host: str, run: pb.RunInfo, now: float | None = None) -> dict[str, Any]:
    """``RunInfo``: its state's name, and how long it ran (or has run so far); None before it started."""
    end = run.finished or ((now or time.time()) if run.started else 0)
    row = {"host": host, "run_id": run.run_id, "label": run.label, "state": run_state_word(run.state),
           "created": run.created, "started": run.started, "finished": run.finished,
           "duration_s": round(end - run.started, 3) if run.started else None}
    if run.cluster_id:  # a rank of a multi-node gang: merge_cluster_runs makes the gang one row
        row.update(cluster_id=run.cluster_id, members=[{"host": host, "run_id": run.run_id, "rank": run.cluster_rank,
                                                        "state": row["state"]}])
    return row


def merge_cluster_runs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per multi-node gang (its lowest rank's, usually rank 0), its ranks in ``members``."""
    gangs: dict[str, dict[str, Any]] = {}
    merged = []
    for row in sorted(rows, key=lambda r: r["members"][0]["rank"] if r.get("cluster_id") else 0):
        gang = gangs.get(row.get("cluster_id", ""))
        if gang is None:
            merged.append(row)
            if row.get("cluster_id"):
                gangs[row["cluster_id"]] = row
        else:
            gang["members"].extend(row["members"])
    return sorted(merged, key=lambda run: run["created"], reverse=True)


def volume_row(host: str, store: pb.StoreInfo) -> dict[str, Any]:
    """``VolumeInfo``: a volume's copy on ``host`` (home or replica), its bytes and committed version."""
    return {"host": host, "name": store.name, "size": store.length, "home": store.home or host,
            "role": store.role or "home", "version": store.version, "pending": store.pending, "replicas": []}


def merge_volume_copies(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per volume at its home, its replicas (``VolumeReplica``) inside; a replica whose home
    didn't answer keeps a row of its own."""
    homes = {(row["name"], row["host"]): row for row in rows if row["role"] == "home"}
    merged = []
    for row in rows:
        home = homes.get((row["name"], row["home"])) if row["role"] == "replica" else None
        if home is None:
            merged.append(row)
        else:
            home["replicas"].append({"host": row["host"], "version": row["version"], "pending": row["pending"]})
    return merged


def store_row(host: str, store: pb.StoreInfo) -> dict[str, Any]:
    """``CollectionInfo``: a Dict or a Queue and its length, at its home host (the one store of its name)."""
    return {"host": host, "name": store.name, "length": store.length, "home": host}


def image_row(host: str, image: pb.ImageInfo) -> dict[str, Any]:
    """``ImageInfo``: a built (or building, or failed) image, its state as a word."""
    return {"host": host, "image_id": image.image_id, "name": image.name, "state": image_state_word(image.state),
            "size_bytes": image.size_bytes, "created": image.created, "last_used": image.last_used,
            "python": image.python, "error": image.error}


# The sidebar's word for a directory (VolumeEntry.type); the wire says "directory".
_ENTRY_TYPES = {"file": "file", "directory": "dir", "symlink": "symlink"}


def volume_entry_row(path: str, kind: str, size: int, mtime: float) -> dict[str, Any]:
    """``VolumeEntry``: one file, directory or symlink of a volume listing."""
    return {"path": path, "type": _ENTRY_TYPES.get(kind, kind), "size": size, "mtime": mtime}


# Ended endpoints stay listed this long (so a row that stopped says so before it goes).
ENDED_SHOWN_S = 120.0


def _tunnels(client, now: float) -> list[pb.TunnelInfo]:
    """Live tunnels and those ended recently; none from an agent too old to have them."""
    from nbmodal.exceptions import AgentError

    try:
        tunnels = client.tunnel_call(pb.TunnelRequest(op=pb.TUNNEL_LIST)).tunnels
    except AgentError as exc:  # an agent without TunnelCall: no endpoints, the rest of its view stays
        if "UNIMPLEMENTED" in str(exc):
            return []
        raise
    return [t for t in tunnels if t.live or now - t.created < ENDED_SHOWN_S]


def endpoint_row(host: str, tunnel: pb.TunnelInfo) -> dict[str, Any]:
    """``EndpointInfo``: a port served from a container (forward, web endpoint) and its proxy path."""
    return {"host": host, "tunnel_id": tunnel.tunnel_id, "name": tunnel.name, "label": tunnel.label or tunnel.run_label,
            "kind": tunnel.kind, "port": tunnel.port, "run_id": tunnel.run_id, "container_id": tunnel.container_id,
            "state": "serving" if tunnel.live else "ended", "ended": tunnel.ended, "created": tunnel.created,
            "path": f"nbmodal/proxy/{host}/{tunnel.name}/"}


def _apps(client) -> list[pb.AppInfo]:
    """The apps deployed (or stopped) on an agent; none from an agent too old to have them."""
    from nbmodal.exceptions import AgentError

    try:
        return list(client.app_call(pb.APP_LIST).apps)
    except AgentError as exc:
        if "UNIMPLEMENTED" in str(exc):
            return []
        raise


def app_row(host: str, app: pb.AppInfo) -> dict[str, Any]:
    """``AppInfo``: a deployed app, its functions with their schedules, next and last runs."""
    return {"host": host, "name": app.name, "version": app.version, "deployed": app.deployed,
            "deployed_at": app.deployed_at, "stopped_at": app.stopped_at,
            "functions": [app_function_row(f) for f in app.functions]}


def app_function_row(function: pb.AppFunctionInfo) -> dict[str, Any]:
    """``AppFunctionInfo``: one function or class of a deployed app."""
    return {"name": function.name, "kind": "class" if function.is_class else "function",
            "schedule": function.schedule, "next_run": function.next_run, "last_run_id": function.last_run_id,
            "last_run_state": _STATES[function.last_run_state] if function.last_run_id else "",
            "last_run_time": function.last_run_time}
