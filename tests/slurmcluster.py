"""A real single-node Slurm cluster for tests, started by the test session itself.

Fixture (session-scoped; load with ``pytest_plugins = ["slurmcluster"]``):

* ``slurm_cluster``: a :class:`SlurmCluster`. One node named after
  ``hostname -s`` (``NodeAddr=127.0.0.1``) with 4 CPUs, 8000 MB and four fake
  GPUs ``gpu:h100:4``; partitions ``gpu`` (default, MaxTime 10 min) and
  ``short`` (MaxTime 1 min); ``select/cons_tres`` with ``CR_Core_Memory``, so
  GPUs are handed out exclusively and jobs queue (reason ``Resources``) while
  they are taken.

Everything lives in one temp dir ``nbslurm-<pid>-*``: slurm.conf, gres.conf,
state, spool, logs, the fake GPU device nodes (``mknod nvidiaN c 1 3``, i.e.
/dev/null's numbers) and a private ``munged`` (own key, socket, pid and seed
file; slurm finds its socket through ``AuthInfo=socket=...``), so the
system's /etc/munge, /etc/slurm and /run/munge are not used. ``slurmctld`` and
``slurmd`` run in the foreground (``-D``) as children of the test process.
Client commands need ``SLURM_CONF``: use :meth:`SlurmCluster.run` or pass
:attr:`SlurmCluster.env`.

Every daemon, and every job submitted with ``cluster.env``, carries
``NBMODAL_SLURM_TAG=nbslurm-<pid>`` in its environment; teardown (and the next
session's start, for a crashed session whose pid is gone) kills whatever
carries it, stray ``slurmstepd`` processes included.

Job end states: ``JobCompType=jobcomp/filetxt`` appends one line per finished
job to :attr:`SlurmCluster.jobcomp_path` (``JobState=COMPLETED|FAILED|
CANCELLED|TIMEOUT|...``, ``ExitCode=...``); :meth:`SlurmCluster.wait_job_end`
waits for it. ``scontrol show job`` (:meth:`SlurmCluster.job_info`) also has
``Reason`` but forgets a job ``MinJobAge`` seconds after it ended. There is no
accounting database, so ``sacct`` does not work.

Timing facts of Slurm 22.05 worth knowing when writing tests against it:

* ``srun`` on the idle cluster takes ~40 ms; an ``sbatch`` job starts on
  slurmctld's once-a-second scheduling tick, 0-1 s after submission.
* Time limits are whole minutes (``--time=00:00:02`` becomes 1 minute) and
  slurmctld checks them every 30 s (hard-coded), so a walltime kill
  (``TIMEOUT``) lands 60-90 s after the job started.
* ``EnforcePartLimits=ALL``: a request over a partition limit (``--time``
  above MaxTime) is refused by sbatch/srun at once instead of pending with
  reason ``PartitionTimeLimit``. Unknown partitions and impossible GRES are
  refused at once anyway.

Needs root and the Debian packages ``slurmctld slurmd slurm-client munge``
(see scripts/install-system-deps.sh). When they are missing or the cluster
does not come up, the fixture fails loudly with the daemon logs; set
``NBMODAL_SKIP_SLURM_TESTS=1`` to skip the tests that use it instead.
"""

from __future__ import annotations

import contextlib
import os
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
from typing import Iterator, Sequence

import pytest

