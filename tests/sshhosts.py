"""Real SSH hosts for tests: OpenSSH servers the test session starts itself.

Fixtures (session-scoped; load with ``pytest_plugins = ["sshhosts"]``):

* ``ssh_hosts``: two offline hosts, ``alpha`` and ``beta``. Each one is a
  network namespace joined to the root namespace by a veth pair
  (root side ``10.233.X.1/30``, namespace side ``10.233.X.2/30`` on ``eth0``)
  with no route anywhere else, running its own ``sshd`` on port 22 for its own
  fresh Unix user.
* ``online_ssh_host``: an ``sshd`` in the root namespace on ``127.0.0.1`` and
  a free port (so it can reach the package index), with user ``...-online``.

All hosts accept one generated client key and appear in one client-side ssh
config file (``Host alpha`` / ``Host beta`` / ``Host online``), so
``ssh -F <config_path> alpha CMD`` works with the real OpenSSH client.

Everything created is named after the owning test process,
``nbmt-<pid>-<host>`` (users, namespaces, temp dir) and ``nbmt<pid>v<n>``
(veth), so concurrent sessions don't collide and leftovers of crashed
sessions (whose pid is gone) are removed at the next start.

Needs root, ``sshd`` and ``ip`` (see scripts/install-system-deps.sh). When
they are missing the fixtures fail loudly; set ``NBMODAL_SKIP_SSH_TESTS=1``
to skip the tests that use them instead.
"""

from __future__ import annotations

import contextlib
import functools
import grp
import json
import os
import pwd
import random
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

