"""SSH hosts the user has added: ``nbmodal host add|ls|rm``.

Hosts live in the user's nbmodal config file, ``~/.nbmodal/config.toml``::

    [hosts.gpu1]
    target = "alice@gpu1.lab:22"     # or an alias from ~/.ssh/config
    ssh_config = "/path/to/config"   # optional: another ssh config file
    python = "/opt/conda/bin/python" # optional: the agent's Python there (default: python3.X, python3)

Connection details (HostName, User, Port, IdentityFile, ProxyJump, known
hosts) are resolved by OpenSSH's own config parsing (``ssh -G``) each time a
host is connected.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from nbmodal.config import nbmodal_home
from nbmodal.exceptions import NbmodalError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

LOCAL = "local"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class HostError(NbmodalError):
    """A host is unknown, misconfigured, unreachable or can't run the agent."""


@dataclass
class Host:
    name: str
    target: str                  # user@host[:port] or an ssh config alias
    ssh_config: str = ""         # another ssh config file than ~/.ssh/config
    extra: dict = field(default_factory=dict)


def config_path() -> Path:
    return _config_path(os.environ.get("NBMODAL_HOME", ""), os.environ.get("HOME", ""))


@functools.lru_cache(maxsize=8)
def _config_path(nbmodal_home_env: str, home_env: str) -> Path:
    # By the two variables nbmodal_home() reads (~ is $HOME): every run's placement asks, and building the
    # path costs more than the stat that follows.
    return nbmodal_home() / "config.toml"


def load_hosts() -> dict[str, Host]:
    """The configured hosts, in the order they were added."""
    path = config_path()
    try:
        data = _parsed_config(path)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise HostError(f"can't read the nbmodal config file {path}: {exc}") from None
    hosts = {}
    for name, entry in data.get("hosts", {}).items():
        if not isinstance(entry, dict) or not isinstance(entry.get("target"), str):
            raise HostError(f"{path}: host {name!r} needs a target = \"user@host\" entry")
        hosts[name] = Host(name=name, target=entry["target"], ssh_config=entry.get("ssh_config", ""),
                           extra={k: v for k, v in entry.items() if k not in ("target", "ssh_config")})
    return hosts


# The config file as last parsed, by its path and (inode, size, mtime): every run's placement reads the
# hosts, and a stat costs a tenth of reading and parsing the file again.
_parsed: dict[Path, tuple[tuple[int, int, int], dict]] = {}


def _parsed_config(path: Path) -> dict:
    stat = path.stat()
    key = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
    cached = _parsed.get(path)
    if cached is not None and cached[0] == key:
        return cached[1]
    data = tomllib.loads(path.read_text())
    _parsed[path] = (key, data)
    return data


def get_host(name: str) -> Host:
    hosts = load_hosts()
    if name not in hosts:
        known = ", ".join(hosts) or "none yet"
        raise HostError(f"no host named {name!r} is configured (known: {known}). "
                        f"Add it with `nbmodal host add {name} user@hostname`.")
    return hosts[name]


def add_host(name: str, target: str, ssh_config: str = "", python: str = "", extra: dict | None = None) -> Host:
    """Add (or replace) a host. ``target`` is ``user@host[:port]`` or an ssh config alias."""
    if not _NAME.fullmatch(name) or name == LOCAL:
        raise HostError(f"host name {name!r} must be 1-64 letters, digits, '_', '.' or '-' (and not {LOCAL!r})")
    if not target or any(c.isspace() for c in target):
        raise HostError(f"host {name!r}: {target!r} is not user@host[:port] or an ssh alias")
    if ssh_config:
        ssh_config = str(Path(ssh_config).expanduser().resolve())
        if not Path(ssh_config).is_file():
            raise HostError(f"host {name!r}: ssh config file {ssh_config} does not exist")
    hosts = load_hosts()
    hosts[name] = Host(name, target, ssh_config, {**({"python": python} if python else {}), **(extra or {})})
    _save(hosts)
    return hosts[name]


def remove_host(name: str) -> None:
    hosts = load_hosts()
    if name not in hosts:
        get_host(name)  # raises the error that lists the known hosts
    del hosts[name]
    _save(hosts)
    from nbmodal._runtime import homes

    homes.forget_host(name)  # the Dicts, Queues and Volumes recorded there are no longer reached there


def _save(hosts: dict[str, Host]) -> None:
    lines = ["# nbmodal configuration; `nbmodal host add|rm` edit the [hosts] tables.", ""]
    for host in hosts.values():
        lines.append(f"[hosts.{_toml_key(host.name)}]")
        lines.append(f"target = {_toml_str(host.target)}")
        if host.ssh_config:
            lines.append(f"ssh_config = {_toml_str(host.ssh_config)}")
        for key, value in host.extra.items():
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
        lines.append("")
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".toml.tmp")
    tmp.write_text("\n".join(lines))
    os.replace(tmp, path)


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_str(key)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return _toml_str(str(value))


SLURM_KEYS = ("partition", "account", "qos", "time", "sbatch_flags", "gres_types", "callback_host", "slurm_env",
              "job_volumes")
JOB_VOLUMES = ("auto", "shared", "copy")  # volumes in jobs: see remote_agent/worker/volume_links.py


def slurm_settings(host: Host) -> dict | None:
    """A Slurm host's settings as the agent's slurm.json has them, or None for a plain SSH host."""
    extra = host.extra
    if not extra.get("slurm"):
        return None
    settings: dict = {k: extra[k] for k in ("partition", "account", "qos", "time", "callback_host") if extra.get(k)}
    settings["sbatch_flags"] = shlex.split(extra.get("sbatch_flags", ""))
    settings["gres_types"] = _pairs(host.name, "gres_types", extra.get("gres_types", ""), ",")
    settings["env"] = _pairs(host.name, "slurm_env", extra.get("slurm_env", ""), None)
    job_volumes = extra.get("job_volumes") or "auto"
    if job_volumes not in JOB_VOLUMES:
        raise HostError(f"host {host.name!r}: job_volumes {job_volumes!r} must be one of {', '.join(JOB_VOLUMES)}")
    if job_volumes != "auto":  # the agent's default: slurm.json stays as it was for hosts that don't set it
        settings["job_volumes"] = job_volumes
    return settings


def _pairs(host: str, key: str, text: str, separator: str | None) -> dict[str, str]:
    pairs = {}
    for item in (text.split(separator) if separator else shlex.split(text)):
        if not item.strip():
            continue
        name, eq, value = item.strip().partition("=")
        if not eq or not name:
            raise HostError(f"host {host!r}: {key} item {item!r} must be NAME=VALUE")
        pairs[name] = value
    return pairs
