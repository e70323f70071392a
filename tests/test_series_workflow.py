"""The workflow with `series: stack`: one volume per series, rebuilt exactly when its slices
change, slices.csv and series_report.csv, and nothing else touched."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pydicom
import pytest
import tifffile
from dicomprep_testdata import synthetic

from dicomprep.formats.manifest import read_manifest
from dicomprep.formats.tiff import read_geometry

from .series_helpers import slice_dataset, write_series
from .workflow_helpers import snakemake, tiff_states

pytestmark = pytest.mark.slow


def config(tmp, **extra):
    return {
        "source": tmp / "src",
        "output": tmp / "out",
        "work": tmp / "work",
        "series": "stack",
        "voi": "none",
        "crop": False,
        "crop_max": False,
        "size": None,
        **extra,
    }


@pytest.fixture
def stacked_run(tmp_path):
    ct = write_series(tmp_path / "src" / "ct", count=8, duplicate_of=3, localizer=True, name="a")
    mr = write_series(tmp_path / "src" / "mr", source="MR_small.dcm", count=5, name="b")
    mammo = synthetic.write(
        synthetic.mammogram(rows=96, columns=72, seed=1), tmp_path / "src" / "mg" / "m.dcm"
    )
    proc = snakemake(tmp_path, config=config(tmp_path))
    return tmp_path, ct, mr, mammo, proc


def test_each_series_is_one_volume_in_slice_order_with_its_slices_mapped(stacked_run):
    tmp, ct, mr, _, _ = stacked_run
    manifest = read_manifest(tmp / "out" / "manifest.csv")
    stacks = manifest[manifest["slices"] > 1].set_index("series_instance_uid")
    ct_row = stacks.loc[str(ct["series"])]
    assert ct_row["path"] == f"{ct['study']}/{ct['series']}.tiff"
    assert (ct_row["slices"], ct_row["num_frames"]) == (8, 8)
    assert stacks.loc[str(mr["series"]), "slices"] == 5
    # the localizer and the mammogram stay single files; the duplicate position is left out
    singles = manifest[manifest["slices"] == 1]
    assert len(singles) == 2 and len(manifest) == 4
    # pages hold the slices in position order, in Hounsfield units (voi: none)
    volume = tifffile.imread(tmp / "out" / ct_row["path"])
    by_position = sorted(
        (d for d in ct["datasets"] if d.InstanceNumber <= 8),
        key=lambda d: float(d.ImagePositionPatient[2]),
    )
    for page, ds in enumerate(by_position):
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        np.testing.assert_array_equal(volume[page], hu.astype(np.int16))
    # the manifest row carries the first slice's SOP Instance UID
    assert ct_row["sop_instance_uid"] == by_position[0].SOPInstanceUID
    slices = pd.read_csv(tmp / "out" / "slices.csv", dtype={"sop_instance_uid": str})
    ct_slices = slices[slices["path"] == ct_row["path"]]
    assert list(ct_slices["sop_instance_uid"]) == [d.SOPInstanceUID for d in by_position]
    assert list(ct_slices["page"]) == list(range(8))
    assert np.all(np.diff(ct_slices["position"]) > 0)


def test_what_did_not_fit_a_stack_is_reported(stacked_run):
    tmp, ct, *_ = stacked_run
    report = pd.read_csv(tmp / "out" / "series_report.csv", keep_default_na=False)
    kinds = set(report.loc[report["series_instance_uid"] == str(ct["series"]), "kind"])
    assert {"duplicate-position", "localizer"} <= kinds
    failures = pd.read_csv(tmp / "out" / "failures.csv", keep_default_na=False)
    [row] = failures[failures["error_type"] == "DuplicatePosition"].itertuples()
    assert row.status == "duplicate"
    # the second of the two slices at one position (by InstanceNumber) is the one left out
    [duplicate] = [d for d in ct["datasets"] if d.InstanceNumber == 1001]
    assert row.path == str(ct["paths"][duplicate.SOPInstanceUID])


def test_adding_a_slice_rebuilds_only_its_series(stacked_run):
    tmp, ct, mr, _, _ = stacked_run
    before = tiff_states(tmp / "out")
    ds = mr["datasets"][0]
    new = slice_dataset(
        ds,
        str(mr["study"]),
        str(mr["series"]),
        5,
        [float(v) for v in ds.ImagePositionPatient[:2]]
        + [float(ds.ImagePositionPatient[2]) + 5 * 2.5],
        [float(v) for v in ds.ImageOrientationPatient],
    )
    new.save_as(tmp / "src" / "mr" / "added.dcm")
    snakemake(tmp, config=config(tmp))
    after = tiff_states(tmp / "out")
    mr_path = f"{mr['study']}/{mr['series']}.tiff"
    assert set(after) == set(before)
    assert after[mr_path] != before[mr_path]
    assert {k: v for k, v in after.items() if k != mr_path} == {
        k: v for k, v in before.items() if k != mr_path
    }
    manifest = read_manifest(tmp / "out" / "manifest.csv")
    assert manifest.set_index("path").loc[mr_path, "slices"] == 6
    # counted by outputs, as `processed` is: the rebuilt volume once, the rest reused
    summary = json.loads((tmp / "work" / "summary.json").read_text())
    assert (summary["processed"], summary["converted_now"], summary["reused"]) == (4, 1, 3)
    results = pd.concat(pd.read_json(f, lines=True) for f in (tmp / "work").glob("shards/*.jsonl"))
    volume_seconds = results.loc[results["stack"] != "", ["output", "seconds"]].drop_duplicates()
    mr_seconds = volume_seconds[volume_seconds["output"].str.endswith(mr_path)]["seconds"]
    assert summary["seconds_now"] == pytest.approx(float(mr_seconds.iloc[0]), abs=2e-3)
    assert pydicom.dcmread(tmp / "src" / "mr" / "added.dcm").SOPInstanceUID in set(
        pd.read_csv(tmp / "out" / "slices.csv", dtype=str)["sop_instance_uid"]
    )


def test_the_folder_rebuilds_the_manifest_the_run_wrote(stacked_run):
    """dicom-manifest on the output folder lists the same rows (volumes under their first
    slice); only what the files do not hold differs: the sources, a single file's series."""
    from dicomprep.formats.manifest import scan_dataset

    tmp, *_ = stacked_run
    written = read_manifest(tmp / "out" / "manifest.csv")
    scanned = scan_dataset(tmp / "out")
    singles = written["slices"] == 1
    assert (scanned.loc[singles, "series_instance_uid"] == "").all()
    scanned.loc[singles, "series_instance_uid"] = written.loc[singles, "series_instance_uid"]
    pd.testing.assert_frame_equal(scanned.drop(columns="source"), written.drop(columns="source"))


