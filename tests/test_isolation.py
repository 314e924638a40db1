"""Two Unix users on one host, each with their own agent: neither reaches the other's (README "Threat model").

The owner (tests/isolation_user.py owner) starts an agent in a state dir made beforehand with loose
bits (as `mkdir -p` under umask 022 makes it), stores a secret, a volume, a Dict and an image, keeps
containers running, and has its containers probe the agent user's ~/.ssh, the agent's token (also
through /proc/AGENT/root) and a sibling container's private /tmp and environment. The intruder, another
user with its own agent, tries the owner's state dir and every store in it, the owner's agent with its
own token and with none, a signal to the owner's container and agent, and its own agent asked to attach
to or stop the owner's run. Users are made as tests/sshhosts.py makes them (root, useradd).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from sshhosts import PREFIX, _delete_user, _sh_retrying, require_ssh_hosts

pytestmark = pytest.mark.ssh

SCRIPT = Path(__file__).with_name("isolation_user.py")
REPO = SCRIPT.parent.parent
TIMEOUT_S = 240


class User:
    def __init__(self, role: str) -> None:
        self.name = f"{PREFIX}-{os.getpid()}-{role}"
        self.home = Path("/home") / self.name
        _delete_user(self.name)
        _sh_retrying("useradd", "-m", "-d", str(self.home), "-s", "/bin/bash", self.name)
        _sh_retrying("usermod", "-p", "*", self.name)
        entry = pwd.getpwnam(self.name)
        self.uid, self.gid = entry.pw_uid, entry.pw_gid

    def own(self, path: Path, mode: int) -> None:
        os.chown(path, self.uid, self.gid)
        os.chmod(path, mode)

    def start(self, role: str) -> subprocess.Popen:
        """tests/isolation_user.py ROLE as this user, in a clean environment with its own nbmodal home."""
        python = _python_for_users()
        env = [f"HOME={self.home}", f"USER={self.name}", f"PATH={os.path.dirname(sys.executable)}:/usr/bin:/bin",
               f"NBMODAL_HOME={self.home}/.nbmodal", "NBMODAL_SCALEDOWN_WINDOW=60", "PYTHONDONTWRITEBYTECODE=1"]
        return subprocess.Popen(["runuser", "-u", self.name, "--", "env", "-i", *env, python, str(SCRIPT), role],
                                cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)

    def remove(self) -> None:
        _delete_user(self.name)  # its processes (agent, containers) too
        shutil.rmtree(self.home, ignore_errors=True)


def _python_for_users() -> str:
    """An interpreter other users may run, with this checkout and the test venv's packages.

    The test's own interpreter may live where only root can reach it (pyenv under /root). Then: a venv
    of the system's Python of the same minor version whose site-packages *is* the test venv's (a
    symlink), so its packages count as installed ones (serialization.py pickles them by name).
    """
    if _everyone_may_run(os.path.realpath(sys.executable)):
        return sys.executable
    system = shutil.which(f"python{sys.version_info[0]}.{sys.version_info[1]}", path="/usr/local/bin:/usr/bin:/bin")
    if system is None or not _everyone_may_run(os.path.realpath(system)):
        pytest.fail(f"no Python {sys.version_info[0]}.{sys.version_info[1]} that other users may run "
                    f"({os.path.realpath(sys.executable)} is not reachable by them)", pytrace=False)
    venv = Path(tempfile.gettempdir()) / f"{PREFIX}-{os.getpid()}-isolation-venv"
    if not venv.exists():
        subprocess.run([system, "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True)
        ours = next(p for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix))
        theirs = next(venv.glob("lib/python*/site-packages"))
        shutil.rmtree(theirs)
        theirs.symlink_to(ours)
    return str(venv / "bin" / "python")


def _everyone_may_run(path: str) -> bool:
    return all(os.stat(p).st_mode & stat.S_IXOTH for p in [*Path(path).parents, Path(path)])


def _refused(outcome: str) -> bool:
    return not outcome.startswith("ok:")


@pytest.fixture(scope="module")
def two_users():
    require_ssh_hosts()  # root and the user tools, as the SSH test hosts need
    owner, intruder = User("owner"), User("intruder")
    try:
        ssh = owner.home / ".ssh"
        ssh.mkdir()
        (ssh / "id_ed25519").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nnot a real key\n")
        owner.own(ssh, 0o700)
        owner.own(ssh / "id_ed25519", 0o600)
        # The state dir as `mkdir -p ~/.nbmodal/agent` leaves it under umask 022: the agent must close it.
        for path in (owner.home / ".nbmodal", owner.home / ".nbmodal" / "agent"):
            path.mkdir()
            owner.own(path, 0o755)
        yield owner, intruder
    finally:
        owner.remove()
        intruder.remove()


@pytest.fixture(scope="module")
def probed(two_users):
    """The owner's report and the intruder's, while the owner's containers run."""
    owner, intruder = two_users
    proc = owner.start("owner")
    try:
        line = proc.stdout.readline()
        if not line:
            pytest.fail(f"the owner's script failed:\n{proc.stderr.read()[-4000:]}")
        theirs = json.loads(line)
        attempt = intruder.start("intruder")
        out, err = attempt.communicate(line, timeout=TIMEOUT_S)
        assert attempt.returncode == 0, err[-4000:]
        outcomes = json.loads(out.strip().splitlines()[-1])
        proc.stdin.close()
        proc.wait(timeout=TIMEOUT_S)
        assert proc.returncode == 0, proc.stderr.read()[-4000:]
        return theirs, outcomes
    finally:
        if proc.poll() is None:
            proc.kill()


