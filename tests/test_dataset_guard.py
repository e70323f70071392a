"""A dataset is never lost to a mistake: an empty or switched source, a second work folder,
an unwritable output, a config typo; each ends in one line before anything is converted
or removed, and the summary says what the run did."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dicomprep_testdata import synthetic

from dicomprep.options import Options
from dicomprep.run.plan import plan_shards
from dicomprep.run.removal import REMOVAL_FLOOR, RemovalRefused, removal_limit
from dicomprep.run.shard import run_shard

from . import test_storage_server as server
from .reliability_helpers import run_without_permission_override
from .workflow_helpers import snakemake, snakemake_command, tiff_states

SMALL = {"size": [16, 16], "crop": False}
moto_server, bucket = server.moto_server, server.bucket  # the fixtures of a local S3
TOOL = Path(sys.executable).parent / "dicom-preprocess"


def write_source(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """``count`` tiny synthetic mammograms (distinct UIDs for distinct seeds)."""
    return [
        synthetic.write(
            synthetic.mammogram(rows=32, columns=24, seed=seed + k), folder / f"m{k:03d}.dcm"
        )
        for k in range(count)
    ]


def settings(tmp: Path, **extra) -> dict:
    return {
        "source": tmp / "src",
        "output": tmp / "out",
        "work": tmp / "work",
        **SMALL,
        **extra,
    }


def our_lines(proc: subprocess.CompletedProcess, text: str) -> list[str]:
    return [line for line in (proc.stdout + proc.stderr).splitlines() if text in line]


def assert_one_line_refusal(proc, text: str) -> str:
    """The run failed with exactly one line holding ``text`` and no traceback."""
    printed = proc.stdout + proc.stderr
    assert proc.returncode != 0, printed[-2000:]
    lines = our_lines(proc, text)
    assert len(lines) == 1, printed[-3000:]
    for noise in ("Traceback", "InputFunctionException", "Failed validating", "--unlock"):
        assert noise not in printed, printed[-3000:]
    return lines[0]


def summary(proc) -> str:
    [line] = [x for x in proc.stdout.splitlines() if re.match(r"dicomprep: \d+ converted now", x)]
    return line


# -- empty, missing and switched sources ------------------------------------------------


def test_empty_source_keeps_every_tiff_and_fails(tmp_path):
    files = write_source(tmp_path / "src", 3)
    snakemake(tmp_path, config=settings(tmp_path))
    before = tiff_states(tmp_path / "out")
    assert len(before) == 3
    for path in files:  # e.g. an unmounted share: the folder is there, its files are not
        path.unlink()
    proc = snakemake(tmp_path, config=settings(tmp_path), check=False)
    line = assert_one_line_refusal(proc, "holds no files")
    assert str(tmp_path / "src") in line
    assert tiff_states(tmp_path / "out") == before


def test_empty_source_on_the_command_line_is_an_error(tmp_path):
    (tmp_path / "src").mkdir()
    proc = subprocess.run(
        [str(TOOL), str(tmp_path / "src"), str(tmp_path / "out")], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"dicom-preprocess: source '{tmp_path / 'src'}' holds no files (an empty folder or "
        "list); nothing was converted or removed"
    ]


def test_missing_source_is_one_line_without_traceback(tmp_path):
    proc = snakemake(tmp_path, config=settings(tmp_path, source=tmp_path / "gone"), check=False)
    line = assert_one_line_refusal(proc, "does not exist")
    assert line == f"config: source '{tmp_path / 'gone'}' does not exist"


@pytest.fixture(scope="module")
def switched(tmp_path_factory):
    """A dataset of 25 outputs whose source is then pointed at another collection."""
    tmp = tmp_path_factory.mktemp("switched")
    write_source(tmp / "src", 25)
    write_source(tmp / "other", 25, seed=100)
    first = snakemake(tmp, config=settings(tmp))
    before = tiff_states(tmp / "out")
    refused = snakemake(tmp, config=settings(tmp, source=tmp / "other"), check=False)
    return tmp, first, before, refused


def test_switched_source_is_refused_naming_count_list_and_key(switched):
    tmp, _, before, refused = switched
    line = assert_one_line_refusal(refused, "would remove")
    listing = tmp / "work" / "would_remove.txt"
    assert "would remove 25 of the dataset's 25 outputs" in line
    assert f"more than the {REMOVAL_FLOOR} allowed" in line
    assert str(listing) in line and "allow_removal" in line
    assert str(tmp / "src" / "m000.dcm") in line  # an example, by its source
    assert tiff_states(tmp / "out") == before  # nothing removed...
    assert not (tmp / "work" / "removed.txt").exists()
    listed = listing.read_text().splitlines()
    assert sorted(line.split("\t")[0] for line in listed) == sorted(before)
    # ...and the refused plan left the shard lists as they were: a rerun refuses again
    again = snakemake(tmp, config=settings(tmp, source=tmp / "other"), check=False)
    assert_one_line_refusal(again, "would remove 25")
    assert tiff_states(tmp / "out") == before


def test_allow_removal_lets_the_switch_proceed_and_lists_the_removed(switched):
    tmp, first, before, _ = switched
    allowed = snakemake(tmp, config=settings(tmp, source=tmp / "other", allow_removal=True))
    assert summary(allowed).startswith(
        "dicomprep: 25 converted now, 0 reused, 25 removed, 0 failed, 0 skipped, 0 duplicate;"
    )
    removed = (tmp / "work" / "removed.txt").read_text().splitlines()
    assert re.fullmatch(r"# \S+: 25 output\(s\) removed \(source gone\)", removed[0])
    assert sorted(removed[1:]) == sorted(str(tmp / "out" / name) for name in before)
    assert not set(tiff_states(tmp / "out")) & set(before)
    assert len(tiff_states(tmp / "out")) == 25
    assert f"listed in {tmp / 'work' / 'removed.txt'}" in allowed.stdout
    assert not (tmp / "work" / "would_remove.txt").exists()  # the refusal's list is gone
    assert summary(first).startswith("dicomprep: 25 converted now, 0 reused, 0 removed")


def test_the_bound_is_the_floor_or_a_tenth_and_allow_removal_overrides_it():
    assert removal_limit(25) == 20
    assert removal_limit(1000) == 100
    assert removal_limit(1000, True) is None
    assert removal_limit(1000, 5) == 5
    assert removal_limit(1000, 0) == 0


def run_planned_shard(work, out, options, shard):
    """The shard job of ``shard`` as the workflow runs it, on the work folder's plan."""
    return run_shard(
        work / "shards" / f"{shard}.tsv",
        out,
        options,
        journal=work / "journal" / f"{shard}.jsonl",
        results=work / "shards" / f"{shard}.results.jsonl",
    )


