"""The container's main loop.

Started by the agent as ``python -u -m remote_agent.worker --fd N`` (or forked
from a zygote, remote_agent/worker/zygote.py, which calls ``serve``); fd N is
this process's end of a private socket pair. Everything the container says
goes over that socket as FromContainer frames; everything it is asked arrives
as ToContainer frames. When the agent goes away the socket closes and the
container exits with it.
"""

from __future__ import annotations

import builtins
import gc
import importlib
import json
import logging
import os
import socket
import sys
import threading
from types import SimpleNamespace
from typing import Any, NoReturn

from nbmodal_wire import pb
from nbmodal_wire.frames import FrameSocket
from nbmodal_wire.gc_timing import collect_if_due
from remote_agent.worker import batch, cluster_net, display, node_volumes
from remote_agent.worker.classes import run_exit_hooks
from remote_agent.worker.execute import PYTHON_VERSION, Interrupts, Session, execute, fetch_value
from remote_agent.worker.inbox import Inbox
from remote_agent.worker.output import FdCapture
from remote_agent.worker.stdin import StdinChannel
from remote_agent.worker.stdin import install as install_stdin

log = logging.getLogger("remote_agent.worker")


def main() -> None:
    args = parse_args(sys.argv[1:])
    if args.connect:
        args.fd = connect_to_agent(args.connect)
        from remote_agent.worker import agent_tunnel

        agent_tunnel.install(args.connect)  # the agent's API from this node (volume copies, Dicts, nested calls)
    pin_to_reserved_cores()
    if os.environ.pop("NBMODAL_OWN_PROCESS_GROUP", ""):
        os.setpgid(0, 0)  # in a sandbox: the agent signals this group, not bubblewrap's
    layout_json = os.environ.pop("NBMODAL_LAYOUT", "")  # the container's mounts (mounts.enter), not for user code
    if layout_json:
        from remote_agent.worker import mounts

        layout = json.loads(layout_json)
        mounts.enter(layout)
        enter_workdir(layout.get("workdir"))
    if os.environ.get("NBMODAL_VOLUME_LINKS"):  # a Slurm job's volumes: on the shared filesystem, or copied
        from remote_agent.sandbox import MountError
        from remote_agent.worker import volume_links

        try:
            volume_links.link_from_env()
        except MountError as exc:  # the job's output is /dev/null: tell the agent, which fails the run with it
            FrameSocket(socket.socket(fileno=args.fd)).send(
                pb.FromContainer(ready=pb.ContainerReady(pid=os.getpid(), mount_error=str(exc))))
            raise SystemExit(1) from None
    serve(args.fd, args.session)


def parse_args(argv: list[str]) -> Any:
    """The worker's options: ``--fd N`` or ``--connect HOST:PORT``, and ``--session``.

    The agent's own ``--fd N [--session]`` is read without argparse, whose import is ~2 ms of every start;
    anything else goes through argparse (its usage, its errors).
    """
    if len(argv) in (2, 3) and argv[0] == "--fd" and argv[1].isdigit() and argv[2:] in ([], ["--session"]):
        return SimpleNamespace(fd=int(argv[1]), connect=None, session=len(argv) == 3)
    import argparse

    parser = argparse.ArgumentParser(prog="python -m remote_agent.worker")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--fd", type=int, help="socket to the agent")
    target.add_argument("--connect", metavar="HOST:PORT",
                        help="connect to the agent (a container on another node: a Slurm job)")
    parser.add_argument("--session", action="store_true", help="keep the namespace between runs")
    return parser.parse_args(argv)


def connect_to_agent(address: str) -> int:
    """A TCP connection to the agent, introduced by this container's token (its only credential)."""
    host, _, port = address.rpartition(":")
    sock = socket.create_connection((host, int(port)), timeout=60)
    sock.settimeout(None)
    sock.sendall(os.environ["NBMODAL_CONTAINER_TOKEN"].encode() + b"\n")
    return sock.detach()


def pin_to_reserved_cores() -> None:
    """Run on the cores reserved for this container (cpu=), when there are some."""
    if os.environ.get("NBMODAL_CPUS"):
        os.sched_setaffinity(0, {int(core) for core in os.environ["NBMODAL_CPUS"].split(",")})


def enter_workdir(path: str | None) -> None:
    """Start in the container's working directory, which ``python -m`` would have put first on sys.path."""
    if not path:
        return
    launch_dir = os.getcwd()
    os.chdir(path)
    if sys.path and sys.path[0] == launch_dir:
        sys.path[0] = os.getcwd()