def test_the_state_dir_is_the_owners_alone_whatever_modes_it_was_made_with(probed):
    theirs, _ = probed
    state = Path(theirs["state_dir"])
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / "agent.json").stat().st_mode) == 0o600  # its agent still runs


def test_another_user_reads_nothing_of_the_owners_agent(probed):
    theirs, outcomes = probed
    for what in ("agent_json", "state_dir", "runs", "volumes", "secrets", "images", "blobs", "containers",
                 "storage.db", "agent.log"):
        assert outcomes[what].startswith("PermissionError"), (what, outcomes[what])
    assert theirs["run_ids"] and all(outcomes[f"events:{run}"].startswith("PermissionError")
                                     for run in theirs["run_ids"])


def test_another_users_token_or_none_is_refused_by_the_owners_agent(probed):
    _, outcomes = probed
    assert "UNAUTHENTICATED" in outcomes["hello_with_my_token"], outcomes["hello_with_my_token"]
    assert "UNAUTHENTICATED" in outcomes["list_runs_without_token"], outcomes["list_runs_without_token"]


def test_another_user_can_neither_signal_nor_attach_to_nor_stop_the_owners_runs(probed):
    theirs, outcomes = probed
    assert outcomes["signal_container"].startswith("PermissionError"), outcomes["signal_container"]
    assert outcomes["signal_agent"].startswith("PermissionError"), outcomes["signal_agent"]
    for run in theirs["run_ids"]:
        assert _refused(outcomes[f"attach_via_mine:{run}"]) and "no run" in outcomes[f"attach_via_mine:{run}"]
        assert _refused(outcomes[f"stop_via_mine:{run}"])
        assert run not in outcomes["my_runs"]


def test_a_container_sees_neither_the_agent_users_ssh_keys_nor_the_agents_token(probed):
    theirs, _ = probed
    probe = theirs["container_probe"]
    for what in ("ssh_key", "agent_json", "agent_json_via_proc", "agent_environ", "agent_open_fds"):
        assert _refused(probe[what]), (what, probe[what])
    assert probe["ssh_dir"] == "ok: []"  # an empty directory where the keys were


def test_a_container_reads_nothing_of_another_containers_private_tmp_or_environment(probed):
    theirs, _ = probed
    probe = theirs["sibling_probe"]
    for what in ("private_tmp", "environ", "mem_maps"):
        assert probe[what].startswith("PermissionError"), (what, probe[what])
    assert probe["own_tmp_has_it"] == "ok: False"