PREFIX = "nbmt"
SKIP_ENV = "NBMODAL_SKIP_SSH_TESTS"
SSHD = "/usr/sbin/sshd"
SUBNET = "10.233"
TOOLS = ("ip", "ssh", "ssh-keygen", "useradd", "usermod", "userdel", "groupdel", "runuser")
SFTP_SERVERS = ("/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server")
# Names that carry an owner pid: nbmt-<pid>-..., and veths nbmt<pid>v<n>.
_OWNED_NAME = re.compile(rf"^{PREFIX}-?(\d+)(?:-|v\d+$)")
_SEARCH_PATH = os.pathsep.join(
    [os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"]
)


# --------------------------------------------------------------------------
# Small process helpers


@functools.cache
def _tool(name: str) -> str:
    """Absolute path of a system tool (also finds sbin tools off PATH)."""
    return shutil.which(name, path=_SEARCH_PATH) or name


def _failed(argv: tuple[str, ...], proc: subprocess.CompletedProcess) -> RuntimeError:
    output = (proc.stderr or proc.stdout).strip()
    return RuntimeError(f"`{shlex.join(argv)}` failed ({proc.returncode}): {output}")


def _sh(*argv: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    """Run a system tool, capturing text output; raise with its stderr on failure."""
    proc = subprocess.run([_tool(argv[0]), *argv[1:]], capture_output=True, text=True, **kwargs)
    if check and proc.returncode != 0:
        raise _failed(argv, proc)
    return proc


def _sh_retrying(*argv: str, attempts: int = 50) -> subprocess.CompletedProcess:
    """Like _sh, retrying while /etc/passwd is locked by a concurrent user tool."""
    for attempt in range(attempts):
        proc = _sh(*argv, check=False)
        if proc.returncode == 0:
            return proc
        if "lock" not in proc.stderr or attempt == attempts - 1:
            raise _failed(argv, proc)
        time.sleep(0.1)


def _pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _is_stale(name: str) -> bool:
    """Whether a resource name carries the pid of a process that is gone."""
    match = _OWNED_NAME.match(name)
    return bool(match) and not _pid_alive(int(match.group(1)))


def _mentions_stale(text: str) -> bool:
    """Whether text (e.g. a command line) names a resource of a process that is gone."""
    return any(not _pid_alive(int(pid)) for pid in re.findall(rf"\b{PREFIX}-(\d+)-", text))


def _live_pids(uid: int) -> list[int]:
    """Pids of the non-zombie processes running as uid."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if int(fields["Uid"].split()[0]) == uid and not fields["State"].strip().startswith("Z"):
            pids.append(int(entry.name))
    return pids


def _wait_until(predicate, timeout: float, what: str) -> None:
    """Poll predicate until it is true; raise TimeoutError after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


# --------------------------------------------------------------------------
# Users, namespaces, links


def _user_exists(user: str) -> bool:
    try:
        pwd.getpwnam(user)
    except KeyError:
        return False
    return True


def kill_user_processes(user: str, timeout: float = 5.0) -> None:
    """SIGKILL every process running as user and wait until they are gone."""
    try:
        uid = pwd.getpwnam(user).pw_uid
    except KeyError:
        return
    for pid in _live_pids(uid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _wait_until(lambda: not _live_pids(uid), timeout, f"processes of {user} to exit")


def _create_user(user: str, home: Path, authorized_key: str) -> None:
    """Create a fresh login user whose only way in is authorized_key."""
    _delete_user(user)
    _sh_retrying("useradd", "-m", "-d", str(home), "-s", "/bin/bash", user)
    # useradd locks the password ("!"); sshd refuses locked accounts without PAM.
    _sh_retrying("usermod", "-p", "*", user)
    ssh_dir = home / ".ssh"
    ssh_dir.mkdir(mode=0o700)
    keys = ssh_dir / "authorized_keys"
    keys.write_text(authorized_key)
    keys.chmod(0o600)
    for path in (ssh_dir, keys):
        shutil.chown(path, user, user)


def _delete_user(user: str) -> None:
    """Remove user, its processes, home and group (no-op when absent)."""
    if _user_exists(user):
        home = pwd.getpwnam(user).pw_dir
        kill_user_processes(user)
        _sh_retrying("userdel", "-f", "-r", user)
        shutil.rmtree(home, ignore_errors=True)
    if _sh("getent", "group", user, check=False).returncode == 0:
        _sh_retrying("groupdel", user)


def _delete_namespace(namespace: str) -> None:
    """Delete a network namespace (no-op when absent)."""
    if Path("/run/netns", namespace).exists():
        _sh("ip", "netns", "delete", namespace)


def _delete_link(link: str) -> None:
    """Delete a link in the root namespace (no-op when absent)."""
    if Path("/sys/class/net", link).exists():
        _sh("ip", "link", "delete", link, check=False)


def _free_octet() -> int:
    """An X such that 10.233.X.0/30 is not used in the root namespace."""
    used = set(re.findall(rf"inet {re.escape(SUBNET)}\.(\d+)\.", _sh("ip", "-4", "-o", "addr").stdout))
    free = [x for x in range(1, 255) if str(x) not in used]
    if not free:
        raise RuntimeError(f"no free {SUBNET}.X.0/30 subnet left")
    return random.choice(free)


def _free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cleanup_stale() -> None:
    """Remove what crashed earlier sessions (owner pid gone) left behind."""
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit():
            continue
        try:
            cmdline = (proc_dir / "cmdline").read_bytes().decode(errors="replace").replace("\0", " ")
        except OSError:
            continue
        # The listener names its config path; session processes are titled "sshd: <user> ...".
        if cmdline.startswith((SSHD, "sshd")) and _mentions_stale(cmdline):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc_dir.name), signal.SIGKILL)
    users = {entry.pw_name for entry in pwd.getpwall()} | {entry.gr_name for entry in grp.getgrall()}
    for user in sorted(users):
        if _is_stale(user):
            _delete_user(user)  # also removes a group left without its user
    for line in _sh("ip", "netns", "list").stdout.splitlines():
        if line and _is_stale(line.split()[0]):
            _delete_namespace(line.split()[0])
    for link in os.listdir("/sys/class/net"):
        if _is_stale(link):
            _delete_link(link)
    for path in Path(tempfile.gettempdir()).glob(f"{PREFIX}-*"):
        if _is_stale(path.name):
            shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------
# sshd


def _keygen(path: Path, comment: str) -> str:
    """Generate an ed25519 key pair without passphrase; return the public key line."""
    _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path))
    return path.with_suffix(".pub").read_text().strip()


