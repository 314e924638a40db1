"""Installing and starting the agent on an SSH host, without root.

The first use of a host installs the exact agent code this client runs (its
``remote_agent`` package, byte for byte) into a venv under the remote user's
home, with the same versions of its three dependencies: from the package
index when the host can reach it, else from wheels this client downloads and
ships over SFTP (fabric's ``put``). The venv is built under a temporary name and renamed when
complete, so a failed bootstrap leaves nothing half-installed. The agent is
started detached (it outlives the SSH session); a running agent of another
version is asked to drain: it finishes its runs, while the new one takes
over the state dir.
"""

from __future__ import annotations

import io
import json
import logging
import shlex
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import nbmodal
import nbmodal_wire
from nbmodal._runtime.ssh import SSHConnection, shell_quote
from nbmodal.config import nbmodal_home
from nbmodal.hosts import HostError
from nbmodal_wire.agent_file import AgentFile

log = logging.getLogger(__name__)

REMOTE_HOME = "~/.nbmodal"
# uv builds images; blake3 checks volume files sent through the system ssh (_runtime/volume_ssh_bulk.py)
AGENT_DEPENDENCIES = ("grpcio", "protobuf", "cloudpickle", "nvidia-ml-py", "uv", "blake3")
MIN_PYTHON = (3, 10)
AGENT_START_TIMEOUT_S = 30.0
MIN_FREE_BYTES = 200 * 1024 * 1024


@dataclass
class HostFacts:
    python: str            # the interpreter the agent runs on (and its containers)
    python_version: str    # "3.11"
    machine: str           # "x86_64"
    home: str
    free_bytes: int


def probe(connection: SSHConnection) -> HostFacts:
    """Which Python the host has (preferring this notebook's minor version), its machine and free disk."""
    minor = "%d.%d" % sys.version_info[:2]
    configured = connection.host.extra.get("python", "")
    candidates = shlex.quote(configured) if configured else f"python{minor} python3"
    script = (
        f"for p in {candidates}; do if command -v $p >/dev/null 2>&1; then command -v $p; break; fi; done; "
        f"echo; echo \"$HOME\"; mkdir -p {REMOTE_HOME} && df -Pk {REMOTE_HOME} | tail -1")
    status, out, err = connection.run(script, timeout=30)
    lines = out.splitlines()
    name = connection.host.name
    if status != 0 or len(lines) < 3:
        raise HostError(f"host {name!r}: can't inspect the host ({err.strip() or out.strip()})")
    python = lines[0].strip()
    if not python and configured:
        raise HostError(f"host {name!r}: the configured Python {configured} does not exist there; fix it with "
                        f"`nbmodal host add {name} {connection.host.target} --python PATH`.")
    if not python:
        raise HostError(f"host {name!r}: no python3 found on the PATH of {connection.params.user}; install "
                        f"Python >= {MIN_PYTHON[0]}.{MIN_PYTHON[1]} there (ideally {minor}, like this notebook).")
    status, version_out, err = connection.run(
        f"{python} -c 'import sys, platform; print(\"%d.%d\" % sys.version_info[:2], platform.machine())'")
    if status != 0:
        raise HostError(f"host {name!r}: {python} does not run: {err.strip()}")
    version, machine = version_out.split()
    if tuple(map(int, version.split("."))) < MIN_PYTHON:
        raise HostError(f"host {name!r}: {python} is Python {version}; the agent needs Python >= "
                        f"{MIN_PYTHON[0]}.{MIN_PYTHON[1]} (ideally {minor}, like this notebook).")
    free_kib = int(lines[-1].split()[3]) if lines[-1].split()[3].isdigit() else 0
    return HostFacts(python=python, python_version=version, machine=machine, home=lines[-2].strip(),
                     free_bytes=free_kib * 1024)


def ensure_agent(connection: SSHConnection) -> AgentFile:
    """A running agent of this client's version on the host, installing or upgrading it as needed."""
    version = nbmodal_wire.__version__
    facts = probe(connection)
    venv = f"{REMOTE_HOME}/venv-{version}-py{facts.python_version}"
    status, _, _ = connection.run(f"test -f {shell_quote(venv)}/.complete")
    if status != 0:
        install(connection, facts, venv)
    running = read_agent_json(connection)
    slurm_changed = write_slurm_config(connection)
    if running is not None and running.version == version and not slurm_changed \
            and running.protocol_version == nbmodal_wire.PROTOCOL_VERSION:
        return running
    if running is not None:
        log.info("host %s: agent %s is running; draining it for %s%s", connection.host.name, running.version, version,
                 " (its Slurm settings changed)" if slurm_changed else "")
        connection.run(f"kill -USR1 {running.pid}")
        _wait_for(lambda: read_agent_json(connection) is None, 15, connection, "the old agent to hand over")
    return start_agent(connection, venv)


