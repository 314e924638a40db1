"""A real two-node Slurm cluster for multi-node tests: two slurmd daemons, each in a network namespace.

``TwoNodeSlurm.session()`` starts, in one temp dir ``nbslurm-<pid>-pair-*``:

* a bridge in the root namespace (``10.234.X.1/24``, where slurmctld and the
  test's login node are reached) and two network namespaces ``n0`` and ``n1``
  joined to it by veth pairs (``10.234.X.2`` and ``.3``), so each node has an
  address of its own and the nodes reach each other (as two machines would);
* its own ``munged``, ``slurmctld`` (root namespace) and one ``slurmd -N nodeK``
  inside each namespace (``slurmd -N`` names the node; the namespaces keep the two
  daemons' ports apart, which the Debian build, without ``--enable-multiple-slurmd``,
  doesn't do otherwise), each node with 2 CPUs and one fake ``gpu:h100`` GRES.

Jobs started by its slurmds run in their node's namespace, so a job's addresses
are its node's. With ``private_mounts=True`` each slurmd (and so its jobs) also has a mount namespace of
its own, where ``hide(path)`` puts an empty tmpfs over a directory: a node that doesn't share it with the
login node. Crashed sessions' leftovers (namespaces, bridge, daemons) are
removed at the next start. The single-node ``slurm_cluster`` (tests/slurmcluster.py)
is left alone: its daemons carry another ``SLURM_CONF``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from slurmcluster import _SEARCH_PATH, DAEMONS, PREFIX, TAG_ENV, _free_port, _pid_alive, _stop

NODES = ("n0", "n1")
GPU_TYPE = "h100"
_OWNED = re.compile(r"^nbsl(\d+)[bv]")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def _netns(pid: int, node: str) -> str:
    return f"{PREFIX}-{pid}-{node}"


def cleanup_stale_pairs() -> None:
    """Remove the namespaces, bridges and veths of crashed sessions (their pid is gone)."""
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        match = re.match(rf"{PREFIX}-(\d+)-n\d", line)
        if match and not _pid_alive(int(match.group(1))):
            _ip("netns", "delete", line.split()[0], check=False)
    for line in _ip("-o", "link", "show", check=False).stdout.splitlines():
        name = line.split(":")[1].strip().split("@")[0] if ":" in line else ""
        match = _OWNED.match(name)
        if match and not _pid_alive(int(match.group(1))):
            _ip("link", "delete", name, check=False)


@dataclass(eq=False)
class TwoNodeSlurm:
    root: Path
    conf: Path
    gateway: str                    # the root namespace's address on the bridge (slurmctld, the login node)
    node_addresses: dict[str, str]  # node name -> its namespace's address
    env: dict[str, str]
    _procs: dict[str, subprocess.Popen] = field(default_factory=dict, repr=False)
    _links: list[str] = field(default_factory=list, repr=False)
    _namespaces: list[str] = field(default_factory=list, repr=False)
    private_mounts: bool = False    # each slurmd (and so its jobs) in a mount namespace of its own: see hide()

    def run(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), env=self.env, capture_output=True, text=True, timeout=timeout,
                              cwd=self.root)

    def idle_nodes(self) -> list[str]:
        out = self.run("sinfo", "-h", "-N", "-o", "%N %T").stdout
        return sorted({line.split()[0] for line in out.splitlines() if line.split()[1:] == ["idle"]})

    def logs(self) -> str:
        return "\n".join(f"===== {p.name} =====\n{p.read_text(errors='replace')[-4000:]}"
                         for p in sorted((self.root / "log").iterdir()))

    def _spawn(self, name: str, argv: list[str]) -> None:
        with open(self.root / "log" / f"{name}.stderr", "wb") as out:
            self._procs[name] = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                                 env=self.env, cwd=self.root, start_new_session=True)

    def _wait(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            for name, proc in self._procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode} while waiting for {what}\n{self.logs()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}\n{self.logs()}")
            time.sleep(0.1)

    def _network(self, pid: int) -> None:
        bridge = f"nbsl{pid}b"
        _ip("link", "add", bridge, "type", "bridge")
        self._links.append(bridge)
        _ip("addr", "add", f"{self.gateway}/24", "dev", bridge)
        _ip("link", "set", bridge, "up")
        for index, node in enumerate(NODES):
            namespace, veth = _netns(pid, node), f"nbsl{pid}v{index}"
            _ip("netns", "add", namespace)
            self._namespaces.append(namespace)
            _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", namespace)
            self._links.append(veth)
            _ip("link", "set", veth, "master", bridge)
            _ip("link", "set", veth, "up")
            for args in (("addr", "add", f"{self.node_addresses[node]}/24", "dev", "eth0"),
                         ("link", "set", "eth0", "up"), ("link", "set", "lo", "up")):
                _ip("netns", "exec", namespace, "ip", *args)

    def start(self) -> None:
        pid = os.getpid()
        self._network(pid)
        munge = self.root / "munge"
        key = munge / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        socket_path = munge / "munge.socket"
        self._spawn("munged", [DAEMONS["munged"], "--foreground", "--force", f"--socket={socket_path}",
                               f"--key-file={key}", f"--pid-file={munge / 'munged.pid'}",
                               f"--log-file={self.root / 'log' / 'munged.log'}", f"--seed-file={munge / 'seed'}"])
        self._wait(socket_path.exists, 10, "munged")
        self._spawn("slurmctld", [DAEMONS["slurmctld"], "-D", "-i", "-f", str(self.conf)])
        self._wait(lambda: "UP" in self.run("scontrol", "ping").stdout, 30, "slurmctld")
        for node in NODES:
            # nsenter joins the namespace's network only (`ip netns exec` would also remount /sys, hiding the
            # cgroup filesystem slurmd checks for).
            # private_mounts: a mount namespace of the node's own, so that hide() changes what its jobs see only.
            private = ([shutil.which("unshare", path=_SEARCH_PATH) or "unshare", "--mount", "--propagation", "private"]
                       if self.private_mounts else [])
            self._spawn(f"slurmd-{node}", [shutil.which("nsenter", path=_SEARCH_PATH) or "nsenter",
                                           f"--net=/run/netns/{_netns(pid, node)}", *private, DAEMONS["slurmd"], "-D",
                                           "-N", node, "-f", str(self.conf)])
        self._wait(lambda: self.idle_nodes() == list(NODES), 30, "both nodes idle")

    def hide(self, path: Path) -> None:
        """Make ``path`` an empty directory on every node (a tmpfs over it in the node's mount namespace), as on
        a compute node that doesn't share that directory with the login node. Needs ``private_mounts``."""
        assert self.private_mounts, "hide() needs TwoNodeSlurm.session(private_mounts=True)"
        for node in NODES:
            subprocess.run([shutil.which("nsenter", path=_SEARCH_PATH) or "nsenter",
                            f"--mount=/proc/{self._procs[f'slurmd-{node}'].pid}/ns/mnt", "mount", "-t", "tmpfs",
                            "-o", "size=1m", "tmpfs", str(path)], check=True, capture_output=True, timeout=10)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.run("scancel", "--full", "--quiet", "-u", "root")
        for name in [n for n in self._procs if n.startswith("slurmd")] + ["slurmctld", "munged"]:
            if name in self._procs:
                _stop(self._procs[name])
        for pid in _pids_with(f"SLURM_CONF={self.conf}"):  # job steps left behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for namespace in self._namespaces:
            _ip("netns", "delete", namespace, check=False)
        for link in self._links:
            _ip("link", "delete", link, check=False)

    @classmethod
    @contextlib.contextmanager
    def session(cls, private_mounts: bool = False) -> Iterator[TwoNodeSlurm]:
        cleanup_stale_pairs()
        pid = os.getpid()
        root = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-{pid}-pair-"))
        root.chmod(0o755)
        for sub in ("state", "log", "run", "munge", "dev", *(f"spool-{node}" for node in NODES)):
            (root / sub).mkdir(mode=0o755)
        octet = 100 + pid % 100
        gateway = f"10.234.{octet}.1"
        addresses = {node: f"10.234.{octet}.{index + 2}" for index, node in enumerate(NODES)}
        conf = root / "slurm.conf"
        ctld_port, slurmd_port = _free_port(), _free_port()
        conf.write_text(_conf(root, gateway, addresses, ctld_port, slurmd_port))
        gres = []
        for node in NODES:
            device = root / "dev" / f"{node}-nvidia0"
            os.mknod(device, 0o666 | 0o020000, os.makedev(1, 3))
            gres.append(f"NodeName={node} Name=gpu Type={GPU_TYPE} File={device}")
        (root / "gres.conf").write_text("AutoDetect=off\n" + "\n".join(gres) + "\n")
        (root / "plugstack.conf").write_text("")
        prefixes = ("SLURM_", "SBATCH_", "SALLOC_", "SRUN_", "SQUEUE_", "SINFO_", "SCONTROL_")
        env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
        env.update(SLURM_CONF=str(conf), PATH=_SEARCH_PATH, **{TAG_ENV: f"{PREFIX}-{pid}"})
        cluster = cls(root, conf, gateway, addresses, env, private_mounts=private_mounts)
        try:
            cluster.start()
            yield cluster
        finally:
            cluster.stop()
            shutil.rmtree(root, ignore_errors=True)


def _pids_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                if marker.encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
    return found


def _conf(root: Path, gateway: str, addresses: dict[str, str], ctld_port: int, slurmd_port: int) -> str:
    host = os.uname().nodename.split(".")[0]
    lines = [
        "ClusterName=nbmodal-pair", f"SlurmctldHost={host}({gateway})", f"SlurmctldPort={ctld_port}",
        f"SlurmdPort={slurmd_port}", "SlurmUser=root", "SlurmdUser=root", "AuthType=auth/munge",
        "CredType=cred/munge", f"AuthInfo=socket={root / 'munge' / 'munge.socket'}",
        f"StateSaveLocation={root / 'state'}", f"SlurmdSpoolDir={root / 'spool-%n'}",
        f"SlurmctldPidFile={root / 'run' / 'slurmctld.pid'}", f"SlurmdPidFile={root / 'run' / 'slurmd-%n.pid'}",
        f"SlurmctldLogFile={root / 'log' / 'slurmctld.log'}", f"SlurmdLogFile={root / 'log' / 'slurmd-%n.log'}",
        f"PlugStackConfig={root / 'plugstack.conf'}", "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none", "AccountingStorageType=accounting_storage/none",
        "MpiDefault=none", "MailProg=/bin/true", "SwitchType=switch/none", "SlurmdParameters=config_overrides",
        "ReturnToService=2", "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core_Memory",
        "DefMemPerCPU=500", "GresTypes=gpu", "EnforcePartLimits=ALL", "SchedulerType=sched/backfill",
        "SchedulerParameters=sched_interval=1,sched_min_interval=0,batch_sched_delay=0,bf_interval=1",
        "MessageTimeout=10", "KillWait=1", "InactiveLimit=0", "MinJobAge=30", "SlurmdTimeout=30",
        "SlurmctldTimeout=30", "TCPTimeout=2",
    ]
    for node, address in addresses.items():
        lines.append(f"NodeName={node} NodeAddr={address} NodeHostname={host} CPUs=2 RealMemory=2000 "
                     f"Gres=gpu:{GPU_TYPE}:1 State=UNKNOWN")
    lines.append(f"PartitionName=gpu Nodes={','.join(addresses)} Default=YES MaxTime=00:10:00 State=UP")
    return "\n".join(lines) + "\n"
