"""dicom-preprocess --series stack: stacks become volumes, the rest stays one file each."""

from __future__ import annotations

import pandas as pd
import pytest

from dicomprep.cli import preprocess_main
from dicomprep.formats.tiff import read_frames, read_geometry

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
    assert failures["error_type"].tolist() == ["duplicate-position"]


def test_size_and_spacing_are_exclusive(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        preprocess_main([str(tmp_path), str(tmp_path / "o"), "-s", "64,64", "--spacing", "1,1"])
    assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