def install(connection: SSHConnection, facts: HostFacts, venv: str) -> None:
    name = connection.host.name
    if facts.free_bytes and facts.free_bytes < MIN_FREE_BYTES:
        raise HostError(f"host {name!r}: only {facts.free_bytes // (1024 * 1024)} MiB free under {REMOTE_HOME}; the "
                        f"agent needs about {MIN_FREE_BYTES // (1024 * 1024)} MiB. Free some disk space there.")
    log.info("host %s: installing the agent into %s", name, venv)
    partial = f"{venv}.partial"
    q_partial = shell_quote(partial)
    run_checked(connection, f"rm -rf {q_partial} && {facts.python} -m venv {q_partial}", "create a venv",
                fallback=f"rm -rf {q_partial} && {facts.python} -m venv --without-pip {q_partial}")
    python = f"{partial}/bin/python"
    print_site = "import sysconfig; print(sysconfig.get_paths()[\"purelib\"])"
    site = run_checked(connection, f"{shell_quote(python)} -c '{print_site}'", "find the venv's site-packages").strip()
    upload_agent_code(connection, site, facts.python)
    install_dependencies(connection, facts, partial)
    run_checked(connection, f"{shell_quote(python)} -c 'import remote_agent.daemon, grpc, cloudpickle'",
                "import the installed agent")
    q_venv = shell_quote(venv)
    run_checked(connection, f"touch {q_partial}/.complete && rm -rf {q_venv} && mv {q_partial} {q_venv}",
                "finish the install")


def agent_sources() -> dict[str, bytes]:
    """The client's own packages, byte for byte: {relative path: content}.

    The agent is ``remote_agent`` with the ``nbmodal_wire`` contract; ``nbmodal``
    comes along so that code in a container can use Dicts and Queues (it never
    imports IPython there).
    """
    import remote_agent

    sources = {}
    for module in (remote_agent, nbmodal_wire, nbmodal):
        package = Path(str(module.__file__)).parent
        sources.update({str(path.relative_to(package.parent)): path.read_bytes()
                        for path in sorted(package.rglob("*"))
                        if path.is_file() and "__pycache__" not in path.parts
                        and path.suffix in (".py", ".proto", ".pyi")})
    return sources


def upload_agent_code(connection: SSHConnection, site_packages: str, python: str) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in agent_sources().items():
            archive.writestr(name, content)
    remote_zip = f"{site_packages}/remote_agent.zip"
    buffer.seek(0)
    connection.put(buffer, remote_zip)
    run_checked(connection, f"cd {shell_quote(site_packages)} && {python} -m zipfile -e remote_agent.zip . "
                            f"&& rm remote_agent.zip", "unpack the agent code")


def install_dependencies(connection: SSHConnection, facts: HostFacts, venv: str) -> None:
    pins = [f"{name}=={metadata.version(name)}" for name in AGENT_DEPENDENCIES]
    python = shell_quote(f"{venv}/bin/python")
    has_pip = connection.run(f"{python} -m pip --version")[0] == 0
    if has_pip:
        status, _, err = connection.run(
            f"{python} -m pip install -q --disable-pip-version-check --retries 0 --timeout 15 {' '.join(pins)}",
            timeout=600)
        if status == 0:
            return
        log.info("host %s can't install from the package index (%s); shipping wheels", connection.host.name,
                 err.strip().splitlines()[-1:] or "")
    wheels = local_wheels(facts, pins, with_pip=not has_pip)
    remote_dir = f"{REMOTE_HOME}/wheels"
    connection.run(f"mkdir -p {shell_quote(remote_dir)}")
    remote_abs = f"{facts.home}/.nbmodal/wheels"
    present = set(connection.sftp().listdir(remote_abs))
    for wheel in wheels:
        if wheel.name not in present:
            connection.put(str(wheel), f"{remote_abs}/{wheel.name}")
    if has_pip:
        pip = f"{python} -m pip"
    else:
        pip_wheel = next(w for w in wheels if w.name.startswith("pip-"))
        pip = f"{python} {shell_quote(f'{remote_dir}/{pip_wheel.name}')}/pip"
    run_checked(connection, f"{pip} install -q --disable-pip-version-check --no-index --find-links "
                            f"{shell_quote(remote_dir)} {' '.join(pins)}", "install the agent's dependencies from "
                            "shipped wheels", timeout=600)


