"""Large volume files to and from an SSH host through the system ``ssh``: bytes in C, control over gRPC.

Through the host's tunnel a file crosses paramiko (SSH packets in Python) and the agent's gRPC receive
(Python), about twice the CPU of ``scp`` (bench/RESULTS.md). For a file of ``MIN_BYTES`` or more, when
an ``ssh`` binary is on the PATH and logs in to the host without asking anything (``BatchMode``), the
bytes go through a child ``ssh`` process instead, with the host entry's own target and ssh config
(so its HostName, Port, User, IdentityFile, ProxyJump and known_hosts), a fast cipher first
(AES-GCM), one login shared by the transfers (a ControlMaster that ends ``PERSIST_S`` after the last
one), and the agent's staging protocol of the local fast path (remote_agent/volume_fast_path.py):

* upload: VOLUME_LOCAL_STAGE gives a staging file on the host; ``ssh host dd of=<that file>`` reads
  the local file itself (it is the child's stdin) and writes only into that existing file
  (``conv=nocreat``, ``oflag=nofollow``), while this process hashes the source with BLAKE3; then
  VOLUME_LOCAL_COMMIT with that digest: the agent hashes what landed and places it only if the two
  agree (nothing becomes visible otherwise).
* download: VOLUME_LOCAL_READ gives the file's path on the host, its size and BLAKE3; ``ssh host cat``
  streams it here, hashed as it is written; a different digest raises.

Anything that keeps this from working (``NBMODAL_SSH_BULK=0``, no ``ssh`` binary, a login that would
prompt or fails, an agent without ``blake3``) falls back to the gRPC transfer, with a log line.

    route = bulk_route(connection, size)
    if route is not None:
        sent = upload_ssh(client, route, "ckpt", Path("w.pt"), "/w.pt", force=False)
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import re
import shlex
import shutil
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from nbmodal._runtime.volume_local import check_read
from nbmodal.exceptions import AgentError, AgentLostError, NotFoundError
from nbmodal_wire import pb
from nbmodal_wire.transfer_digest import StreamDigest, file_blake3

log = logging.getLogger(__name__)

MIN_BYTES = 8 << 20  # below this a second SSH login costs more than gRPC's overhead saves
READ_BYTES = 8 << 20
PIPE_BYTES = 1 << 20  # a larger pipe: fewer, larger reads of what ssh writes
PROBE_TIMEOUT_S = 20.0
PERSIST_S = 60  # an idle shared ssh login ends after this
RETRY_AFTER_S = 300.0  # a host whose ssh login failed is tried again after this
# AES-GCM first: one AEAD pass per packet, with AES-NI the cheapest cipher OpenSSH has; the rest are
# OpenSSH's defaults, so a server without AES-GCM still negotiates one.
CIPHERS = ("aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com,"
           "aes128-ctr,aes192-ctr,aes256-ctr")
_STAGING_NAME = re.compile(r"local-[0-9a-f]{16}")
# Proves the login works, the login shell is a POSIX one, and the receiver below can run (python3, else a
# dd that knows the options the upload relies on: GNU coreutils).
_PROBE_COMMAND = ("if command -v python3 >/dev/null 2>&1; then exec python3 -c 'import os'; "
                  "else exec dd if=/dev/null of=/dev/null conv=notrunc,nocreat oflag=nofollow status=none; fi")
# The receiver on the host: writes stdin into the staging file, which must exist (no O_CREAT) and not be a
# link, with splice() from a 1 MiB pipe (no copy through the process, a sixteenth of the wake-ups; 20%
# faster than dd here). A host whose python3 lacks them copies in 1 MiB reads; one without python3
# runs dd (GNU: ``iflag=fullblock`` would cost five times the CPU, measured).
_RECEIVER = """import fcntl, os, sys
out = os.open(sys.argv[1], os.O_WRONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
try:
    fcntl.fcntl(0, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
except OSError:
    pass
splice = getattr(os, "splice", None)
try:
    while splice is not None and splice(0, out, 1 << 20):
        pass
except OSError:
    splice = None
if splice is None:
    while True:
        data = os.read(0, 1 << 20)
        if not data:
            break
        view = memoryview(data)
        while view:
            view = view[os.write(out, view):]
os.close(out)
"""
# The sender on the host, for downloads: the file into a 1 MiB stdout pipe with sendfile() (15% faster
# than cat here, half its CPU); plain reads where sendfile can't, ``cat`` where there is no python3.
_SENDER = """import fcntl, os, sys
source = os.open(sys.argv[1], os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
try:
    fcntl.fcntl(1, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
except OSError:
    pass
sendfile = getattr(os, "sendfile", None)
try:
    while sendfile is not None and sendfile(1, source, None, 1 << 20):
        pass
except OSError:
    sendfile = None
if sendfile is None:
    while True:
        data = os.read(source, 1 << 20)
        if not data:
            break
        view = memoryview(data)
        while view:
            view = view[os.write(1, view):]
"""


@dataclass(frozen=True)
class SshRoute:
    """How to reach one host with the system ``ssh``: the argv before the remote command."""

    host: str
    argv: tuple[str, ...]

    def command(self, remote: str) -> list[str]:
        """The argv that runs ``remote`` (one shell command line, already quoted) on the host."""
        return [*self.argv, remote]


_routes: dict[tuple[str, ...], tuple[bool, float]] = {}  # argv -> (login works, when it was checked)
_routes_lock = threading.Lock()


def enabled() -> bool:
    """Whether bulk transfers may use the system ``ssh`` (``NBMODAL_SSH_BULK=0`` turns it off).

    Example::

        enabled()
    """
    return os.environ.get("NBMODAL_SSH_BULK", "1") != "0"


def min_bytes() -> int:
    """The smallest file sent through ``ssh`` (``NBMODAL_SSH_BULK_MIN_BYTES``, default 8 MiB).

    Example::

        min_bytes()
    """
    value = os.environ.get("NBMODAL_SSH_BULK_MIN_BYTES", "")
    return int(value) if value.isdigit() else MIN_BYTES


def bulk_route(connection: Any, size: int) -> SshRoute | None:
    """The ``ssh`` route for a file of ``size`` bytes to or from ``connection``'s host, or None for gRPC.

    None when the connection is not an SSH host's, the file is small, bulk transfers are off, there
    is no ``ssh`` binary, or ``ssh`` can't log in without a prompt (checked once per host, again
    after ``RETRY_AFTER_S`` when it failed). Example::

        route = bulk_route(connection, local.stat().st_size)
    """
    ssh = getattr(connection, "ssh", None)
    if ssh is None or not enabled() or size < min_bytes():
        return None
    binary = shutil.which("ssh")
    if binary is None:
        log.info("no ssh binary on the PATH; volume files to and from %s go over gRPC", connection.name)
        return None
    route = SshRoute(connection.name, _base_argv(binary, ssh.host))
    with _routes_lock:
        known = _routes.get(route.argv)
    if known is not None and (known[0] or time.monotonic() - known[1] < RETRY_AFTER_S):
        return route if known[0] else None
    works = _probe(route)
    with _routes_lock:
        if works and not any(known_works for known_works, _ in _routes.values()):
            atexit.register(stop_shared_logins)
        _routes[route.argv] = (works, time.monotonic())
    return route if works else None


def _base_argv(binary: str, host: Any) -> tuple[str, ...]:
    """``ssh`` with the host entry's target and config, as nbmodal's own connection resolved it."""
    target, port = _split_target(host.target)
    argv = [binary, "-T", "-x", "-a", "-e", "none"]
    if host.ssh_config:
        argv += ["-F", host.ssh_config]
    if port:
        argv += ["-p", port]
    control = _control_dir()
    if control is not None:  # one login per host, reused: each transfer saves a key exchange (~0.2 s)
        argv += ["-o", "ControlMaster=auto", "-o", f"ControlPath={control}/%C", "-o", f"ControlPersist={PERSIST_S}"]
    argv += ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={int(PROBE_TIMEOUT_S // 2)}",
             "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3", "-o", "Compression=no",
             "-o", "ClearAllForwardings=yes", "-o", "LogLevel=ERROR", "-o", f"Ciphers={CIPHERS}",
             "--", target]
    return tuple(argv)


def _control_dir() -> str | None:
    """A directory only this user can enter, for ssh's control sockets (short: a socket path is ≤ 107 bytes);
    None where there can't be one (then each transfer logs in anew)."""
    path = os.path.join(tempfile.gettempdir(), f"nbmodal-ssh-{os.getuid()}")
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        info = os.lstat(path)
    except OSError:
        return None
    private = stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o077
    return path if private and len(path) < 60 else None


def _split_target(target: str) -> tuple[str, str | None]:
    """``user@host:port`` as ``ssh`` takes it (target, port), as nbmodal._runtime.ssh.resolve reads it."""
    if "@" in target and target.rsplit("@", 1)[1].count(":") == 1:
        head, port = target.rsplit(":", 1)
        return head, port
    if "@" not in target and target.count(":") == 1:
        head, port = target.split(":", 1)
        return head, port
    return target, None


def _probe(route: SshRoute) -> bool:
    try:
        done = subprocess.run(route.command(_PROBE_COMMAND), stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=PROBE_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.info("ssh to %s for volume transfers failed (%s); they go over gRPC", route.host, exc)
        return False
    if done.returncode != 0:
        log.info("ssh to %s for volume transfers failed (exit %d: %s); they go over gRPC", route.host,
                 done.returncode, done.stderr.strip()[-300:])
        return False
    if done.stdout:  # a shell startup file that prints would be mixed into every download
        log.info("ssh to %s prints %r before any command (a shell startup file?); volume transfers go over gRPC",
                 route.host, done.stdout[:80])
        return False
    return True


def stop_shared_logins() -> None:
    """End the shared ``ssh`` logins (ControlMasters) this process started; the next transfer logs in again.

    Called at exit, so none outlives the notebook by ``PERSIST_S``. Example::

        stop_shared_logins()
    """
    with _routes_lock:
        argvs = [argv for argv, (works, _) in _routes.items() if works and "ControlMaster=auto" in argv]
    for argv in argvs:
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):  # none running: nothing to end
            subprocess.run([*argv[:-2], "-O", "exit", "--", argv[-1]], stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=10)


def _forget(route: SshRoute) -> None:
    """A transfer failed at the ssh level: the next one checks the login again before using it."""
    with _routes_lock:
        _routes[route.argv] = (False, time.monotonic())


def upload_ssh(client: Any, route: SshRoute, volume: str, local: Path, remote_path: str, force: bool,
               progress: Callable[[int], None] | None = None) -> bool | None:
    """Send ``local`` into the volume through ``ssh``; False if that content was there, None to fall back
    to gRPC (the agent can't stage, or ssh failed). Raises the agent's refusal (``AgentError``, "... is
    not its source ...") when what landed does not match the source.

    Example::

        upload_ssh(client, route, "ckpt", Path("w.pt"), "/w.pt", force=False)
    """
    size = local.stat().st_size
    if not force and _same_content_there(client, volume, local, remote_path, size):
        return False
    try:
        staged = client.volume_call(pb.VolumeRequest(op=pb.VOLUME_LOCAL_STAGE, name=volume, path=remote_path)).file
    except AgentLostError:
        raise
    except AgentError as exc:  # an agent without blake3 (installed before it was a dependency)
        log.info("the agent on %s can't stage files (%s); uploading %s over gRPC", route.host, exc, local)
        return None
    target = _staging_path(staged.local_path)
    remote = _receiver(target)
    started = time.monotonic()
    with ThreadPoolExecutor(1, thread_name_prefix="nbmodal-blake3") as pool, \
            open(local, "rb", buffering=0) as source, tempfile.TemporaryFile() as errors:
        source_digest = pool.submit(file_blake3, local)  # beside ssh: its own copy of the source's bytes
        failure: str | None
        try:
            child = subprocess.Popen(route.command(remote), stdin=source, stdout=subprocess.DEVNULL, stderr=errors)
        except OSError as exc:  # the ssh binary went away since the route was checked
            failure = str(exc)
        else:
            _wait_sending(child, source, progress)
            failure = _failure(child, errors)
        sent = time.monotonic()
        digest = source_digest.result()
    request = pb.VolumeRequest(op=pb.VOLUME_LOCAL_COMMIT, name=volume, path=remote_path, local_path=target,
                               blake3=digest, force=force)
    if failure is None:
        hashed = time.monotonic()
        placed = client.volume_call(request).file
        log.debug("put %s through ssh to %s: %.3f s sending, %.3f s more hashing, %.3f s the agent's check",
                  local, route.host, sent - started, hashed - sent, time.monotonic() - hashed)
        return not placed.exists
    # The commit still runs: the agent then finds a partial file not its source and removes it (CORRUPT).
    log.info("ssh to %s failed while sending %s (%s); uploading it over gRPC", route.host, local, failure)
    _forget(route)
    try:
        placed = client.volume_call(request).file
    except AgentLostError:
        raise
    except AgentError:  # CORRUPT: the partial file is gone
        return None
    return not placed.exists  # every byte had arrived after all


def read_ssh_into(client: Any, route: SshRoute, volume: str, path: str, fileobj: IO[bytes],
                  progress: Callable[[int], None] | None = None) -> int | None:
    """Write the volume's file into ``fileobj`` through ``ssh``, checked against the agent's BLAKE3 of it;
    the number of bytes, or None to fall back to gRPC (nothing was written: the agent can't say, or
    ssh failed before the first byte). Raises ``OSError`` when the bytes don't match, or ssh failed
    after some were written.

    Example::

        with open("w.pt", "wb") as f:
            read_ssh_into(client, route, "ckpt", "/w.pt", f)
    """
    started = time.monotonic()
    try:
        info = client.volume_call(pb.VolumeRequest(op=pb.VOLUME_LOCAL_READ, name=volume, path=path)).file
    except (NotFoundError, AgentLostError):
        raise
    except AgentError as exc:  # an agent without blake3
        log.info("the agent on %s can't hand out %s (%s); reading it over gRPC", route.host, path, exc)
        return None
    remote = _sender(info.local_path)
    asked = time.monotonic()
    digest = StreamDigest()
    size = 0
    target = _plain_file(fileobj)
    reader = _reader_of(target) if target is not None else None
    with tempfile.TemporaryFile() as errors:
        if target is not None and reader is not None:  # ssh writes the file itself; we hash behind it
            fileobj.flush()
            start = os.lseek(target, 0, os.SEEK_CUR)
            child = subprocess.Popen(route.command(remote), stdin=subprocess.DEVNULL, stdout=target, stderr=errors)
            try:
                hashed = _follow(child, target, reader, start, digest, progress)
            finally:
                os.close(reader)
                if child.poll() is None:
                    child.kill()
                failure = _failure(child, errors)
                size = os.lseek(target, 0, os.SEEK_CUR) - start
                fileobj.seek(start + size)  # the child moved the shared offset: tell the file object
            if hashed != size:  # bytes that were never hashed (the file shrank under us) don't pass as checked
                digest = StreamDigest()
        else:
            child = subprocess.Popen(route.command(remote), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=errors, bufsize=0)
            try:
                assert child.stdout is not None
                with contextlib.suppress(OSError, ImportError):  # a larger pipe is only fewer wake-ups
                    import fcntl

                    fcntl.fcntl(child.stdout.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_BYTES)
                size = _receive(child.stdout, fileobj, digest, progress)
            finally:
                if child.poll() is None and size < info.size:
                    child.kill()  # the caller's write failed: stop the transfer
                failure = _failure(child, errors)
    if failure is not None:
        _forget(route)
        if size == 0:
            log.info("ssh to %s failed (%s); reading %s over gRPC", route.host, failure, path)
            return None
        raise OSError(f"reading {path!r} from volume {volume!r} through ssh to {route.host} failed after "
                      f"{size} of {info.size} bytes ({failure}); read it again")
    check_read(info, volume, size, digest)
    log.debug("get %s through ssh from %s: %.3f s the agent's digest, %.3f s receiving and hashing", path,
              route.host, asked - started, time.monotonic() - asked)
    return size


def _same_content_there(client: Any, volume: str, local: Path, remote_path: str, size: int) -> bool:
    """Whether the volume holds ``local``'s content at ``remote_path`` (then an upload without force skips)."""
    try:
        there = client.volume_call(pb.VolumeRequest(op=pb.VOLUME_LOCAL_READ, name=volume, path=remote_path)).file
    except AgentLostError:
        raise
    except (NotFoundError, AgentError):  # nothing there, or an agent that can't say: send it
        return False
    return there.size == size and there.blake3 == file_blake3(local)


def _receiver(target: str) -> str:
    """The remote command line that writes the upload's bytes into ``target`` (and nowhere else)."""
    quoted = shlex.quote(target)
    return (f"if command -v python3 >/dev/null 2>&1; then exec python3 -c {shlex.quote(_RECEIVER)} {quoted}; "
            f"else exec dd of={quoted} bs=1M conv=notrunc,nocreat oflag=nofollow status=none; fi")


def _sender(path: str) -> str:
    """The remote command line that writes the volume file ``path`` to stdout."""
    quoted = shlex.quote(path)
    return (f"if command -v python3 >/dev/null 2>&1; then exec python3 -c {shlex.quote(_SENDER)} {quoted}; "
            f"else exec cat -- {quoted}; fi")


def _staging_path(given: str) -> str:
    """The agent's staging file, refused unless it is one (the ssh child writes nowhere else)."""
    path = Path(given)
    if not path.is_absolute() or not _STAGING_NAME.fullmatch(path.name) or path.parent.parent.name != ".partial":
        raise AgentError(f"the agent gave {given!r} as a staging file, which is not one; nothing was sent")
    return given


def _wait_sending(child: subprocess.Popen, source: IO[bytes], progress: Callable[[int], None] | None) -> None:
    """Wait for the upload's ssh; ``progress`` follows its reading of the source (the file offset is shared)."""
    if progress is None:
        child.wait()
        return
    while True:
        try:
            child.wait(timeout=0.25)
            break
        except subprocess.TimeoutExpired:
            progress(os.lseek(source.fileno(), 0, os.SEEK_CUR))
    progress(os.lseek(source.fileno(), 0, os.SEEK_CUR))


def _plain_file(fileobj: IO[bytes]) -> int | None:
    """The descriptor of ``fileobj`` when ssh can write into it directly (a regular file open for writing,
    not appending), else None (the bytes then pass through this process)."""
    try:
        import fcntl  # here: a client without it (not POSIX) still imports this module

        fd = fileobj.fileno()
        info = os.fstat(fd)
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    except (AttributeError, ImportError, OSError, ValueError):  # io.UnsupportedOperation is both
        return None
    writable = flags & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR)
    return fd if stat.S_ISREG(info.st_mode) and writable and not flags & os.O_APPEND else None


def _reader_of(fd: int) -> int | None:
    """A second descriptor that reads the file ``fd`` is (opened "wb": not readable), else None."""
    try:
        return os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:  # no /proc (not Linux): the bytes pass through this process instead
        return None


def _follow(child: subprocess.Popen, fd: int, reader: int, start: int, digest: StreamDigest,
            progress: Callable[[int], None] | None) -> int:
    """Hash what the child writes into ``fd`` from ``start`` on (read back through ``reader``), as it writes
    it (its offset, shared with this process, says how far it got); the bytes hashed once it exits."""
    buffer = bytearray(READ_BYTES)
    hashed = 0
    while True:
        finished = child.poll() is not None  # before the offset: once exited, nothing more is written
        written = os.lseek(fd, 0, os.SEEK_CUR) - start
        caught_up = hashed >= written
        while hashed < written:
            count = os.preadv(reader, [memoryview(buffer)[:min(READ_BYTES, written - hashed)]], start + hashed)
            if not count:  # truncated under us: the digest check will say so
                break
            digest.update(memoryview(buffer)[:count])
            hashed += count
            if progress:
                progress(hashed)
        if finished:
            return hashed
        if caught_up:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=0.005)  # nothing new yet: let ssh write a while


def _receive(stream: IO[bytes], fileobj: IO[bytes], digest: StreamDigest,
             progress: Callable[[int], None] | None) -> int:
    """Copy ssh's output into ``fileobj``, each chunk hashed in a thread while the next one is read."""
    buffers = (bytearray(READ_BYTES), bytearray(READ_BYTES))
    size = turn = 0
    with ThreadPoolExecutor(1, thread_name_prefix="nbmodal-blake3") as pool:
        pending: Future | None = None
        while True:
            count = _fill(stream, buffers[turn])
            if not count:
                break
            view = memoryview(buffers[turn])[:count]
            turn ^= 1  # the next read goes into the other buffer: this one is hashed meanwhile
            fileobj.write(view)
            if pending is not None:
                pending.result()
            pending = pool.submit(digest.update, view)
            size += count
            if progress:
                progress(size)
        if pending is not None:
            pending.result()
    return size


def _fill(stream: IO[bytes], buffer: bytearray) -> int:
    """Read from the pipe until ``buffer`` is full or the stream ends (a pipe read returns what is there)."""
    view = memoryview(buffer)
    filled = 0
    while filled < len(buffer):
        count = stream.readinto(view[filled:])  # type: ignore[attr-defined]
        if not count:
            break
        filled += count
    return filled


def _failure(child: subprocess.Popen, errors: IO[bytes]) -> str | None:
    """None if the ssh child succeeded, else what went wrong (its exit status and last words)."""
    status = child.wait()
    if status == 0:
        return None
    errors.seek(0)
    said = errors.read()[-300:].decode(errors="replace").strip()
    return f"exit {status}" + (f": {said}" if said else "")
