"""dicom-preprocess on a folder is a local run of the workflow's own plan -> shard ->
collect: for the same options it makes the workflow's outputs and tables, and a rerun
converts only what is new or changed."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from dicomprep_testdata import synthetic

from dicomprep.options import Options
from dicomprep.run.local import WORK_FOLDER, default_work, run_local
from dicomprep.series.stacks import DUPLICATE_POSITION

from .series_helpers import write_series
from .workflow_helpers import build_mixed_source, snakemake, tiff_states

TOOL = Path(sys.executable).parent / "dicom-preprocess"
WORKFLOW_FLAGS = ["-c", "-m", "-s", "512,640"]  # config.yaml's processing options
TABLES = ["failures.csv", "slices.csv", "series_report.csv"]


def preprocess(*args, check: int | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(TOOL), *map(str, args)], capture_output=True, text=True, timeout=600)
    if check is not None:
        assert proc.returncode == check, proc.stderr
    return proc


def outputs(root: Path) -> dict[str, bytes]:
    """Every output file (TIFF or NIfTI) under ``root`` with its bytes."""
    files = [p for p in root.rglob("*") if p.suffix in (".tiff", ".gz") and "report" not in p.parts]
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(files)}


def table_bytes(folder: Path, name: str) -> bytes:
    return (folder / name).read_bytes()


@pytest.fixture(scope="module", params=["files", "stack"])
def both_runs(request, tmp_path_factory):
    """The workflow and dicom-preprocess on one mixed folder (a CT series with a repeated
    position and a localizer among real files, mammograms, a volume and bad files)."""
    series = request.param
    tmp = tmp_path_factory.mktemp(f"cli-{series}")
    build_mixed_source(tmp / "src")
    write_series(tmp / "src" / "ct", count=5, duplicate_of=2, localizer=True, name="both")
    config = {"source": tmp / "src", "output": tmp / "wf", "work": tmp / "wf-work"}
    snakemake(tmp, config={**config, "series": series})
    proc = preprocess(
        *WORKFLOW_FLAGS, "--series", series, "--manifest", "-j", "2", tmp / "src", tmp / "cli"
    )
    assert proc.returncode == 1, proc.stderr  # the bad files failed
    return series, tmp, proc


def test_the_outputs_are_the_workflows(both_runs):
    _, tmp, _ = both_runs
    made = outputs(tmp / "cli")
    assert len(made) >= 10
    assert made == outputs(tmp / "wf")


def test_the_tables_are_the_workflows(both_runs):
    series, tmp, _ = both_runs
    cli, wf = tmp / "cli", tmp / "wf"
    assert table_bytes(cli, "failures.csv") == table_bytes(wf, "failures.csv")
    tables = cli if series == "stack" else cli / WORK_FOLDER / "tables"
    for name in ("slices.csv", "series_report.csv"):
        assert table_bytes(tables, name) == table_bytes(wf, name), name
    ours = pd.read_csv(cli / "manifest.csv").drop(columns="inode")
    theirs = pd.read_csv(wf / "manifest.csv").drop(columns="inode")
    pd.testing.assert_frame_equal(ours, theirs)
    failures = pd.read_csv(io.BytesIO(table_bytes(cli, "failures.csv")))
    assert {"failed", "skipped", "duplicate"} <= set(failures["status"])
    if series == "stack":
        assert len(pd.read_csv(cli / "slices.csv")) == 5  # the repeated position is left out
        assert DUPLICATE_POSITION in set(pd.read_csv(cli / "series_report.csv")["kind"])


def test_the_output_holds_what_the_command_line_wrote_before(both_runs):
    """TIFFs, failures.csv (slices.csv and series_report.csv for stacks), the manifest when
    asked, and the hidden work folder with the ownership marker."""
    series, tmp, proc = both_runs
    cli = tmp / "cli"
    names = {p.name for p in cli.iterdir() if not p.is_dir()}
    stacks = {"slices.csv", "slices.parquet", "series_report.csv"} if series == "stack" else set()
    assert names == {"failures.csv", "manifest.csv", "manifest.parquet", ".dicomprep-work"} | stacks
    assert (cli / ".dicomprep-work").read_text() == f"{(cli / WORK_FOLDER).resolve()}\n"
    lines = proc.stderr.strip().splitlines()
    assert lines[-2].startswith("dicomprep: ") and "converted now, 0 reused, 0 removed" in lines[-2]
    assert lines[-1] == f"dicomprep: not converted: see {cli / 'failures.csv'}"


def test_a_rerun_converts_only_new_or_changed_files(tmp_path):
    source, out = tmp_path / "src", tmp_path / "out"
    for k in range(4):
        synthetic.write(synthetic.mammogram(rows=64, columns=48, seed=k), source / f"m{k}.dcm")
    first = preprocess("-s", "32,40", source, out, check=0)
    assert "4 converted now, 0 reused" in first.stderr
    before = tiff_states(out)
    synthetic.write(synthetic.mammogram(rows=64, columns=48, seed=10), source / "new.dcm")
    changed = synthetic.mammogram(rows=64, columns=48, seed=1)  # same UIDs, other pixels
    changed.PixelData = bytes(len(changed.PixelData))
    synthetic.write(changed, source / "m1.dcm")
    second = preprocess("-s", "32,40", source, out, check=0)
    assert "2 converted now, 3 reused, 0 removed" in second.stderr
    after = tiff_states(out)
    kept = {k: v for k, v in after.items() if k in before and before[k] == v}
    assert len(kept) == 3 and len(after) == 5
    third = preprocess("-s", "32,40", source, out, check=0)
    assert "0 converted now, 5 reused" in third.stderr and tiff_states(out) == after
    other = preprocess("-s", "16,20", source, out, check=0)  # new options: all again
    assert "5 converted now, 0 reused" in other.stderr


def test_orphans_are_kept_unless_asked_to_remove_them(tmp_path):
    source, out, work = tmp_path / "src", tmp_path / "out", tmp_path / "state"
    for k in range(3):
        synthetic.write(synthetic.mammogram(rows=64, columns=48, seed=k), source / f"m{k}.dcm")
    preprocess("--work", work, source, out, check=0)
    assert not (out / WORK_FOLDER).exists() and (work / "catalog.parquet").exists()
    (source / "m0.dcm").unlink()
    kept = preprocess("--work", work, "--manifest", source, out, check=0)
    assert "0 converted now, 2 reused, 0 removed" in kept.stderr
    assert len(tiff_states(out)) == 3 and len(pd.read_csv(out / "manifest.csv")) == 2
    (source / "m1.dcm").unlink()  # a kept orphan is out of the journal: it stays
    removed = preprocess("--work", work, "--remove-orphans", source, out, check=0)
    assert "0 converted now, 1 reused, 1 removed" in removed.stderr
    assert f"listed in {work / 'removed.txt'}" in removed.stderr
    assert len(tiff_states(out)) == 2


def test_too_many_removals_are_refused_in_the_command_lines_terms(tmp_path):
    source, out = tmp_path / "src", tmp_path / "out"
    for k in range(24):
        synthetic.write(synthetic.mammogram(rows=32, columns=24, seed=k), source / f"m{k}.dcm")
    preprocess("-s", "16,16", source, out, check=0)
    shutil.rmtree(source)
    synthetic.write(synthetic.mammogram(rows=32, columns=24, seed=99), source / "other.dcm")
    proc = preprocess("-s", "16,16", "--remove-orphans", source, out, check=2)
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("dicom-preprocess: this run would remove 24 of the dataset's 24")
    assert line.endswith("run again with --allow-removal true (or a number)")
    assert len(tiff_states(out)) == 24
    allowed = ["--remove-orphans", "--allow-removal", "true"]
    done = preprocess("-s", "16,16", *allowed, source, out, check=0)
    assert "1 converted now, 0 reused, 24 removed" in done.stderr
    assert len(tiff_states(out)) == 1


def test_another_work_folder_for_the_output_is_refused(tmp_path):
    source, out = tmp_path / "src", tmp_path / "out"
    synthetic.write(synthetic.mammogram(rows=32, columns=24), source / "m.dcm")
    preprocess(source, out, check=0)
    proc = preprocess("--work", tmp_path / "other", source, out, check=2)
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith(f"dicom-preprocess: output '{out}' belongs to the work folder")


def test_a_live_run_on_the_work_folder_is_refused_and_an_ended_one_holds_no_lock(tmp_path):
    source, out = tmp_path / "src", tmp_path / "out"
    synthetic.write(synthetic.mammogram(rows=32, columns=24), source / "m.dcm")
    run = run_local(source, out, Options(size=(16, 16)))  # in this process
    assert run.numbers["converted_now"] == 1
    holder = subprocess.Popen(  # another process can take the lock: this one let it go
        [
            sys.executable,
            "-c",
            "import sys, time; from dicomprep.run.lock import lock_work_folder; "
            f"lock_work_folder({str(default_work(out))!r}); print('held', flush=True); "
            "time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "held\n"
        proc = preprocess(source, out, check=2)
        [line] = proc.stderr.strip().splitlines()
        assert line.startswith("dicom-preprocess: Directory cannot be locked: another dicomprep")
        assert f"(process {holder.pid} on " in line and "--unlock" not in line
    finally:
        holder.kill()
        holder.wait()