def test_shard_jobs_remove_nothing_while_the_plan_refuses(tmp_path):
    """A shard job started anyway (by hand, on a cluster) obeys the refused plan."""
    write_source(tmp_path / "src", 22)
    work, out, options = tmp_path / "work", tmp_path / "out", Options(size=(16, 16))
    [shard], _ = plan_shards(tmp_path / "src", work, 1, output_root=out)

    def run():
        return run_planned_shard(work, out, options, shard)

    assert run().processed == 22
    before = tiff_states(out)
    shutil.rmtree(tmp_path / "src")
    write_source(tmp_path / "src", 1, seed=500)
    with pytest.raises(RemovalRefused, match="would remove 22 of"):
        plan_shards(tmp_path / "src", work, 1, output_root=out)
    assert run().removed == []
    assert set(before) <= set(tiff_states(out))


def test_planning_counts_what_the_shards_then_remove(tmp_path):
    """Sources replaced in place by other images (same names, other UIDs): planning
    names the outputs the shard job removes once allowed, no more and no fewer."""
    files = write_source(tmp_path / "src", 30)
    work, out, options = tmp_path / "work", tmp_path / "out", Options(size=(16, 16))

    def run(shard):
        return run_planned_shard(work, out, options, shard)

    [shard], _ = plan_shards(tmp_path / "src", work, 1, output_root=out)
    run(shard)
    for k, path in enumerate(files[:21]):
        synthetic.write(synthetic.mammogram(rows=32, columns=24, seed=900 + k), path)
    with pytest.raises(RemovalRefused, match="would remove 21 of the dataset's 30 outputs"):
        plan_shards(tmp_path / "src", work, 1, output_root=out)
    listed = (work / "would_remove.txt").read_text().splitlines()
    planned = {str(out / line.split("\t")[0]) for line in listed}
    [shard], _ = plan_shards(tmp_path / "src", work, 1, output_root=out, allow_removal=21)
    assert set(run(shard).removed) == planned and len(planned) == 21
    assert not (work / "removal_refused").exists()


