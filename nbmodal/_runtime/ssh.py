"""One SSH connection per host: resolving, verifying, authenticating, watching.

Connection parameters come from OpenSSH's own config evaluation (``ssh -G``),
so HostName, User, Port, IdentityFile, ProxyJump and UserKnownHostsFile mean
what they mean to ``ssh``. The transport (paramiko) carries everything for
the host: command execution, SFTP and forwarded channels to the agent.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import paramiko

from nbmodal.hosts import Host, HostError

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
KEEPALIVE_INTERVAL_S = 2.0
# A transport whose keepalive hasn't been answered for this long is dead.
DEAD_AFTER_S = 6.0


@dataclass
class SSHParams:
    hostname: str
    port: int
    user: str
    identity_files: list[str] = field(default_factory=list)
    known_hosts_files: list[str] = field(default_factory=list)
    proxy_jump: str = ""
    ssh_config: str = ""

    @property
    def address(self) -> str:
        return f"{self.user}@{self.hostname}:{self.port}"


def resolve(host: Host) -> SSHParams:
    """What OpenSSH would use to connect to ``host.target``."""
    target, port = host.target, None
    if "@" in target and target.rsplit("@", 1)[1].count(":") == 1:
        target, port = target.rsplit(":", 1)
    elif "@" not in target and target.count(":") == 1:
        target, port = target.split(":", 1)
    if port is not None and not port.isdigit():
        raise HostError(f"host {host.name!r}: port {port!r} in {host.target!r} is not a number")
    if shutil.which("ssh") is None:
        return _resolve_with_paramiko(host, target, port)
    argv = ["ssh", "-G"]
    if host.ssh_config:
        argv += ["-F", host.ssh_config]
    if port:
        argv += ["-p", port]
    out = subprocess.run([*argv, target], capture_output=True, text=True, timeout=10)
    if out.returncode != 0:
        raise HostError(f"host {host.name!r}: ssh can't resolve {host.target!r}: {out.stderr.strip()}")
    options: dict[str, list[str]] = {}
    for line in out.stdout.splitlines():
        key, _, value = line.partition(" ")
        options.setdefault(key.lower(), []).append(value)
    jump = options.get("proxyjump", ["none"])[0]
    return SSHParams(
        hostname=options["hostname"][0], port=int(options["port"][0]), user=options["user"][0],
        identity_files=[os.path.expanduser(p) for p in options.get("identityfile", [])],
        known_hosts_files=[os.path.expanduser(p) for v in options.get("userknownhostsfile", []) for p in v.split()],
        proxy_jump="" if jump == "none" else jump, ssh_config=host.ssh_config)


def _resolve_with_paramiko(host: Host, target: str, port: str | None) -> SSHParams:
    config = paramiko.SSHConfig.from_path(host.ssh_config or os.path.expanduser("~/.ssh/config")) \
        if Path(host.ssh_config or os.path.expanduser("~/.ssh/config")).exists() else paramiko.SSHConfig()
    user, _, name = target.rpartition("@")
    entry = config.lookup(name)
    home = os.path.expanduser("~/.ssh")
    return SSHParams(
        hostname=entry.get("hostname", name), port=int(port or entry.get("port", 22)),
        user=user or entry.get("user") or os.environ.get("USER", "root"),
        identity_files=entry.get("identityfile") or [f"{home}/id_ed25519", f"{home}/id_ecdsa", f"{home}/id_rsa"],
        known_hosts_files=(entry.get("userknownhostsfile") or f"{home}/known_hosts").split(),
        proxy_jump=entry.get("proxyjump", ""), ssh_config=host.ssh_config)


class SSHConnection:
    """A live SSH transport to one host (through its ProxyJump, if any)."""

    def __init__(self, host: Host, params: SSHParams, jump: SSHConnection | None = None) -> None:
        self.host = host
        self.params = params
        self.jump = jump
        self.transport: paramiko.Transport | None = None
        self.auth_method = ""
        self._sftp: paramiko.SFTPClient | None = None
        self._last_answer = time.monotonic()
        self._closed = False

    @property
    def live_transport(self) -> paramiko.Transport:
        """The transport, once connected (a HostError before)."""
        if self.transport is None:
            raise HostError(f"host {self.host.name!r}: the SSH connection is not open")
        return self.transport

    @classmethod
    def open(cls, host: Host, accept_new_host_key: bool = False) -> SSHConnection:
        params = resolve(host)
        jump = None
        if params.proxy_jump:
            jump_host = Host(name=f"{host.name} (jump {params.proxy_jump})", target=params.proxy_jump.split(",")[-1],
                             ssh_config=host.ssh_config)
            jump = cls.open(jump_host, accept_new_host_key)
        connection = cls(host, params, jump)
        connection._connect(accept_new_host_key)
        return connection

    # -- connecting ----------------------------------------------------------

    def _connect(self, accept_new_host_key: bool) -> None:
        p = self.params
        try:
            if self.jump is not None:
                sock = self.jump.live_transport.open_channel("direct-tcpip", (p.hostname, p.port), ("127.0.0.1", 0),
                                                        timeout=CONNECT_TIMEOUT_S)
            else:
                sock = socket.create_connection((p.hostname, p.port), timeout=CONNECT_TIMEOUT_S)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, paramiko.SSHException) as exc:
            raise HostError(f"host {self.host.name!r}: can't reach {p.hostname}:{p.port} ({exc}). Check that the "
                            f"machine is up and that `ssh {self.host.target}` works.") from None
        transport = paramiko.Transport(sock)
        transport.set_keepalive(0)
        try:
            transport.start_client(timeout=CONNECT_TIMEOUT_S)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            transport.close()
            raise HostError(
                f"host {self.host.name!r}: SSH handshake with {p.hostname}:{p.port} failed: {exc}") from None
        try:
            self._verify_host_key(transport, accept_new_host_key)
            self._authenticate(transport)
        except BaseException:
            transport.close()
            raise
        transport.set_keepalive(0)
        self.transport = transport
        self._last_answer = time.monotonic()
        threading.Thread(target=self._watch, name=f"ssh-keepalive-{self.host.name}", daemon=True).start()
        log.info("connected to %s (%s) with %s", self.host.name, p.address, self.auth_method)

    def _verify_host_key(self, transport: paramiko.Transport, accept_new: bool) -> None:
        key = transport.get_remote_server_key()
        p = self.params
        lookup = p.hostname if p.port == 22 else f"[{p.hostname}]:{p.port}"
        known = paramiko.HostKeys()
        for path in p.known_hosts_files:
            if os.path.exists(path):
                known.load(path)
        entry = known.lookup(lookup)
        fingerprint = _fingerprint(key)
        if entry is not None and key.get_name() in entry:
            if entry[key.get_name()] == key:
                return
            raise HostError(
                f"host {self.host.name!r}: the host key of {lookup} CHANGED ({key.get_name()} {fingerprint}). "
                f"This is refused: if the machine was reinstalled, remove its old line from "
                f"{' or '.join(p.known_hosts_files[:1]) or '~/.ssh/known_hosts'} (`ssh-keygen -R {lookup}`), "
                f"then connect again.")
        if entry is not None and not accept_new:
            names = ", ".join(entry.keys())
            raise HostError(f"host {self.host.name!r}: {lookup} offered a {key.get_name()} key ({fingerprint}) but "
                            f"known_hosts has only {names} keys for it; refusing.")
        if not accept_new:
            raise HostError(
                f"host {self.host.name!r}: {lookup} is not in known_hosts; its {key.get_name()} key fingerprint is "
                f"{fingerprint}. If that is right, accept it with `nbmodal host add {self.host.name} "
                f"{self.host.target} --accept-new-host-key` (or `ssh {self.host.target}` once).")
        path = next(iter(p.known_hosts_files), os.path.expanduser("~/.ssh/known_hosts"))
        Path(path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(path, "a") as f:
            f.write(f"{lookup} {key.get_name()} {key.get_base64()}\n")
        log.info("added the host key of %s (%s) to %s", lookup, fingerprint, path)

    def _authenticate(self, transport: paramiko.Transport) -> None:
        p = self.params
        tried = []
        for key in _agent_keys():
            try:
                transport.auth_publickey(p.user, key)
                self.auth_method = "ssh-agent key"
                return
            except paramiko.AuthenticationException:
                tried.append("an ssh-agent key")
            except paramiko.SSHException:
                break
        for path in p.identity_files:
            if not os.path.exists(path):
                continue
            try:
                key = paramiko.PKey.from_path(path)
            except (paramiko.SSHException, OSError, ValueError) as exc:
                tried.append(f"{path} (unreadable: {exc})")
                continue
            try:
                transport.auth_publickey(p.user, key)
                self.auth_method = f"key {path}"
                return
            except paramiko.AuthenticationException:
                tried.append(path)
        raise HostError(
            f"host {self.host.name!r}: {p.user}@{p.hostname} refused every key tried "
            f"({', '.join(tried) or 'no key found'}). Check the user name and that your public key is in "
            f"~{p.user}/.ssh/authorized_keys there.")

    # -- health ----------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return (not self._closed and self.transport is not None and self.transport.is_active()
                and time.monotonic() - self._last_answer < DEAD_AFTER_S)

    def _watch(self) -> None:
        """Keepalives that expect an answer: a silent link is declared dead."""
        transport = self.live_transport
        while not self._closed and transport.is_active():
            started = time.monotonic()
            answered = threading.Event()

            def ask(answered: threading.Event = answered) -> None:
                try:
                    transport.global_request("keepalive@openssh.com", wait=True)
                    answered.set()
                except Exception:
                    pass

            threading.Thread(target=ask, daemon=True).start()
            if answered.wait(DEAD_AFTER_S):
                self._last_answer = time.monotonic()
            else:
                log.warning("host %s stopped answering keepalives; closing its connection", self.host.name)
                self.close()
                return
            time.sleep(max(0.0, KEEPALIVE_INTERVAL_S - (time.monotonic() - started)))

    # -- using it --------------------------------------------------------------

    def run(self, command: str, timeout: float = 120.0, stdin: bytes | None = None) -> tuple[int, str, str]:
        """Run a shell command on the host; returns (exit status, stdout, stderr)."""
        try:
            channel = self.live_transport.open_session(timeout=CONNECT_TIMEOUT_S)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise HostError(f"host {self.host.name!r}: the SSH connection is down ({exc})") from None
        channel.settimeout(timeout)
        try:
            channel.exec_command(command)
            if stdin is not None:
                channel.sendall(stdin)
                channel.shutdown_write()
            out, err = bytearray(), bytearray()
            while True:
                if channel.recv_ready():
                    out += channel.recv(65536)
                elif channel.recv_stderr_ready():
                    err += channel.recv_stderr(65536)
                elif channel.exit_status_ready() and not channel.recv_ready() and not channel.recv_stderr_ready():
                    break
                else:
                    time.sleep(0.002)
            return channel.recv_exit_status(), out.decode(errors="replace"), err.decode(errors="replace")
        except TimeoutError:
            raise HostError(f"host {self.host.name!r}: `{command[:60]}` did not finish within {timeout:g} s") from None
        finally:
            channel.close()

    def sftp(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            self._sftp = paramiko.SFTPClient.from_transport(self.transport)
        return self._sftp

    def open_forward(self, port: int) -> paramiko.Channel:
        """A channel to 127.0.0.1:port on the host (where its agent listens)."""
        if not self.alive:
            raise HostError(f"host {self.host.name!r}: the SSH connection is down")
        return self.live_transport.open_channel("direct-tcpip", ("127.0.0.1", port), ("127.0.0.1", 0),
                                                timeout=CONNECT_TIMEOUT_S)

    def close(self) -> None:
        self._closed = True
        if self._sftp is not None:
            try:
                self._sftp.close()
            except Exception:
                pass
        if self.transport is not None:
            self.transport.close()
        if self.jump is not None:
            self.jump.close()


def shell_quote(path: str) -> str:
    """Quote for the remote shell, keeping a leading ~/ expandable."""
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


def _fingerprint(key: paramiko.PKey) -> str:
    return key.fingerprint  # "SHA256:..." as OpenSSH prints it


def _agent_keys() -> list:
    if not os.environ.get("SSH_AUTH_SOCK"):
        return []
    try:
        return list(paramiko.Agent().get_keys())
    except Exception:
        return []
