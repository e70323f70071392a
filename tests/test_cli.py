"""The command line tools `dicom-preprocess` and `dicom-manifest`, run as a user runs them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pydicom
import pytest
import tifffile
import yaml
from dicomprep_testdata import synthetic
from pydicom.data import get_testdata_file

from dicomprep.formats.manifest import MANIFEST_COLUMNS, read_manifest, scan_dataset
from dicomprep.options import Options
from dicomprep.run.failures import strict_violations

from .workflow_helpers import REPO

BIN = Path(sys.executable).parent
REAL = ["CT_small.dcm", "MR_small.dcm", "SC_rgb.dcm", "emri_small.dcm"]


def run(tool: str, *args, check=True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [str(BIN / tool), *map(str, args)], capture_output=True, text=True, timeout=300
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_help_shows_every_default_and_how_they_differ_from_the_workflow():
    text = " ".join(run("dicom-preprocess", "--help").stdout.split())
    defaults = Options()
    for flag, value in [
        ("--filter", defaults.filter),
        ("--padding", defaults.padding),
        ("--compressor", defaults.compression),
        ("--volume-handler", defaults.volume),
        ("--voi", defaults.voi),
    ]:
        assert f"(default: {value})" in text, flag
    # -c, -m, --crop-components, --strict, -s, --follow-symlinks, --follow-links-outside-source,
    # --manifest, --remove-orphans
    assert text.count("(default: off") == 9
    assert "(default: OUTPUT/.dicomprep)" in text  # --work
    workflow = yaml.safe_load((REPO / "config.yaml").read_text())
    assert workflow["crop"] and workflow["crop_max"] and not defaults.crop
    assert "neither crops nor resizes unless asked" in text
    width, height = workflow["size"]
    assert f"size: [{width}, {height}]" in text and f"-c -m -s {width},{height}" in text


def test_single_file_to_a_single_path_keeps_the_size_by_default(tmp_path):
    source = get_testdata_file("CT_small.dcm")
    out = tmp_path / "ct.tiff"
    proc = run("dicom-preprocess", source, out)
    assert f"wrote {out}" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct.tiff"]  # no failures.csv, no tmp
    ds = pydicom.dcmread(source)
    pixels = tifffile.imread(out)
    assert pixels.shape == (ds.Rows, ds.Columns)  # no crop, no resize


def test_single_file_with_the_workflow_flags_gets_the_workflow_size(tmp_path):
    source = synthetic.write(synthetic.mammogram(rows=416, columns=320), tmp_path / "mg.dcm")
    out = tmp_path / "sub" / "mg.tiff"
    out.parent.mkdir()
    run("dicom-preprocess", "-c", "-m", "-s", "64,80", source, out)
    assert tifffile.imread(out).shape == (80, 64)


def test_single_bad_file_exits_one_naming_it(tmp_path):
    spare = synthetic.write(synthetic.mammogram(rows=416, columns=320), tmp_path / "spare.dcm")
    synthetic.truncated_copy(spare, tmp_path / "truncated.dcm")
    proc = run("dicom-preprocess", tmp_path / "truncated.dcm", tmp_path / "t.tiff", check=False)
    assert proc.returncode == 1
    assert "failed" in proc.stderr and "truncated.dcm" in proc.stderr
    assert not (tmp_path / "t.tiff").exists()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A dataset produced by `dicom-preprocess` from real files, plus bad inputs."""
    tmp = tmp_path_factory.mktemp("cli")
    source = tmp / "src"
    source.mkdir()
    for name in REAL:
        shutil.copy(get_testdata_file(name), source / name)
    (source / "notes.dcm").write_text("not a DICOM file")
    spare = synthetic.write(synthetic.mammogram(rows=416, columns=320, seed=3), tmp / "spare.dcm")
    synthetic.truncated_copy(spare, source / "truncated.dcm")
    shutil.copy(get_testdata_file("rtplan.dcm"), source / "rtplan.dcm")
    proc = run("dicom-preprocess", "-j", "2", source, tmp / "out", check=False)
    assert proc.returncode == 1, proc.stderr  # the truncated file failed
    return tmp / "out"


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_dicom_manifest_indexes_a_produced_dataset(dataset, tmp_path, suffix):
    target = tmp_path / f"manifest{suffix}"
    proc = run("dicom-manifest", dataset, target)
    assert f"{len(REAL)} images indexed" in proc.stderr
    table = read_manifest(target)
    assert list(table.columns) == MANIFEST_COLUMNS
    pd.testing.assert_frame_equal(table, scan_dataset(dataset))
    # independently: one row per TIFF, with the UIDs of its source and the TIFF's shape
    sources = [pydicom.dcmread(get_testdata_file(name)) for name in REAL]
    assert sorted(table["sop_instance_uid"]) == sorted(str(ds.SOPInstanceUID) for ds in sources)
    for row in table.itertuples():
        ds = next(ds for ds in sources if ds.SOPInstanceUID == row.sop_instance_uid)
        assert row.study_instance_uid == ds.StudyInstanceUID
        assert row.path == f"{ds.StudyInstanceUID}/{ds.SOPInstanceUID}.tiff"
        assert (row.height, row.width, row.num_frames) == (
            ds.Rows,
            ds.Columns,
            int(ds.get("NumberOfFrames", 1)),
        )
        assert row.channels == ds.SamplesPerPixel
        assert row.inode == (dataset / row.path).stat().st_ino