# -- one output, one work folder ----------------------------------------------------------


def test_a_second_work_folder_on_one_output_is_refused_naming_both(tmp_path):
    write_source(tmp_path / "src", 2)
    snakemake(tmp_path, config=settings(tmp_path))
    marker = tmp_path / "out" / ".dicomprep-work"
    assert marker.read_text().strip() == str(tmp_path / "work")
    before = tiff_states(tmp_path / "out")
    proc = snakemake(tmp_path, config=settings(tmp_path, work=tmp_path / "work2"), check=False)
    line = assert_one_line_refusal(proc, "belongs to the work folder")
    assert str(tmp_path / "work") in line and str(tmp_path / "work2") in line
    assert str(marker) in line
    assert tiff_states(tmp_path / "out") == before
    assert not (tmp_path / "work2" / "journal").exists()
    marker.unlink()  # handing the dataset over, as the message says
    snakemake(tmp_path, config=settings(tmp_path, work=tmp_path / "work2"))
    assert marker.read_text().strip() == str(tmp_path / "work2")


def test_a_bucket_output_belongs_to_one_work_folder_too(moto_server, bucket, tmp_path):
    write_source(tmp_path / "src", 2)
    output = f"s3://{bucket}/dataset"
    snakemake(tmp_path, config=settings(tmp_path, output=output))
    fs = server.s3(moto_server.endpoint)
    assert fs.cat_file(f"{bucket}/dataset/.dicomprep-work").decode().strip() == str(
        tmp_path / "work"
    )
    proc = snakemake(
        tmp_path, config=settings(tmp_path, output=output, work=tmp_path / "w2"), check=False
    )
    line = assert_one_line_refusal(proc, "belongs to the work folder")
    assert f"{output}/.dicomprep-work" in line and str(tmp_path / "w2") in line


# -- the lock -----------------------------------------------------------------------------


def test_a_live_run_holding_the_work_folder_is_named_without_unlock(tmp_path):
    """Our lock is taken while Snakemake builds the DAG, before its own lock is checked:
    with a live run's Snakemake lock in the same folder too, the user sees ours."""
    write_source(tmp_path / "src", 1)
    config = settings(tmp_path)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from dicomprep.run.plan import lock_work_folder;"
            f"lock_work_folder({str(tmp_path / 'work')!r}); print('held', flush=True);"
            "time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        locks = tmp_path / ".snakemake" / "locks"  # as a live run from this folder has them
        locks.mkdir(parents=True)
        (locks / "0.output.lock").write_text(f"{tmp_path / 'out' / 'manifest.csv'}\n")
        proc = snakemake(tmp_path, config=config, check=False)
    finally:
        holder.kill()
        holder.wait()
    line = assert_one_line_refusal(proc, "another dicomprep run")
    assert f"(process {holder.pid} on " in line and "Nothing needs unlocking" in line
    assert "Directory cannot be locked. Please make" not in proc.stdout + proc.stderr