@functools.cache
def _sshd_version() -> tuple[int, int]:
    """OpenSSH server version, e.g. (9, 2)."""
    proc = subprocess.run([SSHD, "-V"], capture_output=True, text=True)
    match = re.search(r"OpenSSH_(\d+)\.(\d+)", proc.stderr + proc.stdout)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def _sshd_config(state: Path, address: str, port: int, user: str) -> str:
    """sshd_config for one test host: key-only login for user, state in state/."""
    lines = [
        f"ListenAddress {address}:{port}",
        f"HostKey {state / 'ssh_host_ed25519_key'}",
        f"PidFile {state / 'sshd.pid'}",
        f"AllowUsers {user}",
        "AuthorizedKeysFile %h/.ssh/authorized_keys",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitRootLogin no",
        "UsePAM no",
        "StrictModes no",
        "UseDNS no",
        "X11Forwarding no",
        "AllowTcpForwarding yes",
        "AllowStreamLocalForwarding yes",
        "MaxStartups 100",
        "MaxSessions 64",
        "LogLevel VERBOSE",
    ]
    sftp = next((path for path in SFTP_SERVERS if os.path.exists(path)), None)
    if sftp:
        lines.append(f"Subsystem sftp {sftp}")
    if _sshd_version() >= (9, 8):
        lines.append("PerSourcePenalties no")  # tests open many short connections
    return "\n".join(lines) + "\n"


def _start_sshd(state: Path, prefix: list[str]) -> subprocess.Popen:
    """Start sshd (after the argv prefix, e.g. `ip netns exec NS`) on state/sshd_config."""
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation dir
    argv = [*prefix, SSHD, "-D", "-e", "-f", str(state / "sshd_config"), "-E", str(state / "sshd.log")]
    with open(state / "sshd.stderr", "wb") as stderr:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr, start_new_session=True)


def _wait_for_sshd(proc: subprocess.Popen, state: Path, address: str, port: int, timeout: float = 15.0) -> None:
    """Wait until sshd accepts TCP connections on address:port (raise if it exits)."""

    def ready() -> bool:
        if proc.poll() is not None:
            logs = "".join(
                path.read_text(errors="replace") for path in (state / "sshd.stderr", state / "sshd.log") if path.exists()
            )
            raise RuntimeError(f"sshd exited with {proc.returncode}:\n{logs}")
        try:
            socket.create_connection((address, port), timeout=0.5).close()
        except OSError:
            return False
        return True

    _wait_until(ready, timeout, f"sshd on {address}:{port}")


def _stop(proc: subprocess.Popen) -> None:
    """Terminate a process, killing it if it lingers."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --------------------------------------------------------------------------
# Public API


@dataclass(eq=False)
class SshHost:
    """One test host: an sshd plus the Unix user that logs in to it."""

    name: str
    address: str
    port: int
    user: str
    home: Path
    namespace: str | None
    sshd_log: Path
    client: "SshClient" = field(repr=False)
    veth: str | None = None
    host_key: str = field(default="", repr=False)

    @property
    def config_path(self) -> Path:
        return self.client.config_path

    @property
    def known_hosts_path(self) -> Path:
        return self.client.known_hosts_path

    @property
    def key_path(self) -> Path:
        return self.client.key_path

    def ssh_argv(self, command: str | None = None, *options: str) -> list[str]:
        """argv for the real OpenSSH client logging in to this host via the config."""
        return ["ssh", "-F", str(self.config_path), *options, self.name, *([command] if command else [])]

    def ssh(self, command: str, *options: str, timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
        """Run command on this host through the real ssh client (text output captured)."""
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        return subprocess.run(self.ssh_argv(command, *options), timeout=timeout, **kwargs)

    def stop_agent(self) -> None:
        """Stop the nbmodal agent this host's user runs, if any (its agent.json names its pid), and wait."""
        agent_json = self.home / ".nbmodal" / "agent" / "agent.json"
        if agent_json.exists():
            self.run(f"kill {json.loads(agent_json.read_text())['pid']}")
            _wait_until(lambda: not agent_json.exists(), 15, f"the agent on {self.name} to stop")

    def run(self, command: str, **kwargs) -> subprocess.CompletedProcess:
        """Run a shell command as this host's user on the host (without ssh).

        It runs in the host's namespace, in its home, with a clean login-like
        environment. Keyword arguments go to subprocess.run (output is captured
        as text unless told otherwise).
        """
        enter = [_tool("ip"), "netns", "exec", self.namespace] if self.namespace else []
        env = [f"HOME={self.home}", f"USER={self.user}", f"LOGNAME={self.user}", "SHELL=/bin/bash",
               "PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8"]
        argv = [*enter, _tool("runuser"), "-u", self.user, "--", "env", "-i", *env, "sh", "-c", command]
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        return subprocess.run(argv, cwd=self.home, **kwargs)

    def kill_processes(self) -> None:
        """Kill everything this host's user runs (its ssh sessions included)."""
        kill_user_processes(self.user)

    def forget_nbmodal(self) -> None:
        """Back to a host nbmodal never used: its agent and containers killed, ~/.nbmodal removed
        (for a module that bootstraps a session-wide host that later tests expect fresh)."""
        self.kill_processes()
        shutil.rmtree(self.home / ".nbmodal", ignore_errors=True)

    def cut(self) -> None:
        """Partition the host: packets both ways are dropped, open sockets stay open.

        Takes the namespace end of the veth down. The root end stays up without
        carrier, so its route stays and packets for the host are dropped there;
        downing the root end instead would remove that route and send them out
        the default route.
        """
        self._set_link("down")

    def restore(self) -> None:
        """Bring the host's link back up after cut()."""
        self._set_link("up")
        # ARP failed during the cut; forget that so connecting works at once.
        _sh("ip", "neigh", "flush", "dev", self.veth)

    def _set_link(self, state: str) -> None:
        if not self.namespace:
            raise RuntimeError(f"host {self.name} runs in the root namespace; it has no link to cut")
        _sh("ip", "netns", "exec", self.namespace, _tool("ip"), "link", "set", "eth0", state)

    def known_hosts_line(self) -> str:
        """This host's key as ssh-keyscan would print it."""
        where = self.address if self.port == 22 else f"[{self.address}]:{self.port}"
        return f"{where} {' '.join(self.host_key.split()[:2])}"

    def config_block(self) -> str:
        """This host's `Host` section of the client ssh config."""
        options = {
            "HostName": self.address,
            "Port": self.port,
            "User": self.user,
            "IdentityFile": self.key_path,
            "IdentitiesOnly": "yes",
            "UserKnownHostsFile": self.known_hosts_path,
            "GlobalKnownHostsFile": "/dev/null",
            "StrictHostKeyChecking": "yes",
            "BatchMode": "yes",
        }
        return f"Host {self.name}\n" + "".join(f"    {key} {value}\n" for key, value in options.items())


