"""One SSH connection per host: fabric for what it does well, ours for the rest.

fabric's ``Connection`` runs commands (output and exit status), moves files
(SFTP), chains jump hosts (``gateway=``) and fans a command out over many hosts
(``ThreadingGroup``). What nbmodal needs beyond it lives here, on the one
paramiko transport that Connection holds:

- OpenSSH's own config evaluation (``ssh -G``) decides HostName, User, Port,
  IdentityFile, ProxyJump and UserKnownHostsFile, so they mean what they mean
  to ``ssh``; the result is handed to fabric, which parses no ssh config itself.
- known_hosts is strict: an unknown host is refused unless the caller accepts
  new keys, a changed key always is (``_KnownHostsPolicy``).
- Keepalives expect an answer: a link silent for ``DEAD_AFTER_S`` is declared
  dead and closed, so the caller reconnects instead of hanging.
- The agent's gRPC port is reached over ``direct-tcpip`` channels of this same
  transport (``open_forward``, used by tunnel.py).
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import fabric
import invoke
import paramiko
from fabric.runners import Remote
from paramiko.auth_strategy import (
    AuthFailure,
    AuthResult,
    AuthSource,
    AuthStrategy,
    InMemoryPrivateKey,
    OnDiskPrivateKey,
)
from paramiko.ssh_exception import NoValidConnectionsError

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

    @property
    def known_hosts_name(self) -> str:
        """The host's name as known_hosts spells it."""
        return self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}"


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
        return _resolve_with_fabric(host, target, port)
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


def _resolve_with_fabric(host: Host, target: str, port: str | None) -> SSHParams:
    """Without an ``ssh`` binary, fabric's (paramiko's) reading of the ssh config is the next best."""
    config_file = host.ssh_config or os.path.expanduser("~/.ssh/config")
    config = fabric.Config(runtime_ssh_path=config_file) if Path(config_file).exists() else fabric.Config()
    entry = fabric.Connection(target, port=int(port) if port else None, config=config, gateway=False)
    home = os.path.expanduser("~/.ssh")
    return SSHParams(
        hostname=entry.host, port=entry.port, user=entry.user,
        identity_files=entry.ssh_config.get("identityfile") or [f"{home}/id_ed25519", f"{home}/id_ecdsa",
                                                                f"{home}/id_rsa"],
        known_hosts_files=(entry.ssh_config.get("userknownhostsfile") or f"{home}/known_hosts").split(),
        proxy_jump=entry.ssh_config.get("proxyjump", ""), ssh_config=host.ssh_config)


class _PromptRemote(Remote):
    """fabric's remote runner, polling for the command's end every 1 ms rather than 10 ms.

    Bootstrap and reconnects run short commands back to back; their latency is the poll interval.
    """

    input_sleep = 0.001


