"""What the JupyterLab sidebar shows, gathered from every host's agent.

One ``Dashboard`` per Jupyter server. Each host is asked in a thread of its
own with a deadline, so an unreachable host costs the sidebar one row with
its error, never a stalled or broken panel: its last attempt keeps running in
the background and later polls report "still connecting" instead of piling
up more attempts.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from nbmodal._runtime.client import iterate_events
from nbmodal._runtime.connection import connection, existing_client
from nbmodal.hosts import LOCAL, load_hosts
from nbmodal_wire import pb
from nbmodal_wire.states import container_state_word, image_state_word

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
                                 ("hosts", "gpus", "containers", "runs", "volumes", "dicts", "queues", "images")}
        for name in [LOCAL, *load_hosts()]:
            future = self._in_flight.get(name)
            if future is None or future.done():
                future = self._in_flight[name] = self._pool.submit(self._host_view, name)
            try:
                host_view = future.result(timeout=HOST_DEADLINE_S)
            except FutureTimeout:
                view["hosts"].append(_unreachable(name, f"no answer within {HOST_DEADLINE_S:g} s (still trying)"))
                continue
            except Exception as exc:  # the host's row says what went wrong
                view["hosts"].append(_unreachable(name, str(exc) or type(exc).__name__))
                continue
            for key, rows in host_view.items():
                view[key].extend(rows)
        view["runs"].sort(key=lambda run: run["created"], reverse=True)
        return {**view, "time": time.time()}

    def _host_view(self, name: str) -> dict[str, list]:
        client = self.client(name)
        hello, stats = client.hello, client.host_stats()
        host = {"name": name, "reachable": True, "error": "", "agent_version": hello.agent_version,
                "load1": round(stats.load1, 2), "cpus": stats.cpus,
                "memory_used": stats.memory_total - stats.memory_available, "memory_total": stats.memory_total}
        now = time.time()
        containers = []
        for c in client.list_containers():
            window = c.spec.scaledown_window_s or 0
            containers.append({
                "host": name, "container_id": c.container_id, "pid": c.pid, "state": container_state_word(c.state),
                "image": c.spec.image, "gpus": list(c.gpus), "session": c.session, "run_id": c.run_id,
                "created": c.created, "idle_since": c.idle_since,
                "idle_left_s": max(0.0, window - (now - c.idle_since)) if c.state == pb.CONTAINER_IDLE and window else None})
        gpus = [{"host": name, "index": g.index, "name": g.name, "utilization": g.utilization,
                 "memory_used": g.memory_used, "memory_total": g.memory_total, "run_id": g.run_id,
                 "session": g.session, "container_id": g.container_id, "partition": g.partition, "node": g.node,
                 "in_use": g.in_use} for g in client.list_gpus()]
        runs = [run_row(name, r) for r in client.list_runs(RECENT_RUNS)]
        volumes = [{"host": name, "name": s.name, "size": s.length}
                   for s in client.volume_call(pb.VolumeRequest(op=pb.VOLUME_LIST)).stores]
        dicts = [{"host": name, "name": s.name, "length": s.length}
                 for s in client.dict_call(pb.DictRequest(op=pb.LIST)).stores]
        queues = [{"host": name, "name": s.name, "length": s.length}
                  for s in client.queue_call(pb.QueueRequest(op=pb.LIST)).stores]
        images = [{"host": name, "image_id": i.image_id, "name": i.name, "state": image_state_word(i.state),
                   "size_bytes": i.size_bytes, "created": i.created, "last_used": i.last_used, "python": i.python,
                   "error": i.error}
                  for i in client.image_call(pb.ImageRequest(op=pb.IMAGE_LIST)).images]
        return {"hosts": [host], "gpus": gpus, "containers": containers, "runs": runs, "volumes": volumes,
                "dicts": dicts, "queues": queues, "images": images}

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
        text, last_seq, done = [], after_seq, False
        for event in iterate_events(client.attach(run_id, after_seq, follow=False, timeout=10), client):
            last_seq = event.seq
            kind = event.WhichOneof("kind")
            if kind == "output":
                text.append(event.output.data.decode("utf-8", "replace"))
            elif kind == "notice":
                text.append(f"[nbmodal] {event.notice.text}\n")
            elif kind == "finished":
                done = True
                if event.finished.error.message:
                    text.append(f"{event.finished.error.type_name}: {event.finished.error.message}\n")
        info = client.get_run(run_id)
        return {"text": "".join(text), "last_seq": last_seq, "state": _STATES[info.state],
                "done": done or info.state not in (pb.PENDING, pb.RUNNING)}

    def stop_run(self, host: str, run_id: str) -> dict[str, Any]:
        info = self.client(host).cancel(run_id)
        return {"state": _STATES[info.state]}

    def stop_container(self, host: str, container_id: str) -> dict[str, Any]:
        self.client(host).stop_container(container_id)
        return {"stopped": container_id}

    def volume_entries(self, host: str, name: str, path: str) -> dict[str, Any]:
        from nbmodal.volume import Volume

        entries = Volume.from_name(name, host=host).listdir(path or "/")
        return {"entries": [{"path": e.path, "type": e.type, "size": e.size, "mtime": e.mtime} for e in entries]}

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

    def image_log(self, host: str, image_id: str) -> dict[str, Any]:
        reply = self.client(host).image_call(pb.ImageRequest(op=pb.IMAGE_LOG, name_or_id=image_id))
        return {"text": reply.log}

    def rebuild_image(self, host: str, image_id: str) -> dict[str, Any]:
        self.client(host).image_call(pb.ImageRequest(op=pb.IMAGE_REBUILD, name_or_id=image_id))
        return {"rebuilding": image_id}

    def remove_image(self, host: str, image_id: str) -> dict[str, Any]:
        self.client(host).image_call(pb.ImageRequest(op=pb.IMAGE_REMOVE, name_or_id=image_id))
        return {"removed": image_id}


def run_row(host: str, run: pb.RunInfo) -> dict[str, Any]:
    end = run.finished or (time.time() if run.started else 0)
    return {"host": host, "run_id": run.run_id, "label": run.label, "state": _STATES[run.state],
            "created": run.created, "started": run.started, "finished": run.finished,
            "duration_s": round(end - run.started, 3) if run.started else None}


def _unreachable(name: str, error: str) -> dict[str, Any]:
    return {"name": name, "reachable": False, "error": error, "agent_version": "", "load1": 0.0, "cpus": 0,
            "memory_used": 0, "memory_total": 0}