def local_wheels(facts: HostFacts, pins: list[str], with_pip: bool) -> list[Path]:
    """Wheels of the pinned packages for the host's Python and machine, downloaded once and cached here."""
    cache = nbmodal_home() / "wheels" / f"cp{facts.python_version.replace('.', '')}-{facts.machine}"
    cache.mkdir(parents=True, exist_ok=True)
    wanted = list(pins) + (["pip"] if with_pip else [])
    argv = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
            "--only-binary=:all:", "--implementation", "cp", "--python-version", facts.python_version,
            "-d", str(cache)]
    for tag in ("manylinux2014", "manylinux_2_17", "manylinux_2_28"):
        argv += ["--platform", f"{tag}_{facts.machine}"]
    done = subprocess.run([*argv, *wanted], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise HostError(f"the host can't reach the package index, and this machine couldn't download wheels of "
                        f"{', '.join(wanted)} for Python {facts.python_version} on {facts.machine} to ship to it:\n"
                        + done.stderr.strip()[-2000:])
    return sorted(cache.glob("*.whl"))


# Prints the agent.json, then "alive" if its process runs; exits 1 without one.
AGENT_JSON_COMMAND = (
    f"f={REMOTE_HOME}/agent/agent.json; cat $f 2>/dev/null || exit 1; echo; "
    # A killed agent nobody reaped is a zombie: not alive.
    "pid=$(sed 's/.*\"pid\": *\\([0-9]*\\).*/\\1/' $f); "
    "state=$(sed 's/.*) //' /proc/$pid/stat 2>/dev/null | cut -d' ' -f1); "
    "[ -n \"$state\" ] && [ \"$state\" != Z ] && echo alive")


def read_agent_json(connection: SSHConnection) -> AgentFile | None:
    """The host's running agent, from its agent.json (None if absent, or its process is gone)."""
    status, out, _ = connection.run(AGENT_JSON_COMMAND)
    return parse_agent_json(connection.host.name, status, out)


def parse_agent_json(host_name: str, status: int, out: str) -> AgentFile | None:
    """What ``AGENT_JSON_COMMAND`` printed, as the running agent (None if there is none)."""
    if status != 0 or not out.rstrip().endswith("alive"):
        return None
    try:
        return AgentFile.from_json(out.splitlines()[0])
    except ValueError as exc:
        raise HostError(f"host {host_name!r}: {REMOTE_HOME}/agent/agent.json is malformed ({exc}); "
                        f"stop that agent (`nbmodal host doctor {host_name}`) and run again") from None


def write_slurm_config(connection: SSHConnection) -> bool:
    """Put a Slurm host's settings where its agent reads them (agent/slurm.json); True if they changed."""
    from nbmodal.hosts import slurm_settings

    settings = slurm_settings(connection.host)
    path = f"{REMOTE_HOME}/agent/slurm.json"
    status, current, _ = connection.run(f"cat {path} 2>/dev/null")
    wanted = json.dumps(settings, sort_keys=True) if settings is not None else ""
    if current.strip() == wanted:
        return False
    if settings is None:
        connection.run(f"rm -f {path}")
    else:
        run_checked(connection, f"mkdir -p {REMOTE_HOME}/agent && printf %s {shell_quote(wanted)} > {path}",
                    "write the Slurm settings")
    return True


def start_agent(connection: SSHConnection, venv: str) -> AgentFile:
    python = shell_quote(f"{venv}/bin/python")
    run_checked(connection, f"cd ~ && {python} -m remote_agent serve --state-dir {REMOTE_HOME}/agent --daemon "
                            "</dev/null >/dev/null 2>&1", "start the agent")
    agent = _wait_for(lambda: read_agent_json(connection), AGENT_START_TIMEOUT_S, connection, "the agent to start")
    log.info("host %s: agent %s running (pid %d)", connection.host.name, agent.version, agent.pid)
    return agent


def run_checked(connection: SSHConnection, command: str, what: str, fallback: str | None = None,
                timeout: float = 300) -> str:
    status, out, err = connection.run(command, timeout=timeout)
    if status != 0 and fallback is not None:
        status, out, err = connection.run(fallback, timeout=timeout)
    if status != 0:
        detail = (err.strip() or out.strip())[-1500:]
        if "No space left" in detail:
            raise HostError(f"host {connection.host.name!r}: the disk is full; couldn't {what}. Free space under "
                            f"{REMOTE_HOME} there and try again.")
        raise HostError(f"host {connection.host.name!r}: couldn't {what}:\n{detail}")
    return out


def _wait_for(check, timeout: float, connection: SSHConnection, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    _, log_tail, _ = connection.run(f"tail -20 {REMOTE_HOME}/agent/agent.log 2>/dev/null")
    raise HostError(f"host {connection.host.name!r}: timed out waiting for {what}. The agent's log there "
                    f"({REMOTE_HOME}/agent/agent.log) ends with:\n{log_tail}")