class SshClient:
    """Client side shared by all test hosts: temp dir, key pair, ssh config, known_hosts."""

    def __init__(self, root: Path, tag: str):
        self.root = root
        self.tag = tag  # nbmt-<pid>: prefix of every name this client's hosts use
        self.key_path = root / "id_ed25519"
        self.config_path = root / "ssh_config"
        self.known_hosts_path = root / "known_hosts"
        self.public_key = _keygen(self.key_path, f"{self.tag}-client")
        self.hosts: dict[str, SshHost] = {}
        self._write()

    @classmethod
    @contextlib.contextmanager
    def session(cls) -> Iterator["SshClient"]:
        """A client whose temp dir (and every host home in it) is removed afterwards."""
        tag = f"{PREFIX}-{os.getpid()}"
        root = Path(tempfile.mkdtemp(prefix=f"{tag}-tmp"))
        try:
            root.chmod(0o711)  # users must reach their homes inside it
            yield cls(root, tag)
        finally:
            shutil.rmtree(root, ignore_errors=True)

    def add(self, host: SshHost) -> None:
        self.hosts[host.name] = host
        self._write()

    def remove(self, name: str) -> None:
        self.hosts.pop(name, None)
        self._write()

    def _write(self) -> None:
        self.config_path.write_text("\n".join(host.config_block() for host in self.hosts.values()))
        self.known_hosts_path.write_text("".join(host.known_hosts_line() + "\n" for host in self.hosts.values()))

    def start_host(self, stack: contextlib.ExitStack, name: str, *, offline: bool, index: int = 0) -> SshHost:
        """Create user, (namespace, veth,) and sshd for one host; stack undoes it all."""
        state = self.root / name
        state.mkdir()
        user = namespace = f"{self.tag}-{name}"
        home = self.root / f"home-{name}"
        if offline:
            octet = _free_octet()
            address, port, veth = f"{SUBNET}.{octet}.2", 22, f"{PREFIX}{os.getpid()}v{index}"
            self._make_namespace(stack, namespace, veth, octet)
        else:
            address, port, veth, namespace = "127.0.0.1", _free_port(), None, None
        _create_user(user, home, self.public_key + "\n")
        stack.callback(_delete_user, user)
        host_key = _keygen(state / "ssh_host_ed25519_key", f"{self.tag}-{name}-host")
        (state / "sshd_config").write_text(_sshd_config(state, address, port, user))
        proc = _start_sshd(state, [_tool("ip"), "netns", "exec", namespace] if namespace else [])
        stack.callback(_stop, proc)
        _wait_for_sshd(proc, state, address, port)
        host = SshHost(name, address, port, user, home, namespace, state / "sshd.log", self, veth, host_key)
        self.add(host)
        stack.callback(self.remove, name)
        return host

    @staticmethod
    def _make_namespace(stack: contextlib.ExitStack, namespace: str, veth: str, octet: int) -> None:
        """Namespace with lo and eth0 = 10.233.octet.2/30, peered with veth = .1/30."""
        _delete_namespace(namespace)
        _sh("ip", "netns", "add", namespace)
        stack.callback(_delete_namespace, namespace)
        in_ns = ("ip", "netns", "exec", namespace, _tool("ip"))
        _sh(*in_ns, "link", "set", "lo", "up")
        _delete_link(veth)
        _sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", namespace)
        stack.callback(_delete_link, veth)
        _sh("ip", "addr", "add", f"{SUBNET}.{octet}.1/30", "dev", veth)
        _sh("ip", "link", "set", veth, "up")
        _sh(*in_ns, "addr", "add", f"{SUBNET}.{octet}.2/30", "dev", "eth0")
        _sh(*in_ns, "link", "set", "eth0", "up")


