"""The Slurm test cluster itself is real: jobs run, GPUs are GRES, limits are enforced.

(A walltime kill takes 60-90 s in Slurm; tests/test_slurm.py sees one through nbmodal.)"""

from __future__ import annotations

import socket
import time

import pytest

pytestmark = pytest.mark.slurm

# Also listable in conftest.py; a plugin loaded twice is registered once.
pytest_plugins = ["slurmcluster"]

def test_srun_runs_on_the_node(slurm_cluster):
    assert slurm_cluster.node == socket.gethostname().split(".")[0]
    started = time.monotonic()
    proc = slurm_cluster.run(["srun", "-N1", "hostname"])
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == slurm_cluster.node
    assert elapsed < 5, f"srun hostname took {elapsed:.2f}s"


def test_cluster_shape(slurm_cluster):
    info = slurm_cluster.run(["sinfo", "-h", "-o", "%P %c %m %G %l"], check=True).stdout.split("\n")
    rows = sorted(line.split() for line in info if line)
    assert rows == [
        ["gpu*", "4", "8000", "gpu:h100:4", "10:00"],
        ["short", "4", "8000", "gpu:h100:4", "1:00"],
    ]
    assert slurm_cluster.partitions == ("gpu", "short")
    assert slurm_cluster.gpu_count == 4


def test_gres_sets_cuda_visible_devices(slurm_cluster):
    proc = slurm_cluster.run(["srun", "--gres=gpu:h100:2", "sh", "-c", 'echo "$CUDA_VISIBLE_DEVICES"'])
    assert proc.returncode == 0, proc.stderr
    indices = proc.stdout.strip().split(",")
    assert len(indices) == 2 and all(index.isdigit() for index in indices), proc.stdout
    assert len(set(indices)) == 2


def test_batch_job_runs_and_completes(slurm_cluster):
    started = time.monotonic()
    job = slurm_cluster.sbatch("--gres=gpu:h100:1", "-o", "batch-%j.out",
                               script='#!/bin/sh\necho "gpus=$CUDA_VISIBLE_DEVICES job=$SLURM_JOB_ID"\n')
    record = slurm_cluster.wait_job_end(job)
    elapsed = time.monotonic() - started
    assert record["JobState"] == "COMPLETED" and record["ExitCode"] == "0:0", record
    output = (slurm_cluster.workdir / f"batch-{job}.out").read_text()
    assert output.strip() in {f"gpus={index} job={job}" for index in range(4)}, output
    assert elapsed < 10, f"sbatch to completion took {elapsed:.2f}s"


def test_failing_batch_job_is_failed(slurm_cluster):
    job = slurm_cluster.sbatch("-o", "/dev/null", script="#!/bin/sh\nexit 3\n")
    record = slurm_cluster.wait_job_end(job)
    assert (record["JobState"], record["ExitCode"]) == ("FAILED", "3:0"), record


def test_gpus_are_exclusive_and_jobs_queue(slurm_cluster):
    script = "#!/bin/sh\nexec sleep 300\n"
    first = slurm_cluster.sbatch("--gres=gpu:h100:3", "-o", "/dev/null", script=script)
    second = slurm_cluster.sbatch("--gres=gpu:h100:3", "-o", "/dev/null", script=script)
    try:
        assert slurm_cluster.wait_job_state(first, ["RUNNING"])[0] == "RUNNING"
        deadline = time.monotonic() + 10
        while (state := slurm_cluster.job_state(second)) != ("PENDING", "Resources"):
            assert time.monotonic() < deadline, f"second job: {state}"
            time.sleep(0.1)
        assert slurm_cluster.job_state(first)[0] == "RUNNING"
        # Freeing the GPUs lets the queued job start.
        slurm_cluster.run(["scancel", str(first)], check=True)
        assert slurm_cluster.wait_job_state(second, ["RUNNING"])[0] == "RUNNING"
    finally:
        slurm_cluster.run(["scancel", str(first), str(second)])
    assert slurm_cluster.wait_job_end(first)["JobState"] == "CANCELLED"
    assert slurm_cluster.wait_job_end(second)["JobState"] == "CANCELLED"


def test_scancel_ends_a_running_job(slurm_cluster, tmp_path):
    marker = tmp_path / "still-running"
    job = slurm_cluster.sbatch("-o", "/dev/null", script=f"#!/bin/sh\nwhile true; do touch {marker}; sleep 0.1; done\n")
    slurm_cluster.wait_job_state(job, ["RUNNING"])
    started = time.monotonic()
    slurm_cluster.run(["scancel", str(job)], check=True)
    record = slurm_cluster.wait_job_end(job, timeout=15)
    assert record["JobState"] == "CANCELLED", record
    assert time.monotonic() - started < 10
    # The job's processes are gone: the marker stops being touched.
    time.sleep(0.5)
    marker.unlink()
    time.sleep(0.5)
    assert not marker.exists()
    assert slurm_cluster.job_state(job) is None


def test_invalid_partition_fails_at_once(slurm_cluster):
    started = time.monotonic()
    proc = slurm_cluster.run(["sbatch", "--partition=nope", "--wrap=true"])
    assert proc.returncode != 0
    assert "invalid partition" in proc.stderr.lower(), proc.stderr
    assert time.monotonic() - started < 5
    proc = slurm_cluster.run(["srun", "--partition=nope", "true"])
    assert proc.returncode != 0
    assert "invalid partition" in proc.stderr.lower(), proc.stderr


def test_impossible_requests_fail_at_submit(slurm_cluster):
    # EnforcePartLimits=ALL: over MaxTime is refused rather than left pending.
    proc = slurm_cluster.run(["sbatch", "--partition=short", "--time=00:05:00", "--wrap=true"])
    assert proc.returncode != 0
    assert "time limit is invalid" in proc.stderr.lower(), proc.stderr
    for gres in ("gpu:h100:5", "gpu:a100:1"):
        proc = slurm_cluster.run(["sbatch", f"--gres={gres}", "--wrap=true"])
        assert proc.returncode != 0
        assert "requested node configuration is not available" in proc.stderr.lower(), proc.stderr
