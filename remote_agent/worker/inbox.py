"""The container's one reader of the agent's frames, whatever the main thread is doing.

The main thread runs user code; frames that must reach the container *during* a run (a process
to start beside it, a debugger's input, a port to forward) cannot wait for it to finish. So one
thread reads every ToContainer frame: the kinds the main loop serves (``execute``,
``fetch_value``) are queued for it, any other kind goes to the handler registered for it with
``on()``, called on this thread (a handler must hand long work to a thread of its own).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable

from nbmodal_wire import pb
from nbmodal_wire.frames import FrameSocket

log = logging.getLogger("remote_agent.worker")

MAIN_LOOP_KINDS = frozenset({"execute", "fetch_value"})


class Inbox:
    """Reads ``channel`` on a thread of its own; ``next_for_main()`` gives the main loop its frames."""

    def __init__(self, channel: FrameSocket, busy: threading.Event) -> None:
        self._channel = channel
        self._busy = busy  # a run is executing on the main thread
        self._for_main: queue.SimpleQueue[pb.ToContainer | None] = queue.SimpleQueue()
        self._handlers: dict[str, Callable[[pb.ToContainer], None]] = {}

    def on(self, kind: str, handler: Callable[[pb.ToContainer], None]) -> None:
        """Call ``handler(message)`` on the reader thread for each frame whose ``kind`` is this."""
        self._handlers[kind] = handler

    def start(self) -> None:
        threading.Thread(target=self._read, name="agent-inbox", daemon=True).start()

    def next_for_main(self) -> pb.ToContainer | None:
        """The next ``execute``/``fetch_value`` frame; None once the agent has gone away."""
        return self._for_main.get()

    def _read(self) -> None:
        while True:
            message = self._channel.receive(pb.ToContainer)
            if message is None:
                break
            kind = message.WhichOneof("kind")
            if kind in MAIN_LOOP_KINDS:
                self._for_main.put(message)
                continue
            handler = self._handlers.get(kind or "")
            if handler is None:
                log.warning("no handler for a %r frame from the agent; ignored", kind)
                continue
            try:
                handler(message)
            except Exception:  # one bad frame must not stop the container hearing the agent
                log.exception("handling a %r frame failed", kind)
        if self._busy.is_set():
            # The main thread is in user code and would never look at the queue.
            log.info("agent went away during a run; exiting")
            os._exit(0)
        self._for_main.put(None)