@dataclass
class SshHosts:
    """The offline hosts alpha and beta, sharing one client config."""

    client: SshClient
    alpha: SshHost
    beta: SshHost

    @property
    def config_path(self) -> Path:
        return self.client.config_path

    @property
    def known_hosts_path(self) -> Path:
        return self.client.known_hosts_path

    @property
    def key_path(self) -> Path:
        return self.client.key_path

    def __getitem__(self, name: str) -> SshHost:
        return {"alpha": self.alpha, "beta": self.beta}[name]

    def __iter__(self) -> Iterator[SshHost]:
        return iter((self.alpha, self.beta))


def unavailable_reason() -> str | None:
    """Why SSH test hosts can't run here, or None when they can."""
    if os.geteuid() != 0:
        return "SSH test hosts need root (network namespaces, users, sshd)"
    if not os.access(SSHD, os.X_OK):
        return f"{SSHD} is missing: run scripts/install-system-deps.sh"
    missing = [tool for tool in TOOLS if shutil.which(tool, path=_SEARCH_PATH) is None]
    if missing:
        return f"missing tools {', '.join(missing)}: run scripts/install-system-deps.sh"
    return None


def require_ssh_hosts() -> None:
    """Skip when NBMODAL_SKIP_SSH_TESTS=1; fail loudly when SSH hosts can't run."""
    if os.environ.get(SKIP_ENV) == "1":
        pytest.skip(f"SSH host tests disabled by {SKIP_ENV}=1")
    reason = unavailable_reason()
    if reason:
        pytest.fail(f"{reason} (set {SKIP_ENV}=1 to skip SSH host tests)", pytrace=False)


# --------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="session")
def ssh_client() -> Iterator[SshClient]:
    """Key pair, ssh config and known_hosts shared by every SSH test host."""
    require_ssh_hosts()
    cleanup_stale()
    with SshClient.session() as client:
        yield client


@pytest.fixture(scope="session")
def ssh_hosts(ssh_client: SshClient) -> Iterator[SshHosts]:
    """Offline hosts alpha and beta: sshd in network namespaces without internet."""
    with contextlib.ExitStack() as stack:
        alpha = ssh_client.start_host(stack, "alpha", offline=True, index=0)
        beta = ssh_client.start_host(stack, "beta", offline=True, index=1)
        yield SshHosts(ssh_client, alpha, beta)


@pytest.fixture(scope="session")
def online_ssh_host(ssh_client: SshClient) -> Iterator[SshHost]:
    """Host "online": sshd in the root namespace on 127.0.0.1 (it reaches the internet)."""
    with contextlib.ExitStack() as stack:
        yield ssh_client.start_host(stack, "online", offline=False)
