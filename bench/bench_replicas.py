"""A volume's replica on a second host catching up, against rsync of the same tree; prints one JSON object.

Run by hand as root (real sshd servers in network namespaces, tests/sshhosts.py), logs on stderr:

    sudo .venv/bin/python bench/bench_replicas.py > replicas.json

Hosts alpha and beta can't reach each other; this machine reaches both over SSH (as a laptop
reaches two GPU boxes). A 1 GiB volume of 100 files of 10.24 MiB (random content) has its
home on alpha; beta's replica is synced once. Then, three times, one file (1 %) gets new
random content at alpha and is committed, and:

- ``run_sees_change_s``: a function on beta that mounts the volume and hashes the changed
  file (checked against the new content here): the replica syncs before the run starts
  (manifest from alpha, only the changed file moves, alpha -> this machine -> beta, SHA-256
  checked), the run, and its commit on exit.
- ``rsync_s``: ``rsync -a --delete`` of alpha's volume directory (the same tree, read where
  alpha keeps it, which is this machine's filesystem) to a copy on beta over SSH, synced once
  before in the same way: its quick check of the 100 files plus the changed file's transfer.
- ``trivial_run_s``: a warm function call on beta without the volume, for scale.
- ``replica_files_replaced``: per trial, the files of beta's replica that arrived anew (by inode):
  only the changed one should.
- ``first_sync_1gib_s`` / ``first_rsync_1gib_s``: the first, whole copy of each, for context.

Medians of the three; ``vs_rsync`` is ``run_sees_change_s / rsync_s`` (target <= 1.5).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
os.environ["NBMODAL_HOME"] = tempfile.mkdtemp(prefix="nbmodal-bench-replicas-")
atexit.register(shutil.rmtree, os.environ["NBMODAL_HOME"], ignore_errors=True)
FILES, FILE_BYTES = 100, (1 << 30) // 100
VOLUME = "bench-replica"


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def main() -> None:
    import sshhosts

    import nbmodal
    from nbmodal import commands

    result: dict = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "loadavg_start": os.getloadavg()}
    sshhosts.cleanup_stale()
    with sshhosts.SshClient.session() as client, contextlib.ExitStack() as stack:
        alpha = client.start_host(stack, "alpha", offline=True, index=0)
        beta = client.start_host(stack, "beta", offline=True, index=1)
        for host in (alpha, beta):
            commands.host_add(host.name, host.name, str(host.config_path))
        app = nbmodal.App("bench-replicas")

        @app.function(host="beta", volumes={"/data": VOLUME})
        def sha256_on_beta(path: str) -> str:
            import hashlib

            return hashlib.sha256(open(path, "rb").read()).hexdigest()

        @app.function(host="beta")
        def trivial() -> int:
            return 1

        log("making the 1 GiB volume on alpha ...")
        volume = nbmodal.Volume.from_name(VOLUME, create_if_missing=True, host="alpha")
        tree = alpha.home / ".nbmodal" / "agent" / "volumes" / VOLUME
        for i in range(FILES):
            _write_random(tree / f"part-{i:03d}.bin", alpha)
        volume.commit()
        trivial.remote()  # beta's agent installed and warm: the first sync below is only the sync
        log("first sync of beta's replica, and of the rsync copy ...")
        started = time.perf_counter()
        sha256_on_beta.remote("/data/part-000.bin")
        result["first_sync_1gib_s"] = round(time.perf_counter() - started, 3)
        rsync = ["rsync", "-a", "--delete", "-e", f"ssh -F {alpha.config_path}", f"{tree}/", "beta:rsync-copy/"]
        started = time.perf_counter()
        subprocess.run(rsync, check=True)
        result["first_rsync_1gib_s"] = round(time.perf_counter() - started, 3)
        trivial.remote()
        replica = beta.home / ".nbmodal" / "agent" / "volumes" / VOLUME
        runs, rsyncs, trivials, replaced = [], [], [], []
        for trial in range(3):
            changed = tree / f"part-{10 * trial + 5:03d}.bin"
            _write_random(changed, alpha)
            volume.commit()
            inodes = _inodes(replica)
            started = time.perf_counter()
            assert sha256_on_beta.remote(f"/data/{changed.name}") == _sha256(changed)  # the new content
            runs.append(time.perf_counter() - started)
            after = _inodes(replica)
            replaced.append(sorted(p for p in after if inodes.get(p) != after[p]))  # files that arrived anew
            started = time.perf_counter()
            subprocess.run(rsync, check=True)
            rsyncs.append(time.perf_counter() - started)
            started = time.perf_counter()
            trivial.remote()
            trivials.append(time.perf_counter() - started)
            log(f"trial {trial}: run {runs[-1]:.2f} s, rsync {rsyncs[-1]:.2f} s, trivial {trivials[-1]:.2f} s, "
                f"replica files replaced {replaced[-1]}")
        copies = volume.versions()
        assert copies["alpha"]["version"] == copies["beta"]["version"], copies
        result.update(run_sees_change_s=round(statistics.median(runs), 3),
                      rsync_s=round(statistics.median(rsyncs), 3),
                      trivial_run_s=round(statistics.median(trivials), 3),
                      runs_s=[round(r, 3) for r in runs], rsyncs_s=[round(r, 3) for r in rsyncs],
                      replica_files_replaced=replaced)
        result["vs_rsync"] = round(result["run_sees_change_s"] / result["rsync_s"], 2)
    result["loadavg_end"] = os.getloadavg()
    print(json.dumps(result, indent=1))


def _inodes(tree: Path) -> dict[str, int]:
    """path -> inode of each file of beta's replica (a file that arrives is renamed into place: a new inode)."""
    return {str(p.relative_to(tree)): p.stat().st_ino for p in tree.rglob("*") if p.is_file()}


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_random(path: Path, host) -> None:
    """New random content, written where the host's agent keeps the volume, owned by the host's user."""
    import pwd

    with open(path, "wb") as f:
        f.write(os.urandom(FILE_BYTES))
    user = pwd.getpwnam(host.user)
    os.chown(path, user.pw_uid, user.pw_gid)


if __name__ == "__main__":
    main()
