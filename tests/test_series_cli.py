"""dicom-preprocess --series stack: stacks become volumes, the rest stays one file each."""

from __future__ import annotations

import pandas as pd
import pytest

from dicomprep.cli import preprocess_main
from dicomprep.formats.tiff import read_frames, read_geometry
from dicomprep.options import Options

from .series_helpers import write_series
from .test_series_stacks import hounsfield_volume


def test_command_line_stacks_a_series_and_reports_the_rest(tmp_path):
    series = write_series(tmp_path / "in", count=8, duplicate_of=2, localizer=True, name="cli")
    out = tmp_path / "out"
    code = preprocess_main(
        [str(tmp_path / "in"), str(out), "--series", "stack", "--voi", "none", "-j", "1"]
    )
    assert code == 0
    volume = out / series["study"] / f"{series['series']}.tiff"
    order = [ds.SOPInstanceUID for ds in series["datasets"][:8]]
    pages = read_frames(volume)
    assert pages.shape[0] == 8
    assert (pages == hounsfield_volume(series, order)).all()
    assert read_geometry(volume).volume.spacing[2] == pytest.approx(2.5)
    slices = pd.read_csv(out / "slices.csv", dtype={"sop_instance_uid": str})
    assert slices["sop_instance_uid"].tolist() == order
    assert slices["page"].tolist() == list(range(8))
    report = pd.read_csv(out / "series_report.csv")
    assert sorted(report["kind"]) == ["duplicate-position", "localizer"]
    localizer = series["datasets"][-1].SOPInstanceUID
    assert (out / series["study"] / f"{localizer}.tiff").exists()  # a single file
    failures = pd.read_csv(out / "failures.csv")
    assert failures["error_type"].tolist() == ["DuplicatePosition"]