@pytest.mark.parametrize(
    ("volume_format", "kill_at"),
    [("tiff", "KILL_DURING_TIFF_WRITE"), ("nifti", "KILL_DURING_GZIP_WRITE")],
)
def test_a_volume_killed_while_written_leaves_no_temporary_after_the_rerun(
    tmp_path, volume_format, kill_at
):
    """The whole run is killed while a stack's volume is half written; the rerun removes
    the temporary and writes the volume as an uninterrupted run does."""
    from .reliability_helpers import KILL_DURING_WRITE, environment_with_hook, start_snakemake

    write_series(tmp_path / "src" / "ct", count=6, name="killed")
    settings = config(tmp_path, volume_format=volume_format)
    env = environment_with_hook(tmp_path / "hook", KILL_DURING_WRITE, **{kill_at: "1"})
    proc = start_snakemake(tmp_path, settings, env=env)
    proc.communicate(timeout=300)
    assert proc.returncode != 0
    hidden = [p.name for p in (tmp_path / "out").rglob(".*.tmp") if p.is_file()]
    assert len(hidden) == 1 and hidden[0].endswith(".tmp"), hidden  # the half-written volume

    snakemake(tmp_path, "--unlock", config=settings)
    snakemake(tmp_path, config=settings)
    assert [p for p in (tmp_path / "out").rglob(".*.tmp") if p.is_file()] == []
    assert [p.name for p in (tmp_path / "out").glob(".*")] == [".dicomprep-work"]
    reference = tmp_path / "reference"
    snakemake(reference, config={**settings, "output": reference / "out", "work": reference / "w"})
    [volume] = (tmp_path / "out").rglob(f"*{'.tiff' if volume_format == 'tiff' else '.nii.gz'}")
    again = reference / "out" / volume.relative_to(tmp_path / "out")
    assert volume.read_bytes() == again.read_bytes()


