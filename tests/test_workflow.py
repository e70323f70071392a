"""The Snakemake workflow, run for real in temporary folders."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from dicomprep_testdata import synthetic

from dicomprep.cli import preprocess_main
from dicomprep.formats.manifest import MANIFEST_COLUMNS

from .workflow_helpers import (
    REPO,
    build_mixed_source,
    journal_results,
    journaled_tiff_states,
    snakemake,
    snakemake_command,
    tiff_bytes,
    tiff_states,
)

pytestmark = pytest.mark.slow

OPTIONS = {"crop": True, "crop_max": True, "size": [128, 160], "shards": 3}


def paths(tmp):
    return {"source": tmp / "src", "output": tmp / "out", "work": tmp / "work"}


def config_for(tmp, **extra):
    p = paths(tmp)
    return {"source": p["source"], "output": p["output"], "work": p["work"], **OPTIONS, **extra}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    files = build_mixed_source(tmp / "src")
    proc = snakemake(tmp, config=config_for(tmp))
    return tmp, files, proc


def test_full_run_equals_the_command_line_tool(finished_run, tmp_path):
    tmp, _, _ = finished_run
    cli_out = tmp_path / "cli"
    code = preprocess_main([str(tmp / "src"), str(cli_out), "-c", "-m", "-s", "128,160", "-j", "2"])
    assert code == 1  # the hostile-UID and truncated files failed
    workflow_tiffs = tiff_bytes(tmp / "out")
    assert len(workflow_tiffs) == 10
    assert workflow_tiffs == tiff_bytes(cli_out)


def test_manifest_columns_order_paths_and_inodes(finished_run):
    tmp, files, _ = finished_run
    manifest = pd.read_csv(tmp / "out" / "manifest.csv", dtype={"study_instance_uid": str})
    assert list(manifest.columns) == MANIFEST_COLUMNS
    assert len(manifest) == len(files["good"])
    keys = list(zip(manifest.study_instance_uid, manifest.sop_instance_uid, strict=True))
    assert keys == sorted(keys)
    for row in manifest.itertuples(index=False):
        tiff = tmp / "out" / row.path
        assert row.path == f"{row.study_instance_uid}/{row.sop_instance_uid}.tiff"
        assert tiff.stat().st_ino == row.inode
        assert (row.width, row.height) == (128, 160)
    assert pd.read_parquet(tmp / "out" / "manifest.parquet").shape == manifest.shape


def test_failures_list_each_bad_file_once(finished_run):
    tmp, files, proc = finished_run
    failures = pd.read_csv(tmp / "out" / "failures.csv", keep_default_na=False)
    assert sorted(failures.path) == sorted(str(p) for p in files["bad"])
    by_name = {os.path.basename(row.path): row for row in failures.itertuples()}
    assert by_name["not_dicom.dcm"].status == "skipped"
    assert by_name["empty.dcm"].status == "skipped"
    assert by_name["rtplan.dcm"].error_type == "NoPixelData"
    assert by_name["duplicate.dcm"].status == "duplicate"
    assert by_name["hostile.dcm"].error_type == "InvalidUID"
    assert by_name["truncated.dcm"].status == "failed"
    assert by_name["truncated.dcm"].stage == "decode"
    assert "evil" not in "".join(p.name for p in (tmp / "out").rglob("*"))
    assert (
        "10 converted now, 0 reused, 0 removed, 2 failed, 3 skipped, 1 duplicate"
        in proc.stdout + proc.stderr
    )


def test_incremental_rerun_processes_only_new_files(tmp_path):
    build_mixed_source(tmp_path / "src")
    snakemake(tmp_path, config=config_for(tmp_path))
    before = tiff_states(tmp_path / "out")

    noop = snakemake(tmp_path, config=config_for(tmp_path))
    assert "Nothing to be done" in noop.stdout + noop.stderr
    # and it ends with the same summary lines as the run that did the work
    assert (
        "dicomprep: 0 converted now, 10 reused, 0 removed, 2 failed, 3 skipped, 1 duplicate"
        in noop.stdout
    )
    assert tiff_states(tmp_path / "out") == before

    for k in range(3):
        ds = synthetic.mammogram(rows=300, columns=240, seed=100 + k)
        synthetic.write(ds, tmp_path / "src" / "new" / f"new_{k}.dcm")
    snakemake(tmp_path, config=config_for(tmp_path))
    after = tiff_states(tmp_path / "out")
    assert len(after) == len(before) + 3
    assert {k: after[k] for k in before} == before  # untouched: same mtime and inode
    manifest = pd.read_csv(tmp_path / "out" / "manifest.csv")
    assert len(manifest) == len(after)
    summary = json.loads((tmp_path / "work" / "summary.json").read_text())
    assert (summary["converted_now"], summary["reused"]) == (3, len(before))

    # another shard count moves the journal records: nothing is converted again
    snakemake(tmp_path, config=config_for(tmp_path, shards=5))
    assert tiff_states(tmp_path / "out") == after
    summary = json.loads((tmp_path / "work" / "summary.json").read_text())
    assert (summary["processed"], summary["converted_now"]) == (len(after), 0)
    assert len(list((tmp_path / "work" / "shards").glob("*.tsv"))) <= 5
    assert (tmp_path / "work" / "journal" / "shards.txt").read_text() == "5 study\n"
    assert not (tmp_path / "work" / "journal.old").exists()

    snakemake(tmp_path, config=config_for(tmp_path, compression="lzw"))
    changed = tiff_states(tmp_path / "out")
    assert all(changed[k][0] != after[k][0] for k in after)  # every file redone


def test_resume_after_sigkill_is_byte_identical(tmp_path):
    reference_dir, killed_dir = tmp_path / "reference", tmp_path / "killed"
    for k in range(30):  # enough work that the kill lands mid-shard
        ds = synthetic.mammogram(rows=1248, columns=960, seed=k)
        synthetic.write(ds, reference_dir / "src" / f"m{k:02d}.dcm")
    shutil.copytree(reference_dir / "src", killed_dir / "src")
    options = {"shards": 1, "size": [256, 320], "filter": "lanczos3"}
    snakemake(reference_dir, config=config_for(reference_dir, **options))

    cmd = snakemake_command(killed_dir, config_for(killed_dir, **options))
    proc = subprocess.Popen(
        cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    while journal_results(killed_dir / "work") < 3 and time.time() < deadline:
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = journaled_tiff_states(killed_dir / "out", killed_dir / "work")
    assert len(done_before) >= 3
    assert len(tiff_states(killed_dir / "out")) < 30, "kill should land in the middle of the shard"

    snakemake(killed_dir, "--unlock", config=config_for(killed_dir, **options))
    snakemake(killed_dir, config=config_for(killed_dir, **options))
    after = tiff_states(killed_dir / "out")
    assert {k: after[k] for k in done_before} == done_before  # finished files not redone
    assert tiff_bytes(killed_dir / "out") == tiff_bytes(reference_dir / "out")
    assert not list((killed_dir / "out").rglob("*.tmp"))
    ref_manifest = pd.read_csv(reference_dir / "out" / "manifest.csv").drop(columns="inode")
    got_manifest = pd.read_csv(killed_dir / "out" / "manifest.csv").drop(columns="inode")
    pd.testing.assert_frame_equal(ref_manifest, got_manifest)


def test_strict_stops_on_non_dicom_input_naming_it(tmp_path):
    ds = synthetic.mammogram(rows=200, columns=160)
    synthetic.write(ds, tmp_path / "src" / "ok.dcm")
    (tmp_path / "src" / "notes.dcm").write_text("not dicom")
    proc = snakemake(tmp_path, config=config_for(tmp_path, strict=True), check=False)
    assert proc.returncode != 0
    assert "notes.dcm" in proc.stderr and "not DICOM" in proc.stderr


def test_unlock_does_not_walk_the_source(tmp_path):
    """Planning happens when Snakemake builds the DAG: `--unlock` (after a killed run)
    works even when the source is not reachable, and takes no work-folder lock."""
    proc = snakemake(tmp_path, "--unlock", config=config_for(tmp_path, source=tmp_path / "gone"))
    assert "Unlocked working directory" in proc.stdout + proc.stderr
    assert not (tmp_path / "work" / "catalog.parquet").exists()


def test_bad_config_value_is_named(tmp_path):
    (tmp_path / "src").mkdir()
    proc = snakemake(tmp_path, config=config_for(tmp_path, filter="bicubic"), check=False)
    assert proc.returncode != 0
    assert "filter" in proc.stderr and "bicubic" in proc.stderr


def test_lint_and_format_are_clean(tmp_path):
    build_mixed_source(tmp_path / "src")
    lint = snakemake(tmp_path, "--lint", config=config_for(tmp_path), check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = subprocess.run(
        [sys.executable, "-m", "snakefmt", "--check", "Snakefile", "workflow/rules"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def tiny_studies(source, files: int, studies: int, first: int = 0) -> None:
    """``files`` small synthetic mammograms spread over ``studies`` studies."""
    for k in range(first, first + files):
        study = synthetic.derived_uid("workflow test study", k % studies + first)
        ds = synthetic.mammogram(
            rows=208, columns=160, seed=k, study_uid=study, laterality="LR"[k % 2]
        )
        synthetic.write(ds, source / f"study{k % studies + first}" / f"{k:03d}.dcm")


def test_shard_jobs_draw_the_report_thumbnails(tmp_path, monkeypatch):
    from dicomprep.options import Options
    from dicomprep.report import build_report
    from dicomprep.report.data import load_run

    tiny_studies(tmp_path / "src", files=6, studies=2)
    config = config_for(tmp_path, shards=1, report={"samples_per_modality": 2})
    snakemake(tmp_path, config=config)
    log = (tmp_path / "work" / "logs" / "collect.log").read_text()
    samples = [line for line in log.splitlines() if line.startswith("sample MG ")]
    assert len(samples) == 2
    assert all(line.endswith(": ok (thumbnails reused)") for line in samples), log
    img = tmp_path / "out" / "report" / "img"
    assert len(list(img.iterdir())) == 2 * 3  # the report's 2 samples: 2 PNGs + a record each

    # the report drawing them itself gives the same pixels; given the shard results and
    # no results root, their outputs are taken relative to the output root (not to the
    # current folder), and without their cached tables
    for cached in (tmp_path / "work" / "shards").glob("*.table.parquet"):
        cached.unlink()
    again = tmp_path / "again" / "index.html"
    elsewhere = tmp_path / "a" / "b"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    numbers = build_report(
        again,
        output_root=tmp_path / "out",
        manifest_csv=tmp_path / "out" / "manifest.csv",
        failures_csv=tmp_path / "out" / "failures.csv",
        catalog=tmp_path / "work" / "catalog.parquet",
        results=sorted((tmp_path / "work" / "shards").glob("*.results.jsonl")),
        options=Options.from_mapping({**config, "report": None}),
        samples_per_modality=2,
    )
    assert (numbers["samples"], numbers["samples_reused"], numbers["sample_errors"]) == (2, 0, 0)
    run = load_run(
        tmp_path / "out",
        manifest_csv=tmp_path / "out" / "manifest.csv",
        failures_csv=tmp_path / "out" / "failures.csv",
        summary_json=None,
        catalog=tmp_path / "work" / "catalog.parquet",
        results=sorted((tmp_path / "work" / "shards").glob("*.results.jsonl")),
    )
    assert sorted(run.results["path"]) == sorted(run.manifest["path"])  # TIFFs under out/
    pngs = sorted(p.name for p in img.glob("*.png"))
    assert pngs == sorted(p.name for p in (again.parent / "img").glob("*.png"))
    assert all((img / n).read_bytes() == (again.parent / "img" / n).read_bytes() for n in pngs)


def test_a_report_that_cannot_be_built_costs_only_the_report(tmp_path):
    tiny_studies(tmp_path / "src", files=4, studies=2)
    img = tmp_path / "out" / "report" / "img"
    img.parent.mkdir(parents=True)
    img.write_text("a file where the thumbnails folder goes\n")
    proc = snakemake(tmp_path, config=config_for(tmp_path, shards=1))
    manifest = pd.read_csv(tmp_path / "out" / "manifest.csv")
    assert len(manifest) == 4 and len(list((tmp_path / "out").rglob("*.tiff"))) == 4
    page = (tmp_path / "out" / "report" / "index.html").read_text()
    assert "The report could not be built: FileExistsError" in page
    assert "the QC report could not be built: FileExistsError" in proc.stderr


def worker_counts(work) -> dict[str, int]:
    """Worker processes each shard job's log says it had."""
    counts = {}
    for log in sorted((work / "logs" / "preprocess").glob("*.log")):
        last = log.read_text().splitlines()[-1]
        counts[log.stem] = int(last.rsplit("; ", 1)[1].split()[0])
    return counts