def test_dicom_manifest_refuses_a_bad_suffix_and_a_missing_folder(dataset, tmp_path):
    assert run("dicom-manifest", dataset, tmp_path / "m.txt", check=False).returncode == 2
    proc = run("dicom-manifest", tmp_path / "nowhere", tmp_path / "m.csv", check=False)
    assert proc.returncode == 2 and "is not a folder" in proc.stderr


def test_strict_violations_name_failed_and_non_dicom_inputs_only(dataset):
    lines = strict_violations(dataset / "failures.csv")
    named = sorted(Path(line.split(": ", 1)[1].split(" [")[0]).name for line in lines)
    assert named == ["notes.dcm", "truncated.dcm"]  # not rtplan.dcm (no pixels: skipped)
    failures = pd.read_csv(dataset / "failures.csv")
    assert sorted(Path(p).name for p in failures["path"]) == [
        "notes.dcm",
        "rtplan.dcm",
        "truncated.dcm",
    ]


def test_the_manifest_flag_writes_what_dicom_manifest_rebuilds(dataset, tmp_path):
    assert not (dataset / "manifest.csv").exists()  # only when asked
    source = tmp_path / "src"
    source.mkdir()
    for name in REAL:
        shutil.copy(get_testdata_file(name), source / name)
    run("dicom-preprocess", "--manifest", source, tmp_path / "out")
    written = read_manifest(tmp_path / "out" / "manifest.csv")
    assert len(written) == len(REAL)
    assert set(written["source"]) == set(REAL)  # names relative to the source root
    rebuilt = scan_dataset(tmp_path / "out")  # from the TIFFs: no series, no source
    shared = ["study_instance_uid", "sop_instance_uid", "path", "inode", "width", "height"]
    shared += ["channels", "num_frames", "slices"]
    pd.testing.assert_frame_equal(written[shared], rebuilt[shared])
    parquet = read_manifest(tmp_path / "out" / "manifest.parquet")
    pd.testing.assert_frame_equal(parquet, written)


def test_a_missing_source_is_one_line_and_makes_no_output(tmp_path):
    out = tmp_path / "out"
    proc = run("dicom-preprocess", tmp_path / "gone", out, check=False)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"dicom-preprocess: source '{tmp_path / 'gone'}' does not exist"
    ]
    assert not out.exists()


def test_strict_refuses_a_folder_holding_non_dicom_before_converting(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), source / "ct.dcm")
    (source / "notes.dcm").write_text("not a DICOM file")
    proc = run("dicom-preprocess", "--strict", source, tmp_path / "out", check=False)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"dicom-preprocess: not DICOM (--strict): {source / 'notes.dcm'}"
    ]
    assert not list((tmp_path / "out").rglob("*.tiff"))
