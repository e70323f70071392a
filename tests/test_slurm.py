"""The workflow on a real single-node SLURM cluster (tests/slurm/cluster.sh), as root.

Skipped, saying why, when not root or when the SLURM Debian packages are missing (.ci/run
installs them). The cluster uses machine-wide ports and /etc/slurm/slurm.conf, so a test
run holds an flock on cluster.sh's machine lock from start to stop: a second concurrent
run waits for the first instead of breaking it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
from dicomprep_testdata import synthetic
from pydicom.data import get_testdata_file

from .workflow_helpers import REPO, snakemake, tiff_bytes

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"
NOT_INSTALLED = 3  # cluster.sh start: the SLURM packages are missing
LOCK_WAIT_SECONDS = 1800


def cluster_sh(*args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(CLUSTER), *args], env=env, capture_output=True, text=True, timeout=300
    )


@contextlib.contextmanager
def machine_lock(path: Path, wait: float = LOCK_WAIT_SECONDS):
    """Hold an exclusive flock on ``path``, waiting (and saying so) while another run has it."""
    with open(path, "a") as handle:
        deadline = time.monotonic() + wait
        told = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not told:
                    print(f"waiting for another SLURM test run ({path})", file=sys.stderr)
                    told = True
                if time.monotonic() > deadline:
                    pytest.fail(f"another SLURM test run held {path} for {wait:.0f} s")
                time.sleep(1)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(scope="module")
def cluster():
    if os.geteuid() != 0:
        pytest.skip("the SLURM test starts slurmctld/slurmd/munged and needs root")
    lock = Path(cluster_sh("lock-path").stdout.strip())
    with machine_lock(lock):
        # munged wants every folder above its socket traversable by all: not pytest's tmp.
        state = tempfile.mkdtemp(prefix="dicomprep-slurm-", dir="/tmp")
        os.chmod(state, 0o755)
        env = {**os.environ, "DICOMPREP_SLURM_DIR": state}
        start = cluster_sh("start", env=env)
        if start.returncode == NOT_INSTALLED:
            shutil.rmtree(state, ignore_errors=True)
            pytest.skip(start.stderr.strip().replace("cluster.sh: error: ", ""))
        try:
            assert start.returncode == 0, start.stdout + start.stderr
            for line in cluster_sh("env", env=env).stdout.splitlines():
                if line.startswith("export ") and "=" in line:
                    key, value = line[len("export ") :].split("=", 1)
                    env[key] = value.strip("'\"")
            yield env
        finally:
            cluster_sh("stop", "--purge", env=env)
            shutil.rmtree(state, ignore_errors=True)


def slurm_jobs(job_ids: list[str], env) -> dict[str, tuple[str, str]]:
    """{job id: (comment, state)} as slurmctld reports them (finished jobs stay 5 min)."""
    out = subprocess.run(
        ["squeue", "-h", "-t", "all", "-j", ",".join(job_ids), "-o", "%i|%k|%T"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {i: (comment, state) for i, comment, state in (row.split("|") for row in out.split())}


def build_source(folder):
    for k in range(4):
        ds = synthetic.mammogram(rows=416, columns=320, seed=k, laterality="LR"[k % 2])
        synthetic.write(ds, folder / f"mg{k}.dcm")
    for name in ("CT_small.dcm", "MR2_J2KR.dcm"):
        shutil.copy(get_testdata_file(name), folder / name)


def config(tmp):
    return {
        "source": tmp / "src",
        "output": tmp / "out",
        "work": tmp / "work",
        "shards": 3,
        "crop": True,
        "size": [128, 160],
    }


def run_on_slurm(tmp, env, check=True):
    return snakemake(
        tmp,
        "--profile",
        str(REPO / "profiles" / "slurm"),
        config=config(tmp),
        check=check,
        env=env,
        timeout=600,
    )


def test_workflow_on_slurm_equals_local_and_reruns_nothing(cluster, tmp_path):
    local, remote = tmp_path / "local", tmp_path / "slurm"
    build_source(local / "src")
    shutil.copytree(local / "src", remote / "src")
    snakemake(local, config=config(local))
    first = run_on_slurm(remote, cluster)

    shard_lists = sorted((remote / "work" / "shards").glob("*.tsv"))
    slurm_logs = list((remote / ".snakemake" / "slurm_logs").rglob("*.log"))
    shard_logs = [p for p in slurm_logs if "preprocess_shard" in str(p)]
    assert len(shard_lists) >= 2
    assert len(shard_logs) == len(shard_lists), first.stderr[-2000:]  # one SLURM job each
    # slurmctld itself knows each shard's job (log files are named by job id), finished
    jobs = slurm_jobs([p.stem for p in shard_logs], cluster)
    assert sorted(comment for comment, _ in jobs.values()) == [
        f"rule_preprocess_shard_wildcards_{p.name.removesuffix('.tsv')}" for p in shard_lists
    ]
    assert {state for _, state in jobs.values()} == {"COMPLETED"}

    assert tiff_bytes(remote / "out") == tiff_bytes(local / "out")
    ours = pd.read_csv(remote / "out" / "manifest.csv").drop(columns="inode")
    theirs = pd.read_csv(local / "out" / "manifest.csv").drop(columns="inode")
    pd.testing.assert_frame_equal(ours, theirs)

    second = run_on_slurm(remote, cluster)
    assert "Nothing to be done" in second.stdout + second.stderr


def test_failed_shard_is_reported_and_a_rerun_completes(cluster, tmp_path):
    build_source(tmp_path / "src")
    ds = synthetic.mammogram(rows=416, columns=320, seed=0)
    blocker = tmp_path / "out" / str(ds.StudyInstanceUID)
    blocker.parent.mkdir(parents=True)
    blocker.write_text("a file where the study folder must go")  # the shard cannot write
    failed = run_on_slurm(tmp_path, cluster, check=False)
    assert failed.returncode != 0
    assert "preprocess_shard" in failed.stderr and "Error" in failed.stderr

    blocker.unlink()
    run_on_slurm(tmp_path, cluster)
    manifest = pd.read_csv(tmp_path / "out" / "manifest.csv")
    assert len(manifest) == 6


def test_start_without_the_packages_says_so_and_installs_nothing(tmp_path):
    """cluster.sh never runs apt-get on its own: it names what is missing (exit 3)."""
    if os.geteuid() != 0:
        pytest.skip("cluster.sh start needs root")
    stubs = tmp_path / "bin"
    stubs.mkdir()
    (stubs / "dpkg-query").write_text("#!/bin/sh\necho not-installed\n")
    (stubs / "apt-get").write_text(f"#!/bin/sh\ntouch {tmp_path}/apt-get-ran\nexit 1\n")
    for stub in stubs.iterdir():
        stub.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{stubs}:{os.environ['PATH']}",
        "DICOMPREP_SLURM_DIR": str(tmp_path / "state"),
    }
    start = cluster_sh("start", env=env)
    assert start.returncode == NOT_INSTALLED
    assert "SLURM is not installed" in start.stderr
    assert "slurmctld slurmd slurm-client munge" in start.stderr
    assert not (tmp_path / "apt-get-ran").exists() and not (tmp_path / "state").exists()


def test_a_second_run_waits_for_the_machine_lock(tmp_path):
    """While another process holds the lock, machine_lock waits; then it gets it."""
    lock = tmp_path / "slurm.lock"
    holder = subprocess.Popen(
        ["flock", str(lock), "sh", "-c", "echo held; sleep 2"], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "held"
    started = time.monotonic()
    with machine_lock(lock, wait=60):
        waited = time.monotonic() - started
        assert holder.wait(timeout=5) == 0  # the holder is gone
    assert waited > 1.0
    with pytest.raises(pytest.fail.Exception), open(lock) as other:
        fcntl.flock(other, fcntl.LOCK_EX)
        with machine_lock(lock, wait=1):
            pass
