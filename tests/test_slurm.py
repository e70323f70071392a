"""The workflow on a real single-node SLURM cluster (tests/slurm/cluster.sh), as root."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import pandas as pd
import pytest
from pydicom.data import get_testdata_file

from dicomprep import synthetic

from .workflow_helpers import REPO, snakemake, tiff_bytes

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"


@pytest.fixture(scope="module")
def cluster():
    if os.geteuid() != 0:
        pytest.skip("the SLURM test starts slurmctld/slurmd/munged and needs root")
    # munged wants every folder above its socket traversable by all: not pytest's tmp.
    state = tempfile.mkdtemp(prefix="dicomprep-slurm-", dir="/tmp")
    os.chmod(state, 0o755)
    env = {**os.environ, "DICOMPREP_SLURM_DIR": state}
    start = subprocess.run(["bash", str(CLUSTER), "start"], env=env, capture_output=True, text=True)
    assert start.returncode == 0, start.stdout + start.stderr
    exports = subprocess.run(
        ["bash", str(CLUSTER), "env"], env=env, capture_output=True, text=True, check=True
    ).stdout
    for line in exports.splitlines():
        if line.startswith("export ") and "=" in line:
            key, value = line[len("export ") :].split("=", 1)
            env[key] = value.strip("'\"")
    yield env
    subprocess.run(["bash", str(CLUSTER), "stop", "--purge"], env=env, capture_output=True)
    shutil.rmtree(state, ignore_errors=True)


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
    assert "SLURM run ID" in first.stdout + first.stderr or shard_logs

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