def test_size_and_spacing_are_exclusive(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        preprocess_main([str(tmp_path), str(tmp_path / "o"), "-s", "64,64", "--spacing", "1,1"])
    assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


@pytest.mark.parametrize("volume_format", ["tiff", "nifti"])
def test_annotations_of_stacked_slices_map_to_their_page(tmp_path, volume_format):
    """An annotation drawn on one slice of a stacked series lands on that slice's page of
    the volume, at the coordinates the resize gives (128 x 128 slices to 64 x 64)."""
    from dicomprep.cli import manifest_main
    from dicomprep.training.annotations import map_annotations

    series = write_series(tmp_path / "in", count=6, name="notes")
    out = tmp_path / "out"
    args = [str(tmp_path / "in"), str(out), "--series", "stack", "-s", "64,64", "-j", "1"]
    args += ["--volume-format", volume_format]
    assert preprocess_main(args) == 0
    assert manifest_main([str(out), str(out / "manifest.csv")]) == 0
    by_position = sorted(series["datasets"], key=lambda d: float(d.ImagePositionPatient[2]))
    table = pd.DataFrame(
        {
            "sop_instance_uid": [by_position[4].SOPInstanceUID, by_position[1].SOPInstanceUID],
            "x": [40.0, 100.0],
            "y": [50.0, 10.0],
        }
    )
    mapped = map_annotations(table, out)
    assert list(mapped["status"]) == ["ok", "ok"]
    assert list(mapped["page"]) == [4, 1]
    suffix = ".tiff" if volume_format == "tiff" else ".nii.gz"
    assert set(mapped["path"]) == {f"{series['study']}/{series['series']}{suffix}"}
    assert mapped["x"].tolist() == pytest.approx([20.0, 50.0])
    assert mapped["y"].tolist() == pytest.approx([25.0, 5.0])


@pytest.mark.parametrize("volume_format", ["tiff", "nifti"])
def test_dicom_manifest_lists_stack_volumes_as_the_run_names_them(tmp_path, volume_format):
    """A folder of stacks' volumes (a split series among them) says what they hold: the
    first slice's SOP Instance UID, the series and the number of slices."""
    import pydicom

    from dicomprep.cli import manifest_main
    from dicomprep.formats.manifest import read_manifest

    big = write_series(tmp_path / "in", count=4, name="split")
    small = write_series(tmp_path / "tmp", source="MR_small.dcm", count=3, name="split-mr")
    for k, ds in enumerate(small["datasets"]):  # MR slices put into the CT series
        ds.SeriesInstanceUID, ds.StudyInstanceUID = big["series"], big["study"]
        ds.save_as(tmp_path / "in" / f"mr{k}.dcm")
    whole = write_series(tmp_path / "in" / "b", count=5, name="whole")
    out = tmp_path / "out"
    args = [str(tmp_path / "in"), str(out), "--series", "stack", "--voi", "none", "-j", "1"]
    assert preprocess_main([*args, "--volume-format", volume_format]) == 0
    assert manifest_main([str(out), str(out / "manifest.csv")]) == 0

    rows = read_manifest(out / "manifest.csv").set_index("path")
    suffix = ".tiff" if volume_format == "tiff" else ".nii.gz"

    def first_slice(datasets) -> str:
        return min(datasets, key=lambda d: float(d.ImagePositionPatient[2])).SOPInstanceUID

    expected = {
        f"{big['study']}/{big['series']}-1{suffix}": (first_slice(big["datasets"]), 4, 4),
        f"{big['study']}/{big['series']}-2{suffix}": (first_slice(small["datasets"]), 3, 3),
        f"{whole['study']}/{whole['series']}{suffix}": (first_slice(whole["datasets"]), 5, 5),
    }
    assert sorted(rows.index) == sorted(expected)
    for path, (sop, slices, pages) in expected.items():
        row = rows.loc[path]
        assert (row["sop_instance_uid"], row["slices"], row["num_frames"]) == (sop, slices, pages)
        assert row["series_instance_uid"] in (big["series"], whole["series"])
    mr = pydicom.dcmread(tmp_path / "in" / "mr0.dcm")
    mr_row = rows.loc[f"{big['study']}/{big['series']}-2{suffix}"]
    assert (mr_row["width"], mr_row["height"]) == (mr.Columns, mr.Rows)


def test_damaged_slices_are_left_out_until_fewer_than_two_remain(tmp_path):
    from dicomprep.series.volume_file import process_stack

    series = write_series(tmp_path / "in", count=3, name="cli-damaged")
    paths = sorted(series["paths"].values(), key=str)
    whole = {p: p.read_bytes() for p in paths}
    paths[1].write_bytes(whole[paths[1]][:-3000])
    out = tmp_path / "out"
    assert preprocess_main([str(tmp_path / "in"), str(out), "--series", "stack", "-j", "1"]) == 1
    failures = pd.read_csv(out / "failures.csv", keep_default_na=False)
    assert failures[["path", "error_type"]].values.tolist() == [[str(paths[1]), "Truncated"]]
    volume = out / series["study"] / f"{series['series']}.tiff"
    assert read_frames(volume).shape[0] == 2

    paths[2].write_bytes(b"DICM" * 10)  # a second slice gone bad: one slice is no volume
    result = process_stack(paths, tmp_path / "v.tiff", Options())
    assert (result.status, result.error_type) == ("failed", "NotAStack")
    assert paths[1].name in result.message and paths[2].name in result.message
    assert sorted(f["source"] for f in result.left_out) == [str(paths[1]), str(paths[2])]
    assert not (tmp_path / "v.tiff").exists()


def test_a_damaged_slice_with_a_good_copy_is_replaced_by_the_copy(tmp_path):
    import shutil

    series = write_series(tmp_path / "in", count=4, name="cli-copy")
    first = sorted(series["paths"].values(), key=str)[1]
    copy = tmp_path / "in" / "z_copy.dcm"  # the same image, later in path order
    shutil.copy(first, copy)
    first.write_bytes(first.read_bytes()[:-3000])
    out = tmp_path / "out"
    assert preprocess_main([str(tmp_path / "in"), str(out), "--series", "stack", "-j", "1"]) == 1
    volume = out / series["study"] / f"{series['series']}.tiff"
    assert read_frames(volume).shape[0] == 4  # no slice lost
    failures = pd.read_csv(out / "failures.csv", keep_default_na=False)
    assert failures[["path", "error_type"]].values.tolist() == [[str(first), "Truncated"]]
    slices = pd.read_csv(out / "slices.csv", dtype=str)
    assert len(slices) == 4