def test_a_damaged_slice_is_left_out_of_its_volume_with_its_own_failure(tmp_path):
    """One truncated slice costs that slice, not the series: the volume is made from the
    others (its spacing shows the gap) and the slice has its own failure line; once the
    slice is whole again the volume is rebuilt with it."""
    series = write_series(tmp_path / "src" / "ct", count=5, name="damaged")
    by_position = sorted(series["datasets"], key=lambda d: float(d.ImagePositionPatient[2]))
    victim = series["paths"][by_position[2].SOPInstanceUID]
    whole = victim.read_bytes()
    victim.write_bytes(whole[:-3000])
    settings = config(tmp_path)
    snakemake(tmp_path, config=settings)
    volume = f"{series['study']}/{series['series']}.tiff"

    manifest = read_manifest(tmp_path / "out" / "manifest.csv")
    assert manifest["path"].tolist() == [volume] and manifest["slices"].tolist() == [4]
    failures = pd.read_csv(tmp_path / "out" / "failures.csv", keep_default_na=False)
    assert failures[["path", "status", "stage"]].values.tolist() == [
        [str(victim), "failed", "decode"]
    ]
    assert "ends inside the pixel data" in failures["message"][0]
    slices = pd.read_csv(tmp_path / "out" / "slices.csv", dtype=str)
    kept = [d.SOPInstanceUID for d in by_position if d is not by_position[2]]
    assert slices["sop_instance_uid"].tolist() == kept
    geometry = read_geometry(tmp_path / "out" / volume)
    assert geometry.volume.uneven_spacing  # the gap of the missing slice is shown
    assert len(tifffile.TiffFile(tmp_path / "out" / volume).pages) == 4

    summary = json.loads((tmp_path / "work" / "summary.json").read_text())
    assert (summary["processed"], summary["failed"]) == (1, 1)
    snakemake(tmp_path, config=settings)  # nothing changed: the same tables
    assert pd.read_csv(tmp_path / "out" / "failures.csv", keep_default_na=False).equals(failures)

    victim.write_bytes(whole)
    snakemake(tmp_path, config=settings)
    manifest = read_manifest(tmp_path / "out" / "manifest.csv")
    assert manifest["slices"].tolist() == [5]
    assert len(pd.read_csv(tmp_path / "out" / "failures.csv")) == 0


def test_a_damaged_slice_is_replaced_by_its_good_copy(tmp_path):
    import shutil

    series = write_series(tmp_path / "src" / "ct", count=4, name="wf-copy")
    by_position = sorted(series["datasets"], key=lambda d: float(d.ImagePositionPatient[2]))
    first = series["paths"][by_position[1].SOPInstanceUID]
    copy = tmp_path / "src" / "zz" / "copy.dcm"  # the same image, later in path order
    copy.parent.mkdir()
    shutil.copy(first, copy)
    first.write_bytes(first.read_bytes()[:-3000])
    snakemake(tmp_path, config=config(tmp_path))

    manifest = read_manifest(tmp_path / "out" / "manifest.csv")
    assert manifest["slices"].tolist() == [4]
    slices = pd.read_csv(tmp_path / "out" / "slices.csv", dtype=str)
    used = slices.set_index("sop_instance_uid").loc[by_position[1].SOPInstanceUID, "source"]
    assert used == "zz/copy.dcm"
    failures = pd.read_csv(tmp_path / "out" / "failures.csv", keep_default_na=False)
    assert failures[["path", "status"]].values.tolist() == [[str(first), "failed"]]
    assert f"the copy {copy} was converted instead" in failures["message"][0]
    assert not read_geometry(tmp_path / "out" / manifest["path"][0]).volume.uneven_spacing
    tables = [(tmp_path / "out" / n).read_bytes() for n in ("failures.csv", "slices.csv")]
    snakemake(tmp_path, config=config(tmp_path))  # nothing new: the same tables, from the journal
    assert [(tmp_path / "out" / n).read_bytes() for n in ("failures.csv", "slices.csv")] == tables