class _KnownHostsPolicy(paramiko.MissingHostKeyPolicy):
    """known_hosts as strict as OpenSSH's ``StrictHostKeyChecking=yes`` (``accept-new`` when asked).

    paramiko is given no known keys, so every server key comes here to be checked.
    """

    def __init__(self, host: Host, params: SSHParams, accept_new: bool) -> None:
        self.host, self.params, self.accept_new = host, params, accept_new

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        p = self.params
        lookup = p.known_hosts_name
        known = paramiko.HostKeys()
        for path in p.known_hosts_files:
            if os.path.exists(path):
                known.load(path)
        entry = known.lookup(lookup)
        fingerprint = key.fingerprint  # "SHA256:..." as OpenSSH prints it
        if entry is not None and key.get_name() in entry:
            if entry[key.get_name()] == key:
                return
            raise HostError(
                f"host {self.host.name!r}: the host key of {lookup} CHANGED ({key.get_name()} {fingerprint}). "
                f"This is refused: if the machine was reinstalled, remove its old line from "
                f"{' or '.join(p.known_hosts_files[:1]) or '~/.ssh/known_hosts'} (`ssh-keygen -R {lookup}`), "
                f"then connect again.")
        if entry is not None and not self.accept_new:
            names = ", ".join(entry.keys())
            raise HostError(f"host {self.host.name!r}: {lookup} offered a {key.get_name()} key ({fingerprint}) but "
                            f"known_hosts has only {names} keys for it; refusing.")
        if not self.accept_new:
            raise HostError(
                f"host {self.host.name!r}: {lookup} is not in known_hosts; its {key.get_name()} key fingerprint is "
                f"{fingerprint}. If that is right, accept it with `nbmodal host add {self.host.name} "
                f"{self.host.target} --accept-new-host-key` (or `ssh {self.host.target}` once).")
        path = next(iter(p.known_hosts_files), os.path.expanduser("~/.ssh/known_hosts"))
        Path(path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(path, "a") as f:
            f.write(f"{lookup} {key.get_name()} {key.get_base64()}\n")
        log.info("added the host key of %s (%s) to %s", lookup, fingerprint, path)


class _KeysStrategy(AuthStrategy):
    """ssh-agent keys, then the IdentityFiles ``ssh -G`` named, in order; remembers what it tried."""

    def __init__(self, params: SSHParams) -> None:
        super().__init__(ssh_config=paramiko.SSHConfigDict())
        self.params = params
        self.unreadable: list[str] = []
        self.accepted = ""  # the key the server took, as "key PATH" or "ssh-agent key"

    def get_sources(self) -> Iterator[AuthSource]:
        for key in _agent_keys():
            yield InMemoryPrivateKey(self.params.user, key)
        for path in self.params.identity_files:
            if not os.path.exists(path):
                continue
            try:
                key = paramiko.PKey.from_path(path)
            except (paramiko.SSHException, OSError, ValueError) as exc:
                self.unreadable.append(f"{path} (unreadable: {exc})")
                continue
            yield OnDiskPrivateKey(self.params.user, "ssh-config", path, key)

    def authenticate(self, transport: paramiko.Transport) -> AuthResult:
        result = super().authenticate(transport)
        self.accepted = _source_name(result[-1].source)
        return result

    def tried(self, result: AuthResult) -> list[str]:
        return [_source_name(r.source) if isinstance(r.source, OnDiskPrivateKey) else "an ssh-agent key"
                for r in result] + self.unreadable


def _transport_without_nagle(sock, **kwargs) -> paramiko.Transport:
    """paramiko's Transport, on a socket that sends small messages at once.

    The handshake, each command and each gRPC frame are small request/answer exchanges: with Nagle's
    algorithm they wait for the peer's delayed ACK (~40 ms) time and again.
    """
    if isinstance(sock, socket.socket):  # a direct link, not a channel through a jump host
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    transport = paramiko.Transport(sock, **kwargs)
    # AES-GCM first: one AEAD pass per packet instead of AES-CTR plus an HMAC-SHA-256 pass, which made
    # volume downloads over the tunnel about 1.4x faster (bench/RESULTS.md); a server without it
    # negotiates the next cipher in paramiko's list.
    options = transport.get_security_options()
    gcm = tuple(c for c in options.ciphers if c.endswith("-gcm@openssh.com"))
    options.ciphers = gcm + tuple(c for c in options.ciphers if c not in gcm)
    return transport


def _source_name(source: AuthSource) -> str:
    return f"key {source.path}" if isinstance(source, OnDiskPrivateKey) else "ssh-agent key"


class SSHConnection:
    """A live SSH transport to one host (through its ProxyJump, if any).

    ``connection`` is the fabric Connection; its transport carries every
    command, file and forwarded channel for the host.

        ssh = SSHConnection.open(get_host("gpu1"))
        status, out, err = ssh.run("nvidia-smi -L")
        ssh.close()
    """

    def __init__(self, host: Host, params: SSHParams, jump: SSHConnection | None = None,
                 accept_new_host_key: bool = False) -> None:
        self.host = host
        self.params = params
        self.jump = jump
        self.auth_method = ""
        self._auth = _KeysStrategy(params)
        config = fabric.Config(lazy=True, overrides={"runners": {"remote": _PromptRemote}})
        self.connection: fabric.Connection = fabric.Connection(
            params.hostname, user=params.user, port=params.port, config=config,
            gateway=jump.connection if jump is not None else False, connect_timeout=int(CONNECT_TIMEOUT_S),
            connect_kwargs={"auth_strategy": self._auth, "banner_timeout": CONNECT_TIMEOUT_S,
                            "auth_timeout": CONNECT_TIMEOUT_S, "transport_factory": _transport_without_nagle})
        self.connection.client.set_missing_host_key_policy(_KnownHostsPolicy(host, params, accept_new_host_key))
        self._last_answer = time.monotonic()
        self._closed = False

    @property
    def transport(self) -> paramiko.Transport | None:
        return self.connection.transport

    @property
    def live_transport(self) -> paramiko.Transport:
        """The transport, once connected (a HostError before)."""
        if self.transport is None:
            raise HostError(f"host {self.host.name!r}: the SSH connection is not open")
        return self.transport

    @classmethod
    def prepare(cls, host: Host, accept_new_host_key: bool = False) -> SSHConnection:
        """A connection to ``host`` as ``ssh`` would make it, not opened yet (its jump host is)."""
        params = resolve(host)
        jump = None
        if params.proxy_jump:
            jump_host = Host(name=f"{host.name} (jump {params.proxy_jump})", target=params.proxy_jump.split(",")[-1],
                             ssh_config=host.ssh_config)
            jump = cls.open(jump_host, accept_new_host_key)
        return cls(host, params, jump, accept_new_host_key)

    @classmethod
    def open(cls, host: Host, accept_new_host_key: bool = False) -> SSHConnection:
        """An open, verified, authenticated and watched connection to ``host``."""
        connection = cls.prepare(host, accept_new_host_key)
        try:
            connection.connect()
        except BaseException:
            connection.close()
            raise
        return connection

    def connect(self) -> None:
        try:
            self.connection.open()
        except BaseException as exc:
            # A refused key leaves paramiko's transport running, and fabric only closes what it finished opening.
            self.connection.client.close()
            raise self.explain(exc) from None
        self._opened()

    def _opened(self) -> None:
        transport = self.live_transport
        transport.set_keepalive(0)  # ours expect an answer
        self.auth_method = self._auth.accepted
        self._last_answer = time.monotonic()
        threading.Thread(target=self._watch, name=f"ssh-keepalive-{self.host.name}", daemon=True).start()
        log.info("connected to %s (%s) with %s", self.host.name, self.params.address, self.auth_method)

    def explain(self, exc: BaseException) -> BaseException:
        """A failure to connect, as a HostError that names the host and says what to do."""
        p = self.params
        if isinstance(exc, HostError):  # from the known_hosts policy
            return exc
        if isinstance(exc, AuthFailure):
            return HostError(
                f"host {self.host.name!r}: {p.user}@{p.hostname} refused every key tried "
                f"({', '.join(self._auth.tried(exc.result)) or 'no key found'}). Check the user name and that "
                f"your public key is in ~{p.user}/.ssh/authorized_keys there.")
        if isinstance(exc, NoValidConnectionsError) and exc.errors:
            exc = next(iter(exc.errors.values()))  # the socket's own error ("Connection refused")
        if isinstance(exc, (OSError, paramiko.ChannelException)):
            return HostError(f"host {self.host.name!r}: can't reach {p.hostname}:{p.port} ({exc}). Check that the "
                             f"machine is up and that `ssh {self.host.target}` works.")
        if isinstance(exc, (paramiko.SSHException, EOFError)):
            return HostError(f"host {self.host.name!r}: SSH handshake with {p.hostname}:{p.port} failed: {exc}")
        return exc

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

    def run(self, command: str, timeout: float = 120.0) -> tuple[int, str, str]:
        """Run a shell command on the host; returns (exit status, stdout, stderr)."""
        self._check_open()
        try:
            result = self.connection.run(command, hide=True, warn=True, in_stream=False, timeout=timeout)
        except invoke.CommandTimedOut:
            raise HostError(f"host {self.host.name!r}: `{command[:60]}` did not finish within {timeout:g} s") from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise HostError(f"host {self.host.name!r}: the SSH connection is down ({exc})") from None
        return result.return_code, result.stdout, result.stderr

    def sftp(self) -> paramiko.SFTPClient:
        """The host's SFTP session (one, on this transport)."""
        self._check_open()
        return self.connection.sftp()

    def put(self, local: str | IO[bytes], remote: str) -> None:
        """Copy a local file (a path or a binary file object) to ``remote`` on the host."""
        self._check_open()
        self.connection.put(local, remote)

    def open_forward(self, port: int) -> paramiko.Channel:
        """A channel to 127.0.0.1:port on the host (where its agent listens)."""
        if not self.alive:
            raise HostError(f"host {self.host.name!r}: the SSH connection is down")
        return self.live_transport.open_channel("direct-tcpip", ("127.0.0.1", port), ("127.0.0.1", 0),
                                                timeout=CONNECT_TIMEOUT_S)

    def _check_open(self) -> None:
        # fabric would silently open a second transport; a dead one must surface so the caller reconnects.
        if self._closed or self.transport is None or not self.transport.is_active():
            raise HostError(f"host {self.host.name!r}: the SSH connection is down")

    def close(self) -> None:
        self._closed = True
        try:
            self.connection.close()  # its SFTP session, then the transport
        except Exception:  # closing a half-dead transport: nothing left to do
            pass
        self.connection.client.close()  # also a transport fabric never saw finish opening
        if self.jump is not None:
            self.jump.close()


@dataclass
class HostReply:
    """One host's answer to a command run on many hosts: its exit status and output, or why it failed."""

    name: str
    status: int = -1
    stdout: str = ""
    stderr: str = ""
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and self.status == 0


def run_on_hosts(hosts: list[Host], command: str | Callable[[Host], str],
                 timeout: float = 30.0) -> dict[str, HostReply]:
    """Run a shell command on many hosts at once (fabric's ThreadingGroup); a reply per host name.

    ``command`` is one command for all, or a function giving each host's (hosts with the same
    command run as one group). Each host is connected as ``SSHConnection.open`` would (its ssh
    config, strict known_hosts, its keys); a host that can't be reached gets a reply with
    ``error`` set while the others still answer.

        replies = run_on_hosts([get_host("gpu1"), get_host("gpu2")], "nvidia-smi -L")
    """
    replies: dict[str, HostReply] = {}
    groups: dict[str, dict[fabric.Connection, SSHConnection]] = {}
    try:
        for host in hosts:
            try:
                ssh = SSHConnection.prepare(host)
            except HostError as exc:
                replies[host.name] = HostReply(host.name, error=str(exc))
                continue
            text = command(host) if callable(command) else command
            groups.setdefault(text, {})[ssh.connection] = ssh
        for text, prepared in groups.items():
            group = fabric.ThreadingGroup.from_connections(list(prepared))
            try:
                results = group.run(text, hide=True, warn=True, in_stream=False, timeout=timeout)
            except fabric.exceptions.GroupException as exc:
                results = exc.result
            for connection, result in results.items():
                ssh = prepared[connection]
                if isinstance(result, invoke.CommandTimedOut):
                    replies[ssh.host.name] = HostReply(
                        ssh.host.name, error=f"host {ssh.host.name!r}: `{text[:60]}` did not finish within "
                                             f"{timeout:g} s")
                elif isinstance(result, BaseException):
                    replies[ssh.host.name] = HostReply(ssh.host.name, error=str(ssh.explain(result)))
                else:
                    replies[ssh.host.name] = HostReply(ssh.host.name, result.return_code, result.stdout,
                                                       result.stderr)
    finally:
        for prepared in groups.values():
            for ssh in prepared.values():
                ssh.close()
    return {host.name: replies[host.name] for host in hosts}


def shell_quote(path: str) -> str:
    """Quote for the remote shell, keeping a leading ~/ expandable."""
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


def _agent_keys() -> list:
    if not os.environ.get("SSH_AUTH_SOCK"):
        return []
    try:
        return list(paramiko.Agent().get_keys())
    except Exception:
        return []
