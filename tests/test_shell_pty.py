"""``nbmodal shell`` on a real PTY driven by the test, and ``nbmodal container exec|logs|stop`` as commands
(the CLI in a subprocess, the real local agent), and ``%nbmodal container exec`` in a kernel."""

from __future__ import annotations

import fcntl
import itertools
import os
import select
import struct
import subprocess
import sys
import termios

import pytest
from waiting import wait_for

from nbmodal._runtime.client import AgentClient
from nbmodal_wire import pb
from notebooks import run_cells

pytestmark = pytest.mark.agent

CLI = [sys.executable, "-m", "nbmodal.cli"]
_sessions = itertools.count()


@pytest.fixture()
def client(agent_address):
    client = AgentClient(agent_address)
    yield client
    client.close()


@pytest.fixture()
def session_container(client):
    session = f"pty-{os.getpid()}-{next(_sessions)}"
    events = list(client.run(pb.RunRequest(kind=pb.CELL, label="setup", session=session,
                                           code="import os\nprint(os.getpid())")))
    assert events[-1].finished.state == pb.SUCCEEDED
    container = next(c for c in client.list_containers() if c.session == session)
    yield container.container_id
    if any(c.session == session for c in client.list_containers()):
        client.stop_session(session)


class Terminal:
    """A PTY whose slave is a child process's controlling terminal; the test reads and types on the master."""

    def __init__(self, argv: list[str], rows: int = 24, cols: int = 80) -> None:
        self.master, slave = os.openpty()
        self.slave_for_checks = os.dup(slave)
        self.resize(rows, cols)
        self.saved = termios.tcgetattr(slave)

        def controlling_tty() -> None:
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.process = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                                        preexec_fn=controlling_tty, close_fds=True)
        os.close(slave)
        self.text = ""

    def resize(self, rows: int, cols: int) -> None:
        # As a terminal emulator does: the kernel sends SIGWINCH to the terminal's foreground job.
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def _read_available(self) -> None:
        while select.select([self.master], [], [], 0.05)[0]:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # the child and its terminal have gone
                return
            if not data:
                return
            self.text += data.decode(errors="replace")

    def wait_for_text(self, needle: str, timeout: float = 30) -> None:
        def seen() -> bool:
            self._read_available()
            return needle in self.text

        try:
            wait_for(seen, timeout, f"{needle!r} on the terminal")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; it shows: {self.text[-2000:]!r}") from None

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self.master)
        os.close(self.slave_for_checks)


def test_shell_in_a_running_container_has_a_real_terminal(session_container, client):
    container = session_container
    terminal = Terminal([*CLI, "shell", container], rows=24, cols=80)
    try:
        terminal.type("echo marker-$((40+2)) $NBMODAL_CONTAINER_ID\r")
        terminal.wait_for_text(f"marker-42 {container}")  # a shell, in the container's own environment
        terminal.type("tty; stty size\r")
        terminal.wait_for_text("24 80")
        assert "/dev/pts/" in terminal.text
        # The window grows: SIGWINCH here becomes a resize of the remote terminal.
        terminal.resize(50, 132)
        terminal.type("stty size\r")
        terminal.wait_for_text("50 132")
        # Ctrl-C reaches the foreground job through the remote terminal; the shell goes on.
        terminal.type("echo sleeping-$((2*3)); sleep 100\r")
        terminal.wait_for_text("sleeping-6")
        terminal.type("\x03")
        terminal.type("echo back-$((3*3))\r")
        terminal.wait_for_text("back-9", timeout=30)
        terminal.type("exit 3\r")
        assert wait_for(lambda: terminal.process.poll() is not None, 30, "nbmodal shell to exit")
        assert terminal.process.returncode == 3
        # The local terminal is as it was (raw mode undone).
        assert termios.tcgetattr(terminal.slave_for_checks) == terminal.saved
    finally:
        terminal.close()


def test_shell_without_an_id_runs_in_a_new_container_stopped_afterwards(client):
    before = {c.container_id for c in client.list_containers()}
    terminal = Terminal([*CLI, "shell", "--host", "local"])
    try:
        terminal.type("echo in-$NBMODAL_CONTAINER_ID-$((6*7))\r")
        terminal.wait_for_text("-42")
        container = terminal.text.split("in-")[-1].split("-42")[0]
        assert container.startswith("c-") and container not in before
        terminal.type("exit\r")
        wait_for(lambda: terminal.process.poll() is not None, 30, "nbmodal shell to exit")
        assert terminal.process.returncode == 0
        wait_for(lambda: all(c.container_id != container for c in client.list_containers()), 30,
                 "the shell's container to be stopped")
    finally:
        terminal.close()


def test_container_exec_logs_and_stop_as_commands(session_container, client):
    container = session_container
    ran = subprocess.run([*CLI, "container", "exec", container, "--", "sh", "-c",
                          "echo out; echo err >&2; cat; exit 4"], input=b"from stdin\n", capture_output=True,
                         timeout=60)
    assert ran.returncode == 4, ran.stderr
    assert ran.stdout == b"out\nfrom stdin\n" and ran.stderr == b"err\n"
    missing = subprocess.run([*CLI, "container", "exec", container, "--", "no-such-cmd"], capture_output=True,
                             stdin=subprocess.DEVNULL, timeout=60)
    assert missing.returncode == 127 and b"no-such-cmd" in missing.stderr
    unknown = subprocess.run([*CLI, "container", "exec", "c-none", "--", "true"], capture_output=True,
                             stdin=subprocess.DEVNULL, timeout=60)
    assert unknown.returncode == 1 and b"no running container 'c-none'" in unknown.stderr
    misplaced = subprocess.run([*CLI, "container", "exec", container, "-t", "--", "true"], capture_output=True,
                               stdin=subprocess.DEVNULL, timeout=60)
    assert misplaced.returncode == 1 and f"exec -t {container} -- true".encode() in misplaced.stderr
    logs = subprocess.run([*CLI, "container", "logs", container], capture_output=True, timeout=60, check=True)
    assert b"container: ready (pid" in logs.stdout
    stopped = subprocess.run([*CLI, "container", "stop", container], capture_output=True, timeout=60, check=True)
    assert f"container {container} on local stopped".encode() in stopped.stdout
    wait_for(lambda: all(c.container_id != container for c in client.list_containers()), 30, "the container to stop")


def test_container_exec_in_a_cell(session_container, tmp_path):
    nb = run_cells([f"%nbmodal container exec {session_container} -- sh -c 'echo from-exec; echo oops >&2'",
                    "%nbmodal shell"], cwd=tmp_path, allow_errors=True)
    assert nb.stream(0) == "from-exec\n" and nb.stream(0, "stderr") == "oops\n"
    assert "needs a terminal" in nb.error_text(1) or "needs a terminal" in nb.stream(1, "stderr")