def test_shard_jobs_that_run_together_share_the_cores(tmp_path):
    tiny_studies(tmp_path / "src", files=8, studies=8)
    config = config_for(tmp_path, shards=4)
    snakemake(tmp_path, config=config)
    first = worker_counts(tmp_path / "work")
    assert len(first) >= 2 and set(first.values()) == {1}  # side by side, one core each

    tiny_studies(tmp_path / "src", files=1, studies=1, first=20)  # one new study: one shard
    snakemake(tmp_path, config=config)
    second = worker_counts(tmp_path / "work")
    changed = [shard for shard in second if second[shard] != first.get(shard)]
    assert len(changed) == 1 and second[changed[0]] == 2  # alone: both cores


def test_report_thumbnail_of_a_reduced_jpeg2000_decode_matches_a_full_one(tmp_path):
    """The shard draws the source thumbnail from the frame its conversion decoded (here
    JPEG 2000 at a reduced resolution level); it matches one drawn from a full decode."""
    import numpy as np
    from PIL import Image

    from dicomprep.options import Options
    from dicomprep.report import build_report

    from .codestream_helpers import J2K_LOSSLESS, write_encapsulated

    ds = synthetic.mammogram(rows=1664, columns=1280, seed=3)
    write_encapsulated(ds, tmp_path / "src" / "j2k.dcm", J2K_LOSSLESS)
    config = config_for(tmp_path, shards=1, size=[256, 320])
    snakemake(tmp_path, config=config)
    log = (tmp_path / "work" / "logs" / "collect.log").read_text()
    assert "ok (thumbnails reused)" in log
    again = tmp_path / "again" / "index.html"
    build_report(
        again,
        output_root=tmp_path / "out",
        manifest_csv=tmp_path / "out" / "manifest.csv",
        failures_csv=tmp_path / "out" / "failures.csv",
        catalog=tmp_path / "work" / "catalog.parquet",
        options=Options.from_mapping(config),
    )
    shard = tmp_path / "out" / "report" / "img"
    [name] = [p.name for p in shard.glob("*.source.png")]
    drawn = np.asarray(Image.open(shard / name), dtype=np.int16)
    full = np.asarray(Image.open(again.parent / "img" / name), dtype=np.int16)
    assert drawn.shape == full.shape == (256, 197, 3)
    assert np.abs(drawn - full).mean() < 2.0
    record = json.loads((shard / name.replace(".source.png", ".json")).read_text())
    assert record["sample"]["source_size"] == [1280, 1664]  # the source's, not the level's
