"""The live widget of a detached run: status, elapsed time, output, Stop.

It follows the run from a background thread, so the notebook stays free; the
run itself belongs to the agent and goes on if the kernel dies. It follows
through ``RunFollower``, as a cell does: output is decoded once, and after a
dropped connection the widget reconnects and resumes after the last event it
showed. Where there are no widgets (a terminal IPython) the run id and the commands to follow it
are printed instead.
"""

from __future__ import annotations

import html
import threading
import time
from urllib.parse import quote

from nbmodal._runtime.client import AgentClient
from nbmodal._runtime.connection import connection as host_connection
from nbmodal._runtime.connection import run_hosts
from nbmodal._runtime.execution import RunFollower
from nbmodal.config import DEFAULT_CANCEL_GRACE_S
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
    """The widget of one run, fed by a ``RunFollower`` through a ``_WidgetSink``.

    ``connection`` is where the run lives (default: the host this kernel
    started it on); a drop is recovered through it.
    """

    def __init__(self, client: AgentClient, info: pb.RunInfo, connection=None) -> None:
        import ipywidgets as w

        self.client = client
        self.info = info
        self.run_id = info.run_id
        self.host = run_hosts.get(info.run_id, LOCAL)
        self._connection = connection
        self._follower: RunFollower | None = None
        self._text = ""
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
        # after a reconnect the follower holds the live client; the one we were given may be closed
        client = self._follower.client if self._follower is not None else self.client
        client.cancel(self.run_id)
        self.stop_button.description = "Stopping"
        self.stop_button.disabled = True

    def follow_in_background(self) -> None:
        threading.Thread(target=self._follow, name=f"nbmodal-{self.run_id}", daemon=True).start()
        threading.Thread(target=self._tick, name=f"nbmodal-{self.run_id}-clock", daemon=True).start()

    def _follow(self) -> None:
        try:
            self._follower = RunFollower(self._connection or host_connection(self.host), _WidgetSink(self),
                                         DEFAULT_CANCEL_GRACE_S,
                                         cancel_on_interrupt=False)  # the Stop button cancels, not an interrupt
            finished = self._follower.attach(self.run_id)
            if finished is not None:
                self._finish(finished)
        except Exception as exc:  # the widget must report, never raise into a thread
            self._state = "LOST"
            self._append(f"\n[nbmodal] stopped following: {exc}\n")
            self._render_output()
            self._render_header()

    def _running(self) -> None:
        if self._state == "PENDING":
            self._state = "RUNNING"
            self._render_header()

    def _show(self, text: str) -> None:
        self._append(text)
        self._render_output()

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


class _WidgetSink:
    """Where the widget's follower writes: text into the widget, any event marks the run as running."""

    def __init__(self, widget: RunWidget) -> None:
        self.widget = widget

    def output(self, stream: int, text: str) -> None:
        self.widget._running()
        self.widget._show(text)

    def display(self, data: dict, metadata: dict, execute_result: bool) -> None:
        self.widget._running()  # rich output is for the notebook that attaches; the widget shows text

    def notice(self, text: str) -> None:
        self.widget._running()
        fresh_line = "" if self.widget._text.endswith("\n") or not self.widget._text else "\n"
        self.widget._show(f"{fresh_line}[nbmodal] {text}\n")

    def item(self, item: pb.Item) -> None:
        self.widget._running()

    def started(self, started: pb.RunStarted) -> None:
        self.widget._running()

    def input_request(self, seq: int, request: pb.InputRequest) -> None:
        # The widget only watches: whoever attaches answers the run's debugger.
        self.notice(f"waiting for a debugger: `%nbmodal attach {self.widget.run_id}` (or `nbmodal attach "
                    f"{self.widget.run_id}` in a terminal) answers its prompt")

    def close(self) -> None:
        pass