PREFIX = "nbslurm"
SKIP_ENV = "NBMODAL_SKIP_SLURM_TESTS"
TAG_ENV = "NBMODAL_SLURM_TAG"
GPU_TYPE = "h100"
GPU_COUNT = 4
CPUS = 4
REAL_MEMORY_MB = 8000
PARTITIONS = {"gpu": "00:10:00", "short": "00:01:00"}  # name -> MaxTime; the first is the default
DAEMONS = {
    "munged": "/usr/sbin/munged",
    "slurmctld": "/usr/sbin/slurmctld",
    "slurmd": "/usr/sbin/slurmd",
    "slurmstepd": "/usr/sbin/slurmstepd",
}
CLIENTS = ("sbatch", "srun", "squeue", "scancel", "sinfo", "scontrol")
_OWNED_TAG = re.compile(rf"{TAG_ENV}={PREFIX}-(\d+)\b")
_SEARCH_PATH = os.pathsep.join(
    [os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/local/bin", "/usr/bin", "/bin"]
)


# --------------------------------------------------------------------------
# Small helpers


def _free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _tagged_pids(owned_by) -> list[int]:
    """Pids of processes whose environment carries a tag whose owner pid satisfies owned_by."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes().decode(errors="replace").replace("\0", " ")
        except OSError:
            continue
        match = _OWNED_TAG.search(environ)
        if match and owned_by(int(match.group(1))):
            pids.append(int(entry.name))
    return pids


def _kill_pids(pids: Sequence[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def cleanup_stale() -> None:
    """Kill daemons and jobs of crashed sessions (owner pid gone) and remove their temp dirs."""
    _kill_pids(_tagged_pids(lambda owner: not _pid_alive(owner)))
    for path in Path(tempfile.gettempdir()).glob(f"{PREFIX}-*"):
        match = re.match(rf"{PREFIX}-(\d+)-", path.name)
        if match and not _pid_alive(int(match.group(1))):
            shutil.rmtree(path, ignore_errors=True)


def _stop(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    """SIGTERM a daemon, SIGKILL it if it lingers."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class SlurmStartError(RuntimeError):
    """The cluster did not come up; the message carries the daemon logs."""


# --------------------------------------------------------------------------
# Config


def _slurm_conf(root: Path, node: str, ctld_port: int, slurmd_port: int, munge_socket: Path) -> str:
    first = next(iter(PARTITIONS))
    lines = [
        "ClusterName=nbmodal-test",
        f"SlurmctldHost={node}(127.0.0.1)",
        f"SlurmctldPort={ctld_port}",
        f"SlurmdPort={slurmd_port}",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={munge_socket}",
        f"StateSaveLocation={root / 'state'}",
        f"SlurmdSpoolDir={root / 'spool'}",
        f"SlurmctldPidFile={root / 'run' / 'slurmctld.pid'}",
        f"SlurmdPidFile={root / 'run' / 'slurmd.pid'}",
        f"SlurmctldLogFile={root / 'log' / 'slurmctld.log'}",
        f"SlurmdLogFile={root / 'log' / 'slurmd.log'}",
        "SlurmctldDebug=info",
        "SlurmdDebug=info",
        f"PlugStackConfig={root / 'plugstack.conf'}",  # not the system's /etc/slurm one
        # No cgroups, no systemd: plain process tracking, no task confinement.
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/filetxt",
        f"JobCompLoc={root / 'log' / 'jobcomp.log'}",
        "MpiDefault=none",
        "MailProg=/bin/true",
        "SwitchType=switch/none",
        # The node may have fewer CPUs/less memory than it claims.
        "SlurmdParameters=config_overrides",
        "ReturnToService=2",
        # GPUs and cores are consumable: jobs queue while they are taken.
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core_Memory",
        "DefMemPerCPU=500",
        "GresTypes=gpu",
        # A job over a partition's limits (e.g. --time above MaxTime) is refused
        # at submit instead of pending forever with reason PartitionTimeLimit.
        "EnforcePartLimits=ALL",
        # Fast turnaround.
        "SchedulerType=sched/backfill",
        "SchedulerParameters=sched_interval=1,sched_min_interval=0,batch_sched_delay=0,"
        "bf_interval=1,default_queue_depth=100",
        "MessageTimeout=10",
        "KillWait=1",
        "OverTimeLimit=0",
        "InactiveLimit=0",
        "MinJobAge=30",
        "SlurmdTimeout=30",
        "SlurmctldTimeout=30",
        "TCPTimeout=2",
        "UnkillableStepTimeout=10",
        "ReconfigFlags=KeepPartState",
        f"NodeName={node} NodeAddr=127.0.0.1 NodeHostname={node} CPUs={CPUS} RealMemory={REAL_MEMORY_MB} "
        f"Gres=gpu:{GPU_TYPE}:{GPU_COUNT} State=UNKNOWN",
    ]
    for name, max_time in PARTITIONS.items():
        default = "YES" if name == first else "NO"
        lines.append(f"PartitionName={name} Nodes={node} Default={default} MaxTime={max_time} State=UP")
    return "\n".join(lines) + "\n"


def _gres_conf(node: str, devices: list[Path]) -> str:
    files = ",".join(str(path) for path in devices)
    return f"AutoDetect=off\nNodeName={node} Name=gpu Type={GPU_TYPE} File={files}\n"


# --------------------------------------------------------------------------
# Public API


@dataclass(eq=False)
class SlurmCluster:
    """A running single-node cluster: config, client environment and helpers."""

    root: Path
    conf: Path
    node: str
    env: dict[str, str]
    ctld_port: int
    slurmd_port: int
    munge_socket: Path
    partitions: tuple[str, ...] = tuple(PARTITIONS)
    default_partition: str = next(iter(PARTITIONS))
    gpu_type: str = GPU_TYPE
    gpu_count: int = GPU_COUNT
    cpus: int = CPUS
    gpu_devices: list[Path] = field(default_factory=list)
    _procs: dict[str, subprocess.Popen] = field(default_factory=dict, repr=False)

    @property
    def workdir(self) -> Path:
        """Default cwd of run(): sbatch's slurm-<id>.out files land here."""
        return self.root / "work"

    @property
    def log_dir(self) -> Path:
        return self.root / "log"

    @property
    def jobcomp_path(self) -> Path:
        """jobcomp/filetxt: one `JobId=... JobState=...` line per finished job."""
        return self.log_dir / "jobcomp.log"

    def run(self, args: Sequence[str] | str, *, timeout: float = 60, check: bool = False,
            **kwargs) -> subprocess.CompletedProcess:
        """Run a Slurm client command (``["sbatch", ...]`` or a shell-split string).

        It runs with :attr:`env` in :attr:`workdir` unless told otherwise; text
        output is captured. ``check=True`` raises with stderr on a non-zero exit.
        """
        argv = shlex.split(args) if isinstance(args, str) else list(args)
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        kwargs.setdefault("cwd", self.workdir)
        env = {**self.env, **kwargs.pop("env", {})}
        proc = subprocess.run(argv, env=env, timeout=timeout, **kwargs)
        if check and proc.returncode != 0:
            raise RuntimeError(f"`{shlex.join(argv)}` failed ({proc.returncode}): {proc.stderr or proc.stdout}")
        return proc

    def sbatch(self, *args: str, script: str | None = None) -> int:
        """Submit a batch job (``--parsable``); script goes to stdin. Returns the job id."""
        proc = self.run(["sbatch", "--parsable", *args], input=script, check=True)
        return int(proc.stdout.strip().split(";")[0])

    def job_state(self, job_id: int) -> tuple[str, str] | None:
        """(state, reason) from squeue, e.g. ("PENDING", "Resources"); None once it left the queue."""
        proc = self.run(["squeue", "-h", "-j", str(job_id), "-o", "%T %r"])
        line = proc.stdout.strip()
        if proc.returncode != 0 or not line:
            return None
        state, _, reason = line.partition(" ")
        return state, reason

    def job_info(self, job_id: int) -> dict[str, str] | None:
        """`scontrol show job -o` as a dict (JobState, Reason, ExitCode, ...); None once forgotten."""
        proc = self.run(["scontrol", "show", "job", "-o", str(job_id)])
        if proc.returncode != 0 or not proc.stdout.strip():
            return None
        return dict(re.findall(r"(\w+)=(\S*)", proc.stdout))

    def job_end(self, job_id: int) -> dict[str, str] | None:
        """The job's jobcomp record (JobState, ExitCode, StartTime, EndTime, ...) once it ended."""
        if not self.jobcomp_path.exists():
            return None
        for line in self.jobcomp_path.read_text(errors="replace").splitlines():
            record = dict(re.findall(r"(\w+)=(\S*)", line))
            if record.get("JobId") == str(job_id):
                return record
        return None

    def wait_job_state(self, job_id: int, states: Sequence[str], timeout: float = 30) -> tuple[str, str]:
        """Poll squeue until the job is in one of states; return (state, reason)."""
        deadline = time.monotonic() + timeout
        seen = None
        while time.monotonic() < deadline:
            seen = self.job_state(job_id)
            if seen and seen[0] in states:
                return seen
            time.sleep(0.05)
        raise TimeoutError(f"job {job_id} not in {list(states)} after {timeout}s (last: {seen})")

    def wait_job_end(self, job_id: int, timeout: float = 30) -> dict[str, str]:
        """Wait until the job finished; return its jobcomp record (see job_end)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            record = self.job_end(job_id)
            if record:
                return record
            time.sleep(0.05)
        raise TimeoutError(f"job {job_id} did not end within {timeout}s: {self.job_info(job_id)}")

    def cancel_all(self, timeout: float = 15) -> None:
        """scancel every job and wait until the queue is empty."""
        self.run(["scancel", "--full", "--quiet", "-u", "root"])
        self.run(["scancel", "--quiet", "--state=PENDING"])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.run(["squeue", "-h", "-o", "%i"]).stdout.strip():
                return
            time.sleep(0.1)

    def node_state(self) -> str:
        """The node's state as sinfo prints it (idle, mixed, alloc, down*, ...)."""
        states = self.run(["sinfo", "-h", "-N", "-n", self.node, "-o", "%T"]).stdout.split()
        return states[0] if states else ""  # one line per partition, all the same

    def logs(self) -> str:
        """Every daemon log and stderr, for failure messages."""
        parts = []
        for path in sorted(self.log_dir.iterdir()):
            if path.name == "jobcomp.log":
                continue
            text = path.read_text(errors="replace")
            parts.append(f"===== {path.name} =====\n{text[-8000:]}")
        return "\n".join(parts)

    # ---- lifecycle

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        with open(self.log_dir / f"{name}.stderr", "wb") as out:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=self.env,
                                    cwd=self.root, start_new_session=True)
        self._procs[name] = proc
        return proc

    def _check_alive(self) -> None:
        for name, proc in self._procs.items():
            if proc.poll() is not None:
                raise SlurmStartError(f"{name} exited with {proc.returncode}")

    def _wait(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            self._check_alive()
            if time.monotonic() > deadline:
                raise SlurmStartError(f"timed out after {timeout}s waiting for {what}")
            time.sleep(0.05)

    def _start_munged(self) -> None:
        munge = self.root / "munge"
        key = munge / "munge.key"
        mungekey = shutil.which("mungekey", path=_SEARCH_PATH)
        if mungekey:
            subprocess.run([mungekey, "--create", "--keyfile", str(key)], check=True, capture_output=True)
        else:
            key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self._spawn("munged", [
            DAEMONS["munged"], "--foreground", "--force",
            f"--socket={self.munge_socket}", f"--key-file={key}", f"--pid-file={munge / 'munged.pid'}",
            f"--log-file={self.log_dir / 'munged.log'}", f"--seed-file={munge / 'munged.seed'}",
        ])
        self._wait(self.munge_socket.exists, 10, f"munged socket {self.munge_socket}")

    def _ctld_up(self) -> bool:
        return self.run(["scontrol", "ping"], timeout=10).stdout.count("UP") > 0

    def _node_idle(self) -> bool:
        return self.node_state() == "idle"

    def start(self) -> None:
        self._start_munged()
        self._spawn("slurmctld", [DAEMONS["slurmctld"], "-D", "-i", "-f", str(self.conf)])
        self._wait(self._ctld_up, 30, "slurmctld to answer `scontrol ping`")
        self._spawn("slurmd", [DAEMONS["slurmd"], "-D", "-N", self.node, "-f", str(self.conf)])
        self._wait(self._node_idle, 30, f"node {self.node} to be idle in sinfo")

    def stop(self) -> None:
        """Cancel every job, stop slurmd, slurmctld and munged, kill leftovers."""
        with contextlib.suppress(Exception):
            if all(proc.poll() is None for proc in self._procs.values()):
                self.cancel_all()
        for name in ("slurmd", "slurmctld", "munged"):
            if name in self._procs:
                _stop(self._procs[name])
        tag = self.env[TAG_ENV]
        _kill_pids(_tagged_pids(lambda owner: f"{PREFIX}-{owner}" == tag))

    @classmethod
    @contextlib.contextmanager
    def session(cls) -> Iterator["SlurmCluster"]:
        """Start a cluster in a fresh temp dir; stop it and remove the dir afterwards."""
        tag = f"{PREFIX}-{os.getpid()}"
        root = Path(tempfile.mkdtemp(prefix=f"{tag}-"))
        try:
            cluster = cls._create(root, tag)
            try:
                cluster.start()
            except Exception as error:
                cluster.stop()
                raise SlurmStartError(f"Slurm test cluster did not start: {error}\n{cluster.logs()}") from error
            try:
                yield cluster
            finally:
                cluster.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)

    @classmethod
    def _create(cls, root: Path, tag: str) -> "SlurmCluster":
        root.chmod(0o755)
        for sub in ("state", "spool", "log", "run", "munge", "dev", "work"):
            (root / sub).mkdir(mode=0o755)
        node = socket.gethostname().split(".")[0]
        devices = []
        for index in range(GPU_COUNT):
            device = root / "dev" / f"nvidia{index}"
            os.mknod(device, 0o666 | 0o020000, os.makedev(1, 3))  # a character device like /dev/null
            devices.append(device)
        munge_socket = root / "munge" / "munge.socket"
        ctld_port, slurmd_port = _free_port(), _free_port()
        while slurmd_port == ctld_port:
            slurmd_port = _free_port()
        conf = root / "slurm.conf"
        conf.write_text(_slurm_conf(root, node, ctld_port, slurmd_port, munge_socket))
        (root / "gres.conf").write_text(_gres_conf(node, devices))
        (root / "plugstack.conf").write_text("")
        # Slurm variables of an enclosing job or the user's shell would leak into every client command.
        client_prefixes = ("SLURM_", "SBATCH_", "SALLOC_", "SRUN_", "SQUEUE_", "SINFO_", "SCONTROL_")
        env = {key: value for key, value in os.environ.items() if not key.startswith(client_prefixes)}
        env.update(SLURM_CONF=str(conf), PATH=_SEARCH_PATH, **{TAG_ENV: tag})
        return cls(root=root, conf=conf, node=node, env=env, ctld_port=ctld_port, slurmd_port=slurmd_port,
                   munge_socket=munge_socket, gpu_devices=devices)


