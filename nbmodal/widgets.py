"""The live widget of a detached run: status, elapsed time, output, Stop.

It follows the run from a background thread, so the notebook stays free; the
run itself belongs to the agent and goes on if the kernel dies. Where there
are no widgets (a terminal IPython) the run id and the commands to follow it
are printed instead.
"""

from __future__ import annotations

import codecs
import html
import threading
import time
from urllib.parse import quote

from nbmodal._runtime.client import AgentClient
from nbmodal._runtime.connection import run_hosts
from nbmodal.hosts import LOCAL
from nbmodal.output import in_kernel, visible_line
from nbmodal_wire import pb

_MAX_TEXT = 200_000  # characters of output kept in the widget
_STATE_COLORS = {"SUCCEEDED": "#2e7d32", "FAILED": "#c62828", "CANCELLED": "#6d4c41",
                 "TIMED_OUT": "#c62828", "LOST": "#c62828"}


class DetachedRun:
    """What ``%%remote --detach`` returns: the run's handle, shown as a live widget.

    ``run_id`` names it for ``%nbmodal logs|attach|stop``; ``stop()`` cancels it.
    """

    def __init__(self, client: AgentClient, info: pb.RunInfo) -> None:
        self.client = client
        self.run_id = info.run_id
        self.info = info

    def stop(self) -> None:
        self.client.cancel(self.run_id)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        if not _widgets_usable():
            print(self._instructions())
            return
        widget = RunWidget(self.client, self.info)
        display(widget.box)
        widget.follow_in_background()

    def _instructions(self) -> str:
        return (f"run {self.run_id} started in the background.\n"
                f"  %nbmodal logs {self.run_id}    output so far\n"
                f"  %nbmodal attach {self.run_id}  follow it and load its results\n"
                f"  %nbmodal stop {self.run_id}    stop it")

    def __repr__(self) -> str:
        return f"<DetachedRun {self.run_id}: {self.info.label[:60]}>"


def _widgets_usable() -> bool:
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return in_kernel()


class RunWidget:
    def __init__(self, client: AgentClient, info: pb.RunInfo) -> None:
        import ipywidgets as w

        self.client = client
        self.info = info
        self.run_id = info.run_id
        self.host = run_hosts.get(info.run_id, LOCAL)
        self._text = ""
        self._decoders = {s: codecs.getincrementaldecoder("utf-8")(errors="replace") for s in (pb.STDOUT, pb.STDERR)}
        self._state = "PENDING"
        self._started = time.time()
        self.header = w.HTML()
        self.stop_button = w.Button(description="Stop", icon="stop", button_style="danger",
                                    tooltip=f"Cancel run {self.run_id}", layout=w.Layout(width="90px"))
        self.stop_button.on_click(lambda _: self.stop())
        self.output = w.HTML(layout=w.Layout(max_height="300px", overflow="auto"))
        self.box = w.VBox([w.HBox([self.header, self.stop_button]), self.output])
        self._render_header()

    def stop(self) -> None:
        self.client.cancel(self.run_id)
        self.stop_button.description = "Stopping"
        self.stop_button.disabled = True

    def follow_in_background(self) -> None:
        threading.Thread(target=self._follow, name=f"nbmodal-{self.run_id}", daemon=True).start()
        threading.Thread(target=self._tick, name=f"nbmodal-{self.run_id}-clock", daemon=True).start()

    def _follow(self) -> None:
        try:
            for event in self.client.attach(self.run_id):
                kind = event.WhichOneof("kind")
                if kind == "output":
                    self._append(self._decoders[event.output.stream].decode(event.output.data))
                    self._render_output()
                elif kind == "finished":
                    self._finish(event.finished)
                elif self._state == "PENDING":
                    self._state = "RUNNING"
                    self._render_header()
        except Exception as exc:  # the widget must report, never raise into a thread
            self._state = "LOST"
            self._append(f"\n[nbmodal] stopped following: {exc}\n")
            self._render_output()
            self._render_header()

    def _finish(self, finished: pb.RunFinished) -> None:
        self._state = pb.RunState.Name(finished.state)
        if finished.HasField("error") and finished.error.traceback:
            self._append("\n" + finished.error.traceback)
        self._render_output()
        self._render_header()
        self.stop_button.disabled = True

    def _tick(self) -> None:
        while self._state in ("PENDING", "RUNNING"):
            time.sleep(1.0)
            self._render_header()

    def _append(self, text: str) -> None:
        self._text = (self._text + text)[-_MAX_TEXT:]

    def _render_output(self) -> None:
        shown = "\n".join(visible_line(line) for line in self._text.replace("\r\n", "\n").split("\n"))
        self.output.value = f"<pre style='margin:0;font-size:12px'>{html.escape(shown)}</pre>"

    def _render_header(self) -> None:
        elapsed = time.time() - self._started
        color = _STATE_COLORS.get(self._state, "#1565c0")
        hint = ""
        if self._state not in ("PENDING", "RUNNING"):
            hint = f" — <code>%nbmodal attach {self.run_id}</code> loads its results"
        self.header.value = (
            f"<b>{html.escape(self.info.label[:80])}</b> &nbsp; run <code>{self.run_id}</code> &nbsp; "
            f"<span style='color:{color}'><b>{self._state.lower()}</b></span> &nbsp; {elapsed:.0f}s{hint} &nbsp; "
            # The JupyterLab sidebar reveals the run when a link with these attributes is clicked.
            # (the href form survives JupyterLab's sanitizer, which drops data-* attributes from untrusted output)
            f"<a href='#nbmodal-run:{quote(self.host)}:{self.run_id}' data-nbmodal-run='{self.run_id}' "
            f"data-nbmodal-host='{html.escape(self.host)}'>"
            f"show in sidebar</a>")