def serve(fd: int, session: bool) -> NoReturn:
    """Serve the agent over socket ``fd`` until it closes; never returns.

    fd 2 must be the container's log file; fd 1 and 2 become capture pipes.
    """
    # Keep a copy of fd 2 for our own logging before fd 1 and 2 are pointed at
    # the capture pipes. force: a forked worker replaces its zygote's handlers.
    log_stream = os.fdopen(os.dup(2), "w", buffering=1)
    logging.basicConfig(stream=log_stream, level=logging.INFO,
                        format="%(asctime)s %(levelname)s container: %(message)s", force=True)

    sock = socket.socket(fileno=fd)
    channel = FrameSocket(sock)  # sends; the inbox reads
    inputs = _InputMarks(channel)

    def send_output(stream: int, data: bytes) -> None:
        inputs.announce()  # a map's input that prints says so first
        channel.send(pb.FromContainer(output=pb.Output(stream=stream, data=data)))  # type: ignore[arg-type]

    capture = FdCapture(send_output)

    def publish(data: dict, metadata: dict, execute_result: bool) -> None:
        capture.sync()  # what was printed before a display shows before it
        channel.send(pb.FromContainer(display=pb.Display(
            data_json=json.dumps(data), metadata_json=json.dumps(metadata), execute_result=execute_result)))

    display.set_publisher(publish)
    def begin_input(index: int) -> None:
        capture.sync()  # the previous input's output stays with it
        inputs.begin(index)

    def send_item(item: pb.Item) -> None:
        capture.sync()
        channel.send(pb.FromContainer(item=item))

    batch.set_input_hook(begin_input)
    builtins.display = display.display  # type: ignore[attr-defined]  # as in IPython, display() needs no import
    display.route_ipython_display()  # and `from IPython.display import display` works as in a kernel
    interrupts = Interrupts()
    namespace = Session() if session else None

    inbox = Inbox(sock)
    processes = _ExecOnDemand(channel.send)  # `nbmodal container exec`, shells, Sandbox.exec: beside the runs
    inbox.on("exec", processes.handle)
    stdin_channel = StdinChannel(channel.send, capture.sync)  # breakpoint(), input(): answered from the notebook
    inbox.on("input_answer", stdin_channel.on_answer)
    install_stdin(stdin_channel)
    # A %%remote cell's !cmd lines call it (imported on first use).
    builtins._nbmodal_shell = _OnFirstUse("remote_agent.worker.shell_lines")  # type: ignore[attr-defined]
    inbox.start()
    ready = pb.ContainerReady(pid=os.getpid(), python=PYTHON_VERSION)
    if cluster_net.is_member():  # a gang member: rank 0's address and port come from here (gangs.py)
        ready.cluster_addresses[:] = cluster_net.interface_addresses()
        ready.cluster_free_port, ready.cluster_host_name = cluster_net.free_port(), socket.gethostname()
    channel.send(pb.FromContainer(ready=ready))
    log.info("ready (pid %d, python %s)", os.getpid(), PYTHON_VERSION)
    # What start-up made lives as long as the container: out of the collector's sight, so that the
    # older generations' collections scan only what runs left behind (a fifth of the pause, measured).
    gc.freeze()

    while True:
        message = inbox.next_for_main()
        if message is None:
            log.info("agent closed the channel; exiting")
            processes.kill_all()
            run_exit_hooks()
            node_volumes.remove()
            os._exit(0)  # without waiting for threads the user's code left behind
        if message.HasField("execute"):
            inbox.busy = True
            inputs.reset()
            stdin_channel.new_run()
            request = message.execute
            if request.cluster_env:
                os.environ.update(request.cluster_env)  # a gang member's MASTER_ADDR, RANK…: before its code runs
            node_volumes.before_run()
            finished = execute(request, namespace, interrupts, emit_item=send_item)
            node_volumes.after_run()  # a job's node-local volume copies: committed before the run ends
            capture.sync()
            channel.send(pb.FromContainer(finished=finished))
            inbox.busy = False
            collect_if_due()  # while the result travels, not in the next run's hot path (gc_timing.py)
        elif message.HasField("fetch_value"):
            channel.send(pb.FromContainer(fetched=fetch_value(namespace, message.fetch_value.name)))


class _ExecOnDemand:
    """The container's ExecServer, imported and made on the first exec frame: most containers never get one,
    and its imports (subprocess, ctypes, termios) are ~5 ms of a start."""

    def __init__(self, send) -> None:
        self._send = send
        self._server: Any = None
        self._lock = threading.Lock()

    def handle(self, message: pb.ToContainer) -> None:
        with self._lock:  # on the thread that read the frame (the inbox's, or the main thread while idle)
            if self._server is None:
                from remote_agent.worker.exec_server import ExecServer

                self._server = ExecServer(self._send)
        self._server.handle(message)

    def kill_all(self) -> None:
        if self._server is not None:
            self._server.kill_all()


class _OnFirstUse:
    """A module imported when one of its attributes is first asked for."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(importlib.import_module(self._name), attribute)


class _InputMarks:
    """Which input of a map's batch is running; announced to the agent only when it prints."""

    def __init__(self, channel: FrameSocket) -> None:
        self.channel = channel
        self.current: int | None = None
        self.announced: int | None = None

    def reset(self) -> None:
        self.current = self.announced = None

    def begin(self, index: int) -> None:
        self.current = index  # the output before it has been synced: it was the previous input's

    def announce(self) -> None:
        current = self.current
        if current is not None and current != self.announced:
            self.announced = current
            self.channel.send(pb.FromContainer(input_started=pb.InputStarted(index=current)))