def unavailable_reason() -> str | None:
    """Why the Slurm test cluster can't run here, or None when it can."""
    if os.geteuid() != 0:
        return "the Slurm test cluster needs root (SlurmUser=root, mknod, munged)"
    missing = [path for path in DAEMONS.values() if not os.access(path, os.X_OK)]
    missing += [tool for tool in CLIENTS if shutil.which(tool, path=_SEARCH_PATH) is None]
    if missing:
        return f"missing {', '.join(missing)}: run scripts/install-system-deps.sh"
    return None


def require_slurm() -> None:
    """Skip when NBMODAL_SKIP_SLURM_TESTS=1; fail loudly when the cluster can't run."""
    if os.environ.get(SKIP_ENV) == "1":
        pytest.skip(f"Slurm tests disabled by {SKIP_ENV}=1")
    reason = unavailable_reason()
    if reason:
        pytest.fail(f"{reason} (set {SKIP_ENV}=1 to skip Slurm tests)", pytrace=False)


# --------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """A real single-node Slurm cluster (slurmctld, slurmd, munged) with 4 fake H100 GPUs."""
    require_slurm()
    cleanup_stale()
    with contextlib.ExitStack() as stack:
        try:
            cluster = stack.enter_context(SlurmCluster.session())
        except SlurmStartError as error:
            pytest.fail(f"{error}\n(set {SKIP_ENV}=1 to skip Slurm tests)", pytrace=False)
        yield cluster