@pytest.mark.slow
def test_ctrl_c_needs_no_unlock(tmp_path):
    write_source(tmp_path / "src", 120)
    config = settings(tmp_path, size=[256, 256], shard_threads=1)
    command = snakemake_command(tmp_path, config)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    run = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, env=env
    )
    journal = tmp_path / "work" / "journal"
    deadline = time.monotonic() + 60
    while not (journal.is_dir() and any(journal.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGINT)  # what Ctrl-C sends: the whole foreground group
    run.communicate(timeout=120)
    assert run.returncode != 0  # interrupted while converting
    assert len(tiff_states(tmp_path / "out")) < 120
    rerun = snakemake(tmp_path, config=config, check=False)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "--unlock" not in rerun.stdout + rerun.stderr
    assert len(tiff_states(tmp_path / "out")) == 120


# -- config mistakes and an unwritable output ---------------------------------------------


def test_a_config_value_of_the_wrong_type_is_one_line(tmp_path):
    write_source(tmp_path / "src", 1)
    command = snakemake_command(tmp_path, settings(tmp_path), "--config", "size=[abc]")
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
    line = assert_one_line_refusal(proc, "size")
    assert line == "config: size: expected null or a list of 2 integers >= 1, got ['abc']"
    assert len(proc.stderr.strip().splitlines()) <= 2, proc.stderr  # and Snakemake's profile line
    assert not (tmp_path / "out").exists()


@pytest.fixture
def unwritable_output(tmp_path):
    write_source(tmp_path / "src", 3)
    (tmp_path / "out").mkdir()
    (tmp_path / "out").chmod(0o555)
    yield tmp_path
    if (tmp_path / "out").exists():
        (tmp_path / "out").chmod(0o755)


def test_unwritable_output_stops_the_workflow_before_any_conversion(unwritable_output):
    tmp = unwritable_output
    command = snakemake_command(tmp, settings(tmp))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = run_without_permission_override(command, env=env, timeout=120)
    line = assert_one_line_refusal(proc, "cannot be written")
    assert line == f"dicomprep: output folder '{tmp / 'out'}' cannot be written: Permission denied"
    assert not list((tmp / "work").rglob("*.results.jsonl"))  # no shard ran
    assert "ShardEnvironmentError" not in proc.stderr


def test_unwritable_output_stops_the_command_line_before_any_conversion(unwritable_output):
    tmp = unwritable_output
    proc = run_without_permission_override([str(TOOL), str(tmp / "src"), str(tmp / "out")])
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"dicom-preprocess: output folder '{tmp / 'out'}' cannot be written: Permission denied"
    ]


# -- the summary --------------------------------------------------------------------------


def test_the_summary_says_what_this_run_did(tmp_path):
    files = write_source(tmp_path / "src", 3)
    (tmp_path / "src" / "notes.dcm").write_text("not DICOM")
    first = snakemake(tmp_path, config=settings(tmp_path))
    assert summary(first) == (
        "dicomprep: 3 converted now, 0 reused, 0 removed, 0 failed, 1 skipped, 0 duplicate; "
        f"outputs in {tmp_path / 'out'}"
    )
    files[0].unlink()
    write_source(tmp_path / "new", 2, seed=50)
    for path in (tmp_path / "new").iterdir():
        path.rename(tmp_path / "src" / f"new_{path.name}")
    rerun = snakemake(tmp_path, config=settings(tmp_path))
    assert summary(rerun).startswith(
        "dicomprep: 2 converted now, 2 reused, 1 removed, 0 failed, 1 skipped, 0 duplicate;"
    )
    noop = snakemake(tmp_path, config=settings(tmp_path))
    assert summary(noop).startswith("dicomprep: 0 converted now, 4 reused, 0 removed, 0 failed")
